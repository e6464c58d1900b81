//! The scheduler's queue of pending loads: 16-byte tickets naming a cache slot, in priority
//! order, FIFO inside a level; the load itself stays in its cache's slot until dispatch.
//!
//! A pending load used to be queued as a whole job (its key, route, origin and declared size,
//! copied from the slot) in a keyed slab with a generation index: about 164 bytes per pending
//! request (`streamctl bench scale`). Here it is a 16-byte [`Ticket`] in its level's FIFO plus
//! its slot's 24-byte entry in a per-type table.
//!
//! # Invariants
//!
//! - A load is named by a [`LoadRef`]: its type's index, its cache slot index and its
//!   generation. Generations never repeat, so a ticket whose load ended or moved can never be
//!   mistaken for a live one.
//! - `queued[ty][slot]` describes the slot's one queued load (generation, level, shares) and
//!   the `seq` of its live ticket, or nothing. Every push and move takes a fresh `seq`, so a
//!   moved (reprioritised), removed or superseded load leaves its old ticket stale for good,
//!   skipped when it reaches the front.
//! - `live` counts the live tickets. Stale tickets are compacted away once they outnumber the
//!   live ones (plus a slack), so memory stays proportional to the live loads.

use std::collections::VecDeque;

use streamrt_messages::{Generation, Priority};

/// Stale tickets tolerated beyond the live ticket count before a compaction.
const STALE_SLACK: usize = 1024;

/// The queued generation of a slot with no queued load (generations start at 1).
const NONE: u64 = 0;

/// One load of one cache slot, as the scheduler names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadRef {
    /// The asset type's index in the runtime's registry (and its route's in the scheduler).
    pub(crate) ty: u16,
    /// The cache's slot index; valid only together with `generation`.
    pub(crate) slot: u32,
    pub(crate) generation: Generation,
}

/// A place in a level's FIFO: live only while its slot's entry has the same `seq`.
#[derive(Clone, Copy)]
struct Ticket {
    slot: u32,
    ty: u16,
    seq: u64,
}

/// One slot index's queued load: what its live ticket stands for.
#[derive(Clone, Copy, Default)]
struct Entry {
    /// [`NONE`] when the slot has no queued load.
    generation: u64,
    /// The live ticket's `seq`; every push and move takes a fresh one, so an older ticket of
    /// the same load never matches again.
    seq: u64,
    level: u8,
    /// Read-credit shares the load takes (at most a credit's 16).
    shares: u8,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct LoadQueue {
    levels: [VecDeque<Ticket>; Priority::LEVELS],
    /// Indexed by type, then by slot index.
    queued: Vec<Vec<Entry>>,
    next_seq: u64,
    live: usize,
    stale: usize,
}

impl LoadQueue {
    /// Loads queued.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// `load`'s slot entry, if that load is queued.
    fn entry(&self, load: LoadRef) -> Option<Entry> {
        let entry = *self.queued.get(usize::from(load.ty))?.get(load.slot as usize)?;
        (entry.generation == load.generation.0).then_some(entry)
    }

    /// Gives `load`'s slot a fresh ticket at the back of `level` (a push or a move).
    fn place(&mut self, load: LoadRef, level: u8, shares: u8) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let (ty, slot) = (usize::from(load.ty), load.slot as usize);
        if ty >= self.queued.len() {
            self.queued.resize_with(ty + 1, Vec::new);
        }
        let slots = &mut self.queued[ty];
        if slot >= slots.len() {
            slots.resize(slot + 1, Entry::default());
        }
        slots[slot] = Entry { generation: load.generation.0, seq, level, shares };
        self.levels[usize::from(level)].push_back(Ticket { slot: load.slot, ty: load.ty, seq });
    }

    /// Queues `load` at the back of `priority`'s level, taking `shares` when dispatched. A load
    /// already queued is refused (`false`); a queued older load of the same slot is replaced.
    pub(crate) fn push(&mut self, load: LoadRef, priority: Priority, shares: usize) -> bool {
        if self.entry(load).is_some() {
            return false;
        }
        let shares = u8::try_from(shares).expect("a load takes at most a credit's shares");
        let slots = self.queued.get(usize::from(load.ty));
        let replaced =
            slots.and_then(|s| s.get(load.slot as usize)).is_some_and(|e| e.generation != NONE);
        self.place(load, level_u8(priority), shares);
        if replaced {
            self.note_stale();
        } else {
            self.live += 1;
        }
        true
    }

