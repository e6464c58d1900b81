//! Deadlines for async waits on any executor: [`Deadline`] resolves at an instant, woken by one
//! process-wide timer thread.
//!
//! The runtime's async waits must not assume tokio (engines bring their own executors), so
//! they cannot use an executor's timers. The `streamrt-timer` thread starts on the first
//! deadline, sleeps on a condition variable until the earliest registered instant, and wakes
//! the futures whose instant passed. It holds no resources beyond the registered wakers and is
//! idle (blocked) when no deadline is pending.
//!
//! # Invariants
//!
//! - A [`Deadline`] polled after its instant is ready at once, whether or not the thread ran.
//! - Dropping a [`Deadline`] unregisters its waker; the heap entry left behind is skipped
//!   when it comes due.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use streamrt_supervisor::log_caught;

#[derive(Default)]
struct Timers {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
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
        let mut first = false;
        let timer = TIMER.get_or_init(|| {
            first = true;
            TimerThread { timers: Mutex::new(Timers::default()), changed: Condvar::new() }
        });
        if first {
            let spawned = std::thread::Builder::new()
                .name("streamrt-timer".into())
                .spawn(|| TimerThread::get().run());
            if let Err(e) = spawned {
                // Deadlines still resolve when polled after their instant; they just are not
                // woken on time.
                log_caught(|| {
                    tracing::error!(target: "streamrt", error = %e, "cannot start the timer thread");
                });
            }
        }
        timer
    }

    fn lock(&self) -> MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut timers = self.lock();
        loop {
            let now = Instant::now();
            while let Some(&Reverse((at, id))) = timers.due.peek() {
                if at > now {
                    break;
                }
                timers.due.pop();
                if let Some(waker) = timers.wakers.remove(&id) {
                    waker.wake();
                }
            }
            timers = match timers.due.peek() {
                Some(&Reverse((at, _))) => {
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
            Some(id) => {
                timers.wakers.insert(id, cx.waker().clone());
            }
            None => {
                let id = timers.next_id;
                timers.next_id += 1;
                timers.wakers.insert(id, cx.waker().clone());
                timers.due.push(Reverse((self.at, id)));
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
            TimerThread::get().lock().wakers.remove(&id);
        }
    }
}

/// Resolves with `inner`'s output, or `None` once `deadline` passes first.
pub(crate) struct WithDeadline<F: Future> {
    inner: Pin<Box<F>>,
    deadline: Deadline,
}

impl<F: Future> WithDeadline<F> {
    pub(crate) fn new(inner: F, at: Instant) -> Self {
        Self { inner: Box::pin(inner), deadline: Deadline::at(at) }
    }
}

impl<F: Future> Future for WithDeadline<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        Pin::new(&mut self.deadline).poll(cx).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_wakes_a_blocked_executor() {
        let started = Instant::now();
        futures::executor::block_on(Deadline::at(started + Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn the_inner_future_wins_when_it_is_ready_first() {
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(futures::executor::block_on(WithDeadline::new(async { 7 }, far)), Some(7));
    }

    #[test]
    fn a_pending_inner_future_gives_none_at_the_deadline() {
        let soon = Instant::now() + Duration::from_millis(10);
        let never = std::future::pending::<()>();
        assert_eq!(futures::executor::block_on(WithDeadline::new(never, soon)), None);
    }
}
