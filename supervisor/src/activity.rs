//! Messages posted and not yet handled, across a set of mailboxes: how a deterministic driver
//! knows the actors are idle before it feeds them the next input.
//!
//! # Invariants
//!
//! A tracked mailbox adds one per message when it is queued (under the queue's lock, before
//! `post` returns) and removes it once its handler returned (or panicked) or the message was
//! dropped by `close`. A handler that posts adds before its own message is counted done, so the
//! count reaches zero only when no message is queued or being handled.
//!
//! While the driver holds the activity ([`Activity::hold`]) tracked mailboxes queue their
//! messages but defer waking their actors until [`Activity::release`]: the actors then never
//! run at the same time as the driver's own step, whatever that step posts along the way.
//! The release hands the held wakes to the actors' arbiter ([`Activity::deliver_on`]) as one
//! closure, which delivers them there in the order they were asked: wakes from another thread
//! would reach that arbiter's executor in an order that depends on timing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix::{ArbiterHandle, Recipient};

use crate::mailbox::{send_wake, Wake};

/// A wake held back: the actor to wake and its mailbox's `wake_pending` flag.
type DeferredWake = (Recipient<Wake>, Arc<AtomicBool>);

/// Messages pending now, and handled so far (how a wait tells a slow step from a stalled one).
#[derive(Debug, Default)]
struct Counts {
    pending: u64,
    handled: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Activity {
    counts: Mutex<Counts>,
    idle: Condvar,
    /// `Some` while held: the wakes to deliver on release.
    held: Mutex<Option<Vec<DeferredWake>>>,
    /// The arbiter the tracked actors run on.
    arbiter: OnceLock<ArbiterHandle>,
}

impl Activity {
    /// The most patiences [`Activity::wait_idle`] waits in all, however its actors progress.
    pub const WAIT_PATIENCES_MAX: u32 = 20;

    /// A tracker with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add(&self, n: usize) {
        self.counts().pending += n as u64;
    }

    pub(crate) fn done(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut counts = self.counts();
        counts.pending = counts.pending.saturating_sub(n as u64);
        counts.handled = counts.handled.wrapping_add(n as u64);
        if counts.pending == 0 {
            self.idle.notify_all();
        }
    }

    /// Holds back every tracked actor's wake until [`Activity::release`].
    pub fn hold(&self) {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(Vec::new);
    }

    /// Delivers held wakes on `arbiter`, where the tracked actors run (see the module docs).
    pub fn deliver_on(&self, arbiter: ArbiterHandle) {
        let _ = self.arbiter.set(arbiter);
    }

    /// Delivers the wakes held back since [`Activity::hold`], in the order they were asked.
    pub fn release(&self) {
        let deferred = self.held.lock().unwrap_or_else(PoisonError::into_inner).take();
        let deferred = deferred.unwrap_or_default();
        if deferred.is_empty() {
            return;
        }
        let deliver = move || {
            for (waker, pending) in deferred {
                if !send_wake(&waker) {
                    pending.store(false, Ordering::Release);
                }
            }
        };
        match self.arbiter.get() {
            Some(arbiter) => drop(arbiter.spawn_fn(deliver)),
            None => deliver(),
        }
    }

    /// Keeps `waker` for the release if the activity is held; false if it is not.
    pub(crate) fn defer(&self, waker: &Recipient<Wake>, pending: &Arc<AtomicBool>) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(deferred) => {
                deferred.push((waker.clone(), Arc::clone(pending)));
                true
            }
            None => false,
        }
    }

    /// Messages queued or being handled now.
    pub fn pending(&self) -> u64 {
        self.counts().pending
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until nothing is pending, or until `patience` passed with no message handled
    /// (noticed at the end of a patience, so after up to twice it), or at most
    /// [`Activity::WAIT_PATIENCES_MAX`] patiences in all; whether it is idle. A long step that
    /// keeps handling messages (a tree of a million requests on a slow machine) is waited
    /// out; one whose actors stopped, or pass messages among themselves for ever, is not.
    pub fn wait_idle(&self, patience: Duration) -> bool {
        let started = Instant::now();
        let longest = patience.saturating_mul(Self::WAIT_PATIENCES_MAX);
        let mut counts = self.counts();
        loop {
            let seen = counts.handled;
            counts = self
                .idle
                .wait_timeout_while(counts, patience, |c| c.pending > 0)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if counts.pending == 0 {
                return true;
            }
            if counts.handled == seen || started.elapsed() >= longest {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_gives_up_after_its_patience_with_nothing_handled() {
        let activity = Activity::new();
        activity.add(1);
        assert!(!activity.wait_idle(Duration::from_millis(50)), "stalled");
        activity.done(1);
        assert!(activity.wait_idle(Duration::from_millis(50)), "idle");
    }

    #[test]
    fn a_wait_outlasts_its_patience_while_messages_are_handled() {
        let activity = Arc::new(Activity::new());
        const STEPS: u32 = 30;
        activity.add(STEPS as usize);
        let worker = Arc::clone(&activity);
        // Handles one message every 50 ms: 1.5 s in all, each well within the 1 s patience.
        let handling = std::thread::spawn(move || {
            for _ in 0..STEPS {
                std::thread::sleep(Duration::from_millis(50));
                worker.done(1);
            }
        });
        assert!(activity.wait_idle(Duration::from_secs(1)), "slow, not stalled");
        handling.join().unwrap();
    }
}
