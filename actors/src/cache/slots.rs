//! The generation table: a cache's slots, indexed by path; a request is found through its path.
//!
//! A table belongs to one asset type's cache, so the type is the cache's; and a slot always has
//! a holder, whose request knows the key's path, so the slot keeps no path of its own, nor the
//! request its load is for (24 bytes fewer per pending request, `streamctl bench scale`).
//!
//! Pure bookkeeping, no actor and no IO, so its invariants are property-tested on their own.
//!
//! # Invariants
//!
//! - Every slot has at least one holder: a slot is made with its first holder, and the detach
//!   of its last removes it. Its path and origin are its first holder's.
//! - At most one slot per path; `by_path` points only at live slots. A request is attached to
//!   the slot of its own path or to none, so it is found by its path and then among that slot's
//!   holders: no index per request (one fewer hash insert and remove per load, 20–36 bytes
//!   fewer per pending request).
//! - A slot's `generation` is the generation of its current load. Replies are matched with
//!   [`SlotTable::current_mut`], which checks both slot index and generation: a slot index may be
//!   reused after removal, but generations never repeat, so a late reply never matches.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use slab::Slab;
use streamrt_messages::{AssetPath, Generation, Priority, RequestId};

use super::holders::Holders;
use crate::key_hash::KeyHasher;
use crate::source::Locator;

/// Whatever a slot keeps per attached request.
pub(crate) trait Holder {
    fn request(&self) -> RequestId;
    /// The path the request asked for: its slot's.
    fn path(&self) -> &AssetPath;
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
    /// Decoded. The value is in the holders' cells, each staged with it: the slot keeps no
    /// copy (8 bytes fewer per pending request, `streamctl bench scale`).
    Resident,
}

/// One asset in a cache, with at least one holder (see the module's invariants).
pub(crate) struct Slot<H> {
    pub(crate) generation: Generation,
    pub(crate) phase: Phase,
    pub(crate) holders: Holders<H>,
    /// Until the load decodes, the stored size the source declared (0 when unknown): what a
    /// read credit is charged for it. Once `Resident`, the value's resident size. One field
    /// for both, as no slot needs both at once and every pending request has a slot.
    pub(crate) bytes: u64,
    /// The most urgent priority of the holders, as the scheduler knows it: after a release,
    /// once the cache's turn is over (`Cache::flush` settles it). Not kept while the load is
    /// in flight (`Loading`), where it orders nothing: a retry settles it again from the
    /// holders, and a decode's event reads them.
    pub(crate) priority: Priority,
    /// The current attempt, from 1 (16 bits, so that the locator fits in the slot's 40 bytes;
    /// it stops at `u16::MAX`, where transient failures' retries stop too; a panicking
    /// decoder's stop at the key's `panics_max`, and the attempt an error reports stays at
    /// `u16::MAX` past it).
    pub(crate) attempt: u16,
    /// Where the source keeps the asset, from the first request's `entry_info`: its reads
    /// need not look the key up again.
    pub(crate) locator: Option<Locator>,
}

impl<H: Holder> Slot<H> {
    /// The current attempt, from 1, as errors and events count it.
    pub(crate) fn attempt(&self) -> u32 {
        u32::from(self.attempt)
    }

    /// The key's path (the type is the cache's): its first holder's.
    ///
    /// # Panics
    ///
    /// On a slot with no holder, which only [`SlotTable::detach`] hands out, once removed.
    pub(crate) fn path(&self) -> &AssetPath {
        self.first().path()
    }

    /// The request the load is for, as events name it: the first holder, which is the request
    /// that started the load until that one lets go, then the oldest of the others.
    ///
    /// # Panics
    ///
    /// As [`Slot::path`].
    pub(crate) fn origin(&self) -> RequestId {
        self.first().request()
    }

    fn first(&self) -> &H {
        self.holders.first().expect("a slot in the table has a holder")
    }
}

/// A holder [`SlotTable::detach`] took off its slot.
pub(crate) struct Detached<H> {
    pub(crate) slot: usize,
    /// The holder: the caller's to drop (with it, perhaps the request's last reference).
    pub(crate) holder: H,
    /// The slot itself, removed from the table, if that was its last holder: it has no holder,
    /// so no path of its own (it is `holder`'s).
    pub(crate) emptied: Option<Slot<H>>,
}

