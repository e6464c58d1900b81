//! An in-memory source, for tools, tests and benchmarks that must not touch the disk.
//!
//! Entries are kept in insertion order in one vector, with an index from key to place; a
//! replaced entry keeps its place and nothing is ever removed, so a place is a [`Locator`] that
//! stays valid for the source's life and names the same key.

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use streamrt_messages::AssetKey;

use super::{EntryInfo, Locator, Source, SourceError};
use crate::key_hash::KeyMap;

/// Serves bytes (and dependencies) from a map, filled before or while the runtime runs.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    entries: Arc<RwLock<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Each key's place in `stored`.
    places: KeyMap<usize>,
    /// In insertion order: a place never changes (see the module docs).
    stored: Vec<Stored>,
}

#[derive(Debug)]
struct Stored {
    bytes: Arc<[u8]>,
    deps: Vec<AssetKey>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an asset's bytes.
    pub fn insert(&self, key: AssetKey, bytes: impl Into<Arc<[u8]>>) {
        self.insert_with_dependencies(key, bytes, Vec::new());
    }

    /// Adds or replaces an asset's bytes and the assets it depends on.
    pub fn insert_with_dependencies(
        &self,
        key: AssetKey,
        bytes: impl Into<Arc<[u8]>>,
        deps: Vec<AssetKey>,
    ) {
        let stored = Stored { bytes: bytes.into(), deps };
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let Entries { places, stored: all } = &mut *entries;
        let place = *places.entry(key).or_insert(all.len());
        match all.get_mut(place) {
            Some(old) => *old = stored,
            None => all.push(stored),
        }
    }

    fn entries(&self) -> RwLockReadGuard<'_, Entries> {
        // Nothing panics while the lock is held, so a poisoned lock still guards whole entries.
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The number of assets held.
    pub fn len(&self) -> usize {
        self.entries().stored.len()
    }

    /// Whether the source holds no asset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for MemorySource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        let entries = self.entries();
        let place = entries.places.get(key).ok_or(SourceError::NotFound)?;
        Ok(entries.stored[*place].bytes.to_vec())
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        let entries = self.entries();
        let Some(stored) = entries.stored.get(locator.index()) else {
            // Past the entries: not a locator this source gave, so the key decides.
            drop(entries);
            return self.read(key);
        };
        // Checked in debug builds only: the lookup is what the locator saves.
        debug_assert_eq!(
            entries.places.get(key),
            Some(&locator.index()),
            "{key} located elsewhere"
        );
        Ok(stored.bytes.to_vec())
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        let entries = self.entries();
        let Some(&place) = entries.places.get(key) else { return EntryInfo::default() };
        let stored = &entries.stored[place];
        EntryInfo {
            dependencies: stored.deps.clone(),
            size: Some(stored.bytes.len() as u64),
            locator: Locator::new(place),
        }
    }

    fn describe(&self) -> String {
        format!("memory:{} assets", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> AssetKey {
        AssetKey::parse(&format!("blob:{path}")).unwrap()
    }

    #[test]
    fn a_replaced_entry_keeps_its_locator_and_reads_its_new_bytes_there() {
        let source = MemorySource::new();
        source.insert(key("a"), b"one".to_vec());
        source.insert(key("b"), b"two".to_vec());
        let located = source.entry_info(&key("b")).locator.expect("a memory entry is located");
        source.insert(key("b"), b"three".to_vec());
        assert_eq!(source.entry_info(&key("b")).locator, Some(located));
        assert_eq!(source.read_located(&key("b"), located).unwrap(), b"three");
        assert_eq!(source.read(&key("a")).unwrap(), b"one");
        assert_eq!(source.len(), 2);
    }

    #[test]
    fn a_locator_past_the_entries_reads_by_key() {
        let source = MemorySource::new();
        source.insert(key("a"), b"one".to_vec());
        let foreign = Locator::new(7).unwrap();
        assert_eq!(source.read_located(&key("a"), foreign).unwrap(), b"one");
        assert_eq!(source.read_located(&key("z"), foreign), Err(SourceError::NotFound));
    }

    #[test]
    fn an_unknown_key_has_no_locator_and_is_not_found() {
        let source = MemorySource::new();
        source.insert(key("a"), b"one".to_vec());
        assert_eq!(source.entry_info(&key("z")), EntryInfo::default());
        assert_eq!(source.read(&key("z")), Err(SourceError::NotFound));
    }
}
