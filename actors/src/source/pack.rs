//! A pack source: assets read by offset from one pack file (`docs/PACK.md`).
//!
//! The pack's header and index are checked when it is opened; each read is a positioned read
//! (several IO workers read one file at once), decompressed into a buffer bounded by the
//! index's raw size and the pack's `entry_bytes_max`, and verified against the entry's
//! checksum. A corrupt entry fails its own loads with `Corrupt`; the others keep loading.
//! Reads of adjacent small entries are coalesced (see `coalesce`), up to the first entry the
//! runtime said no load waits for any more (see `interest`). Each entry's key is parsed once,
//! at open, into one slice (each type's name shared by its keys); positions and dependencies
//! are the reader's (its table of positions and its dependency lists).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use streamrt_messages::{AssetKey, AssetTypeName, InvalidKey};
use streamrt_pack::{EntryError, IndexEntry, PackError, PackLimits, PackReader};

mod coalesce;
mod interest;

pub use coalesce::Coalescing;

use coalesce::Coalescer;
use interest::Interest;

use super::{EntryInfo, Locator, Source, SourceError};

/// Reads assets from a pack file; cloning shares the open file, its coalescing windows and
/// what loads wait for (two runtimes over clones of one source tell it both of theirs).
#[derive(Debug, Clone)]
pub struct PackSource {
    reader: Arc<PackReader>,
    /// Each entry's key, parsed, by position: a request's dependencies are clones of these
    /// (sharing their text), not keys parsed again.
    keys: Arc<[AssetKey]>,
    path: PathBuf,
    coalescer: Arc<Coalescer>,
    /// The loads waiting for each entry, as the runtime tells them: windows stop before an
    /// entry none waits for any more.
    interest: Arc<Interest>,
    /// Positioned reads made, for measuring coalescing.
    reads: Arc<AtomicU64>,
    /// Stored bytes those reads read, coalescing windows whole.
    bytes_read: Arc<AtomicU64>,
}

impl PackSource {
    /// Opens the pack at `path` with `limits`.
    ///
    /// # Errors
    ///
    /// The file is not a valid pack; see [`PackError`].
    pub fn open(path: impl AsRef<Path>, limits: PackLimits) -> Result<Self, PackError> {
        let path = path.as_ref().to_owned();
        let reader = PackReader::open(&path, limits)?;
        let interest = Arc::new(Interest::new(reader.entries().len()));
        let keys = parse_keys(&reader)?;
        Ok(Self {
            reader: Arc::new(reader),
            keys,
            path,
            coalescer: Arc::new(Coalescer::new(Coalescing::default())),
            interest,
            reads: Arc::default(),
            bytes_read: Arc::default(),
        })
    }

    /// The same pack with another coalescing policy ([`Coalescing::off`] reads every entry on
    /// its own).
    #[must_use]
    pub fn with_coalescing(mut self, policy: Coalescing) -> Self {
        self.coalescer = Arc::new(Coalescer::new(policy));
        self
    }

    /// Positioned reads of the file so far (fewer than entries read when reads coalesce).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Bytes of the file read so far, as stored (compressed), coalescing windows whole: what
    /// the storage was asked for, where `Status::bytes_read` counts each entry read, once,
    /// decompressed.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The pack's entries, in file order.
    pub fn entries(&self) -> &[IndexEntry] {
        self.reader.entries()
    }

    /// The entry of `key`, with its sizes and dependencies.
    pub fn entry(&self, key: &AssetKey) -> Option<&IndexEntry> {
        self.reader.key_position(key).map(|i| &self.reader.entries()[i])
    }
}

impl PackSource {
    /// Reads, decompresses and verifies the entry at `at` in the index.
    fn read_entry(&self, at: usize) -> Result<Vec<u8>, SourceError> {
        let entry = &self.reader.entries()[at];
        let count = |bytes: u64| {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        };
        let read = self
            .reader
            .read_with(entry, || self.coalescer.stored(&self.reader, &self.interest, at, &count));
        read.map_err(|e| match e {
            EntryError::Io(m) => SourceError::Io(m),
            EntryError::TooLarge { size, max } => SourceError::TooLarge { size, max },
            EntryError::Corrupt(m) => SourceError::Corrupt(m),
        })
    }
}

impl PackSource {
    /// The keys the entry at `at` depends on.
    fn dependencies(&self, at: usize) -> Vec<AssetKey> {
        let positions = self.reader.dependency_positions(at);
        positions.iter().map(|&j| self.keys[j as usize].clone()).collect()
    }
}

