//! A pack source: assets read by offset from one pack file (`docs/PACK.md`).
//!
//! The pack's header and index are checked when it is opened; each read is a positioned read
//! (several IO workers read one file at once), decompressed into a buffer bounded by the
//! index's raw size and the pack's `entry_bytes_max`, and verified against the entry's
//! checksum. A corrupt entry fails its own loads with `Corrupt`; the others keep loading.
//! Reads of adjacent small entries are coalesced (see `coalesce`), up to the first entry the
//! runtime said no load waits for any more (see `interest`). Keys, positions and dependencies
//! are looked up in a flat catalog made at open (see `catalog`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use streamrt_messages::AssetKey;
use streamrt_pack::{EntryError, IndexEntry, PackError, PackLimits, PackReader};

mod catalog;
mod coalesce;
mod interest;

pub use coalesce::Coalescing;

use catalog::Catalog;
use coalesce::Coalescer;
use interest::Interest;

use super::{EntryInfo, Locator, Source, SourceError};

/// Reads assets from a pack file; cloning shares the open file, its coalescing windows and
/// what loads wait for (two runtimes over clones of one source tell it both of theirs).
#[derive(Debug, Clone)]
pub struct PackSource {
    reader: Arc<PackReader>,
    /// Each entry's key, parsed, and its dependencies, so a read or a request looks up
    /// without parsing or formatting keys.
    catalog: Arc<Catalog>,
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
        let catalog = Arc::new(Catalog::new(&reader)?);
        Ok(Self {
            reader: Arc::new(reader),
            catalog,
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
        self.catalog.position(key).map(|i| &self.reader.entries()[i])
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

impl Source for PackSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let at = self.catalog.position(key).ok_or(SourceError::NotFound)?;
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
        self.catalog.position(key).map_or_else(EntryInfo::default, |i| EntryInfo {
            dependencies: self.catalog.dependencies(i),
            size: Some(self.reader.entries()[i].raw_size),
            locator: Locator::new(i),
        })
    }
}
