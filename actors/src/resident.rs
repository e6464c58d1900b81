//! The memory budget: resident bytes per asset type and overall, and the least-recently-used
//! pool of decoded assets no request holds.
//!
//! A decoded asset is *held* while a request for it is attached to its cache's slot (a live
//! handle), and *parked* here once the last one lets go: it stays decoded for the next request
//! (a hit) until the budget needs its bytes. Every cache shares one [`Residency`] (they run on
//! one arbiter, so its lock is uncontended); pure bookkeeping, no actor and no IO, so its
//! invariants are property-tested on their own.
//!
//! # Invariants
//!
//! - Resident bytes (held plus parked) are counted per type and overall, exactly.
//! - Only parked assets are evicted, least recently used first: a held asset never is.
//! - After every operation, a type over its `bytes_resident_max` has nothing parked, and the
//!   runtime over its overall budget has nothing parked: eviction runs as soon as an asset is
//!   admitted or parked, so resident bytes exceed a budget only by what live handles hold (the
//!   engine asked for those; the runtime cannot drop them) and never by a cached asset.
//! - At most [`PARKED_ASSETS_MAX`] assets are parked, whatever their sizes: a decoder that
//!   reports 0 bytes would otherwise park every asset ever released, as none weighs anything
//!   against the budget.
//! - An evicted asset is not dropped under the budget's lock: it waits in the budget until its
//!   cache takes it ([`Residency::take_let_go`]) and drops it after unlocking, as an asset's own
//!   `Drop` (freeing a GPU resource, say) may be slow or panic, and the lock is shared with
//!   threads off the caches' arbiter (`Runtime::memory_stats`).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use std::hash::Hash;

use hashbrown::{Equivalent, HashMap};
use streamrt_messages::AssetKey;

use crate::key_hash::KeyHasher;

/// Assets parked at most, the least recently used evicted past it (see the invariants).
pub(crate) const PARKED_ASSETS_MAX: usize = 1 << 20;

/// A decoded asset, whatever its type.
pub(crate) type AnyValue = Arc<dyn Any + Send + Sync>;

/// An asset the budget evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) key: AssetKey,
    pub(crate) bytes: u64,
}

/// The memory budget's figures, for one type or for all (`Runtime::memory_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of held and parked assets.
    pub resident_bytes: u64,
    /// The budget those bytes are kept within (`u64::MAX`: none).
    pub bytes_resident_max: u64,
    /// Parked assets (decoded, unreferenced, kept for reuse).
    pub parked: usize,
    /// Bytes of the parked assets: `resident_bytes` less this is what requests hold.
    pub parked_bytes: u64,
    /// Requests served from memory (a held or parked asset).
    pub hits: u64,
    /// Loads started for requests (a request whose load a cache's restart starts again counts
    /// again).
    pub misses: u64,
    /// Parked assets dropped for the budget.
    pub evictions: u64,
}

#[derive(Debug, Default)]
struct TypeState {
    figures: MemoryStats,
    /// Parked keys of this type by last use.
    lru: BTreeMap<u64, AssetKey>,
}

struct Parked {
    type_index: usize,
    value: AnyValue,
    bytes: u64,
    used: u64,
}

/// See the module docs.
pub(crate) struct Residency {
    bytes_resident_max: u64,
    resident_bytes: u64,
    types: Vec<TypeState>,
    /// By key; `hashbrown`'s, so a cache looks an asset up by its key's parts
    /// (`KeyParts`) without putting a key together.
    parked: HashMap<AssetKey, Parked, KeyHasher>,
    /// Every parked key by last use.
    lru: BTreeMap<u64, AssetKey>,
    /// The use clock: bumped at each park, so later parks are more recent.
    clock: u64,
    /// Assets parked at most: [`PARKED_ASSETS_MAX`] (fewer in tests).
    parked_max: usize,
    /// Evicted assets not yet taken to be dropped outside the lock (see the invariants).
    let_go: Vec<AnyValue>,
}

