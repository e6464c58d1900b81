//! The set of decoded requests waiting for a frame boundary, and the per-frame publish policy.
//!
//! Pure logic (no threads, no clock of its own), so budgets and aging are tested directly.
//!
//! # Ordering
//!
//! At each boundary, first the requests that have waited `aging_frames_max` frames or more,
//! longest-waiting first; then the rest, most urgent first and, within a priority, oldest
//! request first (lowest request id). Ties are broken by request id, never by the order in
//! which worker threads happened to finish, so the same set of ready requests always publishes
//! in the same order.
//!
//! # Invariants
//!
//! - A frame publishes at most `publish_count_max` requests, and stays within
//!   `publish_bytes_max` and `publish_time_us_max` except that the first request of a frame is
//!   always allowed (so an asset larger than the byte budget still gets published).
//! - A request that can no longer be published (it was cancelled) is dropped without using
//!   budget.

use std::collections::BTreeMap;

use streamrt_messages::{Priority, RequestId};

use super::adaptive::AdaptivePolicy;
use crate::id_hash::IdMap;

/// How much a frame boundary may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePolicy {
    /// Requests published per frame at most; at least 1 (a runtime is not built with 0, which
    /// would never publish).
    pub publish_count_max: u32,
    /// Bytes published per frame at most (the first request of a frame is always allowed).
    pub publish_bytes_max: u64,
    /// Microseconds spent publishing per frame at most (the first request is always allowed).
    pub publish_time_us_max: u64,
    /// Frames a decoded request waits at most before it is published ahead of more urgent
    /// ones.
    pub aging_frames_max: u64,
    /// When set, `publish_count_max` is only the starting point: the count budget then follows
    /// frame time (see [`AdaptivePolicy`]).
    pub adaptive: Option<AdaptivePolicy>,
}

impl FramePolicy {
    /// At most `publish_count_max` per frame, no byte or time limit, aging after 60 frames.
    pub fn count(publish_count_max: u32) -> Self {
        Self {
            publish_count_max,
            publish_bytes_max: u64::MAX,
            publish_time_us_max: u64::MAX,
            aging_frames_max: 60,
            adaptive: None,
        }
    }

    /// Starts at `publish_count_max` and adapts the count budget to frame time.
    pub fn adaptive(publish_count_max: u32, adaptive: AdaptivePolicy) -> Self {
        Self { adaptive: Some(adaptive), ..Self::count(publish_count_max) }
    }
}

/// What the ready set needs of a waiting request.
pub(crate) trait Waiting {
    /// Its resident bytes.
    fn bytes(&self) -> u64;
    /// What one boundary's publishes share (its time, its counts).
    type Batch;
    /// Makes it visible as part of `batch`; false if it can no longer be (it was cancelled).
    fn publish(&self, batch: &Self::Batch) -> bool;
    /// Whether it can still be published.
    fn is_waiting(&self) -> bool;

    /// What it weighs against the byte budget: nothing once it cannot be published, so a
    /// large cancelled entry does not end a frame that it would only have been dropped from.
    fn weight(&self) -> u64 {
        if self.is_waiting() {
            self.bytes()
        } else {
            0
        }
    }
}

/// What one boundary published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) count: u32,
    pub(crate) bytes: u64,
}

/// See the module docs.
pub(crate) struct ReadySet<E> {
    /// Every waiting request in publish order without aging (most urgent first, then oldest
    /// request first), with the frame it became ready in.
    by_priority: BTreeMap<(Priority, RequestId), (E, u64)>,
    /// Aging order: the frame each request became ready in, then oldest request first; with
    /// its priority, to find it in `by_priority`.
    by_arrival: BTreeMap<(u64, RequestId), Priority>,
    /// Each waiting request's priority and frame, for reprioritising by id.
    index: IdMap<RequestId, (Priority, u64)>,
}

impl<E: Waiting> Default for ReadySet<E> {
    fn default() -> Self {
        Self { by_priority: BTreeMap::new(), by_arrival: BTreeMap::new(), index: IdMap::default() }
    }
}

