//! A directory source: one file per asset, at `root/<key path>`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use streamrt_messages::AssetKey;

use super::{Source, SourceError};

#[cfg(target_os = "linux")]
mod beneath;

/// Where the kernel does not confine opens: no root to open beneath.
#[cfg(not(target_os = "linux"))]
mod beneath {
    /// Never made.
    #[derive(Debug)]
    pub(super) enum Root {}
}

/// Reads `root/<path>` for the key `type:<path>`.
///
/// # Invariants
///
/// Only files under `root` are opened: keys are confined by construction (no `..`, no absolute
/// path), and a path that resolves (symlinks followed) outside the resolved root is refused
/// with `Denied`, so a symlink never leads out of the root. Symlinks that stay inside it work.
///
/// On Linux (5.6 on) the kernel confines each open itself (`openat2` beneath the root's
/// folder, `RESOLVE_BENEATH`): no step of the path's resolution, a symlink's included, may
/// leave the root, so rewriting the tree while the source reads leads nowhere out of it. A
/// path the kernel refuses so (an absolute symlink, even one back into the root) is resolved
/// and checked as below, then opened beneath the root by its resolved path, which holds no
/// symlink: a folder swapped for one since is refused too. A passing failure to open the
/// root's folder (no file descriptor left) fails that read, and is asked again next time.
///
/// Elsewhere (or where `openat2` is not allowed), resolving a path costs a `readlink` per
/// component, so the source remembers folders whose every component under the resolved root
/// is a real folder, no symlink (up to [`DirSource::DIRS_VERIFIED_MAX`]): a file in such a
/// folder is opened by its path under the resolved root, the open itself refusing a symlink
/// as its last component (`O_NOFOLLOW`). Anything else (a symlink, a folder reached through
/// one, a folder not yet seen) is resolved and the resolved path opened. A folder's check and
/// a later open see the same folder unless the tree is rewritten between the two: there, the
/// source assumes nobody rewrites its asset tree adversarially while it reads (a remembered
/// folder later replaced by a symlink would be followed).
///
/// Paths are joined to the root as it resolved on the first read (of any clone), so
/// repointing a symlinked root later does not move the source or its clones. A file larger
/// than `bytes_max` is refused before its contents are read, and a read stops at
/// `bytes_max + 1` bytes if the file grows meanwhile.
///
/// Only regular files are read: a folder is `NotFound`, and a named pipe, socket or device is
/// refused with `Denied` without waiting for a writer (files are opened non-blocking). So is a
/// file or folder the system does not let the process read (`EACCES`, `EPERM`): no retry
/// would read it.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
    bytes_max: u64,
    /// `root` with every symlink resolved, once it exists; shared by clones, as the folders
    /// they remember lie under it.
    resolved_root: Arc<OnceLock<PathBuf>>,
    /// Folders, relative to `root` (the empty path for `root` itself), with no symlink between
    /// the resolved root and them; shared by clones.
    verified_dirs: Arc<RwLock<HashSet<PathBuf>>>,
    /// The resolved root's folder, opened for `openat2`, once it was; `None` where the kernel
    /// cannot confine opens (see `beneath.rs`).
    #[cfg(target_os = "linux")]
    beneath: Arc<OnceLock<Option<beneath::Root>>>,
}

impl DirSource {
    /// The largest file read by default: 256 MiB.
    pub const BYTES_MAX_DEFAULT: u64 = 256 << 20;

    /// Folders remembered as free of symlinks under the root; past it, files in further folders
    /// are resolved on every read (one `canonicalize` each).
    pub const DIRS_VERIFIED_MAX: usize = 4_096;

