//! What a cache does when a load fails: retry it with backoff under a fresh generation,
//! quarantine a key whose decoder keeps panicking, or fail every request holding the load.
//!
//! A transient failure (IO, a load a crashed worker lost) is retried with backoff, up to the
//! type's `attempts_max` (counted per cache incarnation: a restart loads it again from its
//! first attempt). The slot waits out the backoff outside the scheduler's queue
//! (`Phase::Backoff`), so a restarted scheduler's resubmission does not cut it short; the
//! backoff's end queues it at the slot's priority then. A decoder panic is retried until the
//! key has panicked `panics_max` times in a row (a decode that works starts the count again,
//! if it takes effect: see `Cache::decoded`);
//! then the key is quarantined and every request for it fails at once with `Quarantined`.
//! The count is the key's, not one load's: a load cancelled after a panic leaves it, so a key
//! that panics once per request is quarantined all the same. It is kept while the key may
//! still decode (for each key that panicked without a decode that worked since, for the
//! incarnation's life), and moves to the quarantine when the key does.
//! Other failures end the load and fail every holder (none of a loading slot's holders was
//! staged: a cache's restart loads a slot again only when none of its holders has the value).
//!
//! # Invariants
//!
//! - Only a load still current at its slot (same index and generation) is retried or failed:
//!   a late failure of a cancelled or superseded load changes nothing but its credit.
//! - A retry takes a fresh generation, so the failed attempt's late replies are stale.

use std::sync::Arc;
use std::time::Duration;

use actix::{AsyncContext, Context};
use streamrt_messages::{AssetLoadError, AssetPath, ErrorKind, EventKind, Generation, LoadState};
use streamrt_supervisor::guarded_turn;

use super::slots::Phase;
use super::{load_ref, Cache, CacheMsg};
use crate::scheduler::{Admission, LoadRef, SchedulerMsg};
use crate::telemetry::Counters;
use crate::work::JobEnd;

/// What happens to a load after a failed attempt.
enum Verdict {
    Retry { delay_ms: u64 },
    Quarantine { panics: u32 },
    Fail,
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Fails a load the scheduler refused, if it is still its slot's queued load (a refused
    /// duplicate of a load since dispatched must not fail its requests).
    pub(super) fn refused(&mut self, load: LoadRef, kind: ErrorKind) {
        let at = load.slot as usize;
        if self.table.current_in(at, load.generation, Phase::Queued).is_some() {
            // The slot goes with the failure. Marked cancelled, another copy of the load (one
            // sent again to a restarted scheduler) is dropped from the scheduler's queue
            // rather than hold a place there for a slot that is gone.
            self.mark_cancelled(at, load.generation);
            self.ended(at, load.generation, JobEnd::Failed(kind), false);
        }
    }

    /// `at`'s load of `generation` ended without a value; `recorded` if the replay log holds
    /// the end as taken (see `record_taken`).
    pub(super) fn ended(&mut self, at: usize, generation: Generation, end: JobEnd, recorded: bool) {
        self.to_scheduler.push(SchedulerMsg::JobFinished(generation));
        if self.table.current_mut(at, generation).is_none()
            || (!recorded && self.release_abandoned(at))
        {
            // The load was cancelled, or is now: its requests were told when they let go, and
            // none is left for a retry to load for (nor is the failure recorded).
            return;
        }
        let slot = self.table.current_mut(at, generation).expect("the current slot");
        let kind = match end {
            JobEnd::Failed(kind) | JobEnd::ReadFailed(kind) => kind,
            JobEnd::Dropped(stage) => {
                // A load is marked cancelled only when its slot is removed, so a current load is
                // never dropped; fail its requests rather than leave them waiting if that changes.
                debug_assert!(false, "current load {generation:?} dropped at {stage:?}");
                ErrorKind::Io(format!("load dropped while {}", stage.name()))
            }
        };
        let (attempt, origin, path) = (slot.attempt(), slot.origin(), slot.path().clone());
        match self.verdict(&path, &kind, attempt) {
            Verdict::Retry { delay_ms } => self.retry(at, kind, delay_ms),
            Verdict::Quarantine { panics } => {
                Counters::bump(&self.links.probe.counters.quarantined);
                self.emit(EventKind::Quarantined { panics }, origin, &path);
                self.panics.remove(&path);
                self.quarantined.insert(path, panics);
                self.fail_slot(at, ErrorKind::Quarantined { panics });
            }
            Verdict::Fail => self.fail_slot(at, kind),
        }
    }

    fn verdict(&mut self, path: &AssetPath, kind: &ErrorKind, attempt: u32) -> Verdict {
        let policy = self.policy;
        if let ErrorKind::DecoderPanicked(_) = kind {
            let panics = self.panics.entry(path.clone()).or_default();
            *panics += 1;
            return if *panics >= policy.panics_max {
                Verdict::Quarantine { panics: *panics }
            } else {
                Verdict::Retry { delay_ms: policy.backoff.delay_ms(attempt - 1) }
            };
        }
        if kind.is_transient() && attempts_left(attempt, policy.attempts_max) {
            return Verdict::Retry { delay_ms: policy.backoff.delay_ms(attempt - 1) };
        }
        Verdict::Fail
    }

