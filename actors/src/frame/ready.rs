//! The set of decoded requests waiting for a frame boundary, and the per-frame publish policy.
//!
//! Pure logic (no threads, no clock of its own), so budgets and aging are tested directly.
//!
//! # Ordering
//!
//! At each boundary, first the requests that have waited `aging_frames_max` frames or more,
//! longest-waiting first; then the rest, most urgent first and, within a priority, oldest
//! request first (lowest request id). An aged request the budget has no room for ends the
//! frame: nothing behind it, aged or not, is published before it. Ties are broken by request id, never by the order in
//! which worker threads happened to finish, so the same set of ready requests always publishes
//! in the same order.
//!
//! # Invariants
//!
//! - A frame publishes at most `publish_count_max` requests and stays within
//!   `publish_bytes_max`, except that the first request of a frame is always allowed (so an
//!   asset larger than the byte budget still gets published). The time is checked before each
//!   request after the frame's first, whether it is published or dropped: a frame stops once
//!   `publish_time_us_max` is spent, so it can run over by the one request that began under it.
//! - A request that can no longer be published (it was cancelled) is dropped without using
//!   count or byte budget; dropping it takes time, checked as a publish's is (if the first
//!   request a frame tries is one dropped, the frame may publish nothing past its time).

mod arrivals;
mod recorded;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use streamrt_messages::{Priority, RequestId};

use super::adaptive::AdaptivePolicy;
use crate::id_hash::IdMap;
use arrivals::ArrivalOrder;
pub(crate) use recorded::RecordedPublishes;

/// How much a frame boundary may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramePolicy {
    /// Requests published per frame at most; at least 1 (a runtime is not built with 0, which
    /// would never publish), unless an adaptive policy sets the count, starting here, raised
    /// to its `budget_min` or lowered to its `budget_max`.
    pub publish_count_max: u32,
    /// Bytes published per frame at most (the first request of a frame is always allowed).
    pub publish_bytes_max: u64,
    /// Microseconds spent publishing per frame at most, by the runtime's clock, from the
    /// boundary's taking the ready set (the first request tried is always allowed, published
    /// or dropped as cancelled).
    pub publish_time_us_max: u64,
    /// Frames a decoded request waits at most before it is published ahead of more urgent
    /// ones. `u64::MAX` turns aging off: a request can then wait behind more urgent ones for
    /// as long as they keep coming, and one larger than the byte budget that is never first
    /// in a frame is never published.
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

/// Keys either order may hold beyond twice the waiting requests before its stale keys go.
const STALE_KEYS_SLACK: usize = 64;

/// A waiting request: what publishes it, at what priority, since which frame.
struct Staged<E> {
    entry: E,
    priority: Priority,
    frame: u64,
}

/// See the module docs.
///
/// Neither order is a search tree: a frame takes its requests off the front, and a B-tree
/// popped from the front merges and frees nodes as it goes (half a boundary's time with 1,000
/// waiting, `perf` of `streamctl bench frame`). The publish order is a heap of request ids per
/// priority level; the aging order, buckets of ids per frame ([`ArrivalOrder`]). A key is live
/// while its request waits at that level (or since that frame); publishing, withdrawing or
/// reprioritising a request leaves its other keys stale, skipped when they surface, and an
/// order sheds its stale keys once it holds more than twice the waiting requests (plus
/// `STALE_KEYS_SLACK`). A request reprioritised back to a level, or staged again after it left
/// (at a level or in a frame where its old key still sits), has two live keys there: the first
/// to surface publishes it and leaves the other stale.
pub(crate) struct ReadySet<E> {
    /// Publish order without aging: per level, most urgent first, the oldest request first.
    by_priority: [BinaryHeap<Reverse<RequestId>>; Priority::LEVELS],
    /// Keys over every level of `by_priority`, live and stale.
    priority_keys: usize,
    /// Aging order: the frame each request became ready in, then oldest request first.
    by_arrival: ArrivalOrder,
    /// Every waiting request.
    waiting: IdMap<RequestId, Staged<E>>,
    /// `STALE_KEYS_SLACK`, smaller in tests so they reach the shedding.
    stale_keys_slack: usize,
    /// The requests staged since a replay's last `publish_these`, kept from its first on
    /// (`None` before: a runtime that is no replay keeps none).
    staged_since: Option<Vec<RequestId>>,
}

