//! The daemon's control socket: created so that only its owner can reach it, and never by
//! following or replacing something it should not.
//!
//! # Invariants
//!
//! - The socket's directory is the owner's and has mode 0700 (created so when missing); the
//!   socket has mode 0600. A directory of another user or with wider permissions is refused.
//! - An existing path is looked at without following it (`lstat`): a symlink, a regular file
//!   or anything but a socket is refused; a socket of another user is refused; a socket of the
//!   owner with a live daemon behind it is refused; only a stale socket of the owner is
//!   removed.
//! - The path is looked at, cleared and bound only under its lock (`<name>.lock` beside it,
//!   `flock`ed, never followed), held until the socket is removed: of two daemons started at
//!   once on one stale socket, one binds and the other is refused `InUse`, and neither removes
//!   the other's socket. A lock file left by a killed daemon is not held, and is taken.
//! - A connection whose peer is another user is closed before a byte is read from it.
//! - When dropped, however the daemon ends, the socket and then its lock file are removed,
//!   each only if its path is still the file this daemon made (same device and inode, not a
//!   symlink).

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why the daemon will not listen at a path.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path has no parent directory or no file name.
    #[error("{0}: not a socket path")]
    BadPath(PathBuf),
    /// The directory is not private to the daemon's user.
    #[error("{path}: directory must be owned by uid {uid} with mode 0700 (it has uid {owner}, mode {mode:o})")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// The daemon's user.
        uid: u32,
        /// The directory's owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory is reached through a symlink another user could re-point.
    #[error(
        "{path}: a symlink of uid {owner}; only a link of the daemon's user or root is followed"
    )]
    ForeignLink {
        /// The link.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// Something that is not a socket is in the way.
    #[error("{path}: exists and is a {kind}, not a socket; refusing to touch it")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The socket belongs to another user.
    #[error("{path}: a socket of uid {owner}; refusing to touch it")]
    ForeignSocket {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// A daemon already answers on the socket.
    #[error("{0}: a daemon is already listening")]
    InUse(PathBuf),
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SocketError + '_ {
    move |source| SocketError::Io { path: path.to_owned(), source }
}

/// The effective user of this process.
pub fn own_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A bound control socket; see the module docs.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    file: SocketFile,
    /// Holds the path's lock until the socket is removed (dropped after `file`'s removal).
    _lock: fs::File,
}

/// A control socket's file and its lock file, as made: each removed only while its path is
/// still that file.
#[derive(Debug, Clone)]
pub struct SocketFile {
    socket: MadeFile,
    lock: MadeFile,
}

/// A file this daemon made, known by its device and inode.
#[derive(Debug, Clone)]
struct MadeFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl MadeFile {
    /// The file at `path` now.
    fn at(path: &Path) -> Result<Self, SocketError> {
        let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
        Ok(Self { path: path.to_owned(), dev: meta.dev(), ino: meta.ino() })
    }

    /// Whether the path is still this file (not followed: a symlink there is not).
    fn is_there(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| {
            !m.file_type().is_symlink() && m.dev() == self.dev && m.ino() == self.ino
        })
    }

    fn remove(&self) {
        if self.is_there() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl SocketFile {
    /// Removes the socket file, then the lock file, each if its path is still that file. The
    /// lock is removed while still held, so a daemon that opened it meanwhile finds, once it
    /// holds it, that its path names another file or none, and opens it again.
    pub fn remove(&self) {
        self.socket.remove();
        self.lock.remove();
    }
}

/// Times the lock file is opened again when it was removed between its open and its lock
/// (the daemon that held it stopped meanwhile).
const LOCK_ATTEMPTS_MAX: u32 = 8;

/// Takes the lock of the socket path `socket`: a file beside it (`<name>.lock`, mode 0600,
/// never followed), locked (`flock`) from before the path is looked at until the socket is
/// removed. Without it, two daemons started at once on one stale socket could each find it
/// stale, and one remove the socket the other had just bound.
///
/// # Errors
///
/// [`SocketError::InUse`] when another daemon holds it; an `Io` error naming the lock file
/// when it cannot be opened or locked (a symlink there is refused as `ELOOP`).
fn lock_path(socket: &Path, name: &std::ffi::OsStr) -> Result<(fs::File, MadeFile), SocketError> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let mut lock_name = name.to_owned();
    lock_name.push(".lock");
    let path = socket.with_file_name(lock_name);
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..LOCK_ATTEMPTS_MAX {
        let fd = rustix::fs::open(&path, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_at(&path)(e.into()))?;
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(SocketError::InUse(socket.to_owned()))
            }
            Err(e) => return Err(io_at(&path)(e.into())),
        }
        let file = fs::File::from(fd);
        let held = file.metadata().map_err(io_at(&path))?;
        let made = MadeFile { path: path.clone(), dev: held.dev(), ino: held.ino() };
        if made.is_there() {
            return Ok((file, made));
        }
    }
    Err(io_at(&path)(io::Error::other("the lock file was replaced at each attempt to take it")))
}

impl ControlSocket {
    /// Prepares the directory, checks the path and binds.
    ///
    /// # Errors
    ///
    /// A [`SocketError`] naming what is wrong with the path.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let uid = own_uid();
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(SocketError::BadPath(path.to_owned()));
        };
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        private_directory(dir, uid)?;
        let (lock_file, lock) = lock_path(path, name)?;
        match clear_stale(path, uid).and_then(|()| bind_private(path)) {
            Ok((listener, socket)) => {
                Ok(Self { listener, file: SocketFile { socket, lock }, _lock: lock_file })
            }
            Err(e) => {
                lock.remove();
                Err(e)
            }
        }
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.socket.path
    }

    /// The socket's file, for a thread that may have to remove it as the process exits.
    pub fn file(&self) -> SocketFile {
        self.file.clone()
    }
}

