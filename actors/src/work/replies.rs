//! Decoded loads' replies that a decode worker posted to their caches without a wake, and the
//! wakes it owes for them.
//!
//! A reply wakes its cache's arbiter thread, and on two cores that wake is a futex call on the
//! decode worker and a context switch on the core thread: a quarter of a decode thread's
//! samples in `streamctl bench throughput`, one wake per asset. A decode worker that has more
//! loads waiting lets its replies (which `JobRoute::decode` posts unwoken) join a batch and
//! wakes each cache once for the batch, so the core thread handles several replies per wake.
//!
//! # Invariants
//!
//! - Every reply posted unwoken is followed by a wake of its cache: once the batch holds
//!   [`REPLIES_UNWOKEN_MAX`] replies, once no load waits, once an urgent load's reply joined
//!   it, before the worker runs anything but its next decode (a frame task, or an order whose
//!   load another worker took), before it waits for its next job (`Worker::idle`), and when
//!   the batch is dropped (its worker rebuilt after a panic). So a reply waits for its wake at
//!   most while its worker decodes the loads after it in the batch, at most three: a decoder
//!   that takes long delays the replies before it in its batch.
//! - Urgent loads (see `URGENT`) never wait in a batch: they are decoded on the IO worker that
//!   read them, which wakes the cache at once, or, with `urgent_decodes_on_io` off, their
//!   decode worker wakes the cache as soon as their reply is posted.

use std::sync::Arc;

use super::JobRoute;

/// Replies a decode worker posts unwoken before it wakes their caches: the most a decoded
/// load's reply waits for its wake is the decode of this many loads after it.
pub(crate) const REPLIES_UNWOKEN_MAX: usize = 4;

/// The wakes one decode worker owes; see the module docs.
#[derive(Default)]
pub(crate) struct ReplyBatch {
    /// The routes whose caches are owed a wake, each once.
    owed: Vec<Arc<dyn JobRoute>>,
    /// Replies posted unwoken since the last flush.
    replies: usize,
}

impl ReplyBatch {
    /// Records a reply posted unwoken to `route`'s cache.
    pub(crate) fn owe(&mut self, route: Arc<dyn JobRoute>) {
        self.replies += 1;
        // By address: two `Arc`s of one route may carry different vtable pointers.
        let same = |r: &Arc<dyn JobRoute>| std::ptr::addr_eq(Arc::as_ptr(r), Arc::as_ptr(&route));
        if !self.owed.iter().any(same) {
            self.owed.push(route);
        }
    }

    /// Whether the batch holds as many replies as may wait for a wake.
    pub(crate) fn is_full(&self) -> bool {
        self.replies >= REPLIES_UNWOKEN_MAX
    }

    /// Wakes every cache owed a wake.
    pub(crate) fn flush(&mut self) {
        self.replies = 0;
        for route in self.owed.drain(..) {
            route.wake();
        }
    }
}

impl Drop for ReplyBatch {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use streamrt_messages::ErrorKind;

    use streamrt_supervisor::Worker;

    use super::*;
    use crate::scheduler::LoadRef;
    use crate::tasks::GroupWork;
    use crate::telemetry::Probe;
    use crate::work::{
        CancelTable, DecodeJob, DecodeWorker, DispatchOrder, Job, JobEnd, RaiseTable,
    };

    /// A route that only counts the wakes of its cache.
    #[derive(Default)]
    struct Counted {
        wakes: AtomicUsize,
        cancels: CancelTable,
        raises: RaiseTable,
    }

    impl JobRoute for Counted {
        fn dispatch(&self, _: DispatchOrder) {
            unreachable!("a reply batch only wakes")
        }
        fn refuse(&self, _: LoadRef, _: ErrorKind) {
            unreachable!("a reply batch only wakes")
        }
        fn decode(&self, _: Job, _: Vec<u8>, _: &dyn Fn(&Job)) -> Result<(), Box<dyn Any + Send>> {
            unreachable!("a reply batch only wakes")
        }
        fn end(&self, _: Job, _: JobEnd) {
            unreachable!("a reply batch only wakes")
        }
        fn wake(&self) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
        fn cancels(&self) -> &CancelTable {
            &self.cancels
        }
        fn raises(&self) -> &RaiseTable {
            &self.raises
        }
    }

    fn wakes(route: &Arc<Counted>) -> usize {
        route.wakes.load(Ordering::Relaxed)
    }

    #[test]
    fn a_flush_wakes_each_owed_cache_once() {
        let (a, b) = (Arc::new(Counted::default()), Arc::new(Counted::default()));
        let (ra, rb): (Arc<dyn JobRoute>, Arc<dyn JobRoute>) = (a.clone(), b.clone());
        let mut batch = ReplyBatch::default();
        for route in [&ra, &rb, &ra] {
            batch.owe(Arc::clone(route));
        }
        assert_eq!((wakes(&a), wakes(&b)), (0, 0), "owing wakes no cache");
        batch.flush();
        assert_eq!((wakes(&a), wakes(&b)), (1, 1));
        batch.flush();
        assert_eq!((wakes(&a), wakes(&b)), (1, 1), "a flush owes nothing after it");
    }

    #[test]
    fn a_batch_is_full_at_its_limit_and_empty_after_a_flush() {
        let route: Arc<dyn JobRoute> = Arc::new(Counted::default());
        let mut batch = ReplyBatch::default();
        for _ in 1..REPLIES_UNWOKEN_MAX {
            batch.owe(Arc::clone(&route));
            assert!(!batch.is_full());
        }
        batch.owe(Arc::clone(&route));
        assert!(batch.is_full());
        batch.flush();
        assert!(!batch.is_full());
    }

    /// A decode worker that owes the cache of the route it returns a wake for one reply.
    fn decode_worker_owing() -> (DecodeWorker, Arc<Counted>) {
        let counted = Arc::new(Counted::default());
        let route: Arc<dyn JobRoute> = counted.clone();
        let clock = Arc::new(streamrt_supervisor::MonotonicClock::new());
        let mut worker = DecodeWorker {
            crashes: Arc::default(),
            probe: Arc::new(Probe::new(clock, 16, false)),
            index: 0,
            staged: Arc::default(),
            replies: ReplyBatch::default(),
        };
        worker.replies.owe(Arc::clone(&route));
        (worker, counted)
    }

    /// A frame task that records how many wakes its route's cache had when it ran.
    struct SeesWakes(Arc<Counted>, AtomicUsize);

    impl GroupWork for SeesWakes {
        fn run_one(self: Arc<Self>) {
            self.1.store(wakes(&self.0), Ordering::Relaxed);
        }
        fn note_lost(self: Arc<Self>) {}
        fn cancel(&self) {}
    }

    #[test]
    fn a_frame_task_runs_only_once_the_batch_before_it_is_woken() {
        let (mut worker, counted) = decode_worker_owing();
        let task = Arc::new(SeesWakes(counted, AtomicUsize::new(usize::MAX)));
        worker.run(DecodeJob::Task(task.clone()));
        assert_eq!(task.1.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_order_whose_load_another_worker_took_wakes_the_batch() {
        let (mut worker, counted) = decode_worker_owing();
        worker.run(DecodeJob::NextLoad);
        assert_eq!(wakes(&counted), 1);
    }

    #[test]
    fn a_dropped_batch_wakes_what_it_owes() {
        let counted = Arc::new(Counted::default());
        let route: Arc<dyn JobRoute> = counted.clone();
        let mut batch = ReplyBatch::default();
        batch.owe(Arc::clone(&route));
        drop(batch);
        assert_eq!(wakes(&counted), 1);
    }
}
