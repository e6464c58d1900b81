//! A directory source: one file per asset, at `root/<key path>`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use streamrt_messages::AssetKey;

use super::{Source, SourceError};

/// Reads `root/<path>` for the key `type:<path>`.
///
/// # Invariants
///
/// Only files under `root` are opened: keys are confined by construction (no `..`, no absolute
/// path), and every path is resolved (symlinks followed) before it is opened; a path that
/// resolves outside the resolved root is refused with `Denied`, so a symlink never leads out
/// of the root. Symlinks that stay inside it work. The resolved path is what gets opened, so the
/// check and the open see the same file unless the tree itself is rewritten between the two
/// (the source assumes nobody rewrites its asset tree adversarially while it reads). A file
/// larger than `bytes_max` is refused before its contents are read.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
    bytes_max: u64,
    /// `root` with every symlink resolved, once it exists.
    resolved_root: OnceLock<PathBuf>,
}

impl DirSource {
    /// The largest file read by default: 256 MiB.
    pub const BYTES_MAX_DEFAULT: u64 = 256 << 20;

    /// A source rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            bytes_max: Self::BYTES_MAX_DEFAULT,
            resolved_root: OnceLock::new(),
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

    /// The file `key` names, resolved and checked to lie inside the root.
    fn confined_path(&self, key: &AssetKey) -> Result<PathBuf, SourceError> {
        let root = match self.resolved_root.get() {
            Some(root) => root,
            None => {
                let resolved = fs::canonicalize(&self.root).map_err(|e| io_error(&e))?;
                self.resolved_root.get_or_init(|| resolved)
            }
        };
        let path = fs::canonicalize(self.root.join(key.path())).map_err(|e| io_error(&e))?;
        if !path.starts_with(root) {
            return Err(SourceError::Denied(format!("{key} resolves outside {}", root.display())));
        }
        Ok(path)
    }
}

impl Source for DirSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let path = self.confined_path(key)?;
        let file = fs::File::open(&path).map_err(|e| io_error(&e))?;
        let meta = file.metadata().map_err(|e| io_error(&e))?;
        if !meta.is_file() {
            return Err(SourceError::NotFound);
        }
        if meta.len() > self.bytes_max {
            return Err(SourceError::TooLarge { size: meta.len(), max: self.bytes_max });
        }
        let expected = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(expected);
        // The `take` bounds the read even if the file grows after `metadata`.
        file.take(self.bytes_max + 1).read_to_end(&mut bytes).map_err(|e| io_error(&e))?;
        if bytes.len() as u64 > self.bytes_max {
            return Err(SourceError::TooLarge { size: bytes.len() as u64, max: self.bytes_max });
        }
        Ok(bytes)
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

fn io_error(e: &io::Error) -> SourceError {
    match e.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound,
        _ => SourceError::Io(e.to_string()),
    }
}
