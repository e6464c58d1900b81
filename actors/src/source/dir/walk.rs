//! Opens confined by walking the path a folder at a time from the root's folder, no step
//! through a symlink (`O_NOFOLLOW` on each): where the kernel does not confine opens itself
//! (before Linux 5.6, a sandbox that filters `openat2` out, other systems). Each folder is
//! opened from the one before it, so rewriting the tree while the source reads leads nowhere
//! out of the root: a folder swapped for a symlink is refused at the step that meets it.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::Opened;

/// The resolved root's folder, opened once: every walk starts from it.
#[derive(Debug)]
pub(super) struct Root(OwnedFd);

impl Root {
    /// The folder at `root`.
    ///
    /// # Errors
    ///
    /// The folder could not be opened.
    pub(super) fn at(root: &Path) -> io::Result<Self> {
        let folder = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(Self(rustix::fs::open(root, folder, Mode::empty())?))
    }

    /// Opens `path` (relative, plain components only, as a key's path and a resolved path
    /// under the root are) for reading; non-blocking, as `open_read` opens. A symlink at any
    /// step is [`Opened::Refused`], for the caller to resolve.
    pub(super) fn open(&self, path: &Path) -> Opened {
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(name) => names.push(name),
                // Never in a key's path (`..`, absolute) nor in one resolved under the root.
                _ => return Opened::Refused,
            }
        }
        let Some((file, folders)) = names.split_last() else {
            return Opened::File(Err(io::ErrorKind::NotFound.into()));
        };
        let mut folder: Option<OwnedFd> = None;
        for name in folders {
            let at = folder.as_ref().map_or(self.0.as_fd(), AsFd::as_fd);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(at, *name, flags, Mode::empty()) {
                Ok(next) => folder = Some(next),
                // A folder opened as one: a symlink at this step answers that it is not one
                // (Linux), as a file does; only the symlink is refused.
                Err(Errno::NOTDIR) if is_symlink(at, name) => return Opened::Refused,
                Err(e) => return refused_or(e),
            }
        }
        let at = folder.as_ref().map_or(self.0.as_fd(), AsFd::as_fd);
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(at, *file, flags, Mode::empty()) {
            Ok(fd) => Opened::File(Ok(fs::File::from(fd))),
            Err(e) => refused_or(e),
        }
    }
}

/// Whether `name` in the folder `at` is a symlink (not followed).
fn is_symlink(at: impl AsFd, name: &std::ffi::OsStr) -> bool {
    rustix::fs::statat(at, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Symlink
    })
}

/// A step that met a symlink is refused (`ELOOP`; `EMLINK` on the BSDs); any other failure is
/// the open's.
fn refused_or(e: Errno) -> Opened {
    match e {
        Errno::LOOP | Errno::MLINK => Opened::Refused,
        e => Opened::File(Err(io::Error::from(e))),
    }
}
