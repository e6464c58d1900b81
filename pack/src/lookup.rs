//! A pack's entries by key: a table of entry positions, hashed by the keys the entries
//! already hold, so an open pack keeps each key once (a map from a cloned `String` to the
//! position kept every key twice, 56 more bytes an entry).
//!
//! # Invariants
//!
//! - Each position in the table is an entry's position in the slice it was built from; the
//!   table is only asked with that slice.
//! - Keys are unique: the table refuses a second entry with a key already in.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::format::IndexEntry;

/// The hasher of keys: foldhash, seeded at random per table, so the bucket of a key cannot be
/// chosen from outside without knowing the seed.
type KeyHasher = foldhash::fast::RandomState;

/// Entry positions by key; see the module docs.
#[derive(Debug)]
pub(crate) struct KeyTable {
    table: HashTable<u32>,
    hasher: KeyHasher,
}

/// The key of the entry being inserted is already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeated;

impl KeyTable {
    /// An empty table with room for `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Self {
        Self { table: HashTable::with_capacity(entries), hasher: KeyHasher::default() }
    }

    /// Puts the entry at position `at` of `entries` in the table.
    ///
    /// # Errors
    ///
    /// An entry with its key is in already.
    ///
    /// # Panics
    ///
    /// If `at` is not a position of `entries` or does not fit in 32 bits (the caller checks
    /// the count of entries first).
    pub(crate) fn insert(&mut self, entries: &[IndexEntry], at: usize) -> Result<(), Repeated> {
        let position = u32::try_from(at).expect("the caller checked the count of entries");
        let key = entries[at].key.as_str();
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        let same = |&j: &u32| entries[j as usize].key == key;
        let rehash = |&j: &u32| hasher.hash_one(entries[j as usize].key.as_str());
        match self.table.entry(hash, same, rehash) {
            Entry::Occupied(_) => Err(Repeated),
            Entry::Vacant(v) => {
                v.insert(position);
                Ok(())
            }
        }
    }

    /// The position of `key`'s entry in `entries`, the slice the table was built from.
    pub(crate) fn find(&self, entries: &[IndexEntry], key: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let found = self.table.find(hash, |&i| entries[i as usize].key == key)?;
        Some(*found as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Codec;

    fn entry(key: &str) -> IndexEntry {
        IndexEntry {
            key: key.into(),
            offset: 0,
            stored_size: 0,
            raw_size: 0,
            codec: Codec::None,
            crc32: 0,
            deps: vec![],
        }
    }

    /// The table of `entries`, or the position of the first repeated key.
    fn table_of(entries: &[IndexEntry]) -> Result<KeyTable, usize> {
        let mut table = KeyTable::with_capacity(entries.len());
        for at in 0..entries.len() {
            table.insert(entries, at).map_err(|Repeated| at)?;
        }
        Ok(table)
    }

    #[test]
    fn every_key_finds_its_own_position_and_no_other_key_finds_one() {
        let entries: Vec<_> = (0..1_000).map(|i| entry(&format!("blob:b{i}"))).collect();
        let table = table_of(&entries).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(table.find(&entries, &e.key), Some(i));
        }
        assert_eq!(table.find(&entries, "blob:b1000"), None);
        assert_eq!(table.find(&entries, "mesh:b1"), None);
    }

    #[test]
    fn a_key_found_twice_names_the_second_entry() {
        let entries = [entry("blob:a"), entry("blob:b"), entry("blob:a")];
        assert_eq!(table_of(&entries).unwrap_err(), 2);
    }
}
