//! The generation table: a cache's slots, indexed by path; a request is found through its path.
//!
//! A table belongs to one asset type's cache, so a slot keeps its key's path only: the type is
//! the cache's (16 bytes fewer per pending request than a whole key).
//!
//! Pure bookkeeping, no actor and no IO, so its invariants are property-tested on their own.
//!
//! # Invariants
//!
//! - At most one slot per path; `by_path` points only at live slots. A request is attached to
//!   the slot of its own path or to none, so it is found by its path and then among that slot's
//!   holders: no index per request (one fewer hash insert and remove per load, 20–36 bytes
//!   fewer per pending request).
//! - A slot's `generation` is the generation of its current load. Replies are matched with
//!   [`SlotTable::current_mut`], which checks both slot index and generation: a slot index may be
//!   reused after removal, but generations never repeat, so a late reply never matches.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use slab::Slab;
use streamrt_messages::{AssetPath, Generation, Priority, RequestId};

use super::holders::Holders;
use crate::key_hash::KeyHasher;

/// Whatever a slot keeps per attached request.
pub(crate) trait Holder {
    fn request(&self) -> RequestId;
}

impl Holder for RequestId {
    fn request(&self) -> RequestId {
        *self
    }
}

/// Where a slot's load is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting out a retry's backoff; queued when it is over (not before, even when a
    /// restarted scheduler asks for every queued load).
    Backoff,
    /// In the scheduler's queue.
    Queued,
    /// Dispatched to the workers.
    Loading,
    /// Decoded; the value is held.
    Resident,
}

/// One asset in a cache.
pub(crate) struct Slot<T, H> {
    /// The key's path; the type is the cache's.
    pub(crate) path: AssetPath,
    pub(crate) generation: Generation,
    pub(crate) phase: Phase,
    pub(crate) holders: Holders<H>,
    pub(crate) value: Option<Arc<T>>,
    /// Until the load decodes, the stored size the source declared (0 when unknown): what a
    /// read credit is charged for it. Once `Resident`, the value's resident size. One field
    /// for both, as no slot needs both at once and every pending request has a slot.
    pub(crate) bytes: u64,
    /// The most urgent priority of the holders, as the scheduler knows it.
    pub(crate) priority: Priority,
    /// The request that started the load.
    pub(crate) origin: RequestId,
    /// The current attempt, from 1.
    pub(crate) attempt: u32,
}

/// See the module docs.
pub(crate) struct SlotTable<T, H> {
    slots: Slab<Slot<T, H>>,
    /// Slot indexes, hashed by their slot's path: the path lives in the slot only, so an entry
    /// is 4 bytes where a path→index map's is 24 (`streamctl bench scale`).
    by_path: HashTable<u32>,
    /// Seeded per table (see `key_hash`).
    hasher: KeyHasher,
}

impl<T, H: Holder> Default for SlotTable<T, H> {
    fn default() -> Self {
        Self { slots: Slab::new(), by_path: HashTable::new(), hasher: KeyHasher::default() }
    }
}

/// A slot's index in 32 bits, as `by_path` and a [`Job`](crate::work::Job) keep it.
pub(crate) fn index32(slot: usize) -> u32 {
    u32::try_from(slot).expect("a cache holds fewer than 2^32 slots")
}