    /// Starts the next attempt of `at`'s load under a fresh generation, after `delay_ms`.
    fn retry(&mut self, at: usize, kind: ErrorKind, delay_ms: u64) {
        let generation = self.next_generation();
        let slot = self.table.get_mut(at).expect("live slot");
        slot.generation = generation;
        slot.attempt = slot.attempt.saturating_add(1);
        slot.phase = Phase::Backoff;
        for ticket in &slot.holders {
            ticket.cell().advance(LoadState::Loading, LoadState::Pending);
        }
        let (attempt, origin, path) = (slot.attempt(), slot.origin(), slot.path().clone());
        // While the attempt was read, holders came, went or were reprioritised, none of which
        // moves a load in flight: the retry waits at the most urgent priority of those left.
        self.settle_priority(at, None, false);
        Counters::bump(&self.links.probe.counters.retries);
        self.emit(EventKind::Retried { attempt, kind }, origin, &path);
        self.retry_later.push((delay_ms, load_ref(self.type_index, at, generation)));
    }

    fn fail_slot(&mut self, at: usize, kind: ErrorKind) {
        let slot = self.table.get(at).expect("live slot");
        // The load ends here either way: its entry is no longer waited for.
        self.links.hints.unwant(slot.locator);
        let slot = self.table.remove(at);
        let key = self.key_of(slot.path());
        let error = Arc::new(AssetLoadError { key, attempt: slot.attempt(), kind });
        for ticket in &slot.holders {
            ticket.cell().fail(&error);
        }
    }

    pub(super) fn schedule_retries(&mut self, ctx: &mut Context<Self>) {
        let retries = std::mem::take(&mut self.retry_later);
        for (delay_ms, load) in retries {
            if delay_ms == 0 {
                self.retry_due(load, Due::AtOnce);
                continue;
            }
            if let Some(timers) = &self.links.timers {
                let at = load.slot as usize;
                let Some(slot) = self.table.current_in(at, load.generation, Phase::Backoff) else {
                    continue;
                };
                let path = slot.path().clone();
                let key = self.key_of(&path);
                let mailbox = self.inbox.messages.clone();
                let now_us = self.links.probe.now_us();
                // A closed mailbox means shutdown; the cache failed the load's requests then.
                let due = move || drop(mailbox.post(CacheMsg::RetryDue(load)));
                timers.after(now_us, delay_ms, key, Box::new(due));
                continue;
            }
            // The timer's work is the cache's as a handler's is: a panic in it is reported and
            // stops the cache, its requests salvaged for the next incarnation.
            ctx.run_later(Duration::from_millis(delay_ms), move |cache, ctx| {
                let link = cache.link.clone();
                let retried = guarded_turn(cache, ctx, &link, |cache| {
                    cache.retry_due(load, Due::Timed);
                    cache.flush();
                });
                if !retried {
                    cache.salvage();
                }
            });
        }
    }

    /// Queues a retry whose backoff is over, if its slot still waits for it (the slot may have
    /// been released, and its index reused) and a request still holds it (else its load is
    /// cancelled now). Built now, the load has its slot's latest priority. A retry whose
    /// backoff ran on a timer is recorded as it is queued (see `record_retry_due`).
    pub(super) fn retry_due(&mut self, load: LoadRef, due: Due) {
        let at = load.slot as usize;
        if self.table.current_in(at, load.generation, Phase::Backoff).is_none() {
            return;
        }
        // Let go of by every request: its load is cancelled now (`release_abandoned`). A timed
        // retry decides that as it is recorded, so that a cancel crossing it is logged after it.
        let held = match due {
            Due::Timed => self.record_retry_due(at) || !self.release_abandoned(at),
            Due::AtOnce => !self.release_abandoned(at),
        };
        if !held {
            return;
        }
        let slot = self.table.get_mut(at).expect("the current slot");
        slot.phase = Phase::Queued;
        self.to_scheduler.push(SchedulerMsg::Enqueue(self.queued(at, Admission::Again)));
    }
}

/// How a retry came due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// Its backoff ran on a timer (a recording logs when it ran out).
    Timed,
    /// With no backoff, as its load failed.
    AtOnce,
}

/// Whether a load at its `attempt`th attempt may try again under a limit of `attempts_max`. A
/// slot counts attempts in 16 bits, stopping at `u16::MAX`: a larger limit counts as that, or
/// a load that kept failing would be retried for ever.
fn attempts_left(attempt: u32, attempts_max: u32) -> bool {
    attempt < attempts_max.min(u32::from(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_past_what_a_slot_counts_still_ends_the_retries() {
        assert!(attempts_left(2, 3));
        assert!(!attempts_left(3, 3));
        assert!(attempts_left(65_534, u32::MAX));
        assert!(!attempts_left(65_535, u32::MAX), "the last attempt a slot can count");
    }

    #[test]
    fn a_limit_of_zero_or_one_attempt_retries_nothing_after_the_first() {
        assert!(!attempts_left(1, 0));
        assert!(!attempts_left(1, 1));
        assert!(attempts_left(1, 2));
    }
}