/// Binds a socket at `path` (known free) with mode 0600; on failure, none is left there.
fn bind_private(path: &Path) -> Result<(UnixListener, MadeFile), SocketError> {
    let listener = UnixListener::bind(path).map_err(io_at(path))?;
    let made = MadeFile::at(path)?;
    if let Err(e) = fs::set_permissions(path, Permissions::from_mode(0o600)) {
        made.remove();
        return Err(io_at(path)(e));
    }
    Ok((listener, made))
}

/// The socket file goes with the daemon, however it ends: a stopped daemon, one whose runtime
/// failed to start, one unwinding from a panic.
impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.file.remove();
    }
}

/// Creates `dir` with mode 0700 if missing; refuses it unless it is `uid`'s with mode 0700.
fn private_directory(dir: &Path, uid: u32) -> Result<(), SocketError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_at(dir))?;
        }
        Err(e) => return Err(io_at(dir)(e)),
        // Its owner could point it elsewhere between the checks below and the bind, or the
        // removal of a stale socket.
        Ok(link) if link.file_type().is_symlink() && link.uid() != uid && link.uid() != 0 => {
            return Err(SocketError::ForeignLink { path: dir.to_owned(), owner: link.uid() });
        }
        Ok(_) => {}
    }
    // Followed on purpose: a symlinked runtime directory is common (/var/run -> /run); what
    // matters is the directory the socket ends up in, and that no one else can re-point it.
    let meta = fs::metadata(dir).map_err(io_at(dir))?;
    let mode = meta.mode() & 0o777;
    if !meta.is_dir() || meta.uid() != uid || mode != 0o700 {
        return Err(SocketError::UnsafeDirectory {
            path: dir.to_owned(),
            uid,
            owner: meta.uid(),
            mode,
        });
    }
    Ok(())
}

/// How long a connect to a socket found at the daemon's path may wait, to tell a live
/// daemon from a stale socket.
const STALE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes a stale socket of `uid` at `path`; refuses anything else that is there.
fn clear_stale(path: &Path, uid: u32) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(path)(e)),
        Ok(meta) => meta,
    };
    let kind = meta.file_type();
    let refuse = |kind| Err(SocketError::NotASocket { path: path.to_owned(), kind });
    if kind.is_symlink() {
        return refuse("symlink");
    }
    if kind.is_file() {
        return refuse("regular file");
    }
    if kind.is_dir() {
        return refuse("directory");
    }
    if !kind.is_socket() {
        return refuse("special file");
    }
    if meta.uid() != uid {
        return Err(SocketError::ForeignSocket { path: path.to_owned(), owner: meta.uid() });
    }
    // A listener whose queue stays full (a daemon stopped, or stuck) is still there: only a
    // refused connection (no one listens) makes the socket stale. Any other failure (a signal
    // cut the probe short) decides nothing, and removes nothing.
    match crate::connect::connect_within(path, STALE_PROBE_TIMEOUT) {
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(SocketError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(io_at(path))
        }
        // Gone meanwhile: nothing to remove.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Whether the peer of `stream` is `uid`; false when it cannot be told.
pub fn peer_is(stream: &UnixStream, uid: u32) -> bool {
    rustix::net::sockopt::socket_peercred(stream).is_ok_and(|cred| cred.uid.as_raw() == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_told_apart_by_its_uid() {
        // Both ends are this process's: the daemon's check refuses every other uid, which a
        // test run as any user can ask about (only root can connect as another user).
        let (ours, _theirs) = UnixStream::pair().unwrap();
        assert!(peer_is(&ours, own_uid()));
        assert!(!peer_is(&ours, own_uid().wrapping_add(1)));
    }

    /// A directory fit for a socket: its user's, mode 0700.
    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// A socket left at `path` by a daemon that was killed: no one listens on it.
    fn stale_socket(path: &Path) {
        drop(UnixListener::bind(path).unwrap());
        assert!(fs::symlink_metadata(path).unwrap().file_type().is_socket());
    }

    #[test]
    fn a_bind_while_another_daemon_holds_the_paths_lock_is_refused_and_touches_nothing() {
        let dir = private_dir();
        let path = dir.path().join("ctl.sock");
        stale_socket(&path);
        // Another daemon between its look at the stale socket and its bind.
        let held = lock_path(&path, path.file_name().unwrap()).unwrap();
        let refused = ControlSocket::bind(&path).unwrap_err();
        assert!(matches!(refused, SocketError::InUse(_)), "{refused}");
        assert!(fs::symlink_metadata(&path).is_ok(), "the other daemon's to clear, not this one's");
        drop(held);
        let socket = ControlSocket::bind(&path).expect("taken once let go");
        assert!(UnixStream::connect(&path).is_ok());
        drop(socket);
    }

    #[test]
    fn a_lock_file_a_killed_daemon_left_is_taken_and_a_stopped_daemon_leaves_no_file() {
        let dir = private_dir();
        let path = dir.path().join("ctl.sock");
        stale_socket(&path);
        fs::write(dir.path().join("ctl.sock.lock"), b"").unwrap();
        let socket = ControlSocket::bind(&path).expect("neither the socket nor the lock is held");
        assert!(UnixStream::connect(&path).is_ok());
        drop(socket);
        let left: Vec<_> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_symlink_at_the_lock_path_is_refused_and_not_followed() {
        let dir = private_dir();
        let path = dir.path().join("ctl.sock");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("ctl.sock.lock")).unwrap();
        let refused = ControlSocket::bind(&path).unwrap_err();
        assert!(matches!(refused, SocketError::Io { .. }), "{refused}");
        assert!(!target.exists(), "the link was not followed");
        assert!(!path.exists(), "no socket without the lock");
    }
}
