//! Change signals that lose no wake: a request's "changed" signal and the runtime's "a request
//! decoded or ended" signal are woken only when someone listens, and every blocking wait runs
//! the same listen–check–wait loop ([`wait_until`]).
//!
//! # Invariants
//!
//! - A waiter listens ([`listen`]), then checks its condition again, then waits; a changer
//!   changes, then wakes ([`wake_listeners`]). Either the wake sees the listener or the check
//!   sees the change (see [`wake_listeners`] for why that holds before the signal's state
//!   exists).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

pub(crate) use event_listener::Event as Signal;
use event_listener::{EventListener, Listener};
use streamrt_supervisor::{log_caught, take_panic_message};

/// Wakes whoever listens on `signal`, and does nothing when no one ever listened.
///
/// event-listener's `notify` allocates the event's shared state on first use: called on every
/// request's end, it cost each request an allocation (about 200 instructions on the publishing
/// thread, `streamctl bench tiny`) and kept it for the cell's life, though most requests end
/// with no waiter; and once the state exists it locks it even with no listener (the
/// runtime's progress signal, at every staging).
///
/// No wake is lost. Every waiter listens through [`listen`], then checks the state again
/// before it waits. Once the signal's state exists, `total_listeners` takes the lock the
/// listener was inserted under: either it counts the listener, or the insertion came after
/// and the waiter's check sees the change made before this call. Before the state exists
/// (the first listener), no lock is shared; the fence here and the one in [`listen`] order
/// the two sides, so either this sees the state (and takes the lock) or the waiter sees the
/// change.
pub(crate) fn wake_listeners(signal: &Signal) {
    std::sync::atomic::fence(Ordering::SeqCst);
    if signal.total_listeners() > 0 {
        signal.notify(usize::MAX);
    }
}

/// Listens on `signal`, for a waiter that checks its condition again before it waits: the
/// fence pairs with [`wake_listeners`]'s (event-listener 5 emits none when it registers).
pub(crate) fn listen(signal: &Signal) -> EventListener {
    let listener = signal.listen();
    std::sync::atomic::fence(Ordering::SeqCst);
    listener
}

/// A listener awaited by an async wait, its executor's waker wrapped so that a panic of the
/// waker is caught where it is woken. The wake runs inside event-listener's `notify`, on the
/// runtime's thread that changed the signal: a panic there would unwind through the signal's
/// list (leaving it inconsistent for every later waiter) and through the actor that changed
/// it (a cache handing a value out). Awaited, it is the listener's own future.
pub(crate) struct Listened {
    listener: EventListener,
    /// The last executor waker seen and the wrapper built for it, reused while they match.
    wakers: Option<(Waker, Waker)>,
}

/// [`listen`] for an async wait: the listener, its executor's waker guarded (see [`Listened`]).
pub(crate) fn listen_async(signal: &Signal) -> Listened {
    Listened { listener: listen(signal), wakers: None }
}

impl Future for Listened {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let wrapped = match &this.wakers {
            Some((outer, wrapped)) if outer.will_wake(cx.waker()) => wrapped.clone(),
            _ => {
                let wrapped = Waker::from(Arc::new(CaughtWaker(cx.waker().clone())));
                this.wakers = Some((cx.waker().clone(), wrapped.clone()));
                wrapped
            }
        };
        Pin::new(&mut this.listener).poll(&mut Context::from_waker(&wrapped))
    }
}

/// An executor's waker whose panic is caught and logged (see [`Listened`]).
struct CaughtWaker(Waker);

impl Wake for CaughtWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.0.wake_by_ref())) {
            let message = take_panic_message(panic);
            log_caught(|| {
                tracing::error!(target: "streamrt", %message, "an executor's waker panicked");
            });
        }
    }
}

/// The instant `timeout` from now, or `None` (no deadline) for a timeout longer than an
/// `Instant` can hold: a caller passing `Duration::MAX` for "for ever" gets that, not a panic.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Blocks until `check` gives a value, or `None` once `deadline` passes (never without one)
/// and a last ask still finds none.
/// `check` gives the value, or the signal that tells when to ask again; it is asked again once
/// the listener is registered, so a change between the two asks is never slept through.
///
/// When the second ask names another signal (a wait over several runtimes' requests moved on
/// to the next one still pending), that one is listened to instead: the first may never fire.
pub(crate) fn wait_until<'a, R>(
    deadline: Option<Instant>,
    mut check: impl FnMut() -> Result<R, &'a Signal>,
) -> Option<R> {
    let mut signal = match check() {
        Ok(value) => return Some(value),
        Err(signal) => signal,
    };
    loop {
        let listener = listen(signal);
        match check() {
            Ok(value) => return Some(value),
            Err(next) if !std::ptr::eq(next, signal) => {
                signal = next;
                continue;
            }
            Err(_) => {}
        }
        match deadline {
            // A change made as the deadline passed, its wake not yet come, still counts.
            Some(deadline) => {
                if listener.wait_deadline(deadline).is_none() {
                    return check().ok();
                }
            }
            None => listener.wait(),
        }
        signal = match check() {
            Ok(value) => return Some(value),
            Err(signal) => signal,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_change_whose_wake_has_not_come_by_the_deadline_still_counts() {
        let signal = Signal::new();
        let checks = AtomicUsize::new(0);
        let soon = Instant::now() + Duration::from_millis(10);
        // The value is there from the third ask on, after the wait began; the signal is
        // never notified.
        let found = wait_until(Some(soon), || match checks.fetch_add(1, Ordering::Relaxed) {
            0 | 1 => Err(&signal),
            _ => Ok(7),
        });
        assert_eq!(found, Some(7));
    }

    #[test]
    fn a_wait_whose_check_moves_on_to_another_signal_listens_there() {
        let (a, b) = (Signal::new(), Signal::new());
        let (done, checks) = (AtomicBool::new(false), AtomicUsize::new(0));
        let (go, went) = mpsc::channel();
        std::thread::scope(|s| {
            let done = &done;
            let b = &b;
            s.spawn(move || {
                went.recv().unwrap();
                done.store(true, Ordering::SeqCst);
                wake_listeners(b);
            });
            let ended = wait_until(deadline_after(Duration::from_secs(30)), || {
                if done.load(Ordering::SeqCst) {
                    return Ok(());
                }
                // Pending on A at the first ask; by the second, on B, which then ends (A never
                // fires again).
                if checks.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(&a)
                } else {
                    let _ = go.send(());
                    Err(b)
                }
            });
            assert_eq!(ended, Some(()), "B's end was slept through");
        });
    }
}