impl<T, H: Holder> SlotTable<T, H> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn lookup(&self, path: &AssetPath) -> Option<usize> {
        self.find(self.hasher.hash_one(path), path)
    }

    /// The slot of `path`, whose hash is `hash`.
    fn find(&self, hash: u64, path: &AssetPath) -> Option<usize> {
        let slots = &self.slots;
        let found = self.by_path.find(hash, |&s| slots[s as usize].path == *path);
        found.map(|&s| s as usize)
    }

    /// The slot `request` is attached to; `path` is the request's path.
    pub(crate) fn lookup_holder(&self, path: &AssetPath, request: RequestId) -> Option<usize> {
        let slot = self.lookup(path)?;
        self.slots[slot].holders.iter().any(|h| h.request() == request).then_some(slot)
    }

    /// Starts a slot for `path`'s new load, `Queued`, with no holder.
    ///
    /// # Panics
    ///
    /// If `path` already has a slot: callers look it up first.
    pub(crate) fn start_load(
        &mut self,
        path: AssetPath,
        generation: Generation,
        priority: Priority,
        origin: RequestId,
    ) -> usize {
        let hash = self.hasher.hash_one(&path);
        assert!(self.find(hash, &path).is_none(), "{path} already has a slot");
        let slot = self.slots.insert(Slot {
            path,
            generation,
            phase: Phase::Queued,
            holders: Holders::default(),
            value: None,
            bytes: 0,
            priority,
            origin,
            attempt: 1,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_path
            .insert_unique(hash, index32(slot), |&s| hasher.hash_one(&slots[s as usize].path));
        slot
    }

    /// Adds a slot for `path`, `Resident` with `value`, with no holder (an asset taken back
    /// from the budget's pool).
    ///
    /// # Panics
    ///
    /// If `path` already has a slot.
    pub(crate) fn insert_resident(
        &mut self,
        path: AssetPath,
        generation: Generation,
        value: Arc<T>,
        bytes: u64,
        origin: RequestId,
    ) -> usize {
        let slot = self.start_load(path, generation, Priority::default(), origin);
        let resident = &mut self.slots[slot];
        resident.phase = Phase::Resident;
        resident.value = Some(value);
        resident.bytes = bytes;
        slot
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Slot<T, H>> {
        self.slots.get(slot)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Slot<T, H>> {
        self.slots.get_mut(slot)
    }

    /// The slot, only if its current load is `generation`.
    pub(crate) fn current_mut(
        &mut self,
        slot: usize,
        generation: Generation,
    ) -> Option<&mut Slot<T, H>> {
        self.slots.get_mut(slot).filter(|s| s.generation == generation)
    }

    /// The slot, only if its current load is `generation` and in `phase` (a late message about
    /// a load since released, superseded or moved on finds none).
    pub(crate) fn current_in(
        &mut self,
        slot: usize,
        generation: Generation,
        phase: Phase,
    ) -> Option<&mut Slot<T, H>> {
        self.current_mut(slot, generation).filter(|s| s.phase == phase)
    }

    /// Attaches a request to a slot.
    ///
    /// # Panics
    ///
    /// If the slot does not exist.
    pub(crate) fn attach(&mut self, slot: usize, holder: H) {
        self.slots[slot].holders.push(holder);
    }

    /// Detaches a request, returning its slot and holder; `path` is the request's path.
    pub(crate) fn detach(&mut self, path: &AssetPath, request: RequestId) -> Option<(usize, H)> {
        let slot = self.lookup(path)?;
        let holders = &mut self.slots[slot].holders;
        let at = holders.iter().position(|h| h.request() == request)?;
        Some((slot, holders.swap_remove(at)))
    }

    /// Removes a slot with its holders.
    ///
    /// # Panics
    ///
    /// If the slot does not exist.
    pub(crate) fn remove(&mut self, slot: usize) -> Slot<T, H> {
        let removed = self.slots.remove(slot);
        let hash = self.hasher.hash_one(&removed.path);
        let indexed = self.by_path.find_entry(hash, |&s| s == index32(slot));
        indexed.expect("a live slot is indexed by its path").remove();
        removed
    }

    /// Removes every slot.
    pub(crate) fn drain(&mut self) -> Vec<Slot<T, H>> {
        self.by_path.clear();
        self.slots.drain().collect()
    }

    /// Iterates over the slots with their indexes.
    pub(crate) fn iter_indexed(&self) -> impl Iterator<Item = (usize, &Slot<T, H>)> {
        self.slots.iter()
    }

    /// Iterates over the slots.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot<T, H>> {
        self.slots.iter().map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Request key k with a fresh request id.
        Request(u8),
        /// Release the n-th live request (modulo).
        Release(usize),
        /// Deliver a reply for the n-th generation ever issued (possibly stale).
        Reply(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6).prop_map(Op::Request),
            (0usize..64).prop_map(Op::Release),
            (0usize..64).prop_map(Op::Reply),
        ]
    }

    /// Every pending request has a slot (in the slab, with 8 bytes of its own); see
    /// `streamctl bench scale`.
    #[test]
    fn a_slot_is_72_bytes() {
        assert!(std::mem::size_of::<Slot<u8, crate::request::Ticket<u8>>>() <= 72);
    }

    fn key(k: u8) -> AssetPath {
        AssetPath::new(&format!("k{k}")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn late_replies_never_match_and_indexes_stay_consistent(
            ops in proptest::collection::vec(op(), 0..200)
        ) {
            let mut table: SlotTable<(), RequestId> = SlotTable::default();
            let mut issued: Vec<(usize, Generation, AssetPath)> = Vec::new();
            let mut live_requests: Vec<(RequestId, u8)> = Vec::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Request(k) => {
                        next += 1;
                        let request = RequestId(next);
                        let slot = match table.lookup(&key(k)) {
                            Some(slot) => slot,
                            None => {
                                let generation = Generation(next);
                                let slot = table.start_load(key(k), generation, Priority::Normal, request);
                                issued.push((slot, generation, key(k)));
                                slot
                            }
                        };
                        table.attach(slot, request);
                        live_requests.push((request, k));
                    }
                    Op::Release(n) if !live_requests.is_empty() => {
                        let (request, k) = live_requests.remove(n % live_requests.len());
                        let detached = table.detach(&key(k), request);
                        let (slot, _) = detached.expect("live request is attached");
                        if table.get(slot).is_some_and(|s| s.holders.is_empty()) {
                            table.remove(slot);
                        }
                    }
                    Op::Reply(n) if !issued.is_empty() => {
                        let (slot, generation, ref k) = issued[n % issued.len()];
                        let current = table.lookup(k)
                            .and_then(|s| table.get(s))
                            .map(|s| s.generation);
                        let matched = table.current_mut(slot, generation).is_some();
                        prop_assert_eq!(matched, current == Some(generation));
                    }
                    _ => {}
                }
                for &(r, k) in &live_requests {
                    let slot = table.lookup_holder(&key(k), r).expect("attached");
                    prop_assert!(table.get(slot).unwrap().holders.contains(&r));
                }
                prop_assert!(table.iter().all(|s| !s.holders.is_empty()));
                prop_assert!(table.len() <= 6);
            }
        }
    }
}
