//! A directory source: one file per asset, at `root/<key path>`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use streamrt_messages::AssetKey;

use super::{Source, SourceError};

#[cfg(target_os = "linux")]
mod beneath;
#[cfg(unix)]
mod walk;

/// Reads `root/<path>` for the key `type:<path>`.
///
/// # Invariants
///
/// Only files under `root` are opened: keys are confined by construction (no `..`, no absolute
/// path), and a path that resolves (symlinks followed) outside the resolved root is refused
/// with `Denied`, so a symlink never leads out of the root. Symlinks that stay inside it work.
///
/// Every open is confined as it happens, so rewriting the tree while the source reads leads
/// nowhere out of the root. On Linux (5.6 on) the kernel confines it (`openat2` beneath the
/// root's folder, `RESOLVE_BENEATH`): no step of the path's resolution, a symlink's included,
/// may leave the root. Elsewhere (or where `openat2` is not allowed) the path is walked a
/// folder at a time from the root's folder, no step through a symlink (`walk.rs`). A path
/// either refuses (a symlink in it; for the kernel, an absolute one, even back into the root)
/// is resolved and checked, then opened the same confined way by its resolved path, which
/// holds no symlink: a folder swapped for one since is refused by the walk, and followed by
/// the kernel only while it stays beneath the root. A path through a symlink that leads out of
/// the root to nothing is `Denied` too, as one to a file is; so is one to nothing past 40
/// symlinks or 4,096 parts of path (symlinks' targets included), which no tree needs. A
/// passing failure to open the root's folder (no file descriptor left) fails that read, and
/// is tried again next time.
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
    /// `root` with every symlink resolved, once it exists; shared by clones.
    resolved_root: Arc<OnceLock<PathBuf>>,
    /// How opens are confined beneath the resolved root, once its folder was opened.
    #[cfg(unix)]
    confined: Arc<OnceLock<Confined>>,
}

/// What a confined open came to.
pub(super) enum Opened {
    /// The file, or why it could not be opened (not found, not readable, a symlink loop...).
    File(io::Result<fs::File>),
    /// A step of the path was refused: out of the root, or through a symlink. The caller
    /// resolves the path itself and decides.
    Refused,
    /// The open could not complete now (`EAGAIN`, `openat2` only): a rename the kernel could
    /// not rule on raced the resolution, or the file is under a lease another holder must
    /// break first (a file server's; the open is non-blocking). The caller resolves the path
    /// itself, and a second such answer is a passing failure, not a refusal.
    Busy,
}

/// Opens confined beneath the resolved root (see [`DirSource`]).
#[cfg(unix)]
#[derive(Debug)]
enum Confined {
    /// The kernel confines each open.
    #[cfg(target_os = "linux")]
    Kernel(beneath::Root),
    /// Each open walks its path from the root's folder.
    Walk(walk::Root),
}

#[cfg(unix)]
impl Confined {
    /// The kernel's confinement where it has one, else the walk.
    fn at(root: &Path) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if let Some(kernel) = beneath::Root::at(root)? {
            return Ok(Self::Kernel(kernel));
        }
        walk::Root::at(root).map(Self::Walk)
    }

    fn open(&self, path: &Path) -> Opened {
        match self {
            #[cfg(target_os = "linux")]
            Self::Kernel(root) => root.open(path),
            Self::Walk(root) => root.open(path),
        }
    }
}

impl DirSource {
    /// The largest file read by default: 256 MiB.
    pub const BYTES_MAX_DEFAULT: u64 = 256 << 20;

    /// A source rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bytes_max: Self::BYTES_MAX_DEFAULT,
            resolved_root: Arc::default(),
            #[cfg(unix)]
            confined: Arc::default(),
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

    /// Opens the file `key` names, confined to the root (see [`DirSource`]).
    fn open_confined(&self, key: &AssetKey) -> Result<fs::File, SourceError> {
        let root = self.resolved_root()?;
        #[cfg(unix)]
        {
            let confined = self.confined(root)?;
            match confined.open(Path::new(key.path())) {
                Opened::File(file) => file.map_err(|e| open_error(key, &e)),
                Opened::Refused | Opened::Busy => self.open_resolved(key, root, confined),
            }
        }
        #[cfg(not(unix))]
        self.open_resolved(key, root)
    }

    /// How opens are confined, once known; a passing failure to open the root's folder fails
    /// this read only.
    #[cfg(unix)]
    fn confined(&self, root: &Path) -> Result<&Confined, SourceError> {
        if let Some(known) = self.confined.get() {
            return Ok(known);
        }
        let found = Confined::at(root).map_err(|e| io_error(&e))?;
        Ok(self.confined.get_or_init(|| found))
    }

