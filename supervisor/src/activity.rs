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

/// See the module docs.
#[derive(Debug, Default)]
pub struct Activity {
    pending: Mutex<u64>,
    idle: Condvar,
    /// `Some` while held: the wakes to deliver on release.
    held: Mutex<Option<Vec<DeferredWake>>>,
    /// The arbiter the tracked actors run on.
    arbiter: OnceLock<ArbiterHandle>,
}

impl Activity {
    /// A tracker with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add(&self, n: usize) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) += n as u64;
    }

    pub(crate) fn done(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_sub(n as u64);
        if *pending == 0 {
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
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until nothing is pending or `timeout` passed; whether it is idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        // `None` for a timeout past what an `Instant` holds: then it is waited out whole.
        let deadline = Instant::now().checked_add(timeout);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while *pending > 0 {
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return false,
                },
                None => timeout,
            };
            pending =
                self.idle.wait_timeout(pending, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }
}
