//! The scheduler's queue of pending loads: 12-byte tickets naming a cache slot, in priority
//! order, FIFO inside a level; the load itself stays in its cache's slot until dispatch.
//!
//! A pending load used to be queued as a whole job (its key, route, origin and declared size,
//! copied from the slot) in a keyed slab with a generation index: about 164 bytes per pending
//! request (`streamctl bench scale`). Here it is a 12-byte [`Ticket`] in its level's FIFO plus
//! its slot's 16-byte entry in a per-type table.
//!
//! # Invariants
//!
//! - A load is named by a [`LoadRef`]: its type's index, its cache slot index and its
//!   generation. Generations never repeat, so a ticket whose load ended or moved can never be
//!   mistaken for a live one.
//! - `queued[ty][slot]` describes the slot's one queued load (generation, level, shares) and
//!   the `seq` of its live ticket, or nothing. Every push and move takes a fresh `seq`, so a
//!   moved (reprioritised), removed or superseded load leaves its old ticket stale for good,
//!   skipped when it reaches the front. Sequence numbers are 32 bits: before the counter
//!   wraps, the stale tickets are dropped and the live ones numbered again from 1.
//! - `live` counts the live tickets. Stale tickets are compacted away once they outnumber the
//!   live ones plus a slack, checked whenever a ticket goes stale or a live one leaves, so
//!   after every operation the FIFOs hold at most twice the live loads plus the slack. The per-type
//!   tables grow to the highest slot index queued and stay: proportional to the most slots
//!   each cache has held at once (its slot indexes are reused), 16 bytes each.

use std::collections::VecDeque;

use streamrt_messages::{Generation, Priority};

/// Stale tickets tolerated beyond the live ticket count before a compaction (small under test,
/// so that the property test compacts).
const STALE_TICKETS_SLACK: usize = if cfg!(test) { 8 } else { 1024 };

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
    seq: u32,
}

/// One slot index's queued load: what its live ticket stands for.
#[derive(Clone, Copy, Default)]
struct Entry {
    /// [`NONE`] when the slot has no queued load.
    generation: u64,
    /// The live ticket's `seq`; every push and move takes a fresh one, so an older ticket of
    /// the same load never matches again (32 bits: see [`LoadQueue::renumber`]).
    seq: u32,
    level: u8,
    /// Read-credit shares the load takes (at most a credit's 16).
    shares: u8,
}