    /// A source rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bytes_max: Self::BYTES_MAX_DEFAULT,
            resolved_root: Arc::default(),
            verified_dirs: Arc::default(),
            #[cfg(target_os = "linux")]
            beneath: Arc::default(),
        }
    }

    /// Sets the largest file this source reads, in bytes.
    #[must_use]
    pub fn with_bytes_max(mut self, bytes_max: u64) -> Self {
        self.bytes_max = bytes_max;
        self
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens the file `key` names, confined to the root: beneath the root's folder where the
    /// kernel confines opens, by the resolved path where it refused one; elsewhere by its path
    /// under the resolved root when its folder is remembered, refusing a symlink as the last
    /// component (one `open`, no `lstat` before it), else, or when that open is refused, by
    /// the resolved path.
    fn open_confined(&self, key: &AssetKey) -> Result<fs::File, SourceError> {
        let root = self.resolved_root()?;
        #[cfg(target_os = "linux")]
        if let Some(beneath) = self.beneath(root)? {
            return match beneath.open(key.path()) {
                beneath::Opened::File(file) => file.map_err(|e| open_error(key, &e)),
                beneath::Opened::Refused | beneath::Opened::Busy => {
                    self.open_resolved(key, root, Some(beneath))
                }
            };
        }
        let path = root.join(key.path());
        let folder = Path::new(key.path()).parent().unwrap_or(Path::new(""));
        let verified = self.is_verified(folder);
        if verified {
            match open_read(&path) {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SourceError::NotFound),
                // A symlink (or any other refusal): resolved below, which names the error.
                Err(_) => {}
            }
        }
        if !verified {
            self.verify(folder, root);
        }
        self.open_resolved(key, root, None)
    }

    /// The kernel's confinement of opens beneath the root, once known (`None` where it has
    /// none); a passing failure to find out fails this read only.
    #[cfg(target_os = "linux")]
    fn beneath(&self, root: &Path) -> Result<Option<&beneath::Root>, SourceError> {
        if let Some(known) = self.beneath.get() {
            return Ok(known.as_ref());
        }
        let found = beneath::Root::at(root).map_err(|e| io_error(&e))?;
        Ok(self.beneath.get_or_init(|| found).as_ref())
    }

    /// Opens `key`'s file by its path resolved (symlinks followed), refused with `Denied`
    /// unless it lies under the resolved `root`. The resolved path holds no symlink: opened
    /// `beneath` the root where the kernel confines opens, a folder swapped for a symlink since
    /// is refused; elsewhere its last component is opened without following one.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn open_resolved(
        &self,
        key: &AssetKey,
        root: &Path,
        beneath: Option<&beneath::Root>,
    ) -> Result<fs::File, SourceError> {
        let resolved = fs::canonicalize(root.join(key.path())).map_err(|e| io_error(&e))?;
        let Ok(inside) = resolved.strip_prefix(root) else {
            return Err(SourceError::Denied(format!("{key} resolves outside {}", root.display())));
        };
        #[cfg(target_os = "linux")]
        if let Some(beneath) = beneath {
            return match beneath.open(inside) {
                beneath::Opened::File(file) => file.map_err(|e| open_error(key, &e)),
                beneath::Opened::Refused => {
                    Err(SourceError::Denied(format!("{key}: its folders changed as it was read")))
                }
                // An IO failure, retried: a denial would be for good, and a rename or a
                // lease passes.
                beneath::Opened::Busy => Err(SourceError::Io(format!(
                    "{key}: the open raced a rename or waits for a lease to be broken"
                ))),
            };
        }
        open_read(&resolved).map_err(|e| open_error(key, &e))
    }

    fn resolved_root(&self) -> Result<&PathBuf, SourceError> {
        if let Some(root) = self.resolved_root.get() {
            return Ok(root);
        }
        let resolved = fs::canonicalize(&self.root).map_err(|e| io_error(&e))?;
        Ok(self.resolved_root.get_or_init(|| resolved))
    }

    fn is_verified(&self, folder: &Path) -> bool {
        self.verified_dirs.read().unwrap_or_else(PoisonError::into_inner).contains(folder)
    }

    /// Remembers `folder` if there is room and no component of it under the resolved `root`
    /// is a symlink (it resolves to itself).
    fn verify(&self, folder: &Path, root: &Path) {
        let len = self.verified_dirs.read().unwrap_or_else(PoisonError::into_inner).len();
        if len >= Self::DIRS_VERIFIED_MAX {
            return;
        }
        let plain = root.join(folder);
        if fs::canonicalize(&plain).is_ok_and(|resolved| resolved == plain) {
            let mut dirs = self.verified_dirs.write().unwrap_or_else(PoisonError::into_inner);
            if dirs.len() < Self::DIRS_VERIFIED_MAX {
                dirs.insert(folder.to_path_buf());
            }
        }
    }
}