    /// Moves `load` to the back of `priority`'s level; an unchanged priority keeps its place.
    /// Returns whether the load was queued.
    pub(crate) fn reprioritize(&mut self, load: LoadRef, priority: Priority) -> bool {
        let Some(entry) = self.entry(load) else { return false };
        let level = level_u8(priority);
        if entry.level != level {
            self.place(load, level, entry.shares);
            self.note_stale();
        }
        true
    }

    /// Removes `load`; returns whether it was queued.
    pub(crate) fn remove(&mut self, load: LoadRef) -> bool {
        if self.entry(load).is_none() {
            return false;
        }
        self.queued[usize::from(load.ty)][load.slot as usize].generation = NONE;
        self.live -= 1;
        self.note_stale();
        true
    }

    /// The most urgent, oldest load's shares and priority, left in place.
    pub(crate) fn peek(&mut self) -> Option<(usize, Priority)> {
        let (level, entry) = self.front()?;
        Some((usize::from(entry.shares), Priority::ALL[level]))
    }

    /// Removes and returns the most urgent, oldest load, its shares and its priority.
    pub(crate) fn pop(&mut self) -> Option<(LoadRef, usize, Priority)> {
        let (level, entry) = self.front()?;
        let ticket = self.levels[level].pop_front().expect("a front level has a front ticket");
        self.queued[usize::from(ticket.ty)][ticket.slot as usize].generation = NONE;
        self.live -= 1;
        let generation = Generation(entry.generation);
        let load = LoadRef { ty: ticket.ty, slot: ticket.slot, generation };
        Some((load, usize::from(entry.shares), Priority::ALL[level]))
    }

    /// Forgets every queued load; returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let live = self.live;
        *self = Self::default();
        live
    }

    /// Discards stale tickets at the fronts; returns the first live one's level and entry.
    fn front(&mut self) -> Option<(usize, Entry)> {
        for (level, tickets) in self.levels.iter_mut().enumerate() {
            while let Some(&ticket) = tickets.front() {
                if let Some(entry) = live_entry(&self.queued, ticket) {
                    return Some((level, entry));
                }
                tickets.pop_front();
                self.stale -= 1;
            }
        }
        None
    }

    fn note_stale(&mut self) {
        self.stale += 1;
        if self.stale > self.live + STALE_SLACK {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let queued = &self.queued;
        for tickets in &mut self.levels {
            tickets.retain(|&t| live_entry(queued, t).is_some());
        }
        self.stale = 0;
    }

    #[cfg(test)]
    fn tickets(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }
}

fn level_u8(priority: Priority) -> u8 {
    u8::try_from(priority.index()).expect("five priority levels")
}

