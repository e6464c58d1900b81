//! A priority queue with FIFO order inside each level, and O(1) reprioritise and removal by key.
//!
//! Used by the scheduler (pending loads) and the frame coordinator (decoded requests waiting to
//! be published).
//!
//! # Invariants
//!
//! - Entries live in a slab; a map finds an entry's slot from its key, so reprioritise and
//!   remove never scan the queue.
//! - Each level is a FIFO of `(slot, seq)` tickets. Every push or move gives the entry a fresh
//!   `seq`; a ticket is live only while its slot holds an entry with the same `seq`. Moving or
//!   removing an entry leaves its old ticket stale, skipped when it reaches the front.
//! - Stale tickets are compacted away once they outnumber live entries (plus a slack), so memory
//!   stays proportional to the live entries.

use std::collections::VecDeque;
use std::hash::Hash;

use slab::Slab;

use crate::id_hash::IdMap;
use streamrt_messages::Priority;

/// Stale tickets tolerated beyond the live entry count before a compaction.
const STALE_SLACK: usize = 1024;

struct Entry<K, V> {
    key: K,
    value: V,
    priority: Priority,
    seq: u64,
}

/// See the module docs.
pub(crate) struct PriorityQueue<K, V> {
    entries: Slab<Entry<K, V>>,
    /// Keys are runtime-allocated ids (see `id_hash`).
    index: IdMap<K, usize>,
    levels: [VecDeque<(usize, u64)>; Priority::LEVELS],
    next_seq: u64,
    stale: usize,
}

