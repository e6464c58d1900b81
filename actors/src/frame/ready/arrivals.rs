//! The ready set's aging order: waiting requests by the frame they became ready in, then by
//! request id.
//!
//! A bucket per frame, oldest first. Staging a request appends its id to its frame's bucket
//! (the last one: frames only move on), so a boundary with nothing aged costs one look at the
//! first bucket's frame. A bucket is sorted when it reaches the front and ages (again only if
//! a request was staged in it since), and when stale ids are shed.
//!
//! # Invariants
//!
//! - Buckets are in increasing frame order, one per frame; each counts the requests staged in
//!   it that still wait (`live`), and a first bucket with none is dropped at once.
//! - A request that leaves the set by another way (published by priority, withdrawn) is only
//!   counted out of its bucket ([`ArrivalOrder::left`]); its id stays there, stale, and the
//!   caller's `live` test skips and drops it when it surfaces. [`ArrivalOrder::compact`] drops
//!   them all.

use std::collections::VecDeque;

use streamrt_messages::RequestId;

/// The ids staged in one frame.
struct Bucket {
    frame: u64,
    /// Sorted newest first while `sorted`, so the oldest is popped off the end.
    requests: Vec<RequestId>,
    sorted: bool,
    /// The requests staged in this frame that still wait.
    live: usize,
}

/// See the module docs.
#[derive(Default)]
pub(super) struct ArrivalOrder {
    buckets: VecDeque<Bucket>,
    /// Ids held over every bucket, live and stale.
    keys: usize,
}

impl ArrivalOrder {
    /// Ids held, live and stale.
    pub(super) fn len(&self) -> usize {
        self.keys
    }

    /// Adds `request`, staged during `frame`.
    pub(super) fn push(&mut self, frame: u64, request: RequestId) {
        let at = match self.buckets.back() {
            Some(last) if last.frame == frame => self.buckets.len() - 1,
            Some(last) if last.frame > frame => {
                // Frames only move on, but the order stays right if one did not.
                self.find(frame).unwrap_or_else(|at| {
                    self.buckets.insert(at, Bucket::new(frame));
                    at
                })
            }
            _ => {
                self.buckets.push_back(Bucket::new(frame));
                self.buckets.len() - 1
            }
        };
        let bucket = &mut self.buckets[at];
        bucket.requests.push(request);
        bucket.sorted = false;
        bucket.live += 1;
        self.keys += 1;
    }

    /// Counts out a request staged in `frame` that left the set by another way than
    /// [`ArrivalOrder::pop_first`].
    pub(super) fn left(&mut self, frame: u64) {
        let found = self.find(frame);
        debug_assert!(found.is_ok(), "a waiting request's frame {frame} has its bucket");
        if let Ok(at) = found {
            let bucket = &mut self.buckets[at];
            debug_assert!(bucket.live > 0, "frame {frame} counts the request that left");
            bucket.live = bucket.live.saturating_sub(1);
            self.drop_dead_front();
        }
    }

    /// The oldest live request staged at or before frame `aged_max`, the stale ids before it
    /// dropped; `live(request, frame)` says whether `request` still waits, staged in `frame`.
    pub(super) fn first_aged(
        &mut self,
        aged_max: u64,
        live: impl Fn(RequestId, u64) -> bool,
    ) -> Option<RequestId> {
        while let Some(bucket) = self.buckets.front_mut() {
            if bucket.frame > aged_max {
                return None;
            }
            if !bucket.sorted {
                bucket.requests.sort_unstable_by(|a, b| b.cmp(a));
                bucket.sorted = true;
            }
            while let Some(&request) = bucket.requests.last() {
                if live(request, bucket.frame) {
                    return Some(request);
                }
                bucket.requests.pop();
                self.keys -= 1;
            }
            self.buckets.pop_front();
        }
        None
    }

    /// Takes out the request [`ArrivalOrder::first_aged`] returned.
    pub(super) fn pop_first(&mut self) {
        if let Some(bucket) = self.buckets.front_mut() {
            debug_assert!(bucket.sorted && bucket.live > 0, "called after `first_aged` found one");
            if bucket.requests.pop().is_some() {
                bucket.live = bucket.live.saturating_sub(1);
                self.keys -= 1;
            }
            self.drop_dead_front();
        }
    }

    /// Drops every stale id, `live` telling them apart as in [`ArrivalOrder::first_aged`].
    pub(super) fn compact(&mut self, live: impl Fn(RequestId, u64) -> bool) {
        self.buckets.retain_mut(|bucket| {
            let frame = bucket.frame;
            bucket.requests.retain(|&request| live(request, frame));
            // A request withdrawn and staged again in one frame has its id here twice.
            bucket.requests.sort_unstable_by(|a, b| b.cmp(a));
            bucket.requests.dedup();
            bucket.sorted = true;
            !bucket.requests.is_empty()
        });
        self.keys = self.buckets.iter().map(|b| b.requests.len()).sum();
    }

    pub(super) fn clear(&mut self) {
        self.buckets.clear();
        self.keys = 0;
    }

    /// The requests counted as waiting, over every bucket.
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        self.buckets.iter().map(|b| b.live).sum()
    }

    fn find(&self, frame: u64) -> Result<usize, usize> {
        self.buckets.binary_search_by_key(&frame, |b| b.frame)
    }

    fn drop_dead_front(&mut self) {
        while self.buckets.front().is_some_and(|b| b.live == 0) {
            if let Some(dead) = self.buckets.pop_front() {
                self.keys -= dead.requests.len();
            }
        }
    }
}

impl Bucket {
    fn new(frame: u64) -> Self {
        Self { frame, requests: Vec::new(), sorted: false, live: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(order: &mut ArrivalOrder, aged_max: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(request) = order.first_aged(aged_max, |_, _| true) {
            order.pop_first();
            out.push(request.0);
        }
        out
    }

    #[test]
    fn the_oldest_frame_goes_first_and_within_a_frame_the_oldest_request() {
        let mut order = ArrivalOrder::default();
        for (frame, id) in [(1, 7), (1, 3), (2, 1), (3, 9), (1, 5), (2, 0)] {
            order.push(frame, RequestId(id));
        }
        assert_eq!(order.len(), 6);
        assert_eq!(ids(&mut order, 2), [3, 5, 7, 0, 1], "frame 3 has not aged");
        assert_eq!(ids(&mut order, 3), [9]);
        assert_eq!((order.len(), order.live()), (0, 0));
    }

    #[test]
    fn a_first_frame_whose_requests_all_left_goes_with_its_stale_ids() {
        let mut order = ArrivalOrder::default();
        for id in 0..4 {
            order.push(1, RequestId(id));
        }
        order.push(2, RequestId(4));
        order.left(2);
        assert_eq!((order.len(), order.live()), (5, 4), "not the first frame: kept for now");
        for _ in 0..4 {
            order.left(1);
        }
        assert_eq!((order.len(), order.live()), (0, 0), "both frames dropped");
    }

    #[test]
    fn stale_ids_are_skipped_and_compacting_drops_them() {
        let mut order = ArrivalOrder::default();
        for id in [0, 1, 2, 3, 3] {
            order.push(1, RequestId(id));
        }
        let odd = |request: RequestId, frame| frame == 1 && request.0 % 2 == 1;
        assert_eq!(order.first_aged(1, odd), Some(RequestId(1)));
        assert_eq!(order.len(), 4, "0 dropped on the way");
        order.compact(odd);
        assert_eq!(order.len(), 2, "2 dropped, 3 once");
        assert_eq!(ids(&mut order, 5), [1, 3]);
    }
}
