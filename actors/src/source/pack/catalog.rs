//! What a pack source knows of each entry without reading it: [`Catalog`] holds its key,
//! parsed once, its dependencies ([`Dependencies`]), and the entry of each key.
//!
//! Kept flat, for packs of a million entries: the keys in one slice (each type's name shared
//! by its keys), the entry of each key in a table of 32-bit positions hashed by those keys,
//! and every entry's dependencies in one slice of positions with a start per entry. Opening
//! a pack of 1,000,000 entries without dependencies added 380 bytes of resident memory an
//! entry, its reader's included, with a map from each key to its position and its
//! dependencies' keys (and the reader's map from a copy of each key); 146 with this catalog
//! and the reader's table of positions (docs/PACK.md). The table hashes with the runtime's
//! `KeyHasher` (foldhash, seeded per table), as the map before it did: the reader, whose table
//! is built first from the same keys, hashes with SipHash and would be as slow on keys chosen
//! to collide.
//!
//! # Invariants
//!
//! - Position `i` is the reader's entry `i`; `keys[i]` is its key, parsed.
//! - Entry `i`'s dependencies are `deps[starts[i]..starts[i + 1]]`, each named once, in the
//!   order the index names them first (the reader checked each is an entry of the pack).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use hashbrown::HashTable;
use streamrt_messages::{AssetKey, AssetTypeName};
use streamrt_pack::{PackError, PackReader};

use crate::key_hash::KeyHasher;

/// The keys, positions and dependencies of a pack's entries; see the module docs.
#[derive(Debug)]
pub(super) struct Catalog {
    keys: Box<[AssetKey]>,
    by_key: HashTable<u32>,
    hasher: KeyHasher,
    deps: Dependencies,
}

/// Every entry's dependencies as positions: entry `i`'s are `deps[starts[i]..starts[i + 1]]`.
#[derive(Debug)]
struct Dependencies {
    starts: Box<[u32]>,
    deps: Box<[u32]>,
}

impl Catalog {
    /// The catalog of `reader`'s entries.
    ///
    /// # Errors
    ///
    /// [`PackError::BadEntry`] for a key that does not parse (the reader checked every key, so
    /// that would be a reader bug), and [`PackError::IndexDecode`] for 2^32 dependencies or
    /// more.
    pub(super) fn new(reader: &PackReader) -> Result<Self, PackError> {
        let keys = parse_keys(reader)?;
        let hasher = KeyHasher::default();
        let mut by_key = HashTable::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            // The reader numbers its entries in 32 bits.
            by_key.insert_unique(hasher.hash_one(key), i as u32, |&j: &u32| {
                hasher.hash_one(&keys[j as usize])
            });
        }
        let deps = Dependencies::new(reader)?;
        Ok(Self { keys, by_key, hasher, deps })
    }

    /// The position of `key`'s entry.
    pub(super) fn position(&self, key: &AssetKey) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let found = self.by_key.find(hash, |&i| self.keys[i as usize] == *key)?;
        Some(*found as usize)
    }

    /// The keys entry `at` depends on.
    pub(super) fn dependencies(&self, at: usize) -> Vec<AssetKey> {
        let Dependencies { starts, deps } = &self.deps;
        let (start, end) = (starts[at] as usize, starts[at + 1] as usize);
        deps[start..end].iter().map(|&j| self.keys[j as usize].clone()).collect()
    }
}

/// Every entry's key, parsed, each type's name made once and shared by its keys.
fn parse_keys(reader: &PackReader) -> Result<Box<[AssetKey]>, PackError> {
    let mut types: HashMap<AssetTypeName, AssetTypeName> = HashMap::new();
    let mut keys = Vec::with_capacity(reader.entries().len());
    for entry in reader.entries() {
        let parsed = AssetKey::parse(&entry.key).map_err(|err| PackError::BadEntry {
            key: entry.key.clone(),
            reason: err.to_string(),
        })?;
        let ty = parsed.asset_type();
        let shared = types.entry(ty.clone()).or_insert_with(|| ty.clone()).clone();
        keys.push(AssetKey::from_parts(shared, parsed.asset_path().clone()));
    }
    Ok(keys.into_boxed_slice())
}

impl Dependencies {
    /// Every entry's dependencies in `reader`; one that an older writer named twice is taken
    /// once.
    fn new(reader: &PackReader) -> Result<Self, PackError> {
        let too_many = || PackError::IndexDecode("2^32 dependencies or more".into());
        let entries = reader.entries();
        let mut starts = Vec::with_capacity(entries.len() + 1);
        let mut deps = Vec::new();
        let mut seen = HashSet::new();
        starts.push(0);
        for entry in entries {
            seen.clear();
            let positions = entry.deps.iter().filter_map(|d| reader.position(d));
            for j in positions.filter(|&j| seen.insert(j)) {
                // The reader numbers its entries in 32 bits.
                deps.push(j as u32);
            }
            starts.push(u32::try_from(deps.len()).map_err(|_| too_many())?);
        }
        Ok(Self { starts: starts.into_boxed_slice(), deps: deps.into_boxed_slice() })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use streamrt_pack::{Codec, Header, IndexEntry, PackIndex, PackLimits, HEADER_LEN, VERSION};

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
    fn open(entries: Vec<IndexEntry>) -> (tempfile::NamedTempFile, PackReader) {
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
        let reader = PackReader::open(file.path(), PackLimits::default()).unwrap();
        (file, reader)
    }

    fn key(text: &str) -> AssetKey {
        AssetKey::parse(text).unwrap()
    }

    #[test]
    fn each_key_finds_its_entry_and_its_dependencies_once_each_in_order() {
        let (_file, reader) = open(vec![
            entry("mesh:a", &["blob:c", "blob:b", "blob:c"]),
            entry("blob:b", &[]),
            entry("blob:c", &["blob:b"]),
        ]);
        let catalog = Catalog::new(&reader).unwrap();
        for (i, text) in ["mesh:a", "blob:b", "blob:c"].into_iter().enumerate() {
            assert_eq!(catalog.position(&key(text)), Some(i), "{text}");
        }
        assert_eq!(catalog.position(&key("blob:a")), None);
        assert_eq!(catalog.position(&key("mesh:b")), None);
        assert_eq!(catalog.dependencies(0), [key("blob:c"), key("blob:b")]);
        assert_eq!(catalog.dependencies(1), []);
        assert_eq!(catalog.dependencies(2), [key("blob:b")]);
    }
}