impl Source for DirSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let file = self.open_confined(key)?;
        let meta = file.metadata().map_err(|e| io_error(&e))?;
        if meta.is_dir() {
            return Err(SourceError::NotFound);
        }
        if !meta.is_file() {
            return Err(SourceError::Denied(format!("{key} is not a regular file")));
        }
        if meta.len() > self.bytes_max {
            return Err(SourceError::TooLarge { size: meta.len(), max: self.bytes_max });
        }
        let expected = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        let mut bytes = Vec::new();
        // With no limit (`u64::MAX`), a sparse file can claim more than memory holds: refused
        // (for good: a retry would fail the same way), where a failed allocation would abort.
        let too_large = SourceError::TooLarge { size: meta.len(), max: self.bytes_max };
        bytes.try_reserve_exact(expected).map_err(|_| too_large)?;
        // The `take` bounds the read even if the file grows after `metadata`; one byte past the
        // limit tells a file that grew past it (none with `u64::MAX`: no limit).
        let limit = self.bytes_max.saturating_add(1);
        file.take(limit).read_to_end(&mut bytes).map_err(|e| io_error(&e))?;
        if bytes.len() as u64 > self.bytes_max {
            return Err(SourceError::TooLarge { size: bytes.len() as u64, max: self.bytes_max });
        }
        Ok(bytes)
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

/// Opens `path` for reading, refusing a symlink as its last component.
///
/// The open never waits: a named pipe with no writer would hold an IO worker until one came,
/// so the file is opened non-blocking (which changes nothing for a regular file's reads) and
/// anything but a regular file is refused after its `metadata`.
#[cfg(unix)]
fn open_read(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = libc::O_NONBLOCK | libc::O_NOFOLLOW;
    fs::OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// Opens `path` for reading, refusing a symlink (checked just before the open).
#[cfg(not(unix))]
fn open_read(path: &Path) -> io::Result<fs::File> {
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(io::Error::other("a symlink"));
    }
    fs::File::open(path)
}

/// What a failed open of `key`'s file means: a socket cannot be opened at all (`ENXIO`), and is
/// refused as any file that is not a regular one is.
fn open_error(key: &AssetKey, e: &io::Error) -> SourceError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENXIO) {
        return SourceError::Denied(format!("{key} is not a regular file"));
    }
    io_error(e)
}

/// What a failed open or read means. A key whose path cannot name a file under the root (a
/// part is a file, not a folder; a part too long) is not found, and a symlink loop or a file
/// or folder the process may not read is refused: a retry would meet them again, where an
/// `Io` error is retried as transient.
fn io_error(e: &io::Error) -> SourceError {
    #[cfg(unix)]
    match e.raw_os_error() {
        Some(libc::ENOTDIR | libc::ENAMETOOLONG) => return SourceError::NotFound,
        Some(libc::ELOOP) => return SourceError::Denied(format!("a symlink loop: {e}")),
        Some(libc::EACCES | libc::EPERM) => return SourceError::Denied(e.to_string()),
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound,
        _ => SourceError::Io(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_permission_refused_is_denied_not_a_transient_io_error() {
        for errno in [libc::EACCES, libc::EPERM] {
            let refused = io_error(&io::Error::from_raw_os_error(errno));
            assert!(matches!(refused, SourceError::Denied(_)), "{errno}: {refused:?}");
        }
        let failed = io_error(&io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(failed, SourceError::Io(_)), "{failed:?}");
    }

    fn key(path: &str) -> AssetKey {
        AssetKey::parse(&format!("blob:{path}")).unwrap()
    }

    /// Where the kernel does not confine opens, the source resolves paths itself: a symlink
    /// out of the root is denied, in a folder it reads from already too, and one inside works.
    #[test]
    #[cfg(unix)]
    fn without_the_kernels_confinement_a_symlink_still_never_leads_out_of_the_root() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("inner")).unwrap();
        fs::write(dir.path().join("inner/first"), b"first").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        symlink(dir.path().join("inner/first"), dir.path().join("in")).unwrap();
        let source = DirSource::new(dir.path());
        #[cfg(target_os = "linux")]
        source.beneath.set(None).unwrap();
        assert!(matches!(source.read(&key("out")), Err(SourceError::Denied(_))));
        assert_eq!(source.read(&key("in")).unwrap(), b"first");
        assert_eq!(source.read(&key("inner/first")).unwrap(), b"first");
        assert!(source.is_verified(Path::new("inner")), "read by its path from now on");
        symlink(outside.path().join("secret"), dir.path().join("inner/late")).unwrap();
        assert!(matches!(source.read(&key("inner/late")), Err(SourceError::Denied(_))));
        assert_eq!(source.read(&key("inner/missing")), Err(SourceError::NotFound));
    }
}
