//! Building packs: entries are compressed and appended as they are added; the index and the
//! header are written by [`PackWriter::finish`], after the dependency graph is checked.
//!
//! # Invariants
//!
//! - A pack the writer finishes is one [`PackReader`](crate::PackReader) opens with the same
//!   [`PackLimits`]: every entry within `entry_bytes_max`, the index within `index_bytes_max`,
//!   the dependency graph as the reader checks it.
//! - The pack is built in a temporary file beside `path` and renamed over it only once whole:
//!   until then a pack already at `path` is untouched (a running reader keeps reading it), and
//!   a build that fails or is dropped leaves nothing behind.

use std::fs::Permissions;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use streamrt_messages::AssetKey;

use crate::format::{
    Codec, Header, IndexEntry, PackIndex, DEPS_PER_ENTRY_MAX, HEADER_LEN, INDEX_BYTES_CEILING,
    VERSION,
};
use crate::graph::{check_graph, GraphError, Repeats};
use crate::lookup::KeyTable;
use crate::read::PackLimits;

/// zstd's level for packs: a balance of ratio and build time.
const ZSTD_LEVEL: i32 = 9;

/// Why a pack cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Writing failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A key is not a valid asset key.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A key was added twice.
    #[error("{0} added twice")]
    Duplicate(String),
    /// Dependencies on keys the pack does not hold: the first [`MISSING_LISTED_MAX`](crate::MISSING_LISTED_MAX).
    #[error("missing dependencies: {}", .0.iter().map(|(k, d)| format!("{k} -> {d}")).collect::<Vec<_>>().join(", "))]
    MissingDependencies(Vec<(String, String)>),
    /// A dependency cycle, as the keys around it.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// An entry with more than [`DEPS_PER_ENTRY_MAX`] dependencies.
    #[error("{key}: {count} dependencies, over the limit of {DEPS_PER_ENTRY_MAX}")]
    TooManyDependencies {
        /// The entry.
        key: String,
        /// Its dependencies.
        count: usize,
    },
    /// The entries up to `key` name 2^32 dependencies or more in all: more than a pack's
    /// index can hold.
    #[error("{key}: the dependencies up to it number 2^32 or more in all")]
    TooManyDependenciesInAll {
        /// The entry.
        key: String,
    },
    /// An entry naming one dependency twice.
    #[error("{key} depends on {dep} twice")]
    RepeatedDependency {
        /// The entry.
        key: String,
        /// The dependency.
        dep: String,
    },
    /// An entry larger than the limits' `entry_bytes_max`: its reader would refuse it.
    #[error("{key}: {size} bytes, over the {max}-byte entry limit")]
    TooLarge {
        /// The entry.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An index larger than the limits' `index_bytes_max`: its reader would refuse the pack.
    #[error("an index of {len} bytes, over the {max}-byte limit")]
    IndexTooLarge {
        /// The index's size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// 2^32 entries or more, more than a pack numbers: its reader would refuse the pack.
    #[error("2^32 entries or more: a pack numbers fewer")]
    TooManyEntries,
    /// Compression failed.
    #[error("compressing {key}: {reason}")]
    Compress {
        /// The entry.
        key: String,
        /// Why.
        reason: String,
    },
    /// An earlier write failed, and part of its entry may be in the file: the pack cannot be
    /// finished (nothing is written at its path).
    #[error("an earlier write to the pack failed; it cannot be finished")]
    Broken,
}

/// Builds a pack file; see the module docs.
#[derive(Debug)]
pub struct PackWriter {
    /// The temporary file the pack is built in, beside `path`.
    out: BufWriter<NamedTempFile>,
    path: PathBuf,
    limits: PackLimits,
    at: u64,
    entries: Vec<IndexEntry>,
    /// The entries by key, each key kept once (in its entry).
    keys: KeyTable,
    /// Set once a write failed: part of an entry may be in the file, so every later offset
    /// would be wrong, and the writer refuses to go on.
    broken: bool,
}

impl PackWriter {
    /// Starts a pack to be written at `path` (replacing any file there once finished) within
    /// the default [`PackLimits`].
    ///
    /// # Errors
    ///
    /// The temporary file cannot be created or written.
    pub fn create(path: &Path) -> Result<Self, BuildError> {
        Self::create_with_limits(path, PackLimits::default())
    }

    /// [`PackWriter::create`] for readers with `limits`.
    ///
    /// # Errors
    ///
    /// The temporary file cannot be created or written.
    pub fn create_with_limits(path: &Path, limits: PackLimits) -> Result<Self, BuildError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // The mode `File::create` would give (before the umask), not the temporary file's 0600.
        let temp = tempfile::Builder::new()
            .prefix(&temporary_prefix(path))
            .suffix(TEMPORARY_SUFFIX)
            .rand_bytes(TEMPORARY_RAND_BYTES)
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        let mut out = BufWriter::new(temp);
        out.write_all(&[0u8; HEADER_LEN as usize])?;
        let (path, entries, keys) = (path.to_owned(), Vec::new(), KeyTable::with_capacity(0));
        Ok(Self { out, path, limits, at: HEADER_LEN, entries, keys, broken: false })
    }

    /// Whether `file` is named as the temporary file of a pack being written to `pack` (by this
    /// build, or left by one that was killed), so that a tool packing a folder the pack is
    /// written into can leave it out. Only the names are compared: give both as the same
    /// folder's.
    pub fn is_temporary_of(file: &Path, pack: &Path) -> bool {
        let prefix = temporary_prefix(pack);
        let name = file.file_name().map(|n| n.to_string_lossy());
        file.parent() == pack.parent()
            && name.is_some_and(|name| {
                name.len() == prefix.len() + TEMPORARY_RAND_BYTES + TEMPORARY_SUFFIX.len()
                    && name.starts_with(&prefix)
                    && name.ends_with(TEMPORARY_SUFFIX)
            })
    }

    /// How many of the entries added so far are stored compressed: the others were stored as
    /// they are, their codec not making them smaller.
    pub fn compressed_entries(&self) -> usize {
        self.entries.iter().filter(|e| e.codec != Codec::None).count()
    }

    /// The temporary file the pack is written to until [`PackWriter::finish`] renames it into
    /// place (removed if the writer is dropped unfinished): what a tool removes should it be
    /// ended before either.
    pub fn temporary_path(&self) -> &Path {
        self.out.get_ref().path()
    }

    /// Compresses `raw` with `codec` and appends it as `key` (`type:path`), depending on `deps`.
    /// Incompressible data is stored as is whatever the codec asked.
    ///
    /// # Errors
    ///
    /// An invalid or duplicate key, an entry over the limits (`TooLarge`), a 2^32nd entry
    /// (`TooManyEntries`), a compression or write failure.
    pub fn add(
        &mut self,
        key: &str,
        raw: &[u8],
        codec: Codec,
        deps: Vec<String>,
    ) -> Result<(), BuildError> {
        self.usable()?;
        AssetKey::check(key)
            .map_err(|e| BuildError::InvalidKey { key: key.into(), reason: e.to_string() })?;
        if self.keys.find(&self.entries, key).is_some() {
            return Err(BuildError::Duplicate(key.into()));
        }
        // Checked before a byte is written: the entry's position must fit in 32 bits, below
        // `u32::MAX` (the dependency check stamps each position plus one).
        if self.entries.len() >= u32::MAX as usize {
            return Err(BuildError::TooManyEntries);
        }
        let size = raw.len() as u64;
        if size > self.limits.entry_bytes_max {
            let max = self.limits.entry_bytes_max;
            return Err(BuildError::TooLarge { key: key.into(), size, max });
        }
        let compressed = match codec {
            Codec::None => None,
            Codec::Lz4 => Some(lz4_flex::block::compress(raw)),
            Codec::Zstd => Some(
                zstd::bulk::compress(raw, ZSTD_LEVEL)
                    .map_err(|e| BuildError::Compress { key: key.into(), reason: e.to_string() })?,
            ),
        };
        let (codec, stored) = match &compressed {
            Some(c) if c.len() < raw.len() => (codec, c.as_slice()),
            _ => (Codec::None, raw),
        };
        self.out.write_all(stored).inspect_err(|_| self.broken = true)?;
        self.entries.push(IndexEntry {
            key: key.into(),
            offset: self.at,
            stored_size: stored.len() as u64,
            raw_size: raw.len() as u64,
            codec,
            crc32: crc32fast::hash(raw),
            deps,
        });
        // Neither fails: the key is new and the position fits, both checked above.
        let _ = self.keys.insert(&self.entries, self.entries.len() - 1);
        self.at += stored.len() as u64;
        Ok(())
    }

    /// Checks the dependency graph, writes the index and the header, and puts the pack at its
    /// path. Returns the pack's size in bytes.
    ///
    /// # Errors
    ///
    /// A dependency error naming the keys, the first of `TooManyDependencies`,
    /// `RepeatedDependency` (a dependency the pack holds, named twice by one entry),
    /// `MissingDependencies` (however often each is named) and `Cycle` that applies, whatever
    /// the entries' order; `IndexTooLarge`; or a write failure. On any error nothing is written
    /// at the path: a pack already there is kept. The pack is in place once its folder could
    /// not be synced (an `Io` error then), but a power loss may still undo the rename.
    pub fn finish(mut self) -> Result<u64, BuildError> {
        self.usable()?;
        check_graph(&self.entries, &self.keys, Repeats::Refuse)?;
        let index = postcard::to_allocvec(&PackIndex { entries: self.entries })
            .map_err(|e| BuildError::Io(std::io::Error::other(e.to_string())))?;
        let (len, max) = (index.len() as u64, self.limits.index_bytes_max.min(INDEX_BYTES_CEILING));
        if len > max {
            return Err(BuildError::IndexTooLarge { len, max });
        }
        self.out.write_all(&index)?;
        let header = Header {
            version: VERSION,
            index_at: self.at,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(&index),
        };
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header.encode())?;
        let mut temp = self.out.into_inner().map_err(|e| BuildError::Io(e.into_error()))?;
        temp.flush()?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path).map_err(|e| BuildError::Io(e.error))?;
        sync_folder_of(&self.path)?;
        Ok(header.index_at + header.index_len)
    }
}