/// Every entry's key, parsed, each type's name made once and shared by its keys.
///
/// # Errors
///
/// [`PackError::BadEntry`] for a key that does not parse (the reader checked every key, so
/// that would be a reader bug).
fn parse_keys(reader: &PackReader) -> Result<Arc<[AssetKey]>, PackError> {
    let mut types: HashMap<&str, AssetTypeName> = HashMap::new();
    let mut keys = Vec::with_capacity(reader.entries().len());
    for entry in reader.entries() {
        let bad = |err: InvalidKey| PackError::BadEntry {
            key: entry.key.clone(),
            reason: err.to_string(),
        };
        let Some((ty, path)) = entry.key.split_once(':') else {
            return Err(bad(InvalidKey::MissingType(entry.key.clone())));
        };
        let ty = match types.entry(ty) {
            Entry::Occupied(shared) => shared.get().clone(),
            Entry::Vacant(new) => new.insert(AssetTypeName::new(ty).map_err(bad)?).clone(),
        };
        keys.push(AssetKey::new(ty, path).map_err(bad)?);
    }
    Ok(keys.into())
}

impl Source for PackSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let at = self.reader.key_position(key).ok_or(SourceError::NotFound)?;
        self.read_entry(at)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        let at = locator.index();
        // A locator past the index, or naming another key's entry, is not one this pack gave
        // for `key`: the key decides. Checked in every build, as serving another entry (whose
        // own checksum holds) would hand out the wrong asset without an error; a comparison of
        // two short strings costs nothing beside the read.
        let names = |entry: &IndexEntry| {
            entry.key.split_once(':') == Some((key.asset_type().as_str(), key.path()))
        };
        if !self.reader.entries().get(at).is_some_and(names) {
            return self.read(key);
        }
        self.read_entry(at)
    }

    fn describe(&self) -> String {
        format!("pack:{}", self.path.display())
    }

    fn want(&self, locator: Locator) {
        self.interest.want(locator.index());
    }

    fn unwant(&self, locator: Locator) {
        self.interest.unwant(locator.index());
    }

    fn storage_bytes_read(&self) -> Option<u64> {
        Some(self.bytes_read())
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.reader.key_position(key).map_or_else(EntryInfo::default, |i| EntryInfo {
            dependencies: self.dependencies(i),
            size: Some(self.reader.entries()[i].raw_size),
            locator: Locator::new(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use streamrt_pack::{Codec, Header, PackIndex, HEADER_LEN, VERSION};

    use super::*;

    /// An empty entry `key` depending on `deps`.
    fn entry(key: &str, deps: &[&str]) -> IndexEntry {
        IndexEntry {
            key: key.into(),
            offset: HEADER_LEN,
            stored_size: 0,
            raw_size: 0,
            codec: Codec::None,
            crc32: crc32fast::hash(&[]),
            deps: deps.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    /// A pack of `entries` written as an older writer could: the reader's checks only.
    fn open(entries: Vec<IndexEntry>) -> (tempfile::NamedTempFile, PackSource) {
        let index = postcard::to_allocvec(&PackIndex { entries }).unwrap();
        let header = Header {
            version: VERSION,
            index_at: HEADER_LEN,
            index_len: index.len() as u64,
            index_crc: crc32fast::hash(&index),
        };
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&header.encode()).unwrap();
        file.write_all(&index).unwrap();
        let source = PackSource::open(file.path(), PackLimits::default()).unwrap();
        (file, source)
    }

    fn key(text: &str) -> AssetKey {
        AssetKey::parse(text).unwrap()
    }

    /// The position of `text`'s entry, as `entry_info` gives it.
    fn position(source: &PackSource, text: &str) -> Option<usize> {
        source.entry_info(&key(text)).locator.map(Locator::index)
    }

    #[test]
    fn each_key_finds_its_entry_and_its_dependencies_once_each_in_order() {
        let (_file, source) = open(vec![
            entry("mesh:a", &["blob:c", "blob:b", "blob:c"]),
            entry("blob:b", &[]),
            entry("blob:c", &["blob:b"]),
        ]);
        for (i, text) in ["mesh:a", "blob:b", "blob:c"].into_iter().enumerate() {
            assert_eq!(position(&source, text), Some(i), "{text}");
        }
        assert_eq!(position(&source, "blob:a"), None);
        assert_eq!(position(&source, "mesh:b"), None);
        assert_eq!(source.dependencies(0), [key("blob:c"), key("blob:b")]);
        assert_eq!(source.dependencies(1), []);
        assert_eq!(source.dependencies(2), [key("blob:b")]);
    }
}
