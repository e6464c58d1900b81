//! A pack's entries by key: a table of entry positions, hashed by the keys the entries
//! already hold, so an open pack keeps each key once (a map from a cloned `String` to the
//! position kept every key twice, 56 more bytes an entry).
//!
//! # Invariants
//!
//! - Each position in the table is an entry's position in the slice it was built from; the
//!   table is only asked with that slice.
//! - Keys are unique: a table is made only of entries whose keys are.

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

/// Why entries make no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableError {
    /// The entry at this position has the key of one before it.
    Repeated(usize),
    /// More entries than 32-bit positions number.
    TooMany,
}

impl KeyTable {
    /// The table of `entries`, each at its position.
    ///
    /// # Errors
    ///
    /// The first entry whose key an entry before it has, or more than `u32::MAX` entries.
    pub(crate) fn of(entries: &[IndexEntry]) -> Result<Self, TableError> {
        if u32::try_from(entries.len()).is_err() {
            return Err(TableError::TooMany);
        }
        let hasher = KeyHasher::default();
        let mut table = HashTable::with_capacity(entries.len());
        let rehash = |&j: &u32| hasher.hash_one(entries[j as usize].key.as_str());
        for (at, entry) in entries.iter().enumerate() {
            let key = entry.key.as_str();
            let same = |&j: &u32| entries[j as usize].key == key;
            match table.entry(hasher.hash_one(key), same, rehash) {
                Entry::Occupied(_) => return Err(TableError::Repeated(at)),
                // Checked above: every position fits in 32 bits.
                Entry::Vacant(place) => {
                    place.insert(at as u32);
                }
            }
        }
        Ok(Self { table, hasher })
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

    #[test]
    fn every_key_finds_its_own_position_and_no_other_key_finds_one() {
        let entries: Vec<_> = (0..1_000).map(|i| entry(&format!("blob:b{i}"))).collect();
        let table = KeyTable::of(&entries).unwrap();
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(table.find(&entries, &e.key), Some(i));
        }
        assert_eq!(table.find(&entries, "blob:b1000"), None);
        assert_eq!(table.find(&entries, "mesh:b1"), None);
    }

    #[test]
    fn a_key_found_twice_names_the_second_entry() {
        let entries = [entry("blob:a"), entry("blob:b"), entry("blob:a")];
        assert_eq!(KeyTable::of(&entries).unwrap_err(), TableError::Repeated(2));
    }
}
