//! Building packs: entries are compressed and appended as they are added; the index and the
//! header are written by [`PackWriter::finish`], after the dependency graph is checked.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use streamrt_messages::AssetKey;

use crate::format::{Codec, Header, IndexEntry, PackIndex, HEADER_LEN, VERSION};

/// zstd's level for packs: a balance of ratio and build time.
const ZSTD_LEVEL: i32 = 9;

/// Why a pack cannot be built.
#[derive(Debug, thiserror::Error)]
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
    /// Dependencies on keys the pack does not hold.
    #[error("missing dependencies: {}", .0.iter().map(|(k, d)| format!("{k} -> {d}")).collect::<Vec<_>>().join(", "))]
    MissingDependencies(Vec<(String, String)>),
    /// A dependency cycle, as the keys around it.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// Compression failed.
    #[error("compressing {key}: {reason}")]
    Compress {
        /// The entry.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Builds a pack file; see the module docs.
#[derive(Debug)]
pub struct PackWriter {
    out: BufWriter<File>,
    at: u64,
    entries: Vec<IndexEntry>,
    keys: HashSet<String>,
}

impl PackWriter {
    /// Creates (or truncates) `path` and reserves the header.
    ///
    /// # Errors
    ///
    /// The file cannot be created or written.
    pub fn create(path: &Path) -> Result<Self, BuildError> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&[0u8; HEADER_LEN as usize])?;
        Ok(Self { out, at: HEADER_LEN, entries: Vec::new(), keys: HashSet::new() })
    }

    /// Compresses `raw` with `codec` and appends it as `key` (`type:path`), depending on `deps`.
    /// Incompressible data is stored as is whatever the codec asked.
    ///
    /// # Errors
    ///
    /// An invalid or duplicate key, a compression or write failure.
    pub fn add(
        &mut self,
        key: &str,
        raw: &[u8],
        codec: Codec,
        deps: Vec<String>,
    ) -> Result<(), BuildError> {
        AssetKey::parse(key)
            .map_err(|e| BuildError::InvalidKey { key: key.into(), reason: e.to_string() })?;
        if self.keys.contains(key) {
            return Err(BuildError::Duplicate(key.into()));
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
        self.out.write_all(stored)?;
        self.entries.push(IndexEntry {
            key: key.into(),
            offset: self.at,
            stored_size: stored.len() as u64,
            raw_size: raw.len() as u64,
            codec,
            crc32: crc32fast::hash(raw),
            deps,
        });
        self.keys.insert(key.to_owned());
        self.at += stored.len() as u64;
        Ok(())
    }

    /// Checks the dependency graph, writes the index and the header.
    ///
    /// # Errors
    ///
    /// `MissingDependencies` or `Cycle` naming the keys, or a write failure. The file is left
    /// incomplete (without a valid header) on error.
    pub fn finish(mut self) -> Result<u64, BuildError> {
        check_graph(&self.entries)?;
        let index = postcard::to_allocvec(&PackIndex { entries: self.entries })
            .map_err(|e| BuildError::Io(std::io::Error::other(e.to_string())))?;
        self.out.write_all(&index)?;
        let header = Header {
            version: VERSION,
            index_at: self.at,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(&index),
        };
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&header.encode())?;
        let mut file = self.out.into_inner().map_err(|e| BuildError::Io(e.into_error()))?;
        file.flush()?;
        file.sync_all()?;
        Ok(header.index_at + header.index_len)
    }
}

/// Every dependency names an entry, and the graph has no cycle.
fn check_graph(entries: &[IndexEntry]) -> Result<(), BuildError> {
    let by_key: HashMap<&str, &IndexEntry> = entries.iter().map(|e| (e.key.as_str(), e)).collect();
    let missing: Vec<(String, String)> = entries
        .iter()
        .flat_map(|e| e.deps.iter().map(move |d| (e, d)))
        .filter(|(_, d)| !by_key.contains_key(d.as_str()))
        .map(|(e, d)| (e.key.clone(), d.clone()))
        .collect();
    if !missing.is_empty() {
        return Err(BuildError::MissingDependencies(missing));
    }
    // Iterative depth-first search with an explicit path, so deep chains cannot overflow.
    let mut done: HashSet<&str> = HashSet::new();
    for root in entries {
        if done.contains(root.key.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(root.key.as_str(), 0)];
        let mut on_path: HashSet<&str> = HashSet::from([root.key.as_str()]);
        while let Some((key, next)) = path.last_mut() {
            let deps = &by_key[*key].deps;
            if let Some(dep) = deps.get(*next) {
                *next += 1;
                let dep = dep.as_str();
                if on_path.contains(dep) {
                    let start = path.iter().position(|(k, _)| *k == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|(k, _)| (*k).to_owned()).collect();
                    cycle.push(dep.to_owned());
                    return Err(BuildError::Cycle(cycle));
                }
                if !done.contains(dep) {
                    on_path.insert(dep);
                    path.push((dep, 0));
                }
            } else {
                let key = *key;
                on_path.remove(key);
                done.insert(key);
                path.pop();
            }
        }
    }
    Ok(())
}