impl<E: Waiting> ReadySet<E> {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Adds a request that became ready during `frame`; a request already waiting is kept as
    /// it was.
    pub(crate) fn push(&mut self, request: RequestId, priority: Priority, entry: E, frame: u64) {
        if self.index.contains_key(&request) {
            return;
        }
        self.index.insert(request, (priority, frame));
        self.by_priority.insert((priority, request), (entry, frame));
        self.by_arrival.insert((frame, request), priority);
    }

    pub(crate) fn reprioritize(&mut self, request: RequestId, priority: Priority) {
        let Some((current, frame)) = self.index.get_mut(&request) else { return };
        let (old, frame) = (std::mem::replace(current, priority), *frame);
        if let Some(waiting) = self.by_priority.remove(&(old, request)) {
            self.by_priority.insert((priority, request), waiting);
        }
        self.by_arrival.insert((frame, request), priority);
    }

    /// Takes out `request`, which can no longer be published (it was cancelled): what it holds
    /// goes now, not when a frame's budget reaches it.
    pub(crate) fn withdraw(&mut self, request: RequestId) -> Option<E> {
        let (priority, frame) = self.index.remove(&request)?;
        self.by_arrival.remove(&(frame, request));
        self.by_priority.remove(&(priority, request)).map(|(entry, _)| entry)
    }

    /// Removes every waiting request, oldest request first.
    pub(crate) fn drain(&mut self) -> Vec<E> {
        self.by_arrival.clear();
        self.index.clear();
        let mut drained: Vec<_> = std::mem::take(&mut self.by_priority).into_iter().collect();
        drained.sort_unstable_by_key(|((_, request), _)| *request);
        drained.into_iter().map(|(_, (e, _))| e).collect()
    }

    /// Publishes for the boundary starting `frame`, within `policy`, each request as part of
    /// `batch`; `elapsed_us` tells the time spent since the boundary began (asked only when
    /// the policy has a time budget).
    ///
    /// Each request published is pushed to `record` when one is given (a recording session).
    pub(crate) fn publish_frame(
        &mut self,
        frame: u64,
        policy: &FramePolicy,
        batch: &E::Batch,
        elapsed_us: &mut dyn FnMut() -> u64,
        mut record: Option<&mut Vec<RequestId>>,
    ) -> Published {
        let mut done = Published::default();
        let timed = policy.publish_time_us_max != u64::MAX;
        let mut fits = |done: &Published, bytes: u64| {
            done.count < policy.publish_count_max
                && (done.count == 0
                    || (done.bytes.saturating_add(bytes) <= policy.publish_bytes_max
                        && (!timed || elapsed_us() < policy.publish_time_us_max)))
        };
        while let Some((&(at, request), &priority)) = self.by_arrival.first_key_value() {
            let bytes = self.by_priority.get(&(priority, request)).map_or(0, |(e, _)| e.weight());
            if at.saturating_add(policy.aging_frames_max) > frame || !fits(&done, bytes) {
                break;
            }
            self.by_arrival.pop_first();
            self.index.remove(&request);
            if let Some((entry, _)) = self.by_priority.remove(&(priority, request)) {
                publish(request, &entry, batch, &mut done, record.as_deref_mut());
            }
        }
        while let Some((_, (entry, _))) = self.by_priority.first_key_value() {
            if !fits(&done, entry.weight()) {
                break;
            }
            let ((_, request), (entry, at)) = self.by_priority.pop_first().expect("peeked");
            self.by_arrival.remove(&(at, request));
            self.index.remove(&request);
            publish(request, &entry, batch, &mut done, record.as_deref_mut());
        }
        done
    }

    /// Publishes those of `requests` waiting here, in their order, as part of `batch`,
    /// whatever the budget, and leaves the others in `requests` (a replay publishing what its
    /// recording's frames published, some of which it has not staged yet).
    pub(crate) fn publish_these(
        &mut self,
        requests: &mut Vec<RequestId>,
        batch: &E::Batch,
    ) -> Published {
        let mut done = Published::default();
        requests.retain(|&request| match self.withdraw(request) {
            Some(entry) => {
                publish(request, &entry, batch, &mut done, None);
                false
            }
            None => true,
        });
        done
    }
}

