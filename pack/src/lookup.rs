//! A pack's entries by key: [`KeyTable`], a table of entry positions hashed by the keys the
//! entries already hold, so an open pack keeps each key once (a map from a cloned `String` to
//! the position kept every key twice, 56 more bytes an entry), used by the reader and the
//! writer alike; [`TableError`] says why an entry is refused.
//!
//! A key hashes as its two parts, type and path (split at its first `:`), so a parsed
//! `AssetKey` finds its entry without its text being put together again.
//!
//! The keys come from a file that may be hostile, so they hash with the standard library's
//! SipHash, seeded at random per table: foldhash, which the runtime's own maps use for speed, is
//! only minimally resistant to keys chosen to collide.
//!
//! # Invariants
//!
//! - Each position in the table is an entry's position in the slice it was built from; the
//!   table is only asked with that slice.
//! - Keys are unique: an entry whose key is in already is refused.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::format::IndexEntry;

/// Entry positions by key; see the module docs.
#[derive(Debug)]
pub(crate) struct KeyTable {
    table: HashTable<u32>,
    hasher: RandomState,
}

/// Why entries make no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableError {
    /// The entry at this position has the key of one before it.
    Repeated(usize),
    /// A position of `u32::MAX` or more: more entries than 32-bit positions (plus one) number.
    TooMany,
}

impl KeyTable {
    /// An empty table with room for `entries` entries.
    pub(crate) fn with_capacity(entries: usize) -> Self {
        Self { table: HashTable::with_capacity(entries), hasher: RandomState::new() }
    }

    /// Puts the entry at position `at` of `entries` in the table.
    ///
    /// # Errors
    ///
    /// `Repeated(at)` if an entry with its key is in already, `TooMany` if `at` is `u32::MAX`
    /// or more (a pack numbers fewer than 2^32 entries, so that a position plus one fits
    /// in 32 bits).
    ///
    /// # Panics
    ///
    /// If `at` is not a position of `entries`.
    pub(crate) fn insert(&mut self, entries: &[IndexEntry], at: usize) -> Result<(), TableError> {
        let position =
            u32::try_from(at).ok().filter(|&p| p < u32::MAX).ok_or(TableError::TooMany)?;
        let key = entries[at].key.as_str();
        let hasher = &self.hasher;
        let same = |&j: &u32| entries[j as usize].key == key;
        let rehash = |&j: &u32| hasher.hash_one(parts(&entries[j as usize].key));
        match self.table.entry(hasher.hash_one(parts(key)), same, rehash) {
            Entry::Occupied(_) => Err(TableError::Repeated(at)),
            Entry::Vacant(place) => {
                place.insert(position);
                Ok(())
            }
        }
    }

    /// The position of `key`'s entry in `entries`, the slice the table was built from.
    pub(crate) fn find(&self, entries: &[IndexEntry], key: &str) -> Option<usize> {
        let (ty, path) = parts(key);
        self.find_parts(entries, ty, path)
    }

    /// The position of the entry whose key is `ty:path`, in `entries`.
    pub(crate) fn find_parts(&self, entries: &[IndexEntry], ty: &str, path: &str) -> Option<usize> {
        let hash = self.hasher.hash_one((ty, path));
        let found = self.table.find(hash, |&i| parts(&entries[i as usize].key) == (ty, path))?;
        Some(*found as usize)
    }
}

/// A key's type and path: split at its first `:` (a key without one, which no entry has, is
/// all type).
fn parts(key: &str) -> (&str, &str) {
    key.split_once(':').unwrap_or((key, ""))
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
        // Made with no room, so that it grows (and rehashes) as entries come.
        let mut table = KeyTable::with_capacity(0);
        for at in 0..entries.len() {
            table.insert(&entries, at).unwrap();
        }
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(table.find(&entries, &e.key), Some(i));
        }
        assert_eq!(table.find(&entries, "blob:b1000"), None);
        assert_eq!(table.find(&entries, "mesh:b1"), None);
        assert_eq!(table.find_parts(&entries, "blob", "b7"), Some(7));
        assert_eq!(table.find_parts(&entries, "blob:b7", ""), None);
    }

    #[test]
    fn a_key_found_twice_names_the_second_entry() {
        let entries = [entry("blob:a"), entry("blob:b"), entry("blob:a")];
        let mut table = KeyTable::with_capacity(entries.len());
        assert_eq!(table.insert(&entries, 0), Ok(()));
        assert_eq!(table.insert(&entries, 1), Ok(()));
        assert_eq!(table.insert(&entries, 2), Err(TableError::Repeated(2)));
        assert_eq!(table.find(&entries, "blob:a"), Some(0), "the first keeps its key");
    }

    #[test]
    fn the_last_32_bit_position_is_refused_as_its_stamp_would_not_fit() {
        // Refused before the entry is looked at, so a short slice stands for 2^32 entries.
        let entries = [entry("blob:a")];
        let mut table = KeyTable::with_capacity(1);
        assert_eq!(table.insert(&entries, u32::MAX as usize), Err(TableError::TooMany));
        assert_eq!(table.insert(&entries, u32::MAX as usize + 1), Err(TableError::TooMany));
    }
}