impl<K: Hash + Eq + Copy, V> Default for PriorityQueue<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Copy, V> PriorityQueue<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: Slab::new(),
            index: IdMap::default(),
            levels: Default::default(),
            next_seq: 0,
            stale: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn ticket(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Adds `value` under `key` at the back of `priority`'s level. A key already queued is
    /// refused and the value handed back.
    pub(crate) fn push(&mut self, key: K, value: V, priority: Priority) -> Result<(), V> {
        if self.index.contains_key(&key) {
            return Err(value);
        }
        let seq = self.ticket();
        let slot = self.entries.insert(Entry { key, value, priority, seq });
        self.index.insert(key, slot);
        self.levels[priority.index()].push_back((slot, seq));
        Ok(())
    }

    /// Moves `key` to the back of `priority`'s level. Unchanged priority keeps its place.
    /// Returns whether the key was queued.
    pub(crate) fn reprioritize(&mut self, key: &K, priority: Priority) -> bool {
        let Some(&slot) = self.index.get(key) else {
            return false;
        };
        if self.entries[slot].priority == priority {
            return true;
        }
        let seq = self.ticket();
        let entry = &mut self.entries[slot];
        entry.priority = priority;
        entry.seq = seq;
        self.levels[priority.index()].push_back((slot, seq));
        self.note_stale();
        true
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.index.remove(key)?;
        let entry = self.entries.remove(slot);
        self.note_stale();
        Some(entry.value)
    }

    /// The most urgent, oldest entry and its priority, left in place.
    pub(crate) fn peek(&mut self) -> Option<(&V, Priority)> {
        let slot = self.front_slot()?;
        let entry = &self.entries[slot];
        Some((&entry.value, entry.priority))
    }

    /// Removes and returns the most urgent, oldest entry.
    pub(crate) fn pop(&mut self) -> Option<(K, V, Priority)> {
        let slot = self.front_slot()?;
        let level = self.entries[slot].priority.index();
        self.levels[level].pop_front();
        let e = self.entries.remove(slot);
        self.index.remove(&e.key);
        Some((e.key, e.value, e.priority))
    }

    /// Removes every entry, most urgent first.
    pub(crate) fn drain(&mut self) -> Vec<(K, V)> {
        let mut out = Vec::with_capacity(self.len());
        while let Some((k, v, _)) = self.pop() {
            out.push((k, v));
        }
        out
    }

    /// Discards stale tickets at the fronts and returns the slot of the first live one.
    fn front_slot(&mut self) -> Option<usize> {
        for level in &mut self.levels {
            while let Some(&(slot, seq)) = level.front() {
                if self.entries.get(slot).is_some_and(|e| e.seq == seq) {
                    return Some(slot);
                }
                level.pop_front();
                self.stale -= 1;
            }
        }
        None
    }

    fn note_stale(&mut self) {
        self.stale += 1;
        if self.stale > self.entries.len() + STALE_SLACK {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let entries = &self.entries;
        for level in &mut self.levels {
            level.retain(|&(slot, seq)| entries.get(slot).is_some_and(|e| e.seq == seq));
        }
        self.stale = 0;
    }

    #[cfg(test)]
    fn tickets(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fifo_within_a_level_and_urgent_levels_first() {
        let mut q = PriorityQueue::new();
        q.push(1, 'a', Priority::Low).unwrap();
        q.push(2, 'b', Priority::Critical).unwrap();
        q.push(3, 'c', Priority::Low).unwrap();
        q.push(4, 'd', Priority::Critical).unwrap();
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(k, _, _)| k)).collect();
        assert_eq!(order, vec![2, 4, 1, 3]);
    }

    #[test]
    fn reprioritise_moves_to_the_back_of_the_new_level() {
        let mut q = PriorityQueue::new();
        for k in 0..4 {
            q.push(k, (), Priority::Normal).unwrap();
        }
        q.push(9, (), Priority::High).unwrap();
        assert!(q.reprioritize(&3, Priority::High));
        assert!(!q.reprioritize(&42, Priority::High));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(k, _, _)| k)).collect();
        assert_eq!(order, vec![9, 3, 0, 1, 2]);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut q = PriorityQueue::new();
        q.push(1, 'a', Priority::Low).unwrap();
        assert_eq!(q.push(1, 'b', Priority::High), Err('b'));
        assert_eq!(q.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8, u8),
        Reprioritize(u8, u8),
        Remove(u8),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..32, 0u8..5).prop_map(|(k, p)| Op::Push(k, p)),
            (0u8..32, 0u8..5).prop_map(|(k, p)| Op::Reprioritize(k, p)),
            (0u8..32).prop_map(Op::Remove),
            Just(Op::Pop),
        ]
    }

    /// The model: a list of (key, priority, order stamp); pop takes the least (priority, stamp).
    #[derive(Default)]
    struct Model {
        items: Vec<(u8, usize, u64)>,
        clock: u64,
    }

    impl Model {
        fn stamp(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }
        fn find(&self, k: u8) -> Option<usize> {
            self.items.iter().position(|i| i.0 == k)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn behaves_like_a_sorted_list(ops in proptest::collection::vec(op(), 0..400)) {
            let mut q = PriorityQueue::new();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Push(k, p) => {
                        let pushed = q.push(k, u32::from(k), Priority::ALL[p as usize]).is_ok();
                        prop_assert_eq!(pushed, m.find(k).is_none());
                        if pushed {
                            let s = m.stamp();
                            m.items.push((k, p as usize, s));
                        }
                    }
                    Op::Reprioritize(k, p) => {
                        let found = q.reprioritize(&k, Priority::ALL[p as usize]);
                        prop_assert_eq!(found, m.find(k).is_some());
                        if let Some(i) = m.find(k) {
                            if m.items[i].1 != p as usize {
                                let s = m.stamp();
                                m.items[i] = (k, p as usize, s);
                            }
                        }
                    }
                    Op::Remove(k) => {
                        let got = q.remove(&k);
                        let want = m.find(k).map(|i| m.items.remove(i));
                        prop_assert_eq!(got, want.map(|w| u32::from(w.0)));
                    }
                    Op::Pop => {
                        let got = q.pop().map(|(k, v, p)| (k, v, p.index()));
                        let best = m.items.iter().enumerate()
                            .min_by_key(|(_, i)| (i.1, i.2)).map(|(at, _)| at);
                        let want = best.map(|at| m.items.remove(at)).map(|i| (i.0, u32::from(i.0), i.1));
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(q.len(), m.items.len());
                prop_assert!(q.tickets() <= q.len() + STALE_SLACK + 1 + q.stale);
                prop_assert!(q.stale <= q.len() + STALE_SLACK);
            }
        }
    }

    #[test]
    fn stale_tickets_are_compacted() {
        let mut q = PriorityQueue::new();
        q.push(0u32, (), Priority::Normal).unwrap();
        for i in 0..10_000 {
            let p = if i % 2 == 0 { Priority::High } else { Priority::Low };
            q.reprioritize(&0, p);
        }
        assert!(q.tickets() <= 1 + STALE_SLACK + 1, "tickets: {}", q.tickets());
        assert_eq!(q.pop().map(|(k, _, _)| k), Some(0));
    }
}