impl<E: Waiting> Default for ReadySet<E> {
    fn default() -> Self {
        Self {
            by_priority: Default::default(),
            priority_keys: 0,
            by_arrival: ArrivalOrder::default(),
            waiting: IdMap::default(),
            stale_keys_slack: STALE_KEYS_SLACK,
            staged_since: None,
        }
    }
}

impl<E: Waiting> ReadySet<E> {
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// `request`'s entry, while it waits.
    pub(crate) fn get(&self, request: RequestId) -> Option<&E> {
        self.waiting.get(&request).map(|staged| &staged.entry)
    }

    /// Adds a request that became ready during `frame`; a request already waiting is kept as
    /// it was.
    pub(crate) fn push(&mut self, request: RequestId, priority: Priority, entry: E, frame: u64) {
        if self.waiting.contains_key(&request) {
            return;
        }
        self.waiting.insert(request, Staged { entry, priority, frame });
        if let Some(staged) = &mut self.staged_since {
            staged.push(request);
        }
        self.push_priority_key(priority, request);
        self.by_arrival.push(frame, request);
        self.drop_stale_keys();
    }

    pub(crate) fn reprioritize(&mut self, request: RequestId, priority: Priority) {
        let Some(staged) = self.waiting.get_mut(&request) else { return };
        if staged.priority != priority {
            staged.priority = priority;
            self.push_priority_key(priority, request);
            self.drop_stale_keys();
        }
    }

    /// Takes out `request`, which can no longer be published (it was cancelled): what it holds
    /// goes now, not when a frame's budget reaches it.
    pub(crate) fn withdraw(&mut self, request: RequestId) -> Option<E> {
        let staged = self.waiting.remove(&request)?;
        self.by_arrival.left(staged.frame);
        self.drop_stale_keys();
        Some(staged.entry)
    }

    /// Removes every waiting request, oldest request first.
    pub(crate) fn drain(&mut self) -> Vec<E> {
        self.by_priority.iter_mut().for_each(BinaryHeap::clear);
        self.priority_keys = 0;
        self.by_arrival.clear();
        let mut drained: Vec<_> = self.waiting.drain().collect();
        drained.sort_unstable_by_key(|(request, _)| *request);
        drained.into_iter().map(|(_, staged)| staged.entry).collect()
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
        let weighed = policy.publish_bytes_max != u64::MAX;
        // A request's weight is asked only where it decides: within the count, past a frame's
        // first publish, under a byte budget. Asking touches the request's cell, which the
        // boundary otherwise touches once, to publish it. The time is asked before every
        // request but the frame's first `tried`, published or dropped (cancelled): dropping
        // takes time too, and a frame may find thousands of cancelled requests first.
        let mut tried = 0_usize;
        let mut fits = |done: &Published, tried: usize, weight: &dyn Fn() -> u64| {
            done.count < policy.publish_count_max
                && (done.count == 0
                    || !weighed
                    || done.bytes.saturating_add(weight()) <= policy.publish_bytes_max)
                && (tried == 0 || !timed || elapsed_us() < policy.publish_time_us_max)
        };
        // Requests staged in frames up to `aged_max` have waited `aging_frames_max` frames;
        // none has before frame `aging_frames_max`.
        let aged_max = frame.checked_sub(policy.aging_frames_max);
        'frame: {
            while let Some(request) =
                aged_max.and_then(|at| self.by_arrival.first_aged(at, staged_in(&self.waiting)))
            {
                // An aged request that does not fit ends the frame: a younger, smaller one
                // must not take its place (see `# Ordering`).
                if !fits(&done, tried, &|| self.weight(request)) {
                    break 'frame;
                }
                tried += 1;
                self.by_arrival.pop_first();
                if let Some(staged) = self.waiting.remove(&request) {
                    publish(request, &staged.entry, batch, &mut done, record.as_deref_mut());
                }
            }
            while let Some((level, request)) = self.first_by_priority() {
                if !fits(&done, tried, &|| self.weight(request)) {
                    break;
                }
                tried += 1;
                self.by_priority[level].pop();
                self.priority_keys -= 1;
                if let Some(staged) = self.waiting.remove(&request) {
                    self.by_arrival.left(staged.frame);
                    publish(request, &staged.entry, batch, &mut done, record.as_deref_mut());
                }
            }
        }
        self.drop_stale_keys();
        done
    }

    /// Publishes those of `recorded` waiting here, in their order, as part of `batch`,
    /// whatever the budget, and leaves the others listed (a replay publishing what its
    /// recording's frames published, some of which it has not staged yet). From the first
    /// call on, the set keeps the requests it stages, so a call looks only at what changed
    /// since the last (see [`RecordedPublishes`]): one list per set.
    pub(crate) fn publish_these(
        &mut self,
        recorded: &mut RecordedPublishes,
        batch: &E::Batch,
    ) -> Published {
        let staged = self.staged_since.replace(Vec::new());
        let mut done = Published::default();
        for request in recorded.changed_since(staged) {
            if let Some(entry) = self.withdraw(request) {
                publish(request, &entry, batch, &mut done, None);
                recorded.published(request);
            }
        }
        done
    }

    /// The publish order's first live request and its level, the stale keys before it dropped.
    fn first_by_priority(&mut self) -> Option<(usize, RequestId)> {
        for (level, heap) in self.by_priority.iter_mut().enumerate() {
            while let Some(&Reverse(request)) = heap.peek() {
                if self.waiting.get(&request).is_some_and(|s| s.priority.index() == level) {
                    return Some((level, request));
                }
                heap.pop();
                self.priority_keys -= 1;
            }
        }
        None
    }

    fn push_priority_key(&mut self, priority: Priority, request: RequestId) {
        self.by_priority[priority.index()].push(Reverse(request));
        self.priority_keys += 1;
    }

    fn weight(&self, request: RequestId) -> u64 {
        self.waiting.get(&request).map_or(0, |staged| staged.entry.weight())
    }

    /// Sheds an order's stale keys once it holds more than twice the waiting requests (plus
    /// `STALE_KEYS_SLACK`): the publish order is rebuilt from `waiting`, the aging order
    /// compacted.
    fn drop_stale_keys(&mut self) {
        let keys_max = 2 * self.waiting.len() + self.stale_keys_slack;
        if self.priority_keys > keys_max {
            let mut levels: [Vec<Reverse<RequestId>>; Priority::LEVELS] = Default::default();
            for (&request, staged) in &self.waiting {
                levels[staged.priority.index()].push(Reverse(request));
            }
            self.by_priority = levels.map(BinaryHeap::from);
            self.priority_keys = self.waiting.len();
        }
        if self.by_arrival.len() > keys_max {
            self.by_arrival.compact(staged_in(&self.waiting));
        }
    }
}