    /// Opens `key`'s file by its path resolved (symlinks followed), refused with `Denied`
    /// unless it lies under the resolved `root`. The resolved path holds no symlink: opened
    /// by the walk, a folder swapped for a symlink since is refused (`Denied`, for good); the
    /// kernel's confinement follows such a symlink as long as it stays beneath the root.
    #[cfg(unix)]
    fn open_resolved(
        &self,
        key: &AssetKey,
        root: &Path,
        confined: &Confined,
    ) -> Result<fs::File, SourceError> {
        let inside = resolved_inside(key, root)?;
        match confined.open(&inside) {
            Opened::File(file) => file.map_err(|e| open_error(key, &e)),
            Opened::Refused => {
                Err(SourceError::Denied(format!("{key}: its folders changed as it was read")))
            }
            // An IO failure, retried: a denial would be for good, and a rename or a lease
            // passes.
            Opened::Busy => Err(SourceError::Io(format!(
                "{key}: the open raced a rename or waits for a lease to be broken"
            ))),
        }
    }

    /// Opens `key`'s file by its path resolved, refused unless it lies under `root`; checked
    /// just before the open, which is all a system without `openat` offers.
    #[cfg(not(unix))]
    fn open_resolved(&self, key: &AssetKey, root: &Path) -> Result<fs::File, SourceError> {
        let inside = resolved_inside(key, root)?;
        open_read(&root.join(inside)).map_err(|e| open_error(key, &e))
    }

    fn resolved_root(&self) -> Result<&PathBuf, SourceError> {
        if let Some(root) = self.resolved_root.get() {
            return Ok(root);
        }
        let resolved = fs::canonicalize(&self.root).map_err(|e| io_error(&e))?;
        Ok(self.resolved_root.get_or_init(|| resolved))
    }
}

/// `key`'s path resolved (symlinks followed), relative to the resolved `root`; `Denied` when
/// it lies outside. One that leads nowhere is `NotFound` only if what is missing would be
/// inside the root: a symlink on the path may point out of it, where `NotFound` for a missing
/// target and `Denied` for one that exists would tell whether a file exists anywhere the
/// process can look.
fn resolved_inside(key: &AssetKey, root: &Path) -> Result<PathBuf, SourceError> {
    let path = root.join(key.path());
    let resolved = fs::canonicalize(&path).map_err(|e| match io_error(&e) {
        SourceError::NotFound if !missing_inside(&path, root) => {
            SourceError::Denied(format!("{key}: a symlink leads out of the root, to nothing"))
        }
        other => other,
    })?;
    match resolved.strip_prefix(root) {
        Ok(inside) => Ok(inside.to_path_buf()),
        Err(_) => Err(SourceError::Denied(format!("{key} resolves outside {}", root.display()))),
    }
}

/// Symlinks followed at most when telling where a missing path's end lies (the system's own
/// limit is 40).
const SYMLINK_HOPS_MAX: u32 = 40;

/// Parts of a path looked at most when telling where a missing path's end lies: a key's (512
/// at most) and its symlinks' targets'. Symlinks whose targets are thousands of parts long each
/// would otherwise take tens of thousands of looks.
const PATH_PARTS_MAX: usize = 4_096;

/// Whether `path` (`root` joined with a key's path), which does not resolve, is missing inside
/// `root`: walked a part at a time from the root's folder, symlinks followed, the first part
/// that is not there lies in a folder inside the root (or, every part there now, the path
/// ends inside it). False when that folder is outside it, or past `SYMLINK_HOPS_MAX`
/// symlinks or `PATH_PARTS_MAX` parts. A loop, not a recursion: a
/// hostile tree's depth costs no stack.
fn missing_inside(path: &Path, root: &Path) -> bool {
    let Ok(key_path) = path.strip_prefix(root) else { return false };
    let mut folder = root.to_path_buf();
    let mut parts = VecDeque::new();
    push_parts_front(&mut parts, key_path);
    let (mut hops, mut looks) = (SYMLINK_HOPS_MAX, 0);
    while let Some(part) = parts.pop_front() {
        looks += 1;
        if looks > PATH_PARTS_MAX || parts.len() > PATH_PARTS_MAX {
            return false;
        }
        let name = match part {
            Part::Name(name) => name,
            Part::Up => {
                folder.pop();
                continue;
            }
        };
        let next = folder.join(name);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let (Some(left), Ok(target)) = (hops.checked_sub(1), fs::read_link(&next)) else {
                    return false;
                };
                hops = left;
                if target.has_root() {
                    let start =
                        |c: &Component<'_>| matches!(c, Component::Prefix(_) | Component::RootDir);
                    folder = target.components().take_while(start).collect();
                }
                push_parts_front(&mut parts, &target);
            }
            Ok(_) => folder = next,
            // The path ends here, in `folder`, which holds no symlink.
            Err(_) => return folder.starts_with(root),
        }
    }
    // Every part is there now (made since the path failed to resolve, or too long a path to
    // resolve whole): where it ends decides, as for a missing part.
    folder.starts_with(root)
}

