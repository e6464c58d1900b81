//! [`Staging`]: the queue where dispatched loads wait for an IO worker, and read ones for a
//! decode worker, most urgent first.
//!
//! # Ordering
//!
//! Most urgent first and, within a priority, in the order loads came (or were raised to it).
//! A load's level is its priority when it is pushed, read under the queue's lock from its
//! type's raise table, so a raise made before a push is seen by the push, and one made after
//! finds the load in the queue and moves it ([`Staging::raise`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use streamrt_messages::{Generation, Priority};

use super::{JobGuard, ReadJob};
use crate::lock::lock;

/// Loads waiting for a pool's worker, most urgent first and, within a priority, in the order
/// they came. Shared by the producer (which pushes a load, then sends the pool one order) and
/// the pool's workers (which pop one load per order), so orders and loads stay one to one.
///
/// # Backpressure
///
/// Bounded by the scheduler's credits: a read is pushed only while it holds its read credit,
/// and a decode (pushed once its read credit is back) while its load counts among the
/// scheduler's loads in flight (`reads_in_flight + decode_backlog_max` credits' worth), which
/// it does until it ends. So [`Staging::raise`]'s walk of a level is that long at most.
pub(crate) struct Staging<J> {
    levels: Mutex<[VecDeque<J>; Priority::LEVELS]>,
}

impl<J> Default for Staging<J> {
    fn default() -> Self {
        Self { levels: Mutex::new(std::array::from_fn(|_| VecDeque::new())) }
    }
}

/// A load a [`Staging`] queue holds.
pub(crate) trait StagedLoad {
    /// Its load's generation.
    fn generation(&self) -> Generation;
    /// Its priority now ([`super::Job::priority_now`]).
    fn priority_now(&self) -> Priority;
}

impl StagedLoad for ReadJob {
    fn generation(&self) -> Generation {
        self.guard.job().generation
    }

    fn priority_now(&self) -> Priority {
        self.guard.job().priority_now()
    }
}

impl StagedLoad for (JobGuard, Vec<u8>) {
    fn generation(&self) -> Generation {
        self.0.job().generation
    }

    fn priority_now(&self) -> Priority {
        self.0.job().priority_now()
    }
}

impl<J: StagedLoad> Staging<J> {
    pub(crate) fn push(&self, job: J) {
        self.push_all([job]);
    }

    /// Whether a load at `priority` or more urgent waits here.
    pub(crate) fn holds_at_least(&self, priority: Priority) -> bool {
        lock(&self.levels)[..=priority.index()].iter().any(|level| !level.is_empty())
    }

    /// Pushes every job under one lock, each at its priority now, read under the lock: a
    /// raise either reads its table after this (and is seen) or takes the lock before this
    /// (and the raise's move in the queue follows it). Returns the most urgent level pushed.
    pub(crate) fn push_all(&self, jobs: impl IntoIterator<Item = J>) -> Option<Priority> {
        let mut levels = lock(&self.levels);
        let mut most_urgent = None;
        for job in jobs {
            let priority = job.priority_now();
            levels[priority.index()].push_back(job);
            most_urgent = Some(most_urgent.map_or(priority, |m: Priority| m.min(priority)));
        }
        most_urgent
    }

    /// Moves the load `generation`, if it waits here less urgently, to the back of
    /// `priority`'s level: the last moved there, as a queued load raised is.
    ///
    /// # Ordering
    ///
    /// The caller raises the load in its type's [`RaiseTable`] first: a load pushed after
    /// this looked is pushed at `priority`, read under the lock this takes.
    pub(crate) fn raise(&self, generation: Generation, priority: Priority) {
        let mut levels = lock(&self.levels);
        for level in priority.index() + 1..Priority::LEVELS {
            let found = levels[level].iter().position(|j| j.generation() == generation);
            if let Some(job) = found.and_then(|at| levels[level].remove(at)) {
                levels[priority.index()].push_back(job);
                return;
            }
        }
    }
}

impl<J> Staging<J> {
    /// The most urgent load, and whether more wait after it (both under one lock).
    pub(crate) fn pop(&self) -> Option<(J, bool)> {
        let mut levels = lock(&self.levels);
        let job = levels.iter_mut().find_map(VecDeque::pop_front)?;
        Some((job, levels.iter().any(|level| !level.is_empty())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::RaiseTable;
    use std::sync::Arc;

    /// A load of slot 0 whose type's raise table is `raises`.
    struct Load {
        generation: Generation,
        dispatched: Priority,
        raises: Arc<RaiseTable>,
    }

    impl StagedLoad for Load {
        fn generation(&self) -> Generation {
            self.generation
        }

        fn priority_now(&self) -> Priority {
            self.raises.priority(0, self.generation, self.dispatched)
        }
    }

    fn staged(loads: &[(u64, Priority)], raises: &Arc<RaiseTable>) -> Staging<Load> {
        let staging = Staging::default();
        staging.push_all(loads.iter().map(|&(generation, dispatched)| Load {
            generation: Generation(generation),
            dispatched,
            raises: Arc::clone(raises),
        }));
        staging
    }

    fn order(staging: &Staging<Load>) -> Vec<u64> {
        std::iter::from_fn(|| staging.pop()).map(|(load, _)| load.generation.0).collect()
    }

    #[test]
    fn a_raised_load_goes_to_the_back_of_its_new_level() {
        let raises = Arc::default();
        let loads = [(1, Priority::High), (2, Priority::Normal), (3, Priority::Low)];
        let staging = staged(&loads, &raises);
        staging.raise(Generation(3), Priority::High);
        assert_eq!(order(&staging), [1, 3, 2]);
    }

    #[test]
    fn a_raise_of_a_load_not_waiting_or_already_as_urgent_moves_nothing() {
        let raises = Arc::default();
        let loads = [(1, Priority::High), (2, Priority::High), (3, Priority::Low)];
        let staging = staged(&loads, &raises);
        staging.raise(Generation(9), Priority::Critical);
        staging.raise(Generation(1), Priority::High);
        staging.raise(Generation(2), Priority::Low);
        assert_eq!(order(&staging), [1, 2, 3]);
    }

    #[test]
    fn a_load_pushed_after_its_raise_in_the_table_is_staged_at_its_new_level() {
        let raises = Arc::new(RaiseTable::default());
        raises.raise(0, Generation(3), Priority::Critical);
        let loads = [(1, Priority::High), (2, Priority::Normal), (3, Priority::Low)];
        assert_eq!(order(&staged(&loads, &raises)), [3, 1, 2]);
    }
}
