//! A fast hasher for the ids the runtime allocates itself ([`Generation`], [`RequestId`]).
//!
//! These keys come from the runtime's own counters, never from input, so the flooding
//! resistance of the standard SipHash buys nothing for them, while its cost showed in the core
//! thread's profile: every load touches several id-keyed maps, and with ids scattered over a
//! table of 100,000s of entries each touch was a cache miss. So the hash keeps the id itself in
//! its low bits, which pick the bucket (ids made close together, and mostly removed in that
//! order, sit in neighbouring buckets), and takes its top 7 bits, which the table keeps as tags
//! to tell entries of one group apart, from one multiply by an odd constant (Fibonacci
//! hashing).
//!
//! # Invariants
//!
//! Only maps keyed by runtime-allocated ids use [`IdMap`]; keys that come from outside use a
//! seeded hasher (asset keys: `key_hash`; type names: the standard one).
//!
//! [`Generation`]: streamrt_messages::Generation
//! [`RequestId`]: streamrt_messages::RequestId

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// 2^64 divided by the golden ratio, rounded to odd.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
/// The top 7 bits: the tag the table keeps per entry.
const TAG_BITS: u64 = 0x7F << 57;

/// See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(SPREAD);
        }
    }

    fn write_u64(&mut self, n: u64) {
        let n = self.0 ^ n;
        self.0 = (n & !TAG_BITS) | (n.wrapping_mul(SPREAD) & TAG_BITS);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A map keyed by runtime-allocated ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// A set of runtime-allocated ids; see [`IdMap`].
pub(crate) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_ids_take_neighbouring_buckets_and_every_tag() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (0..4096u64).map(|id| build.hash_one(id)).collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(buckets.len(), 4096, "4,096 sequential ids fill 4,096 buckets");
        assert!(hashes.windows(2).all(|w| (w[1] & 4095) == (w[0] & 4095) + 1), "in order");
        assert_eq!(tags.len(), 128, "and use every 7-bit tag");
    }
}