/// Whether a request waits, staged in a given frame: the aging order's test of a live key.
fn staged_in<E>(waiting: &IdMap<RequestId, Staged<E>>) -> impl Fn(RequestId, u64) -> bool + '_ {
    |request, frame| waiting.get(&request).is_some_and(|staged| staged.frame == frame)
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
        done.bytes = done.bytes.saturating_add(bytes);
        if let Some(record) = record {
            record.push(request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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
        /// Adds a request that was cancelled after it was staged.
        fn add_cancelled(&mut self, id: u64, priority: Priority, bytes: u64, frame: u64) {
            let fake = Fake { id, bytes, cancelled: true, log: Rc::clone(&self.log) };
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
    fn an_aged_request_the_byte_budget_has_no_room_for_ends_the_frame() {
        let mut b = Bench::new();
        b.add(1, Priority::Low, 600, 0);
        b.add(2, Priority::Low, 600, 0);
        b.add(3, Priority::Critical, 300, 5);
        let policy =
            FramePolicy { publish_bytes_max: 1_000, aging_frames_max: 2, ..FramePolicy::count(10) };
        assert_eq!(b.frame(5, &policy), [1], "the younger critical one waits behind aged 2");
        assert_eq!(b.frame(6, &policy), [2, 3]);
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
    fn the_time_budget_is_checked_before_dropping_a_cancelled_request_too() {
        let mut b = Bench::new();
        for id in 1..=4 {
            b.add_cancelled(id, Priority::Critical, 1, 1);
        }
        b.add(5, Priority::Low, 1, 1);
        let policy = FramePolicy { publish_time_us_max: 100, ..FramePolicy::count(10) };
        let clock = std::cell::Cell::new(0);
        let mut elapsed = || {
            clock.set(clock.get() + 40);
            clock.get()
        };
        // 1 is dropped without asking the time, 2 and 3 at 40 and 80 us; at 120 the frame is
        // over with nothing published.
        let done = b.set.publish_frame(1, &policy, &(), &mut elapsed, None);
        assert_eq!(done.count, 0);
        assert_eq!(b.set.len(), 2, "4 (cancelled) and 5 wait for the next frame");
        clock.set(0);
        let done = b.set.publish_frame(2, &policy, &(), &mut elapsed, None);
        assert_eq!((done.count, b.set.len()), (1, 0));
        assert_eq!(*b.log.borrow(), [5]);
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
        b.add_cancelled(1, Priority::Critical, 1, 1);
        b.add(2, Priority::Low, 1, 1);
        assert_eq!(b.frame(1, &FramePolicy::count(1)), [2]);
        assert_eq!(b.set.len(), 0);
    }

    #[test]
    fn a_large_cancelled_request_does_not_end_the_frame_it_is_dropped_from() {
        let mut b = Bench::new();
        b.add(1, Priority::Critical, 600, 1);
        b.add_cancelled(2, Priority::High, 5_000, 1);
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
        let mut recorded = RecordedPublishes::default();
        [2, 9, 4].into_iter().for_each(|r| recorded.list(RequestId(r)));
        let done = bench.set.publish_these(&mut recorded, &());
        assert_eq!(done, Published { count: 2, bytes: 20 });
        assert_eq!(bench.log.borrow_mut().drain(..).collect::<Vec<_>>(), [2, 4]);
        let pending: Vec<RequestId> = recorded.pending().collect();
        assert_eq!(pending, [RequestId(9)], "still to publish once staged");
        assert_eq!(bench.set.len(), 2, "the others still wait");
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 0, "nothing new");
        bench.add(9, Priority::Low, 10, 1);
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 1);
        assert_eq!(bench.log.borrow_mut().drain(..).collect::<Vec<_>>(), [9]);
        assert_eq!(recorded.len(), 0);
        assert_eq!(bench.frame(1, &FramePolicy::count(10)), [1, 3]);
    }

    #[test]
    fn a_replayed_publish_takes_a_request_listed_after_it_was_staged_and_one_staged_again() {
        let mut bench = Bench::new();
        let mut recorded = RecordedPublishes::default();
        bench.add(1, Priority::Normal, 10, 0);
        bench.add(2, Priority::Normal, 10, 0);
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 0, "none listed yet");
        recorded.list(RequestId(2));
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 1, "staged before listed");
        recorded.list(RequestId(3));
        bench.add(3, Priority::Normal, 10, 0);
        assert!(bench.set.withdraw(RequestId(3)).is_some(), "cancelled once staged");
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 0);
        bench.add(3, Priority::Normal, 10, 1);
        assert_eq!(bench.set.publish_these(&mut recorded, &()).count, 1, "staged again");
        assert_eq!(bench.log.borrow_mut().drain(..).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn a_zero_count_budget_publishes_nothing() {
        let mut b = Bench::new();
        b.add(1, Priority::Critical, 1, 1);
        assert!(b.frame(5, &FramePolicy::count(0)).is_empty());
    }

    #[test]
    fn stale_keys_stay_within_twice_the_waiting_requests() {
        let mut b = Bench::new();
        for id in 0..10 {
            b.add(id, Priority::Normal, 1, 0);
        }
        let keys_max = 2 * 11 + STALE_KEYS_SLACK;
        for round in 0..1_000 {
            let priority = if round % 2 == 0 { Priority::Low } else { Priority::High };
            b.set.reprioritize(RequestId(round % 10), priority);
            assert_eq!(b.set.withdraw(RequestId(10)).is_some(), round > 0);
            b.add(10, Priority::Critical, 1, round);
            assert!(b.set.priority_keys <= keys_max && b.set.by_arrival.len() <= keys_max);
        }
        let unaged = FramePolicy { aging_frames_max: u64::MAX, ..FramePolicy::count(3) };
        assert_eq!(b.frame(1_000, &unaged), [10, 1, 3], "the last reprioritising holds");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Stage request n (a no-op while it waits) at a priority, with a size, maybe cancelled.
        Push(u64, u8, u64, bool),
        Reprioritize(u64, u8),
        Withdraw(u64),
        /// Move on `n` frames and publish with a count and a byte budget.
        Frame(u64, u32, u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..24, 0u8..5, 1u64..400, proptest::bool::weighted(0.1))
                .prop_map(|(r, p, b, c)| Op::Push(r, p, b, c)),
            1 => (0u64..24, 0u8..5).prop_map(|(r, p)| Op::Reprioritize(r, p)),
            1 => (0u64..24).prop_map(Op::Withdraw),
            2 => (0u64..3, 0u32..6, 100u64..2_000, prop_oneof![Just(0), 1u64..6, Just(u64::MAX)])
                .prop_map(|(n, c, b, aging)| Op::Frame(n, c, b, aging)),
        ]
    }

    fn level(p: u8) -> Priority {
        Priority::ALL[usize::from(p)]
    }

    /// A waiting request as the model keeps it: id, priority, frame, bytes, cancelled.
    type Modelled = (u64, Priority, u64, u64, bool);

    /// The module docs' rules, by sorting everything that waits at each step.
    fn model_frame(model: &mut Vec<Modelled>, frame: u64, policy: &FramePolicy) -> Vec<u64> {
        let (mut published, mut count, mut bytes) = (Vec::new(), 0u32, 0u64);
        for aged in [true, false] {
            loop {
                let first = if aged {
                    model.iter().enumerate().min_by_key(|(_, m)| (m.2, m.0))
                } else {
                    model.iter().enumerate().min_by_key(|(_, m)| (m.1, m.0))
                };
                let Some((at, &(id, _, since, size, cancelled))) = first else { break };
                let weight = if cancelled { 0 } else { size };
                let fits = count < policy.publish_count_max
                    && (count == 0 || bytes + weight <= policy.publish_bytes_max);
                if aged && since.saturating_add(policy.aging_frames_max) > frame {
                    break;
                }
                if !fits {
                    return published;
                }
                model.remove(at);
                if !cancelled {
                    published.push(id);
                    count += 1;
                    bytes += size;
                }
            }
        }
        published
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The heaps with their stale keys publish exactly what sorting the waiting requests
        /// at every boundary would, also while stale keys are shed often (a small slack).
        #[test]
        fn every_boundary_publishes_what_the_ordering_rules_say(
            ops in proptest::collection::vec(op(), 0..300),
            slack in prop_oneof![Just(0usize), Just(2), Just(STALE_KEYS_SLACK)],
        ) {
            let mut b = Bench::new();
            b.set.stale_keys_slack = slack;
            let mut model: Vec<Modelled> = Vec::new();
            let mut frame = 0;
            for op in ops {
                match op {
                    Op::Push(id, p, bytes, cancelled) => {
                        let log = Rc::clone(&b.log);
                        let fake = Fake { id, bytes, cancelled, log };
                        b.set.push(RequestId(id), level(p), fake, frame);
                        if !model.iter().any(|m| m.0 == id) {
                            model.push((id, level(p), frame, bytes, cancelled));
                        }
                    }
                    Op::Reprioritize(id, p) => {
                        b.set.reprioritize(RequestId(id), level(p));
                        model.iter_mut().filter(|m| m.0 == id).for_each(|m| m.1 = level(p));
                    }
                    Op::Withdraw(id) => {
                        let withdrawn = b.set.withdraw(RequestId(id)).map(|f| f.id);
                        let at = model.iter().position(|m| m.0 == id);
                        prop_assert_eq!(withdrawn, at.map(|at| model.remove(at).0));
                    }
                    Op::Frame(n, count, bytes_max, aging_frames_max) => {
                        frame += n;
                        let policy = FramePolicy {
                            publish_bytes_max: bytes_max,
                            aging_frames_max,
                            ..FramePolicy::count(count)
                        };
                        let expected = model_frame(&mut model, frame, &policy);
                        prop_assert_eq!(b.frame(frame, &policy), expected);
                    }
                }
                prop_assert_eq!(b.set.len(), model.len());
                let keys_max = 2 * model.len() + slack;
                prop_assert!(b.set.priority_keys <= keys_max && b.set.by_arrival.len() <= keys_max);
                let heaps: usize = b.set.by_priority.iter().map(BinaryHeap::len).sum();
                prop_assert_eq!(heaps, b.set.priority_keys);
                prop_assert_eq!(b.set.by_arrival.live(), model.len());
            }
            let mut left: Vec<u64> = model.iter().map(|m| m.0).collect();
            left.sort_unstable();
            prop_assert_eq!(b.set.drain().iter().map(|f| f.id).collect::<Vec<_>>(), left);
        }
    }
}
