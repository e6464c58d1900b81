//! Read credits: how much of the dispatched work is being read, counted without a message per
//! read.
//!
//! Credits are counted in shares ([`SHARES_PER_CREDIT`] to a credit), so a small load can take
//! less than a whole one. The scheduler takes a [`ReadCredit`] of a load's shares for each load
//! it dispatches; the credit travels with the load, through its cache (which builds the job),
//! to its IO worker, which drops it once the read (and any throttle payment) is over.
//! Dropping returns the credit by an atomic decrement, so a read costs the scheduler nothing
//! while it has credits to spare.
//!
//! # Wake protocol
//!
//! When the scheduler stops dispatching for want of a credit it arms a low-water mark
//! ([`ReadCredits::sleep_until`]); the return that brings the count down to the mark posts one
//! [`SchedulerMsg::CreditsReturned`]. So a saturated pipeline wakes the scheduler once per
//! half of its credits rather than once per read, and the loads it then dispatches refill the
//! IO queue in one batch. Only the returns are batched so: any other message the scheduler
//! takes (a load finished, a new or moved one) dispatches too, as soon as a load fits,
//! whatever mark is armed. Arming, then checking the count again, closes the race with a return
//! that happened in between: either the returner sees the mark or the scheduler sees the count.
//!
//! # Invariants
//!
//! - Every credit taken is returned exactly once: by its IO worker, by its cache when the load
//!   was released between the scheduler and the cache, or by its drop when the load is lost (a
//!   worker panic, a closed pool, a cache's lane closed at shutdown).
//! - `reading` (in shares) never exceeds the limit the scheduler checks before taking a credit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use streamrt_supervisor::Mailbox;

use super::SchedulerMsg;

/// The shares one read credit divides into: the smallest load takes one share. Measured
/// (`streamctl bench tiny` and `priority`, docs/PERFORMANCE.md): 64 shares gave small assets
/// the most throughput but tripled a critical request's p99 behind a full queue, since every
/// load in flight is work the two cores do before it; 16 keeps most of the throughput.
pub(crate) const SHARES_PER_CREDIT: usize = 16;

/// No low-water mark armed.
const DISARMED: usize = usize::MAX;

/// The read credits of a runtime's scheduler, shared by its incarnations; see the module docs.
pub(crate) struct ReadCredits {
    /// Shares held by loads being read.
    reading: AtomicUsize,
    /// The count at or below which a return wakes the scheduler, or [`DISARMED`].
    wake_at: AtomicUsize,
    scheduler: Mailbox<SchedulerMsg>,
}

impl ReadCredits {
    pub(crate) fn new(scheduler: Mailbox<SchedulerMsg>) -> Arc<Self> {
        Arc::new(Self {
            reading: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(DISARMED),
            scheduler,
        })
    }

    /// Shares held by loads being read now.
    pub(crate) fn reading(&self) -> usize {
        self.reading.load(Ordering::SeqCst)
    }

    /// Takes `shares` for a load about to be dispatched.
    pub(crate) fn take(self: &Arc<Self>, shares: usize) -> ReadCredit {
        self.reading.fetch_add(shares, Ordering::SeqCst);
        ReadCredit { credits: Arc::clone(self), shares }
    }

    /// Arms the low-water mark `wake_at`. Returns `false` if the count is already at or below
    /// it and no returner took the mark (a return raced the arming): the caller should
    /// dispatch again instead of waiting. `true` when it may wait: the return that brings the
    /// count to the mark, or one that took it already, posts the wake.
    pub(crate) fn sleep_until(&self, wake_at: usize) -> bool {
        self.wake_at.store(wake_at, Ordering::SeqCst);
        if self.reading.load(Ordering::SeqCst) <= wake_at {
            // Whoever swaps the mark out owns the wake; here it is the scheduler itself.
            return self.wake_at.swap(DISARMED, Ordering::SeqCst) == DISARMED;
        }
        true
    }

    fn give_back(&self, shares: usize) {
        let now = self.reading.fetch_sub(shares, Ordering::SeqCst) - shares;
        // Only a return at or below the mark it saw takes it, and only if that mark is still
        // armed: a swap of whatever was there woke the scheduler early when it armed a new
        // mark between the load and the swap (the count above it), and wrote the line every
        // IO worker shares on each return while none was armed. (A mark taken and armed again
        // at the same value in between still lets this return take it: one early wake.) A
        // scheduler arming after the load sees this return in the count it checks next.
        let mark = self.wake_at.load(Ordering::SeqCst);
        if mark != DISARMED
            && now <= mark
            && self
                .wake_at
                .compare_exchange(mark, DISARMED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // A closed mailbox means shutdown: nothing is waiting for the credit any more.
            let _ = self.scheduler.post(SchedulerMsg::CreditsReturned);
        }
    }
}

/// One load's shares of the read credits; returned when dropped.
pub(crate) struct ReadCredit {
    credits: Arc<ReadCredits>,
    shares: usize,
}

impl Drop for ReadCredit {
    fn drop(&mut self) {
        self.credits.give_back(self.shares);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(mailbox: &Mailbox<SchedulerMsg>) -> usize {
        let mut out = Vec::new();
        mailbox.drain_into(usize::MAX, &mut out);
        out.iter().filter(|m| matches!(m, SchedulerMsg::CreditsReturned)).count()
    }

    #[test]
    fn returns_wake_the_scheduler_once_at_the_low_water_mark() {
        let mailbox = Mailbox::new();
        let credits = ReadCredits::new(mailbox.clone());
        let mut taken: Vec<_> = (0..4).map(|_| credits.take(1)).collect();
        assert_eq!(credits.reading(), 4);
        assert!(credits.sleep_until(2), "four reading is above the mark");
        taken.pop();
        assert_eq!(drained(&mailbox), 0, "three reading: still above the mark");
        taken.pop();
        assert_eq!(drained(&mailbox), 1, "two reading: the mark is reached");
        taken.clear();
        assert_eq!(drained(&mailbox), 0, "the mark wakes once");
        assert_eq!(credits.reading(), 0);
    }

    #[test]
    fn arming_below_the_count_already_returned_does_not_wait() {
        let mailbox = Mailbox::new();
        let credits = ReadCredits::new(mailbox.clone());
        let _one = credits.take(1);
        assert!(!credits.sleep_until(1), "one reading is already at the mark");
        assert_eq!(drained(&mailbox), 0, "the scheduler keeps the wake to itself");
    }
}
