//! Messages posted and not yet handled, across a set of mailboxes: how a deterministic driver
//! knows the actors are idle before it feeds them the next input.
//!
//! # Invariants
//!
//! A tracked mailbox adds one per message when it is queued (under the queue's lock, before
//! `post` returns) and removes it once its handler returned (or panicked) or the message was
//! dropped by `close`. A handler that posts adds before its own message is counted done, so the
//! count reaches zero only when no message is queued or being handled.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug, Default)]
pub struct Activity {
    pending: Mutex<u64>,
    idle: Condvar,
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

    /// Messages queued or being handled now.
    pub fn pending(&self) -> u64 {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until nothing is pending or `timeout` passed; whether it is idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        while *pending > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            pending =
                self.idle.wait_timeout(pending, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }
}
