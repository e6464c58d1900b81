//! The hasher of maps keyed by [`AssetKey`] or, within one asset type, by [`AssetPath`]:
//! foldhash, seeded at random per map.
//!
//! Every load hashes its key several times (the cache's path→slot index, the source's index,
//! the memory budget's tables); with the standard SipHash those hashes were a visible share of the
//! core thread's profile (`streamctl bench tiny`). foldhash is several times faster on short
//! strings and still seeds each map at random, so the bucket of a key cannot be chosen from
//! outside without knowing the seed; its resistance to deliberate flooding is weaker than
//! SipHash's, which is acceptable because keys come from the embedding program or from the
//! daemon's clients, who run as the same user.
//!
//! [`AssetKey`]: streamrt_messages::AssetKey
//! [`AssetPath`]: streamrt_messages::AssetPath

use std::collections::HashMap;
use std::hash::Hash;

use hashbrown::Equivalent;
use streamrt_messages::{AssetKey, AssetPath, AssetTypeName};

/// The hasher of asset keys, seeded at random where it is made; see the module docs.
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// A map keyed by asset keys; see the module docs.
pub(crate) type KeyMap<V> = HashMap<AssetKey, V, KeyHasher>;

/// A map keyed by paths of one asset type (a cache's); see the module docs.
pub(crate) type PathMap<V> = HashMap<AssetPath, V, KeyHasher>;

/// A key as its two parts, borrowed: looks up a `hashbrown` map keyed by [`AssetKey`] without
/// putting a key together (two reference counts up and down, one of them shared by every key
/// of the type). Hashes exactly as the key does: its type, then its path.
#[derive(Hash)]
pub(crate) struct KeyParts<'a>(pub(crate) &'a AssetTypeName, pub(crate) &'a AssetPath);

impl Equivalent<AssetKey> for KeyParts<'_> {
    fn equivalent(&self, key: &AssetKey) -> bool {
        key.asset_type() == self.0 && key.asset_path() == self.1
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn hash_with(hasher: &KeyHasher, key: &impl Hash) -> u64 {
        hasher.hash_one(key)
    }

    #[test]
    fn key_parts_hash_and_compare_as_their_key_does() {
        let hasher = KeyHasher::default();
        let key = AssetKey::parse("mesh:levels/one.bin").unwrap();
        let parts = KeyParts(key.asset_type(), key.asset_path());
        assert_eq!(hash_with(&hasher, &parts), hash_with(&hasher, &key));
        assert!(parts.equivalent(&key));
        let other = AssetKey::parse("text:levels/one.bin").unwrap();
        assert!(!parts.equivalent(&other));
    }
}