fn publish<E: Waiting>(
    request: RequestId,
    entry: &E,
    batch: &E::Batch,
    done: &mut Published,
    record: Option<&mut Vec<RequestId>>,
) {
    let bytes = entry.bytes();
    if entry.publish(batch) {
        done.count += 1;
        done.bytes += bytes;
        if let Some(record) = record {
            record.push(request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A waiting request that records the order it was published in.
    struct Fake {
        id: u64,
        bytes: u64,
        cancelled: bool,
        log: Rc<std::cell::RefCell<Vec<u64>>>,
    }

    impl Waiting for Fake {
        fn bytes(&self) -> u64 {
            self.bytes
        }
        type Batch = ();
        fn publish(&self, (): &()) -> bool {
            if !self.cancelled {
                self.log.borrow_mut().push(self.id);
            }
            !self.cancelled
        }
        fn is_waiting(&self) -> bool {
            !self.cancelled
        }
    }

    struct Bench {
        set: ReadySet<Fake>,
        log: Rc<std::cell::RefCell<Vec<u64>>>,
    }

    impl Bench {
        fn new() -> Self {
            Self { set: ReadySet::default(), log: Rc::default() }
        }
        fn add(&mut self, id: u64, priority: Priority, bytes: u64, frame: u64) {
            let fake = Fake { id, bytes, cancelled: false, log: Rc::clone(&self.log) };
            self.set.push(RequestId(id), priority, fake, frame);
        }
        /// The ids published, in order; the ids a recording is given are the same.
        fn frame(&mut self, frame: u64, policy: &FramePolicy) -> Vec<u64> {
            let mut recorded = Vec::new();
            self.set.publish_frame(frame, policy, &(), &mut || 0, Some(&mut recorded));
            let published: Vec<u64> = self.log.borrow_mut().drain(..).collect();
            assert_eq!(recorded.iter().map(|r| r.0).collect::<Vec<_>>(), published);
            published
        }
    }

    #[test]
    fn the_count_budget_takes_the_most_urgent_first() {
        let mut b = Bench::new();
        b.add(1, Priority::Low, 1, 1);
        b.add(2, Priority::Critical, 1, 1);
        b.add(3, Priority::Normal, 1, 1);
        assert_eq!(b.frame(1, &FramePolicy::count(2)), [2, 3]);
        assert_eq!(b.frame(2, &FramePolicy::count(2)), [1]);
    }

    #[test]
    fn the_byte_budget_stops_before_the_asset_that_would_exceed_it_but_never_starves() {
        let mut b = Bench::new();
        b.add(1, Priority::High, 600, 1);
        b.add(2, Priority::Normal, 600, 1);
        b.add(3, Priority::Low, 5_000, 1);
        let policy = FramePolicy { publish_bytes_max: 1_000, ..FramePolicy::count(10) };
        assert_eq!(b.frame(1, &policy), [1]);
        assert_eq!(b.frame(2, &policy), [2]);
        assert_eq!(b.frame(3, &policy), [3], "the first of a frame is allowed even if too big");
    }

    #[test]
    fn the_time_budget_is_checked_between_publishes() {
        let mut b = Bench::new();
        for id in 1..=4 {
            b.add(id, Priority::Normal, 1, 1);
        }
        let policy = FramePolicy { publish_time_us_max: 100, ..FramePolicy::count(10) };
        let mut clock = 0;
        // The first publish is always allowed without asking the time; each later check sees
        // 40 us more: 40 (< 100: publish), 80 (publish), 120 (over: stop).
        let mut elapsed = || {
            clock += 40;
            clock
        };
        let done = b.set.publish_frame(1, &policy, &(), &mut elapsed, None);
        assert_eq!(done.count, 3);
        assert_eq!(b.set.len(), 1);
    }

    #[test]
    fn a_low_priority_request_waits_at_most_the_aging_limit() {
        let mut b = Bench::new();
        let policy = FramePolicy { aging_frames_max: 3, ..FramePolicy::count(1) };
        b.add(100, Priority::Background, 1, 1);
        let mut published_at = None;
        for frame in 1..=10 {
            b.add(frame, Priority::Critical, 1, frame);
            if b.frame(frame, &policy).contains(&100) {
                published_at = Some(frame);
                break;
            }
        }
        assert_eq!(published_at, Some(4), "ready at frame 1, aged after 3 frames");
    }

    #[test]
    fn cancelled_requests_cost_no_budget() {
        let mut b = Bench::new();
        let log = Rc::clone(&b.log);
        b.set.push(
            RequestId(1),
            Priority::Critical,
            Fake { id: 1, bytes: 1, cancelled: true, log },
            1,
        );
        b.add(2, Priority::Low, 1, 1);
        assert_eq!(b.frame(1, &FramePolicy::count(1)), [2]);
        assert_eq!(b.set.len(), 0);
    }

    #[test]
    fn a_large_cancelled_request_does_not_end_the_frame_it_is_dropped_from() {
        let mut b = Bench::new();
        b.add(1, Priority::Critical, 600, 1);
        let log = Rc::clone(&b.log);
        let cancelled = Fake { id: 2, bytes: 5_000, cancelled: true, log };
        b.set.push(RequestId(2), Priority::High, cancelled, 1);
        b.add(3, Priority::Normal, 300, 1);
        let policy = FramePolicy { publish_bytes_max: 1_000, ..FramePolicy::count(10) };
        assert_eq!(b.frame(1, &policy), [1, 3]);
        assert_eq!(b.set.len(), 0);
    }

    #[test]
    fn reprioritising_a_waiting_request_moves_it_and_keeps_its_age() {
        let mut b = Bench::new();
        b.add(1, Priority::Normal, 1, 1);
        b.add(2, Priority::Low, 1, 1);
        b.set.reprioritize(RequestId(2), Priority::Critical);
        b.set.reprioritize(RequestId(99), Priority::Critical);
        assert_eq!(b.frame(1, &FramePolicy::count(1)), [2]);
        let aging = FramePolicy { aging_frames_max: 2, ..FramePolicy::count(1) };
        b.add(3, Priority::Critical, 1, 2);
        assert_eq!(b.frame(3, &aging), [1], "ready since frame 1: aged past the critical one");
        assert_eq!(b.set.drain().len(), 1);
        assert_eq!(b.set.len(), 0);
    }

    #[test]
    fn a_withdrawn_request_leaves_every_order_and_the_rest_publish_as_before() {
        let mut b = Bench::new();
        b.add(1, Priority::Normal, 1, 1);
        b.add(2, Priority::Critical, 1, 1);
        b.add(3, Priority::Low, 1, 1);
        assert!(b.set.withdraw(RequestId(2)).is_some());
        assert!(b.set.withdraw(RequestId(2)).is_none(), "once");
        assert_eq!(b.set.len(), 2);
        let aging = FramePolicy { aging_frames_max: 1, ..FramePolicy::count(8) };
        assert_eq!(b.frame(5, &aging), [1, 3]);
    }

    #[test]
    fn a_replayed_frame_publishes_the_recorded_requests_it_holds_in_order_and_keeps_the_rest() {
        let mut bench = Bench::new();
        bench.add(1, Priority::Critical, 10, 0);
        bench.add(2, Priority::Low, 10, 0);
        bench.add(3, Priority::Normal, 10, 0);
        bench.add(4, Priority::Normal, 10, 0);
        // 9 is not staged yet: it stays in the list. Out of priority order, past any budget.
        let mut recorded = vec![RequestId(2), RequestId(9), RequestId(4)];
        let done = bench.set.publish_these(&mut recorded, &());
        assert_eq!(done, Published { count: 2, bytes: 20 });
        assert_eq!(bench.log.borrow_mut().drain(..).collect::<Vec<_>>(), [2, 4]);
        assert_eq!(recorded, [RequestId(9)], "still to publish once staged");
        assert_eq!(bench.set.len(), 2, "the others still wait");
        bench.add(9, Priority::Low, 10, 1);
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 1);
        assert_eq!(bench.log.borrow_mut().drain(..).collect::<Vec<_>>(), [9]);
        assert!(recorded.is_empty());
        assert_eq!(bench.frame(1, &FramePolicy::count(10)), [1, 3]);
    }

    #[test]
    fn a_zero_count_budget_publishes_nothing() {
        let mut b = Bench::new();
        b.add(1, Priority::Critical, 1, 1);
        assert!(b.frame(5, &FramePolicy::count(0)).is_empty());
    }
}