impl Residency {
    /// A budget of `bytes_resident_max` overall and `type_max[i]` for the type of index `i`
    /// (`u64::MAX` for no limit).
    pub(crate) fn new(bytes_resident_max: u64, type_max: &[u64]) -> Self {
        let types = type_max
            .iter()
            .map(|&max| TypeState {
                figures: MemoryStats { bytes_resident_max: max, ..MemoryStats::default() },
                lru: BTreeMap::new(),
            })
            .collect();
        Self {
            bytes_resident_max,
            resident_bytes: 0,
            types,
            parked: HashMap::default(),
            lru: BTreeMap::new(),
            clock: 0,
            parked_max: PARKED_ASSETS_MAX,
            let_go: Vec::new(),
        }
    }

    /// Bytes of every held and parked asset.
    pub(crate) fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }

    /// The figures of the type of index `t`.
    pub(crate) fn figures(&self, t: usize) -> MemoryStats {
        self.types[t].figures
    }

    /// The figures of every type together.
    pub(crate) fn totals(&self) -> MemoryStats {
        let mut totals = MemoryStats {
            resident_bytes: self.resident_bytes,
            bytes_resident_max: self.bytes_resident_max,
            ..MemoryStats::default()
        };
        for t in &self.types {
            totals.parked += t.figures.parked;
            totals.parked_bytes += t.figures.parked_bytes;
            totals.hits += t.figures.hits;
            totals.misses += t.figures.misses;
            totals.evictions += t.figures.evictions;
        }
        totals
    }

    /// Counts a request served from memory.
    pub(crate) fn hit(&mut self, t: usize) {
        self.types[t].figures.hits += 1;
    }

    /// Counts a request that started a load.
    pub(crate) fn miss(&mut self, t: usize) {
        self.types[t].figures.misses += 1;
    }

    /// A held asset of `bytes` decoded; returns what the budget evicted to make room.
    pub(crate) fn admit(&mut self, t: usize, bytes: u64) -> Vec<Evicted> {
        // Saturating: sizes are clamped to `ASSET_BYTES_MAX`, but a sum of them is not.
        self.resident_bytes = self.resident_bytes.saturating_add(bytes);
        let figures = &mut self.types[t].figures;
        figures.resident_bytes = figures.resident_bytes.saturating_add(bytes);
        self.enforce(t)
    }

    /// A held asset of `bytes` is gone (its cache shut down).
    pub(crate) fn forget_held(&mut self, t: usize, bytes: u64) {
        // Saturating, as `admit` adds: a sum that saturated gives back more than it counted.
        self.resident_bytes = self.resident_bytes.saturating_sub(bytes);
        let figures = &mut self.types[t].figures;
        figures.resident_bytes = figures.resident_bytes.saturating_sub(bytes);
    }

    /// The last request holding `key` let go: keeps the asset for reuse, then evicts what the
    /// budget needs (possibly this very asset).
    pub(crate) fn park(
        &mut self,
        t: usize,
        key: AssetKey,
        value: AnyValue,
        bytes: u64,
    ) -> Vec<Evicted> {
        self.clock += 1;
        let used = self.clock;
        self.lru.insert(used, key.clone());
        self.types[t].lru.insert(used, key.clone());
        self.types[t].figures.parked += 1;
        self.types[t].figures.parked_bytes += bytes;
        let new = Arc::as_ptr(&value);
        let parked = Parked { type_index: t, value, bytes, used };
        // A key is parked once (a cache has one slot a key, and a readmission empties its
        // salvage). One parked again, rather than leaving an order entry and its bytes counted
        // for ever: the same asset (a release taken twice) was counted resident once, and only
        // its earlier listing goes; another replaces the asset before it, which goes as an
        // eviction's does (its bytes no longer counted, the value dropped outside the lock).
        if let Some(previous) = self.parked.insert(key, parked) {
            if std::ptr::addr_eq(Arc::as_ptr(&previous.value), new) {
                self.unlist(&previous);
            } else {
                self.let_go_of(previous);
            }
        }
        self.enforce(t)
    }

    /// Takes `parked`, no longer in the parked map, off the use order and the parked figures.
    fn unlist(&mut self, parked: &Parked) {
        let state = &mut self.types[parked.type_index];
        state.lru.remove(&parked.used);
        state.figures.parked -= 1;
        state.figures.parked_bytes = state.figures.parked_bytes.saturating_sub(parked.bytes);
        self.lru.remove(&parked.used);
    }

    /// Lets go of `parked`, no longer in the parked map: it is unlisted, its bytes are no
    /// longer counted, and its value is kept to be dropped outside the lock.
    fn let_go_of(&mut self, parked: Parked) {
        self.unlist(&parked);
        let figures = &mut self.types[parked.type_index].figures;
        figures.resident_bytes = figures.resident_bytes.saturating_sub(parked.bytes);
        self.resident_bytes = self.resident_bytes.saturating_sub(parked.bytes);
        self.let_go.push(parked.value);
    }

    /// Takes the parked asset `key` back to be held, if it is still parked (the caller counts
    /// the hit).
    pub(crate) fn take<Q>(&mut self, key: &Q) -> Option<(AnyValue, u64)>
    where
        Q: Hash + Equivalent<AssetKey> + ?Sized,
    {
        let parked = self.parked.remove(key)?;
        self.unlist(&parked);
        Some((parked.value, parked.bytes))
    }

    /// The assets evicted since the last call, for the caller to drop once it has released the
    /// budget's lock.
    pub(crate) fn take_let_go(&mut self) -> Vec<AnyValue> {
        std::mem::take(&mut self.let_go)
    }

    /// Lets go of every parked asset of the type of index `t` (its cache shut down), to be
    /// taken with [`Residency::take_let_go`].
    pub(crate) fn clear_type(&mut self, t: usize) {
        let keys: Vec<AssetKey> = self.types[t].lru.values().cloned().collect();
        for key in keys {
            self.drop_parked(&key);
        }
    }

    fn drop_parked(&mut self, key: &AssetKey) -> Option<(usize, Evicted)> {
        let parked = self.parked.remove(key)?;
        let (t, bytes) = (parked.type_index, parked.bytes);
        self.let_go_of(parked);
        Some((t, Evicted { key: key.clone(), bytes }))
    }

    /// Evicts the type `t`'s least recently used parked assets while it is over its budget,
    /// then anyone's while the total is over the overall budget.
    fn enforce(&mut self, t: usize) -> Vec<Evicted> {
        let mut evicted = Vec::new();
        while self.types[t].figures.resident_bytes > self.types[t].figures.bytes_resident_max {
            let Some((&used, key)) = self.types[t].lru.iter().next() else { break };
            let key = key.clone();
            evicted.extend(self.evict(used, &key));
        }
        while self.resident_bytes > self.bytes_resident_max || self.lru.len() > self.parked_max {
            let Some((&used, key)) = self.lru.iter().next() else { break };
            let key = key.clone();
            evicted.extend(self.evict(used, &key));
        }
        evicted
    }

    /// Evicts `key`, first in the least-recently-used order at `used`. The order's entry goes
    /// in any case, so each turn of [`Residency::enforce`]'s loops takes one and they end: an
    /// entry whose asset is not parked (which `park` never leaves) would otherwise
    /// be found first for ever.
    fn evict(&mut self, used: u64, key: &AssetKey) -> Option<Evicted> {
        let Some((t, evicted)) = self.drop_parked(key) else {
            self.lru.remove(&used);
            self.types.iter_mut().for_each(|state| drop(state.lru.remove(&used)));
            return None;
        };
        self.types[t].figures.evictions += 1;
        Some(evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug, Clone)]
    enum Op {
        /// A new asset of type t, k-th key, decodes with this size and is held.
        Admit(usize, u8, u64),
        /// The n-th held asset is let go.
        Park(usize),
        /// A request for the k-th key of type t: a hit if parked.
        Request(usize, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..2, 0u8..24, 1u64..400).prop_map(|(t, k, b)| Op::Admit(t, k, b)),
            (0usize..64).prop_map(Op::Park),
            (0usize..2, 0u8..24).prop_map(|(t, k)| Op::Request(t, k)),
        ]
    }

    fn key(t: usize, k: u8) -> AssetKey {
        AssetKey::parse(&format!("t{t}:k{k}")).unwrap()
    }

    struct Model {
        held: HashMap<AssetKey, (usize, u64)>,
        parked: HashMap<AssetKey, (usize, u64)>,
    }

    impl Model {
        fn bytes(&self, t: Option<usize>) -> (u64, u64) {
            let sum = |m: &HashMap<AssetKey, (usize, u64)>| {
                m.values().filter(|(ti, _)| t.is_none_or(|t| t == *ti)).map(|(_, b)| b).sum()
            };
            (sum(&self.held), sum(&self.parked))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn eviction_keeps_the_budget_and_never_drops_a_held_asset(
            overall in 200u64..2_000,
            type0 in 100u64..1_500,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut residency = Residency::new(overall, &[type0, u64::MAX]);
            let mut model = Model { held: HashMap::new(), parked: HashMap::new() };
            let mut evictions = 0;
            for op in ops {
                let evicted = match op {
                    Op::Admit(t, k, bytes) => {
                        let key = key(t, k);
                        if model.held.contains_key(&key) || model.parked.contains_key(&key) {
                            continue;
                        }
                        model.held.insert(key, (t, bytes));
                        residency.admit(t, bytes)
                    }
                    Op::Park(n) if !model.held.is_empty() => {
                        let mut keys: Vec<_> = model.held.keys().cloned().collect();
                        keys.sort_by_key(ToString::to_string);
                        let key = keys[n % keys.len()].clone();
                        let (t, bytes) = model.held.remove(&key).unwrap();
                        model.parked.insert(key.clone(), (t, bytes));
                        residency.park(t, key, Arc::new(()), bytes)
                    }
                    Op::Request(t, k) => {
                        let key = key(t, k);
                        let taken = residency.take(&key);
                        prop_assert_eq!(taken.is_some(), model.parked.contains_key(&key));
                        if let Some((_, bytes)) = taken {
                            let entry = model.parked.remove(&key).unwrap();
                            prop_assert_eq!(entry.1, bytes);
                            model.held.insert(key, entry);
                        }
                        Vec::new()
                    }
                    Op::Park(_) => Vec::new(),
                };
                let mut seen = HashSet::new();
                for e in &evicted {
                    prop_assert!(!model.held.contains_key(&e.key), "held {} evicted", e.key);
                    prop_assert!(model.parked.remove(&e.key).is_some(), "{} was parked", e.key);
                    prop_assert!(seen.insert(e.key.clone()));
                }
                evictions += evicted.len() as u64;
                let (held, parked) = model.bytes(None);
                prop_assert_eq!(residency.resident_bytes(), held + parked);
                prop_assert!(residency.resident_bytes() <= overall.max(held));
                prop_assert!(held + parked <= overall || parked == 0);
                let (held0, parked0) = model.bytes(Some(0));
                prop_assert_eq!(residency.figures(0).resident_bytes, held0 + parked0);
                prop_assert!(held0 + parked0 <= type0 || parked0 == 0);
                let figures_parked = residency.figures(0).parked + residency.figures(1).parked;
                prop_assert_eq!(figures_parked, model.parked.len());
                prop_assert_eq!(residency.totals().parked_bytes, parked);
                prop_assert_eq!(residency.figures(0).parked_bytes, parked0);
            }
            prop_assert_eq!(residency.figures(0).evictions + residency.figures(1).evictions, evictions);
        }
    }

    #[test]
    fn the_least_recently_parked_asset_goes_first_and_a_hit_saves_one() {
        let mut residency = Residency::new(300, &[u64::MAX]);
        for k in 0..3 {
            assert!(residency.admit(0, 100).is_empty());
            assert!(residency.park(0, key(0, k), Arc::new(()), 100).is_empty());
        }
        assert!(residency.take(&key(0, 0)).is_some(), "k0 is held again");
        residency.hit(0);
        let evicted = residency.admit(0, 100);
        assert_eq!(evicted, [Evicted { key: key(0, 1), bytes: 100 }], "k1 is the oldest parked");
        assert_eq!(residency.figures(0).hits, 1);
        assert_eq!(residency.figures(0).evictions, 1);
    }

    #[test]
    fn sums_that_saturated_come_back_to_nothing_and_the_budget_still_works() {
        let mut residency = Residency::new(100, &[u64::MAX]);
        let half = u64::MAX / 2 + 1;
        assert!(residency.admit(0, half).is_empty());
        assert!(residency.admit(0, half).is_empty());
        assert_eq!(residency.figures(0).resident_bytes, u64::MAX, "saturated");
        residency.forget_held(0, half);
        residency.forget_held(0, half);
        assert_eq!(residency.figures(0).resident_bytes, 0, "not below nothing");
        assert!(residency.admit(0, 50).is_empty());
        assert!(residency.park(0, key(0, 0), Arc::new(()), 50).is_empty(), "within the budget");
        assert_eq!(residency.figures(0).resident_bytes, 50);
    }

    #[test]
    fn assets_that_weigh_nothing_are_still_parked_only_up_to_the_count() {
        let mut residency = Residency::new(u64::MAX, &[u64::MAX]);
        residency.parked_max = 2;
        for k in 0..2 {
            assert!(residency.admit(0, 0).is_empty());
            assert!(residency.park(0, key(0, k), Arc::new(()), 0).is_empty());
        }
        assert!(residency.admit(0, 0).is_empty());
        let evicted = residency.park(0, key(0, 2), Arc::new(()), 0);
        assert_eq!(evicted, [Evicted { key: key(0, 0), bytes: 0 }], "the oldest parked goes");
        assert_eq!((residency.figures(0).parked, residency.figures(0).evictions), (2, 1));
    }

    #[test]
    fn a_key_parked_again_replaces_the_asset_before_it_and_counts_only_the_new_one() {
        let mut residency = Residency::new(1_000, &[u64::MAX]);
        assert!(residency.admit(0, 100).is_empty());
        assert!(residency.park(0, key(0, 0), Arc::new(1u8), 100).is_empty());
        assert!(residency.admit(0, 30).is_empty());
        assert!(residency.park(0, key(0, 0), Arc::new(2u8), 30).is_empty());
        let figures = residency.figures(0);
        assert_eq!((figures.parked, figures.parked_bytes, figures.resident_bytes), (1, 30, 30));
        assert_eq!((residency.resident_bytes, residency.lru.len()), (30, 1), "one order entry");
        assert_eq!(residency.take_let_go().len(), 1, "the replaced asset is dropped outside");
        let (value, bytes) = residency.take(&key(0, 0)).expect("the second is parked");
        assert_eq!((value.downcast_ref::<u8>(), bytes), (Some(&2), 30));
    }

    #[test]
    fn one_asset_parked_twice_is_counted_once() {
        let mut residency = Residency::new(1_000, &[u64::MAX]);
        assert!(residency.admit(0, 100).is_empty());
        let value: AnyValue = Arc::new(1u8);
        assert!(residency.park(0, key(0, 0), Arc::clone(&value), 100).is_empty());
        assert!(residency.park(0, key(0, 0), value, 100).is_empty());
        let figures = residency.figures(0);
        assert_eq!((figures.parked, figures.parked_bytes, figures.resident_bytes), (1, 100, 100));
        assert_eq!((residency.resident_bytes, residency.lru.len()), (100, 1), "one order entry");
        assert!(residency.take_let_go().is_empty(), "the asset itself stays parked");
    }

    #[test]
    fn an_order_entry_with_no_parked_asset_is_let_go_of_rather_than_found_for_ever() {
        let mut residency = Residency::new(100, &[u64::MAX]);
        assert!(residency.admit(0, 50).is_empty());
        assert!(residency.park(0, key(0, 0), Arc::new(()), 50).is_empty());
        // An order entry whose asset is not parked (`park` leaves none: a key parked again
        // replaces its asset), made by hand.
        residency.parked.clear();
        let evicted = residency.admit(0, 100);
        assert!(evicted.is_empty() && residency.lru.is_empty(), "{evicted:?}");
        assert!(residency.types[0].lru.is_empty());
    }

    #[test]
    fn an_evicted_asset_is_dropped_by_whoever_takes_it_not_under_the_budget() {
        let mut residency = Residency::new(100, &[u64::MAX]);
        let asset = Arc::new(7u32);
        assert!(residency.admit(0, 100).is_empty());
        let value: AnyValue = asset.clone();
        assert!(residency.park(0, key(0, 0), value, 100).is_empty());
        assert_eq!(residency.admit(0, 100).len(), 1, "the parked asset is evicted");
        assert_eq!(Arc::strong_count(&asset), 2, "the budget still has it, to be taken");
        let let_go = residency.take_let_go();
        assert_eq!(let_go.len(), 1);
        assert!(residency.take_let_go().is_empty(), "taken once");
        drop(let_go);
        assert_eq!(Arc::strong_count(&asset), 1, "dropped by the taker");
        residency.clear_type(0);
        assert!(residency.take_let_go().is_empty(), "nothing else was parked");
    }
}
