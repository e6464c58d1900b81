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

use streamrt_messages::{AssetKey, AssetPath};

/// The hasher of asset keys, seeded at random where it is made; see the module docs.
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// A map keyed by asset keys; see the module docs.
pub(crate) type KeyMap<V> = HashMap<AssetKey, V, KeyHasher>;

/// A map keyed by paths of one asset type (a cache's); see the module docs.
pub(crate) type PathMap<V> = HashMap<AssetPath, V, KeyHasher>;
