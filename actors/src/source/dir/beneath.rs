//! Opens the kernel confines (Linux 5.6 on): `openat2` beneath the root's folder with
//! `RESOLVE_BENEATH`, which refuses any step of a path's resolution out of that folder, a
//! symlink's included, as it happens. No check precedes the open, so none can go stale.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::Opened;

/// The resolved root's folder, opened once (`O_PATH`): every open resolves beneath it.
#[derive(Debug)]
pub(super) struct Root(OwnedFd);

impl Root {
    /// The folder at `root`, if the kernel lets this process confine opens beneath it: `None`
    /// where `openat2` is missing (before Linux 5.6) or filtered out (a sandbox's seccomp).
    ///
    /// # Errors
    ///
    /// The folder could not be opened, or the probe failed for another reason (no file
    /// descriptor left, no memory): a passing failure, which decides nothing for good.
    pub(super) fn at(root: &Path) -> io::Result<Option<Self>> {
        let folder = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = rustix::fs::open(root, folder, Mode::empty())?;
        // The root's folder beneath itself: only a kernel without `openat2` refuses it.
        let probe = OFlags::PATH | OFlags::CLOEXEC;
        match rustix::fs::openat2(&dir, ".", probe, Mode::empty(), ResolveFlags::BENEATH) {
            Ok(_) => Ok(Some(Self(dir))),
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `path`, relative, for reading beneath the root; non-blocking, as `open_read`
    /// opens (a named pipe must not hold an IO worker), and never as the process's
    /// controlling terminal (a tty node in the tree, refused once opened).
    pub(super) fn open(&self, path: impl rustix::path::Arg) -> Opened {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(&self.0, path, flags, Mode::empty(), resolve) {
            Ok(fd) => Opened::File(Ok(fs::File::from(fd))),
            Err(Errno::XDEV) => Opened::Refused,
            Err(Errno::AGAIN) => Opened::Busy,
            Err(e) => Opened::File(Err(io::Error::from(e))),
        }
    }
}