/// The bytes of a pack's file name kept in its temporary file's name (`.{name}.XXXXXX.tmp`,
/// 12 bytes more): a longer name would take the temporary name past the 255-byte limit of a
/// file name, and a pack that could be named could not be built.
const TEMPORARY_NAME_BYTES_MAX: usize = 200;

/// The random characters in a temporary file's name.
const TEMPORARY_RAND_BYTES: usize = 6;

/// How a temporary file's name ends.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Makes the rename of the pack at `path` into place durable: until its folder is synced, a
/// power loss after `finish` returned could bring the earlier file back. A file system that
/// cannot sync a folder (`EINVAL`) has nothing more to offer, and is not an error.
fn sync_folder_of(path: &Path) -> std::io::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match std::fs::File::open(folder)?.sync_all() {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        synced => synced,
    }
}

/// `.{name}.` for the pack at `path`, its name cut at a character within
/// [`TEMPORARY_NAME_BYTES_MAX`] bytes.
fn temporary_prefix(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| "pack".into(), |n| n.to_string_lossy());
    let mut end = name.len().min(TEMPORARY_NAME_BYTES_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.", &name[..end])
}

impl PackWriter {
    /// `Broken` once a write failed (see the field).
    fn usable(&self) -> Result<(), BuildError> {
        if self.broken {
            return Err(BuildError::Broken);
        }
        Ok(())
    }
}

impl From<GraphError> for BuildError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::TooMany { key, count } => Self::TooManyDependencies { key, count },
            GraphError::Repeated { key, dep } => Self::RepeatedDependency { key, dep },
            GraphError::TooManyInAll { key } => Self::TooManyDependenciesInAll { key },
            GraphError::Missing(pairs) => Self::MissingDependencies(pairs),
            GraphError::Cycle(keys) => Self::Cycle(keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_whose_write_failed_refuses_to_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.pack");
        let mut writer = PackWriter::create(&path).unwrap();
        writer.add("blob:a", b"a", Codec::None, vec![]).unwrap();
        // As a failed `write_all` leaves it: part of an entry may be in the file.
        writer.broken = true;
        let refused = writer.add("blob:b", b"b", Codec::None, vec![]);
        assert!(matches!(refused, Err(BuildError::Broken)), "{refused:?}");
        assert!(matches!(writer.finish(), Err(BuildError::Broken)));
        assert!(!path.exists(), "nothing is written at the path");
    }
}
