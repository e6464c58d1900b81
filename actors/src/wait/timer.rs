//! Deadlines for async waits on any executor: [`Deadline`] resolves at an instant, woken by one
//! process-wide timer thread.
//!
//! The runtime's async waits must not assume tokio (engines bring their own executors), so
//! they cannot use an executor's timers. The `streamrt-timer` thread starts on the first
//! deadline (on the next one, if its spawn failed), sleeps on a condition variable until the earliest registered instant, and wakes
//! the futures whose instant passed. It holds no resources beyond the registered wakers and is
//! idle (blocked) when no deadline is pending.
//!
//! # Invariants
//!
//! - A [`Deadline`] polled after its instant is ready at once, whether or not the thread ran.
//! - Dropping a [`Deadline`] unregisters it (its waker and its place in the queue), so the
//!   queue holds only live deadlines however many are dropped before they come due.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::lock::lock;
use streamrt_supervisor::log_caught;

#[derive(Default)]
struct Timers {
    /// Live deadlines, earliest first.
    due: BTreeSet<(Instant, u64)>,
    wakers: HashMap<u64, Waker>,
    next_id: u64,
}

struct TimerThread {
    timers: Mutex<Timers>,
    changed: Condvar,
}

impl TimerThread {
    fn get() -> &'static TimerThread {
        static TIMER: OnceLock<TimerThread> = OnceLock::new();
        // Set once the thread runs. A spawn that failed (the process out of threads, say) is
        // tried again at the next deadline: one failure must not leave every later async
        // timeout unwoken for the process's life.
        static STARTED: AtomicBool = AtomicBool::new(false);
        let timer = TIMER.get_or_init(|| TimerThread {
            timers: Mutex::new(Timers::default()),
            changed: Condvar::new(),
        });
        let start = || STARTED.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire);
        if !STARTED.load(Ordering::Acquire) && start().is_ok() {
            let spawned = std::thread::Builder::new()
                .name("streamrt-timer".into())
                .spawn(|| TimerThread::get().run());
            if let Err(e) = spawned {
                STARTED.store(false, Ordering::Release);
                // Deadlines still resolve when polled after their instant; until a spawn works
                // they are not woken on time.
                log_caught(|| {
                    tracing::error!(target: "streamrt", error = %e, "cannot start the timer thread");
                });
            }
        }
        timer
    }

    fn lock(&self) -> MutexGuard<'_, Timers> {
        lock(&self.timers)
    }

    fn run(&self) {
        let mut timers = self.lock();
        let mut due_wakers = Vec::new();
        loop {
            let now = Instant::now();
            while let Some(&(at, id)) = timers.due.first() {
                if at > now {
                    break;
                }
                timers.due.pop_first();
                due_wakers.extend(timers.wakers.remove(&id));
            }
            if !due_wakers.is_empty() {
                // Woken with the lock let go, each on its own: a waker is the executor's code,
                // which may poll the future at once (and drop a deadline, which takes the
                // lock) or panic, which must not end the one timer thread of the process.
                drop(timers);
                for waker in due_wakers.drain(..) {
                    log_caught(|| waker.wake());
                }
                timers = self.lock();
                continue;
            }
            timers = match timers.due.first() {
                Some(&(at, _)) => {
                    let left = at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(timers, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.changed.wait(timers).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

/// A future that resolves at `at`; see the module docs.
pub(crate) struct Deadline {
    at: Instant,
    id: Option<u64>,
}

impl Deadline {
    pub(crate) fn at(at: Instant) -> Self {
        Self { at, id: None }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let timer = TimerThread::get();
        let mut timers = timer.lock();
        match self.id {
            // Fired between the check above and the lock (the thread takes a deadline out of
            // the queue only once its instant passed): the waker it woke was the last poll's,
            // and one stored now would never be woken.
            Some(id) if !timers.due.contains(&(self.at, id)) => return Poll::Ready(()),
            Some(id) => {
                let replaced = timers.wakers.insert(id, cx.waker().clone());
                // Dropped with the lock let go: a waker's drop is the executor's code, which
                // may drop a deadline of its own, which takes the lock.
                drop(timers);
                drop(replaced);
            }
            None => {
                let id = timers.next_id;
                timers.next_id += 1;
                timers.wakers.insert(id, cx.waker().clone());
                timers.due.insert((self.at, id));
                self.id = Some(id);
                timer.changed.notify_one();
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut timers = TimerThread::get().lock();
            let waker = timers.wakers.remove(&id);
            timers.due.remove(&(self.at, id));
            // With the lock let go, as in `poll`.
            drop(timers);
            drop(waker);
        }
    }
}

/// Resolves with `inner`'s output, or `None` once `deadline` passes first (never without one).
///
/// Once resolved, it holds neither: a resolved wait kept in a struct keeps no waker of its
/// task in the timer, nor the inner future's listeners, until its deadline.
pub(crate) struct WithDeadline<F: Future> {
    inner: Option<Pin<Box<F>>>,
    deadline: Option<Deadline>,
}

impl<F: Future> WithDeadline<F> {
    /// `inner` within `at`; `None` for no deadline (a timeout past what an `Instant` holds).
    pub(crate) fn new(inner: F, at: Option<Instant>) -> Self {
        Self { inner: Some(Box::pin(inner)), deadline: at.map(Deadline::at) }
    }
}

impl<F: Future> Future for WithDeadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let resolved = match this.inner.as_mut().map(|inner| inner.as_mut().poll(cx)) {
            Some(Poll::Ready(out)) => Some(out),
            _ => match this.deadline.as_mut().map(|deadline| Pin::new(deadline).poll(cx)) {
                Some(Poll::Ready(())) => None,
                _ => return Poll::Pending,
            },
        };
        this.inner = None;
        this.deadline = None;
        Poll::Ready(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_wakes_a_blocked_executor() {
        let started = Instant::now();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            futures::executor::block_on(Deadline::at(started + Duration::from_millis(20)));
            let _ = done.send(started.elapsed());
        });
        // Bounded: a timer that never wakes fails the test instead of hanging it.
        let took = finished.recv_timeout(Duration::from_secs(30)).expect("woken");
        assert!(took >= Duration::from_millis(20), "{took:?}");
    }

    #[test]
    fn a_deadline_the_thread_fired_between_its_polls_is_ready_at_the_next() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut deadline = Deadline::at(Instant::now() + Duration::from_secs(3600));
        assert!(Pin::new(&mut deadline).poll(&mut cx).is_pending());
        let id = deadline.id.expect("registered at its first poll");
        // What the thread does as the instant passes, done here before the instant: the
        // deadline leaves the queue and its waker is taken.
        let timer = TimerThread::get();
        let mut timers = timer.lock();
        assert!(timers.due.remove(&(deadline.at, id)));
        timers.wakers.remove(&id);
        drop(timers);
        assert!(Pin::new(&mut deadline).poll(&mut cx).is_ready(), "no waker left to wake it");
        assert!(!timer.lock().wakers.contains_key(&id), "and none stored for nothing");
    }

    #[test]
    fn the_inner_future_wins_when_it_is_ready_first() {
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(futures::executor::block_on(WithDeadline::new(async { 7 }, Some(far))), Some(7));
        assert_eq!(futures::executor::block_on(WithDeadline::new(async { 8 }, None)), Some(8));
    }

    #[test]
    fn a_resolved_wait_keeps_nothing_queued_with_the_timer() {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut polls = 0;
        let once_pending = std::future::poll_fn(move |cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(7)
        });
        let mut wait = Box::pin(WithDeadline::new(once_pending, Some(far)));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "its deadline registered");
        let queued = || TimerThread::get().lock().due.iter().filter(|(at, _)| *at == far).count();
        assert_eq!(queued(), 1);
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(queued(), 0, "resolved, and still kept");
        drop(wait);
    }

    #[test]
    fn a_pending_inner_future_gives_none_at_the_deadline() {
        let soon = Instant::now() + Duration::from_millis(10);
        let never = std::future::pending::<()>();
        assert_eq!(futures::executor::block_on(WithDeadline::new(never, Some(soon))), None);
    }

    #[test]
    fn a_waker_that_panics_leaves_the_timer_thread_waking_the_others() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Panicking(AtomicUsize);
        impl futures::task::ArcWake for Panicking {
            fn wake_by_ref(this: &std::sync::Arc<Self>) {
                this.0.fetch_add(1, Ordering::Relaxed);
                panic!("an executor's waker panicked");
            }
        }
        let panicking = std::sync::Arc::new(Panicking(AtomicUsize::new(0)));
        let waker = futures::task::waker(std::sync::Arc::clone(&panicking));
        let first_at = Instant::now() + Duration::from_millis(100);
        let mut first = Box::pin(Deadline::at(first_at));
        assert!(first.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Due after the first, far enough apart that a busy machine's preemption keeps
            // their order, and after this thread registers it with the timer thread.
            let later = (Instant::now() + Duration::from_millis(100))
                .max(first_at + Duration::from_millis(200));
            let never = std::future::pending::<()>();
            let _ = done.send(futures::executor::block_on(WithDeadline::new(never, Some(later))));
        });
        assert_eq!(finished.recv_timeout(Duration::from_secs(30)), Ok(None), "woken in time");
        assert_eq!(panicking.0.load(Ordering::Relaxed), 1, "the first's waker panicked first");
        drop(first);
    }

    /// A waker whose last drop drops a deadline of its own: an executor's task that owns one.
    struct OwnsDeadline {
        _owned: Pin<Box<Deadline>>,
    }

    impl futures::task::ArcWake for OwnsDeadline {
        fn wake_by_ref(_: &std::sync::Arc<Self>) {}
    }

    /// A waker owning a deadline registered with the timer.
    fn owning_a_registered_deadline() -> std::task::Waker {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut owned = Box::pin(Deadline::at(far));
        let noop = futures::task::noop_waker();
        assert!(owned.as_mut().poll(&mut Context::from_waker(&noop)).is_pending());
        let owner = std::sync::Arc::new(OwnsDeadline { _owned: owned });
        futures::task::waker(owner)
    }

    #[test]
    fn a_waker_whose_drop_drops_a_deadline_is_dropped_with_the_timer_let_go() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let far = Instant::now() + Duration::from_secs(3600);
            // Replaced at the next poll: the timer held the waker's last reference.
            let mut replaced = Box::pin(Deadline::at(far));
            let first = owning_a_registered_deadline();
            assert!(replaced.as_mut().poll(&mut Context::from_waker(&first)).is_pending());
            drop(first);
            let noop = futures::task::noop_waker();
            assert!(replaced.as_mut().poll(&mut Context::from_waker(&noop)).is_pending());
            // Removed as the deadline is dropped: the same, from `Drop`.
            let mut dropped = Box::pin(Deadline::at(far));
            let owner = owning_a_registered_deadline();
            assert!(dropped.as_mut().poll(&mut Context::from_waker(&owner)).is_pending());
            drop(owner);
            drop(dropped);
            let _ = done.send(());
        });
        // Bounded: a drop under the lock deadlocks the thread (or panics it).
        assert_eq!(finished.recv_timeout(Duration::from_secs(30)), Ok(()));
    }

    #[test]
    fn deadlines_dropped_before_they_come_due_leave_nothing_queued() {
        let far = Instant::now() + Duration::from_secs(3600);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut held = Box::pin(Deadline::at(far));
        assert!(held.as_mut().poll(&mut cx).is_pending());
        for _ in 0..1_000 {
            let mut dropped = Box::pin(Deadline::at(far));
            assert!(dropped.as_mut().poll(&mut cx).is_pending());
        }
        // Other tests' deadlines may be queued too, but none of these thousand.
        let queued = TimerThread::get().lock().due.iter().filter(|(at, _)| *at == far).count();
        assert_eq!(queued, 1, "only the deadline still held");
        drop(held);
    }
}