/// What a slot has queued, measured against a load of that slot ([`LoadQueue::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Nothing: a push of the load grows the queue.
    Absent,
    /// An older load of the slot, which a push of the load replaces.
    Older,
    /// The load itself or a newer one: a push of the load is refused.
    Covered,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct LoadQueue {
    levels: [VecDeque<Ticket>; Priority::LEVELS],
    /// Indexed by type, then by slot index.
    queued: Vec<Vec<Entry>>,
    next_seq: u32,
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
        if self.next_seq == u32::MAX {
            self.renumber();
        }
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

    /// What `load`'s slot has queued, measured against `load`: one look at its entry.
    pub(crate) fn standing(&self, load: LoadRef) -> Standing {
        let entry = self.queued.get(usize::from(load.ty)).and_then(|s| s.get(load.slot as usize));
        match entry.map(|e| e.generation) {
            None | Some(NONE) => Standing::Absent,
            Some(g) if g < load.generation.0 => Standing::Older,
            Some(_) => Standing::Covered,
        }
    }

    /// Whether `load` or a newer load of its slot is queued (a push of `load` is refused).
    #[cfg(test)]
    pub(crate) fn covers(&self, load: LoadRef) -> bool {
        self.standing(load) == Standing::Covered
    }

    /// Whether pushing `load` would replace an older queued load of its slot (the queue would
    /// not grow).
    #[cfg(test)]
    pub(crate) fn replaces(&self, load: LoadRef) -> bool {
        self.standing(load) == Standing::Older
    }

    /// Queues `load` at the back of `priority`'s level, taking `shares` when dispatched; a
    /// queued older load of the same slot is replaced. Refused (`false`) when that load or a
    /// newer one of its slot is queued: generations only grow, so a late push of an older
    /// load never displaces its slot's current one.
    #[cfg(test)]
    pub(crate) fn push(&mut self, load: LoadRef, priority: Priority, shares: usize) -> bool {
        self.push_as(load, priority, shares, self.standing(load))
    }

    /// [`LoadQueue::push`] with the load's standing, which the caller just looked up
    /// ([`LoadQueue::standing`]) and the queue has not changed since.
    pub(crate) fn push_as(
        &mut self,
        load: LoadRef,
        priority: Priority,
        shares: usize,
        standing: Standing,
    ) -> bool {
        debug_assert_eq!(standing, self.standing(load), "a stale standing");
        if standing == Standing::Covered {
            return false;
        }
        let shares = u8::try_from(shares).expect("a load takes at most a credit's shares");
        self.place(load, level_u8(priority), shares);
        if standing == Standing::Older {
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
    #[cfg(test)]
    pub(crate) fn pop(&mut self) -> Option<(LoadRef, usize, Priority)> {
        self.pop_if(|_, _| true)
    }

    /// [`LoadQueue::pop`], if `fits` accepts the load's shares and priority; else leaves it in
    /// place. One look at the fronts for both, where a peek and a pop looked twice.
    pub(crate) fn pop_if(
        &mut self,
        fits: impl FnOnce(usize, Priority) -> bool,
    ) -> Option<(LoadRef, usize, Priority)> {
        let (level, entry) = self.front()?;
        if !fits(usize::from(entry.shares), Priority::ALL[level]) {
            return None;
        }
        let ticket = self.levels[level].pop_front().expect("a front level has a front ticket");
        self.queued[usize::from(ticket.ty)][ticket.slot as usize].generation = NONE;
        self.live -= 1;
        self.compact_if_stale_outnumber_live();
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
        self.compact_if_stale_outnumber_live();
    }

    /// Compacts once the stale tickets outnumber the live ones plus the slack. Each compaction
    /// costs the tickets held, at most twice the stale ones, and leaves none stale, so the next
    /// needs at least the slack's worth more: constant time per ticket gone stale, amortised.
    fn compact_if_stale_outnumber_live(&mut self) {
        if self.stale > self.live + STALE_TICKETS_SLACK {
            self.compact();
        }
    }

    /// Drops the stale tickets and numbers the live ones again from 1, in queue order, so that
    /// sequence numbers can restart without an old number ever matching again: with no stale
    /// ticket left and every live one renumbered below the counter, no ticket holds a number
    /// the counter will hand out. Runs once per 2^32 pushes and moves, in time linear in the
    /// live loads.
    fn renumber(&mut self) {
        self.compact();
        let mut seq = 0;
        for tickets in &mut self.levels {
            for ticket in tickets.iter_mut() {
                seq += 1;
                ticket.seq = seq;
                self.queued[usize::from(ticket.ty)][ticket.slot as usize].seq = seq;
            }
        }
        self.next_seq = seq;
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

    /// An empty queue whose sequence counter starts at `next_seq` (to test its wrap).
    #[cfg(test)]
    fn counting_from(next_seq: u32) -> Self {
        Self { next_seq, ..Self::default() }
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
    fn a_load_that_does_not_fit_stays_at_the_front() {
        let mut q = LoadQueue::default();
        assert!(q.push(load(1, 1), Priority::Normal, 5));
        assert!(q.push(load(2, 2), Priority::Normal, 1));
        assert_eq!(q.pop_if(|shares, _| shares <= 4), None, "the front takes 5, not the next");
        assert_eq!(q.len(), 2);
        let (front, shares, _) = q.pop_if(|shares, _| shares <= 5).expect("fits now");
        assert_eq!((front.slot, shares), (1, 5));
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

    #[test]
    fn a_late_push_of_an_older_load_never_displaces_the_slots_newer_one() {
        let mut q = LoadQueue::default();
        assert!(q.push(load(0, 3), Priority::Low, 1));
        assert!(!q.replaces(load(0, 2)));
        assert!(!q.push(load(0, 2), Priority::Critical, 1), "an older retry's late push");
        assert!(q.replaces(load(0, 4)));
        assert_eq!(q.pop().map(|(l, _, _)| l.generation), Some(Generation(3)));
    }

    #[test]
    fn a_stale_ticket_from_before_the_counter_wrapped_never_matches_again() {
        let mut q = LoadQueue::counting_from(u32::MAX - 2);
        assert!(q.push(load(0, 1), Priority::Low, 1));
        assert!(q.push(load(2, 1), Priority::Low, 1));
        // Slot 0 moves to High as the counter wraps: its Low ticket is left stale.
        assert!(q.reprioritize(load(0, 1), Priority::High));
        // 2^32 moves later (the counter is set there) it moves back to Low and takes the
        // number its stale ticket had before the wrap, had nothing been renumbered.
        q.next_seq = u32::MAX - 2;
        assert!(q.reprioritize(load(0, 1), Priority::Low));
        assert_eq!(pop_slots(&mut q), vec![2, 0], "slot 0 is at the back of Low, once");
        assert_eq!(q.pop().map(|(l, _, _)| l), None);
    }

    #[test]
    fn moves_past_the_slack_compact_the_stale_tickets_away_and_keep_the_order() {
        let mut q = LoadQueue::default();
        for slot in 0..4 {
            assert!(q.push(load(slot, 1), Priority::Normal, 1));
        }
        for round in 0..2 * STALE_TICKETS_SLACK {
            let level = if round % 2 == 0 { Priority::Low } else { Priority::Normal };
            assert!(q.reprioritize(load(1, 1), level));
        }
        assert!(q.tickets() <= 2 * q.len() + STALE_TICKETS_SLACK, "{} tickets", q.tickets());
        assert_eq!(pop_slots(&mut q), vec![0, 2, 3, 1]);
    }

    #[test]
    fn pops_that_leave_the_stale_tickets_outnumbering_the_live_ones_compact_them_away() {
        let mut q = LoadQueue::default();
        let busy = 10;
        for slot in 0..busy {
            assert!(q.push(load(slot, 1), Priority::High, 1));
        }
        // A Normal load moved back and forth leaves stale tickets behind the High ones, just
        // short of a compaction.
        let moved = load(busy, 1);
        assert!(q.push(moved, Priority::Normal, 1));
        let moves = q.len() + STALE_TICKETS_SLACK;
        for round in 0..moves {
            let level = if round % 2 == 0 { Priority::Low } else { Priority::Normal };
            assert!(q.reprioritize(moved, level));
        }
        assert_eq!(q.tickets(), q.len() + moves, "no compaction yet");
        // Popping the High loads reaches none of the stale tickets.
        for _ in 0..busy {
            assert!(q.pop().is_some());
            assert!(q.tickets() <= 2 * q.len() + STALE_TICKETS_SLACK, "{} tickets", q.tickets());
        }
        assert_eq!(pop_slots(&mut q), vec![busy]);
    }

    /// A load of slot `slot` in type `ty`; `Push` takes its slot's current generation or,
    /// with `older`, the one before it (a late push).
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Push {
            ty: u8,
            slot: u8,
            level: u8,
            older: bool,
        },
        /// The slot's next load (a retry, or the slot reused) gets the next generation.
        Renew {
            ty: u8,
            slot: u8,
        },
        Reprioritize {
            ty: u8,
            slot: u8,
            level: u8,
        },
        Remove {
            ty: u8,
            slot: u8,
        },
        Pop,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        let at = (0u8..2, 0u8..16);
        prop_oneof![
            4 => (at.clone(), 0u8..5, any::<bool>())
                .prop_map(|((ty, slot), level, older)| Op::Push { ty, slot, level, older }),
            2 => at.clone().prop_map(|(ty, slot)| Op::Renew { ty, slot }),
            2 => (at.clone(), 0u8..5)
                .prop_map(|((ty, slot), level)| Op::Reprioritize { ty, slot, level }),
            2 => at.prop_map(|(ty, slot)| Op::Remove { ty, slot }),
            3 => Just(Op::Pop),
            1 => Just(Op::Clear),
        ]
    }

    /// The model: queued loads as (load, level, shares, order stamp); pop takes the least
    /// (level, stamp).
    #[derive(Default)]
    struct Model {
        items: Vec<(LoadRef, usize, usize, u64)>,
        clock: u64,
        /// Each (type, slot)'s current generation, from 2 so that an older one exists.
        generations: std::collections::HashMap<(u8, u8), u64>,
    }

    impl Model {
        fn stamp(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }
        fn generation(&self, ty: u8, slot: u8) -> u64 {
            self.generations.get(&(ty, slot)).copied().unwrap_or(2)
        }
        fn load(&self, ty: u8, slot: u8, older: bool) -> LoadRef {
            let generation = Generation(self.generation(ty, slot) - u64::from(older));
            LoadRef { ty: u16::from(ty), slot: u32::from(slot), generation }
        }
        /// The queued item of `load`'s slot, of any generation.
        fn find(&self, load: LoadRef) -> Option<usize> {
            self.items.iter().position(|i| i.0.ty == load.ty && i.0.slot == load.slot)
        }
        fn push(&mut self, load: LoadRef, level: usize, shares: usize) -> bool {
            if let Some(i) = self.find(load) {
                if self.items[i].0.generation >= load.generation {
                    return false;
                }
                self.items.remove(i);
            }
            let stamp = self.stamp();
            self.items.push((load, level, shares, stamp));
            true
        }
        /// The queued item of exactly `load`.
        fn exact(&self, load: LoadRef) -> Option<usize> {
            self.find(load).filter(|&i| self.items[i].0 == load)
        }
    }

    fn apply(q: &mut LoadQueue, m: &mut Model, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Push { ty, slot, level, older } => {
                let l = m.load(ty, slot, older);
                let shares = usize::from(slot % 16) + 1;
                let replaces = m.find(l).is_some_and(|i| m.items[i].0.generation < l.generation);
                prop_assert_eq!(q.replaces(l), replaces);
                let covers = m.find(l).is_some_and(|i| m.items[i].0.generation >= l.generation);
                prop_assert_eq!(q.covers(l), covers);
                let pushed = q.push(l, Priority::ALL[usize::from(level)], shares);
                prop_assert_eq!(pushed, m.push(l, usize::from(level), shares));
            }
            Op::Renew { ty, slot } => {
                let next = m.generation(ty, slot) + 1;
                m.generations.insert((ty, slot), next);
            }
            Op::Reprioritize { ty, slot, level } => {
                let l = m.load(ty, slot, false);
                let found = q.reprioritize(l, Priority::ALL[usize::from(level)]);
                prop_assert_eq!(found, m.exact(l).is_some());
                if let Some(i) = m.exact(l) {
                    if m.items[i].1 != usize::from(level) {
                        let stamp = m.stamp();
                        m.items[i].1 = usize::from(level);
                        m.items[i].3 = stamp;
                    }
                }
            }
            Op::Remove { ty, slot } => {
                let l = m.load(ty, slot, false);
                prop_assert_eq!(q.remove(l), m.exact(l).is_some());
                if let Some(i) = m.exact(l) {
                    m.items.remove(i);
                }
            }
            Op::Pop => {
                let expected = m.items.iter().enumerate().min_by_key(|(_, i)| (i.1, i.3));
                let expected = expected.map(|(at, i)| (at, (i.0, i.2, i.1)));
                prop_assert_eq!(q.peek(), expected.map(|(_, e)| (e.1, Priority::ALL[e.2])));
                let got = q.pop().map(|(l, shares, p)| (l, shares, p.index()));
                prop_assert_eq!(got, expected.map(|(_, e)| e));
                if let Some((at, _)) = expected {
                    m.items.remove(at);
                }
            }
            Op::Clear => {
                prop_assert_eq!(q.clear(), m.items.len());
                m.items.clear();
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn behaves_like_a_sorted_list(
            ops in proptest::collection::vec(op(), 0..400),
            near_wrap in any::<bool>(),
        ) {
            // Half the cases start the sequence counter just short of its wrap.
            let mut q = LoadQueue::counting_from(if near_wrap { u32::MAX - 100 } else { 0 });
            let mut m = Model::default();
            for op in ops {
                apply(&mut q, &mut m, op)?;
                prop_assert_eq!(q.len(), m.items.len());
                // Every ticket is live or counted stale, and the stale ones never outnumber
                // the live ones plus the slack.
                prop_assert_eq!(q.tickets(), q.len() + q.stale);
                prop_assert!(q.tickets() <= 2 * q.len() + STALE_TICKETS_SLACK);
            }
        }
    }
}
