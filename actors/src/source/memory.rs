//! An in-memory source, for tools, tests and benchmarks that must not touch the disk.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use streamrt_messages::AssetKey;

use super::{Source, SourceError};

/// Serves bytes from a map, filled before or while the runtime runs.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    entries: Arc<RwLock<HashMap<AssetKey, Arc<[u8]>>>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an asset's bytes.
    pub fn insert(&self, key: AssetKey, bytes: impl Into<Arc<[u8]>>) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, bytes.into());
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
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(key).map(|b| b.to_vec()).ok_or(SourceError::NotFound)
    }

    fn describe(&self) -> String {
        format!("memory:{} assets", self.len())
    }
}