/// A part of a path, as [`missing_inside`] walks it.
enum Part {
    Name(OsString),
    Up,
}

/// Puts `path`'s names and `..`s ahead of `parts`, in order (where an absolute path starts is
/// the caller's to take).
fn push_parts_front(parts: &mut VecDeque<Part>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => parts.push_front(Part::Name(name.to_owned())),
            Component::ParentDir => parts.push_front(Part::Up),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

impl Source for DirSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let file = self.open_confined(key)?;
        let meta = file.metadata().map_err(|e| io_error(&e))?;
        self.read_opened(key, file, &meta)
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

impl DirSource {
    /// Reads `key`'s opened `file`, whose metadata is `meta`, whole: a regular file within
    /// `bytes_max`, which did not grow past the limit while it was read, nor change (a length
    /// read other than the one told, and the file telling something else now: rewritten in
    /// place, its bytes may be half the old file's, and a retry reads it whole).
    fn read_opened(
        &self,
        key: &AssetKey,
        mut file: fs::File,
        meta: &fs::Metadata,
    ) -> Result<Vec<u8>, SourceError> {
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
        if let Err(e) = (&mut file).take(limit).read_to_end(&mut bytes) {
            // What was read before the error is kept: the size a file of `/proc` never told.
            let size = (bytes.len() as u64).max(meta.len());
            return Err(read_error(&e, size, self.bytes_max));
        }
        if bytes.len() as u64 > self.bytes_max {
            return Err(SourceError::TooLarge { size: bytes.len() as u64, max: self.bytes_max });
        }
        let read = bytes.len() as u64;
        // A length other than the one told is a file changed while read (rewritten in place:
        // its bytes may be half the old file's, and a retry reads it whole), unless the file
        // still tells the same (one of sysfs tells 4096 and holds a few bytes).
        if read != meta.len() && !unchanged(&file, meta) {
            let size = meta.len();
            return Err(SourceError::Io(format!(
                "{key}: changed while read ({read} bytes read, {size} told before)"
            )));
        }
        Ok(bytes)
    }
}

/// Whether `file` still tells what it told in `meta`: its length, its modification and change
/// times, and its identity (a rewrite in place within one tick of a coarse clock keeps the
/// first two, not the change time of a truncation).
fn unchanged(file: &fs::File, meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    let same_node = |now: &fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (now.dev(), now.ino(), now.ctime(), now.ctime_nsec())
            == (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
    };
    #[cfg(not(unix))]
    let same_node = |_: &fs::Metadata| true;
    file.metadata().is_ok_and(|now| {
        now.len() == meta.len() && now.modified().ok() == meta.modified().ok() && same_node(&now)
    })
}

/// What a failed read of a file of `size` bytes, by its metadata, read within `max`, means: as
/// a failed open's, but for memory run out (a file that reported no size, such as one of
/// `/proc`, or kept growing, read with a limit past what memory holds), which a retry would
/// meet again: refused as too large.
fn read_error(e: &io::Error, size: u64, max: u64) -> SourceError {
    if e.kind() == io::ErrorKind::OutOfMemory {
        return SourceError::TooLarge { size, max };
    }
    io_error(e)
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
        // Memory run out reading would run out again: refused, not retried.
        let out = read_error(&io::ErrorKind::OutOfMemory.into(), 0, u64::MAX);
        assert!(matches!(out, SourceError::TooLarge { size: 0, .. }), "{out:?}");
    }

    #[test]
    #[cfg(unix)]
    fn a_chain_of_symlinks_thousands_of_parts_deep_is_refused_in_bounded_stack_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let deep = vec!["x"; 1_500].join("/");
        // An absolute first link (which the kernel's confinement refuses, so the path is
        // resolved by hand), then 29 relative ones, each 1,500 parts deeper, to nothing.
        std::os::unix::fs::symlink(root.join(format!("s2/{deep}")), root.join("s1")).unwrap();
        for i in 2..=30 {
            let target = format!("s{}/{deep}", i + 1);
            std::os::unix::fs::symlink(target, root.join(format!("s{i}"))).unwrap();
        }
        let source = DirSource::new(&root);
        let key = AssetKey::parse("blob:s1").unwrap();
        // A small stack, as a deep walk would run out of it.
        let read = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || source.read(&key))
            .unwrap()
            .join()
            .expect("the read returns");
        assert!(matches!(read, Err(SourceError::NotFound | SourceError::Denied(_))), "{read:?}");
        // Within bounds, a missing end inside the root is still told apart.
        assert!(missing_inside(&root.join("s30/x"), &root));
        assert!(!missing_inside(&root.join("s1/x"), &root), "past the parts looked at most");
    }

    #[test]
    fn a_file_changed_after_its_size_was_read_is_a_failed_read_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        fs::write(&path, b"0123456789").unwrap();
        let source = DirSource::new(dir.path());
        let key = AssetKey::parse("blob:a").unwrap();
        let file = fs::File::open(&path).unwrap();
        let meta = file.metadata().unwrap();
        // Rewritten in place between the size's read and the bytes'.
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4).unwrap();
        let read = source.read_opened(&key, file, &meta);
        assert!(matches!(&read, Err(SourceError::Io(m)) if m.contains("changed")), "{read:?}");
        assert_eq!(source.read(&key).unwrap(), b"0123");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_file_that_tells_a_length_it_does_not_hold_but_holds_still_is_read() {
        // A file of sysfs tells 4096 bytes and holds a few (where sysfs is mounted: without
        // it, there is no such file to read).
        let source = DirSource::new("/sys/kernel");
        let key = AssetKey::parse("blob:mm/transparent_hugepage/enabled").unwrap();
        let Ok(file) = fs::File::open("/sys/kernel/mm/transparent_hugepage/enabled") else {
            return;
        };
        let meta = file.metadata().unwrap();
        let read = source.read_opened(&key, file, &meta).expect("read as it is");
        assert!(!read.is_empty() && (read.len() as u64) < meta.len(), "{} bytes", read.len());
    }

    fn key(path: &str) -> AssetKey {
        AssetKey::parse(&format!("blob:{path}")).unwrap()
    }

    /// Where the kernel does not confine opens, the source walks each path from the root's
    /// folder: a symlink out of the root is denied, one inside works, and a folder read from
    /// and then swapped for a symlink out of the root leads nowhere.
    #[test]
    #[cfg(unix)]
    fn without_the_kernels_confinement_a_symlink_still_never_leads_out_of_the_root() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        fs::write(outside.path().join("next"), b"outside").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("inner")).unwrap();
        fs::write(dir.path().join("inner/first"), b"first").unwrap();
        fs::write(dir.path().join("inner/next"), b"next").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        symlink(dir.path().join("inner/first"), dir.path().join("in")).unwrap();
        let source = DirSource::new(dir.path());
        let root = fs::canonicalize(dir.path()).unwrap();
        source.confined.set(Confined::Walk(walk::Root::at(&root).unwrap())).unwrap();
        assert!(matches!(source.read(&key("out")), Err(SourceError::Denied(_))));
        assert_eq!(source.read(&key("in")).unwrap(), b"first");
        assert_eq!(source.read(&key("inner/first")).unwrap(), b"first");
        symlink(outside.path().join("secret"), dir.path().join("inner/late")).unwrap();
        assert!(matches!(source.read(&key("inner/late")), Err(SourceError::Denied(_))));
        assert_eq!(source.read(&key("inner/missing")), Err(SourceError::NotFound));
        // The folder read from is swapped for a symlink out of the root.
        fs::rename(dir.path().join("inner"), dir.path().join("moved")).unwrap();
        symlink(outside.path(), dir.path().join("inner")).unwrap();
        assert!(matches!(source.read(&key("inner/next")), Err(SourceError::Denied(_))));
        assert_eq!(source.read(&key("moved/next")).unwrap(), b"next");
    }

    /// The walk refuses a symlink at any step, and names no file for an empty path.
    #[test]
    #[cfg(unix)]
    fn the_walk_refuses_a_symlink_at_any_step() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/c"), b"c").unwrap();
        symlink(dir.path().join("a"), dir.path().join("link")).unwrap();
        symlink(dir.path().join("a/b/c"), dir.path().join("a/b/file")).unwrap();
        let root = walk::Root::at(&fs::canonicalize(dir.path()).unwrap()).unwrap();
        assert!(matches!(root.open(Path::new("a/b/c")), Opened::File(Ok(_))));
        assert!(matches!(root.open(Path::new("link/b/c")), Opened::Refused));
        assert!(matches!(root.open(Path::new("a/b/file")), Opened::Refused));
        assert!(matches!(root.open(Path::new("../a")), Opened::Refused));
        assert!(matches!(root.open(Path::new("")), Opened::File(Err(_))));
    }
}
