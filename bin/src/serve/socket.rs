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
//! - A connection whose peer is another user is closed before a byte is read from it.
//! - When dropped, however the daemon ends, the socket is removed only if the path is still
//!   the socket this daemon bound (same device and inode, still a socket, not a symlink).

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
}

/// A control socket's file, as bound: removed only while the path is still that socket.
#[derive(Debug, Clone)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Removes the socket file if the path is still this socket.
    pub fn remove(&self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ControlSocket {
    /// Prepares the directory, checks the path and binds.
    ///
    /// # Errors
    ///
    /// A [`SocketError`] naming what is wrong with the path.
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        let uid = own_uid();
        let dir = match path.parent() {
            Some(d) if path.file_name().is_some() => {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            }
            _ => return Err(SocketError::BadPath(path.to_owned())),
        };
        private_directory(dir, uid)?;
        clear_stale(path, uid)?;
        let listener = UnixListener::bind(path).map_err(io_at(path))?;
        fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(io_at(path))?;
        let meta = fs::symlink_metadata(path).map_err(io_at(path))?;
        let file = SocketFile { path: path.to_owned(), dev: meta.dev(), ino: meta.ino() };
        Ok(Self { listener, file })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The socket's file, for a thread that may have to remove it as the process exits.
    pub fn file(&self) -> SocketFile {
        self.file.clone()
    }
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
}
