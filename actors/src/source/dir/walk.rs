//! Opens confined by walking the path a folder at a time from the root's folder, no step
//! through a symlink (`O_NOFOLLOW` on each): where the kernel does not confine opens itself
//! (before Linux 5.6, a sandbox that filters `openat2` out, other systems). Each folder is
//! opened from the one before it, so rewriting the tree while the source reads leads nowhere
//! out of the root: a folder swapped for a symlink is refused at the step that meets it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
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
        Ok(Self(rustix::fs::open(root, folder_flags(), Mode::empty())?))
    }

    /// Opens `path` (relative, plain components only, as a key's path and a resolved path
    /// under the root are) for reading; non-blocking, as `open_read` opens, and never as the
    /// process's controlling terminal. A symlink at any step is [`Opened::Refused`], for the
    /// caller to resolve.
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
            let flags = folder_flags() | OFlags::NOFOLLOW;
            match rustix::fs::openat(at, *name, flags, Mode::empty()) {
                Ok(next) => folder = Some(next),
                Err(e) => return refused_or(e, at, name),
            }
        }
        let at = folder.as_ref().map_or(self.0.as_fd(), AsFd::as_fd);
        let flags =
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(at, *file, flags, Mode::empty()) {
            Ok(fd) => Opened::File(Ok(fs::File::from(fd))),
            Err(e) => refused_or(e, at, file),
        }
    }
}

/// How a folder of the walk is opened: only to open what is in it, which needs the right to
/// search it, not to read it (`O_PATH` where the system has it).
fn folder_flags() -> OFlags {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let only_to_search = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let only_to_search = OFlags::RDONLY;
    only_to_search | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Whether `name` in the folder `at` is a symlink (not followed).
fn is_symlink(at: impl AsFd, name: &OsStr) -> bool {
    let stat = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW);
    stat.is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink)
}

/// A step that met a symlink is refused; any other failure is the open's. Systems answer an
/// `O_NOFOLLOW` open of a symlink differently (`ELOOP`; `ENOTDIR` for a folder on Linux;
/// `EMLINK` on FreeBSD, `EFTYPE` on NetBSD), so a failed step looks at what is there.
fn refused_or(e: Errno, at: impl AsFd, name: &OsStr) -> Opened {
    if e == Errno::LOOP || is_symlink(at, name) {
        return Opened::Refused;
    }
    Opened::File(Err(io::Error::from(e)))
}