/// See the module docs.
pub(crate) struct SlotTable<H> {
    slots: Slab<Slot<H>>,
    /// Slot indexes, hashed by their slot's path: the path lives in the slot only, so an entry
    /// is 4 bytes where a path→index map's is 24 (`streamctl bench scale`).
    by_path: HashTable<u32>,
    /// Seeded per table (see `key_hash`).
    hasher: KeyHasher,
    /// The slots `by_path` held room for when it was last built, deleted entries included: its
    /// size, which [`SlotTable::reindex`] keeps or doubles as hashbrown's own growth would.
    index_room: usize,
}

impl<H: Holder> Default for SlotTable<H> {
    fn default() -> Self {
        Self {
            slots: Slab::new(),
            by_path: HashTable::new(),
            hasher: KeyHasher::default(),
            index_room: 0,
        }
    }
}

/// A slot's index in 32 bits, as `by_path` and a [`Job`](crate::work::Job) keep it.
pub(crate) fn index32(slot: usize) -> u32 {
    u32::try_from(slot).expect("a cache holds fewer than 2^32 slots")
}

impl<H: Holder> SlotTable<H> {
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
        let found = self.by_path.find(hash, |&s| slots[s as usize].path() == path);
        found.map(|&s| s as usize)
    }

    /// The slot `request` is attached to; `path` is the request's path.
    pub(crate) fn lookup_holder(&self, path: &AssetPath, request: RequestId) -> Option<usize> {
        let slot = self.lookup(path)?;
        self.slots[slot].holders.holds(request).then_some(slot)
    }

    /// Starts a slot for `holder`'s path, with `holder` as its first: a new load, `Queued`,
    /// of an asset declared `bytes` long, which its source keeps at `locator`.
    ///
    /// # Panics
    ///
    /// In debug builds, if the path already has a slot: callers look it up first.
    pub(crate) fn start_load(
        &mut self,
        holder: H,
        generation: Generation,
        priority: Priority,
        bytes: u64,
        locator: Option<Locator>,
    ) -> usize {
        self.insert(holder, generation, Phase::Queued, priority, bytes, locator)
    }

    /// Adds a slot for `holder`'s path, `Resident` with a value of `bytes` (an asset taken back
    /// from the budget's pool, already staged into `holder`, or put back after a restart),
    /// with `holder` as its first and the source's `locator` for the entry.
    ///
    /// # Panics
    ///
    /// In debug builds, if the path already has a slot.
    pub(crate) fn insert_resident(
        &mut self,
        holder: H,
        generation: Generation,
        bytes: u64,
        locator: Option<Locator>,
    ) -> usize {
        self.insert(holder, generation, Phase::Resident, Priority::default(), bytes, locator)
    }

    /// Adds a slot at its first attempt with `holder` as its first holder, and indexes it by
    /// the holder's path.
    fn insert(
        &mut self,
        holder: H,
        generation: Generation,
        phase: Phase,
        priority: Priority,
        bytes: u64,
        locator: Option<Locator>,
    ) -> usize {
        let hash = self.hasher.hash_one(holder.path());
        // Checked in debug builds only: every caller has just looked the path up, and a second
        // probe of a table of a million slots is a cache miss per new request in release.
        debug_assert!(self.find(hash, holder.path()).is_none(), "{} has a slot", holder.path());
        if self.by_path.len() == self.by_path.capacity() {
            self.reindex();
        }
        let mut holders = Holders::default();
        holders.push(holder);
        let at = self.slots.insert(Slot {
            generation,
            phase,
            holders,
            bytes,
            priority,
            attempt: 1,
            locator,
        });
        let (slots, hasher) = (&self.slots, &self.hasher);
        // `reindex` left room for this one, so the index does not grow here; every indexed
        // slot has a holder, so each could be hashed again if it did.
        self.by_path
            .insert_unique(hash, index32(at), |&s| hasher.hash_one(slots[s as usize].path()));
        at
    }

    /// Builds `by_path` anew, with room for one more slot: the same size when at most half of
    /// it is in use (deleted entries took the rest), else the next size up, as hashbrown grows
    /// a full table.
    ///
    /// The new index is filled from the slots in slab order, where hashbrown's own growth
    /// walks the old index in bucket order: each entry is hashed from its slot's first
    /// holder's path, and in bucket order every one of those is a cache miss in a slab, a
    /// request and a path spread over memory. Slab order reads them about in the order they
    /// were made. Growing the index was 15 % of the core thread's samples in `streamctl
    /// bench tiny`, 200,000 requests made at once.
    fn reindex(&mut self) {
        let wanted = self.by_path.len() + 1;
        let room = if wanted <= self.index_room / 2 {
            self.index_room
        } else {
            wanted.max(self.index_room + 1)
        };
        let mut index = HashTable::with_capacity(room);
        let (slots, hasher) = (&self.slots, &self.hasher);
        let rehash = |&s: &u32| hasher.hash_one(slots[s as usize].path());
        for (at, slot) in slots {
            index.insert_unique(hasher.hash_one(slot.path()), index32(at), rehash);
        }
        self.index_room = index.capacity();
        self.by_path = index;
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Slot<H>> {
        self.slots.get(slot)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Slot<H>> {
        self.slots.get_mut(slot)
    }

    /// The slot, only if its current load is `generation`.
    pub(crate) fn current_mut(
        &mut self,
        slot: usize,
        generation: Generation,
    ) -> Option<&mut Slot<H>> {
        self.slots.get_mut(slot).filter(|s| s.generation == generation)
    }

    /// The slot, only if its current load is `generation` and in `phase` (a late message about
    /// a load since released, superseded or moved on finds none).
    pub(crate) fn current_in(
        &mut self,
        slot: usize,
        generation: Generation,
        phase: Phase,
    ) -> Option<&mut Slot<H>> {
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

    /// Detaches a request (`path` is the request's path) from its slot, and removes the slot
    /// if that was its last holder.
    pub(crate) fn detach(&mut self, path: &AssetPath, request: RequestId) -> Option<Detached<H>> {
        let hash = self.hasher.hash_one(path);
        let slot = self.find(hash, path)?;
        let holders = &mut self.slots[slot].holders;
        let holder = holders.remove_request(request)?;
        let emptied = holders.is_empty().then(|| self.unindexed(slot, hash));
        Some(Detached { slot, holder, emptied })
    }

    /// Removes a slot with its holders.
    ///
    /// # Panics
    ///
    /// If the slot does not exist.
    pub(crate) fn remove(&mut self, slot: usize) -> Slot<H> {
        let hash = self.hasher.hash_one(self.slots[slot].path());
        self.unindexed(slot, hash)
    }

    /// Takes `slot`, whose path hashes to `hash`, out of the index and the slab.
    fn unindexed(&mut self, slot: usize, hash: u64) -> Slot<H> {
        let indexed = self.by_path.find_entry(hash, |&s| s == index32(slot));
        indexed.expect("a live slot is indexed by its path").remove();
        self.slots.remove(slot)
    }

    /// Removes every slot.
    pub(crate) fn drain(&mut self) -> Vec<Slot<H>> {
        self.by_path.clear();
        self.slots.drain().collect()
    }

    /// Iterates over the slots with their indexes.
    pub(crate) fn iter_indexed(&self) -> impl Iterator<Item = (usize, &Slot<H>)> {
        self.slots.iter()
    }

    /// Iterates over the slots.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot<H>> {
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

    /// Every pending request has a slot in the slab, which stores a 40-byte slot in 40 (its
    /// vacant entries fit in the slot's spare discriminant values); see `streamctl bench
    /// scale`.
    #[test]
    fn a_slot_is_40_bytes() {
        assert!(std::mem::size_of::<Slot<crate::request::Ticket<u8>>>() <= 40);
    }

    /// A request and its path, as a slot holds a ticket.
    #[derive(Debug, Clone, PartialEq)]
    struct Held(RequestId, AssetPath);

    impl Holder for Held {
        fn request(&self) -> RequestId {
            self.0
        }
        fn path(&self) -> &AssetPath {
            &self.1
        }
    }

    fn key(k: u8) -> AssetPath {
        AssetPath::new(&format!("k{k}")).unwrap()
    }

    #[test]
    fn a_slot_goes_with_its_last_holder_and_takes_its_path_from_the_first() {
        let mut table: SlotTable<Held> = SlotTable::default();
        let at =
            table.start_load(Held(RequestId(1), key(1)), Generation(1), Priority::Normal, 0, None);
        table.attach(at, Held(RequestId(2), key(1)));
        table.attach(at, Held(RequestId(3), key(1)));
        assert_eq!(
            table.get(at).map(|s| (s.path().clone(), s.origin())),
            Some((key(1), RequestId(1)))
        );
        let first = table.detach(&key(1), RequestId(1)).expect("attached");
        assert!(first.emptied.is_none());
        assert_eq!(
            table.get(at).map(Slot::origin),
            Some(RequestId(2)),
            "the oldest holder left is the origin"
        );
        assert!(table.detach(&key(1), RequestId(3)).is_some_and(|d| d.emptied.is_none()));
        let last = table.detach(&key(1), RequestId(2)).expect("attached");
        assert_eq!(last.holder, Held(RequestId(2), key(1)));
        assert!(last
            .emptied
            .is_some_and(|s| s.holders.is_empty() && s.generation == Generation(1)));
        assert_eq!((table.len(), table.lookup(&key(1))), (0, None));
    }

    fn numbered(n: usize) -> AssetPath {
        AssetPath::new(&format!("n{n}")).unwrap()
    }

    fn start(table: &mut SlotTable<Held>, n: usize) -> usize {
        let held = Held(RequestId(n as u64), numbered(n));
        table.start_load(held, Generation(n as u64), Priority::Normal, 0, None)
    }

    #[test]
    fn the_index_finds_every_slot_across_its_growth() {
        let mut table: SlotTable<Held> = SlotTable::default();
        let slots: Vec<usize> = (0..5_000).map(|n| start(&mut table, n)).collect();
        for n in (0..5_000).step_by(2) {
            assert!(table.detach(&numbered(n), RequestId(n as u64)).is_some());
        }
        let more: Vec<usize> = (5_000..9_000).map(|n| start(&mut table, n)).collect();
        let found = |n: usize| table.lookup(&numbered(n));
        assert!((1..5_000).step_by(2).all(|n| found(n) == Some(slots[n])));
        assert!((0..5_000).step_by(2).all(|n| found(n).is_none()));
        assert!((5_000..9_000).all(|n| found(n) == Some(more[n - 5_000])));
        assert_eq!(table.by_path.len(), table.len());
    }

    #[test]
    fn churn_at_a_steady_size_does_not_grow_the_index() {
        let mut table: SlotTable<Held> = SlotTable::default();
        for n in 0..100 {
            start(&mut table, n);
        }
        let room = table.by_path.capacity();
        // Each removal leaves a deleted entry behind, until a rebuild clears them.
        for n in 100..100_000 {
            start(&mut table, n);
            assert!(table.detach(&numbered(n - 100), RequestId((n - 100) as u64)).is_some());
        }
        assert_eq!(table.len(), 100);
        assert!(table.index_room <= 2 * room, "{} slots of room for 100", table.index_room);
        assert!((99_900..100_000).all(|n| table.lookup(&numbered(n)).is_some()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn late_replies_never_match_and_indexes_stay_consistent(
            ops in proptest::collection::vec(op(), 0..200)
        ) {
            let mut table: SlotTable<Held> = SlotTable::default();
            let mut issued: Vec<(usize, Generation, AssetPath)> = Vec::new();
            let mut live_requests: Vec<(RequestId, u8)> = Vec::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Request(k) => {
                        next += 1;
                        let request = RequestId(next);
                        let held = Held(request, key(k));
                        match table.lookup(&key(k)) {
                            Some(slot) => table.attach(slot, held),
                            None => {
                                let generation = Generation(next);
                                let slot =
                                    table.start_load(held, generation, Priority::Normal, 0, None);
                                issued.push((slot, generation, key(k)));
                            }
                        }
                        live_requests.push((request, k));
                    }
                    Op::Release(n) if !live_requests.is_empty() => {
                        let (request, k) = live_requests.remove(n % live_requests.len());
                        let detached =
                            table.detach(&key(k), request).expect("live request is attached");
                        prop_assert_eq!(detached.holder.0, request);
                        let left = table.get(detached.slot).map(|s| s.holders.len());
                        prop_assert_eq!(detached.emptied.is_some(), left.is_none());
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
                    let holders = &table.get(slot).unwrap().holders;
                    prop_assert!(holders.iter().any(|h| *h == Held(r, key(k))));
                }
                prop_assert!(table.iter().all(|s| !s.holders.is_empty()));
                prop_assert!(table.len() <= 6);
            }
        }
    }
}
