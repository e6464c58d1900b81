//! An in-memory source, for tools, tests and benchmarks that must not touch the disk.

use std::sync::{Arc, RwLock};

use streamrt_messages::AssetKey;

use super::{EntryInfo, Source, SourceError};
use crate::key_hash::KeyMap;

/// Serves bytes (and dependencies) from a map, filled before or while the runtime runs.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    entries: Arc<RwLock<KeyMap<Stored>>>,
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
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, stored);
    }

    fn with<R>(&self, key: &AssetKey, f: impl FnOnce(&Stored) -> R) -> Option<R> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).map(f)
    }

    /// The number of assets held.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether the source holds no asset.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Source for MemorySource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.with(key, |s| s.bytes.to_vec()).ok_or(SourceError::NotFound)
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.with(key, |s| EntryInfo {
            dependencies: s.deps.clone(),
            size: Some(s.bytes.len() as u64),
        })
        .unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!("memory:{} assets", self.len())
    }
}
