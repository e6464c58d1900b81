//! The jobs a deterministic runtime's stepper holds back, and which of them may have become
//! runnable: found without looking at every waiting job at each step.
//!
//! A load's job becomes runnable in two ways only: an outcome for its key is banked, or its load
//! is cancelled. Each is told ([`Waiting::banked`], [`Waiting::cancelled`]) and makes that key's
//! or that slot's jobs candidates again; a job is a candidate too when it comes in. A job that
//! is not a load's (`ReadOrder::Next`, `DecodeJob::NextLoad`, a frame task) can always run.
//!
//! # Invariants
//!
//! - Every waiting job that can run is a candidate, so the first candidate that can run, in the
//!   order the jobs came in, is the first waiting job that can: the order a scan of them all
//!   would find, which a replay's transcript depends on.
//! - A candidate found unable to run stops being one until its key or its slot is told of again.
//!   The work of a step is the candidates it looks at, not every job waiting: a hostile log
//!   whose records each moved a little no longer costs records × waiting jobs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use streamrt_messages::AssetKey;

use crate::work::{DecodeJob, JobGuard, ReadOrder};

/// A job the stepper holds: a load's, with its key and its slot, or one that can always run.
pub(crate) trait HeldJob {
    /// The load's key and slot; `None` for a job that can always run.
    fn load(&self) -> Option<(&AssetKey, usize)>;
}

fn key_and_slot(guard: &JobGuard) -> (&AssetKey, usize) {
    let job = guard.job();
    (&job.key, job.slot())
}

impl HeldJob for ReadOrder {
    fn load(&self) -> Option<(&AssetKey, usize)> {
        match self {
            Self::This(read) => Some(key_and_slot(&read.guard)),
            Self::Next => None,
        }
    }
}

impl HeldJob for DecodeJob {
    fn load(&self) -> Option<(&AssetKey, usize)> {
        match self {
            Self::Load(load) => Some(key_and_slot(&load.0)),
            Self::NextLoad | Self::Task(_) => None,
        }
    }
}

/// See the module docs.
pub(crate) struct Waiting<J> {
    /// The order the next job takes.
    next: u64,
    /// By the order they came in.
    jobs: BTreeMap<u64, J>,
    by_key: HashMap<AssetKey, BTreeSet<u64>>,
    by_slot: HashMap<usize, BTreeSet<u64>>,
    candidates: BTreeSet<u64>,
    /// Candidates looked at, for tests of the work a step does.
    looked_at: u64,
}

impl<J> Default for Waiting<J> {
    fn default() -> Self {
        Self {
            next: 0,
            jobs: BTreeMap::new(),
            by_key: HashMap::new(),
            by_slot: HashMap::new(),
            candidates: BTreeSet::new(),
            looked_at: 0,
        }
    }
}

impl<J: HeldJob> Waiting<J> {
    /// Holds `job`, a candidate until it is looked at.
    pub(crate) fn push(&mut self, job: J) {
        let at = self.next;
        self.next += 1;
        if let Some((key, slot)) = job.load() {
            self.by_key.entry(key.clone()).or_default().insert(at);
            self.by_slot.entry(slot).or_default().insert(at);
        }
        self.jobs.insert(at, job);
        self.candidates.insert(at);
    }

    /// An outcome for `key` was banked: its jobs are candidates again. Whether any waits.
    pub(crate) fn banked(&mut self, key: &AssetKey) -> bool {
        let Some(waiting) = self.by_key.get(key) else { return false };
        self.candidates.extend(waiting);
        true
    }

    /// A load of `slot` was cancelled (any type's: a slot of another type only makes a
    /// candidate that is looked at for nothing).
    pub(crate) fn cancelled(&mut self, slot: usize) {
        if let Some(waiting) = self.by_slot.get(&slot) {
            self.candidates.extend(waiting);
        }
    }

    /// Takes the first job, in the order they came in, that `runnable` lets run.
    pub(crate) fn take_first(&mut self, runnable: impl Fn(&J) -> bool) -> Option<J> {
        while let Some(at) = self.candidates.pop_first() {
            self.looked_at += 1;
            let Some(job) = self.jobs.get(&at) else { continue };
            if runnable(job) {
                return self.remove(at);
            }
        }
        None
    }

    fn remove(&mut self, at: u64) -> Option<J> {
        let job = self.jobs.remove(&at)?;
        if let Some((key, slot)) = job.load() {
            unindex(&mut self.by_key, key, at);
            unindex(&mut self.by_slot, &slot, at);
        }
        Some(job)
    }

    /// How many candidates were looked at so far.
    #[cfg(test)]
    pub(crate) fn looked_at(&self) -> u64 {
        self.looked_at
    }
}

fn unindex<K: std::hash::Hash + Eq>(index: &mut HashMap<K, BTreeSet<u64>>, k: &K, at: u64) {
    if let Some(set) = index.get_mut(k) {
        set.remove(&at);
        if set.is_empty() {
            index.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load's job (its key's number and slot), or one that can always run.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Held(Option<(AssetKey, usize)>);

    impl HeldJob for Held {
        fn load(&self) -> Option<(&AssetKey, usize)> {
            self.0.as_ref().map(|(key, slot)| (key, *slot))
        }
    }

    fn key(i: usize) -> AssetKey {
        AssetKey::parse(&format!("blob:k{i}")).unwrap()
    }

    fn load(i: usize) -> Held {
        Held(Some((key(i), i)))
    }

    #[test]
    fn the_first_job_that_can_run_is_taken_in_the_order_they_came() {
        let mut waiting = Waiting::default();
        (0..4).for_each(|i| waiting.push(load(i)));
        let ready = |ok: &'static [usize]| move |j: &Held| ok.iter().any(|&i| *j == load(i));
        assert_eq!(waiting.take_first(ready(&[2, 3])), Some(load(2)));
        // Looked at and found unable to run, 0 and 1 wait to be told of again.
        assert_eq!(waiting.take_first(ready(&[0, 1, 3])), Some(load(3)));
        assert_eq!(waiting.take_first(ready(&[0, 1])), None);
        assert!(waiting.banked(&key(1)));
        assert!(!waiting.banked(&key(9)), "no job waits for k9");
        assert_eq!(waiting.take_first(ready(&[0, 1])), Some(load(1)));
        waiting.cancelled(0);
        waiting.push(Held(None));
        assert_eq!(waiting.take_first(ready(&[0])), Some(load(0)));
        assert_eq!(waiting.take_first(|j| j.0.is_none()), Some(Held(None)));
    }

    #[test]
    fn a_step_looks_at_what_changed_not_at_every_job_waiting() {
        let mut waiting = Waiting::default();
        (0..10_000).for_each(|i| waiting.push(load(i)));
        assert_eq!(waiting.take_first(|_| false), None, "each looked at once as it came in");
        let before = waiting.looked_at();
        for i in [17, 9_000, 4_242] {
            assert!(waiting.banked(&key(i)));
            assert_eq!(waiting.take_first(|j| *j == load(i)), Some(load(i)));
            assert_eq!(waiting.take_first(|_| false), None);
        }
        assert_eq!(waiting.looked_at() - before, 3, "one candidate a change");
    }
}