/// The entry `ticket` stands for, if the ticket is live.
fn live_entry(queued: &[Vec<Entry>], ticket: Ticket) -> Option<Entry> {
    let entry = *queued.get(usize::from(ticket.ty))?.get(ticket.slot as usize)?;
    (entry.generation != NONE && entry.seq == ticket.seq).then_some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(slot: u32, generation: u64) -> LoadRef {
        LoadRef { ty: (slot % 2) as u16, slot, generation: Generation(generation) }
    }

    fn pop_slots(q: &mut LoadQueue) -> Vec<u32> {
        std::iter::from_fn(|| q.pop().map(|(l, _, _)| l.slot)).collect()
    }

    #[test]
    fn fifo_within_a_level_and_urgent_levels_first() {
        let mut q = LoadQueue::default();
        assert!(q.push(load(1, 1), Priority::Low, 1));
        assert!(q.push(load(2, 2), Priority::Critical, 2));
        assert!(q.push(load(3, 3), Priority::Low, 3));
        assert!(q.push(load(4, 4), Priority::Critical, 4));
        assert_eq!(q.peek(), Some((2, Priority::Critical)));
        assert_eq!(pop_slots(&mut q), vec![2, 4, 1, 3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn reprioritise_moves_to_the_back_of_the_new_level_and_keeps_the_shares() {
        let mut q = LoadQueue::default();
        for slot in 0..4 {
            assert!(q.push(load(slot, u64::from(slot) + 1), Priority::Normal, 3));
        }
        assert!(q.push(load(9, 10), Priority::High, 1));
        assert!(q.reprioritize(load(3, 4), Priority::High));
        assert!(!q.reprioritize(load(3, 99), Priority::High), "another generation");
        assert_eq!(q.len(), 5);
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(l, s, _)| (l.slot, s))).collect();
        assert_eq!(order, vec![(9, 1), (3, 3), (0, 3), (1, 3), (2, 3)]);
    }

    #[test]
    fn a_newer_generation_of_a_slot_replaces_the_queued_one() {
        let mut q = LoadQueue::default();
        assert!(q.push(load(5, 1), Priority::Normal, 1));
        assert!(!q.push(load(5, 1), Priority::High, 1), "already queued");
        assert!(q.push(load(5, 2), Priority::Low, 1));
        assert_eq!(q.len(), 1);
        assert!(!q.remove(load(5, 1)), "the older load is gone");
        assert_eq!(
            q.pop().map(|(l, _, p)| (l.generation, p)),
            Some((Generation(2), Priority::Low))
        );
        assert_eq!(q.pop().map(|(l, _, _)| l), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8, u8),
        Renew(u8, u8),
        Reprioritize(u8, u8),
        Remove(u8),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..32, 0u8..5).prop_map(|(s, p)| Op::Push(s, p)),
            (0u8..32, 0u8..5).prop_map(|(s, p)| Op::Renew(s, p)),
            (0u8..32, 0u8..5).prop_map(|(s, p)| Op::Reprioritize(s, p)),
            (0u8..32).prop_map(Op::Remove),
            Just(Op::Pop),
        ]
    }

    /// The model: (slot, generation, level, order stamp); pop takes the least (level, stamp).
    #[derive(Default)]
    struct Model {
        items: Vec<(u32, u64, usize, u64)>,
        clock: u64,
        /// Each slot's current generation, bumped by `Renew`.
        generations: [u64; 32],
    }

    impl Model {
        fn stamp(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }
        fn find(&self, slot: u32) -> Option<usize> {
            self.items.iter().position(|i| i.0 == slot)
        }
        fn current(&self, slot: u8) -> LoadRef {
            load(u32::from(slot), self.generations[usize::from(slot)] + 1)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn behaves_like_a_sorted_list(ops in proptest::collection::vec(op(), 0..400)) {
            let mut q = LoadQueue::default();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Push(s, p) => {
                        let l = m.current(s);
                        let pushed = q.push(l, Priority::ALL[p as usize], 1);
                        prop_assert_eq!(pushed, m.find(l.slot).is_none());
                        if pushed {
                            let stamp = m.stamp();
                            m.items.push((l.slot, l.generation.0, p as usize, stamp));
                        }
                    }
                    Op::Renew(s, p) => {
                        // The slot's next load (a retry or a reused slot) replaces its queued one.
                        m.generations[usize::from(s)] += 1;
                        let l = m.current(s);
                        prop_assert!(q.push(l, Priority::ALL[p as usize], 1));
                        if let Some(i) = m.find(l.slot) {
                            m.items.remove(i);
                        }
                        let stamp = m.stamp();
                        m.items.push((l.slot, l.generation.0, p as usize, stamp));
                    }
                    Op::Reprioritize(s, p) => {
                        let l = m.current(s);
                        let found = q.reprioritize(l, Priority::ALL[p as usize]);
                        prop_assert_eq!(found, m.find(l.slot).is_some());
                        if let Some(i) = m.find(l.slot) {
                            if m.items[i].2 != p as usize {
                                let stamp = m.stamp();
                                m.items[i].2 = p as usize;
                                m.items[i].3 = stamp;
                            }
                        }
                    }
                    Op::Remove(s) => {
                        let l = m.current(s);
                        prop_assert_eq!(q.remove(l), m.find(l.slot).is_some());
                        if let Some(i) = m.find(l.slot) {
                            m.items.remove(i);
                        }
                    }
                    Op::Pop => {
                        let expected = m
                            .items
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, i)| (i.2, i.3))
                            .map(|(at, i)| (at, i.0, i.1, i.2));
                        let got = q.pop().map(|(l, _, p)| (l.slot, l.generation.0, p.index()));
                        prop_assert_eq!(got, expected.map(|e| (e.1, e.2, e.3)));
                        if let Some((at, ..)) = expected {
                            m.items.remove(at);
                        }
                    }
                }
                prop_assert_eq!(q.len(), m.items.len());
                prop_assert!(q.tickets() <= q.len() + STALE_SLACK + 1);
            }
        }
    }
}
