//! The IO bandwidth limit: a shared schedule that spaces reads so the IO workers together read
//! at most `io_bytes_per_sec_max` on average.
//!
//! What is charged is what the storage was asked for, where the source counts it
//! (`Source::storage_bytes_read`): a pack's entries as stored (compressed) and its coalescing
//! windows whole, failed reads too, charged as the count grows, whichever worker sees it grow.
//! A source that does not count (a directory, the memory source) is charged what each read
//! hands over, failed reads not at all. The count starts from where the source's stood when
//! the runtime was built, so reads before it (an earlier runtime over a clone of the pack) are
//! not charged; two runtimes reading clones of one pack at once are each charged the other's
//! reads too, and share the limit. A source whose count panics is not asked again: the reads
//! after are charged what they hand over.
//!
//! A read is charged after it happened (a directory source cannot know a file's size before
//! reading it): its bytes occupy the next stretch of the schedule, and the worker that charges
//! them (the one that read them, or one that saw a sibling's window in the count first) waits
//! until that stretch ends before it passes its bytes on and takes its next read. Idle time
//! builds up credit for at most `burst_us` of bytes, so a read after a pause goes through at
//! once but a long run never exceeds the rate by more than one burst.
//!
//! A `High` or `Critical` load does not wait behind the schedule: its read is charged, so the
//! reads after it wait for its bytes too, but it goes on at once. Nor does a load raised to
//! urgent while its worker waits, and the workers stop waiting when an urgent load waits for a
//! worker while every one of them is paying ([`Throttle::nudge`] wakes them): the bytes it was paying for stay charged, so the
//! reads after them pay for them. Otherwise one large background read, charged first, held
//! every read after it, the engine's most urgent too, for as long as its bytes take at the
//! rate; and with every worker paying, an urgent load waited for the first of them to finish.
//!
//! # Invariants
//!
//! Over any interval, the bytes let through are at most `rate × (interval + burst)` plus the
//! last charge (a whole window, for a pack), plus the bytes let go early for urgent loads
//! whose stretch of the schedule runs past the interval. Pure arithmetic on the caller's
//! clock, so it is tested with scripted time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::lock::lock;
use crate::source::{OptionalCalls, Source};

/// The schedule's arithmetic; see the module docs.
#[derive(Debug)]
pub(crate) struct Schedule {
    bytes_per_sec: u64,
    burst_us: u64,
    /// When the bytes charged so far have been paid for, in the caller's microseconds.
    paid_until_us: u64,
}

impl Schedule {
    pub(crate) fn new(bytes_per_sec: u64, burst_us: u64) -> Self {
        Self { bytes_per_sec: bytes_per_sec.max(1), burst_us, paid_until_us: 0 }
    }

    /// Charges `bytes` read at `now_us`; returns how long the reader waits, in microseconds.
    pub(crate) fn charge(&mut self, now_us: u64, bytes: u64) -> u64 {
        // Rounded up, so rounding never lets more through than the rate.
        let rate = u128::from(self.bytes_per_sec);
        let cost_us =
            u64::try_from((u128::from(bytes) * 1_000_000).div_ceil(rate)).unwrap_or(u64::MAX);
        let start = self.paid_until_us.max(now_us.saturating_sub(self.burst_us));
        self.paid_until_us = start.saturating_add(cost_us);
        self.paid_until_us.saturating_sub(now_us)
    }
}

/// The reads a pause lets through at once, as the microseconds of the rate they take: 100 ms.
const BURST_US: u64 = 100_000;

/// A [`Schedule`] shared by the IO workers, on the monotonic clock.
#[derive(Debug)]
pub(crate) struct Throttle {
    epoch: Instant,
    schedule: Mutex<Schedule>,
    /// The source's storage count already charged (see [`Throttle::storage_charge`]).
    storage_charged: AtomicU64,
    /// Set once the source's count panicked: it is not asked again.
    storage_count: OptionalCalls,
    /// Nudges so far: a paying worker waits on `nudged` for the count to move.
    nudges: Mutex<u64>,
    nudged: Condvar,
    /// The IO workers waiting in [`Throttle::pay`], and how many there are.
    paying: AtomicUsize,
    workers: usize,
}

impl Throttle {
    /// At most `bytes_per_sec` on average, with a burst of `BURST_US` of bytes after a pause,
    /// over `source` read by `workers` IO workers: its storage count now (if it keeps one) is
    /// charged to no read, so reads before the runtime do not pay.
    pub(crate) fn new(bytes_per_sec: u64, source: &dyn Source, workers: usize) -> Self {
        let schedule = Schedule::new(bytes_per_sec, BURST_US);
        let throttle = Self {
            epoch: Instant::now(),
            schedule: Mutex::new(schedule),
            storage_charged: AtomicU64::new(0),
            storage_count: OptionalCalls::default(),
            nudges: Mutex::new(0),
            nudged: Condvar::new(),
            paying: AtomicUsize::new(0),
            workers,
        };
        if let Some(before) = throttle.storage_count(source) {
            throttle.storage_charge(before);
        }
        throttle
    }

    /// `source`'s [`Source::storage_bytes_read`], until it panics. The source is the engine's
    /// code: a panic is caught and logged, and turns the count off for good (asked again
    /// later, its growth would charge the bytes of the reads between twice).
    pub(crate) fn storage_count(&self, source: &dyn Source) -> Option<u64> {
        let after = "reads are charged what they hand over";
        let count = || source.storage_bytes_read();
        self.storage_count.call(source, "storage count", after, count).flatten()
    }

    /// The bytes to charge now that the source's storage count ([`Source::storage_bytes_read`])
    /// reads `total`: its growth since the last charge. The workers share the count, so a
    /// worker may pay for bytes another read; together they pay for every byte once.
    pub(crate) fn storage_charge(&self, total: u64) -> u64 {
        total.saturating_sub(self.storage_charged.fetch_max(total, Ordering::AcqRel))
    }

    /// Charges `bytes` just read and blocks the calling IO worker until they are paid for, or
    /// until `let_go` says it need not wait: the load is gone (a cancel, or shutdown, which
    /// cancels every load, checked every `CANCEL_CHECK`), or it was raised to urgent or an
    /// urgent load waits for a worker (checked at each [`Throttle::nudge`]). An `urgent`
    /// load's bytes are charged and not waited for: it goes on at once, and the reads after
    /// it pay for it. Only IO worker threads call this: they exist to block, no arbiter ever
    /// does.
    pub(crate) fn pay(&self, bytes: u64, urgent: bool, let_go: impl Fn() -> bool) {
        const CANCEL_CHECK: Duration = Duration::from_millis(20);
        let now_us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let wait_us = lock(&self.schedule).charge(now_us, bytes);
        if urgent {
            return;
        }
        let until = Instant::now() + Duration::from_micros(wait_us);
        let _paying = Paying::new(&self.paying);
        // `let_go` is asked with the nudges' lock held, which a nudge takes after what it
        // signals is done: a change made after the ask wakes the wait below.
        let mut nudges = lock(&self.nudges);
        while !let_go() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            nudges = match self.nudged.wait_timeout(nudges, left.min(CANCEL_CHECK)) {
                Ok((nudges, _)) => nudges,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Whether every IO worker is waiting in [`Throttle::pay`]: no other is free to take an
    /// urgent load soon. (A pool that lost a worker to its factory's panic never is: its
    /// urgent loads then wait for the first worker done paying, as before this check.)
    pub(crate) fn all_paying(&self) -> bool {
        self.paying.load(Ordering::Acquire) >= self.workers
    }

    /// Wakes the workers paying for their reads to ask their `let_go` again: a load was raised
    /// to urgent, or one was staged for a read. Called after the change is made.
    pub(crate) fn nudge(&self) {
        *lock(&self.nudges) += 1;
        self.nudged.notify_all();
    }
}

/// Counts a worker among the paying ones while it lives.
struct Paying<'a>(&'a AtomicUsize);

impl<'a> Paying<'a> {
    fn new(paying: &'a AtomicUsize) -> Self {
        paying.fetch_add(1, Ordering::AcqRel);
        Self(paying)
    }
}

impl Drop for Paying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_storage_count_is_charged_once_whichever_worker_reads_it_and_in_whatever_order() {
        let uncounted = crate::MemorySource::new();
        let throttle = Throttle::new(1_000, &uncounted, 1);
        assert_eq!(throttle.storage_charge(100), 100);
        // Another worker's window read meanwhile: the next to look pays for it.
        assert_eq!(throttle.storage_charge(350), 250);
        assert_eq!(throttle.storage_charge(350), 0, "nothing read since");
        // A worker that read the count before the last charge owes nothing more.
        assert_eq!(throttle.storage_charge(300), 0);
        assert_eq!(throttle.storage_charge(400), 50);
        // Reads before the runtime was built are not charged.
        let later = Throttle::new(1_000, &uncounted, 1);
        later.storage_charge(1_000);
        assert_eq!(later.storage_charge(1_200), 200);
    }

    #[test]
    fn a_read_after_a_pause_goes_at_once_and_a_run_is_spaced_at_the_rate() {
        // 1 MB/s: a byte costs 1 µs. Burst 100 ms.
        let mut schedule = Schedule::new(1_000_000, 100_000);
        assert_eq!(schedule.charge(1_000_000, 50_000), 0, "within the burst credit");
        assert_eq!(schedule.charge(1_000_000, 100_000), 50_000, "past it: wait for the rest");
        assert_eq!(schedule.charge(1_050_000, 100_000), 100_000, "then one cost per read");
    }

    proptest! {
        #[test]
        fn bytes_let_through_never_exceed_the_rate_plus_one_burst(
            rate in 1_000u64..10_000_000,
            reads in proptest::collection::vec((0u64..200_000, 1u64..1_000_000), 1..200),
        ) {
            let burst_us = 100_000;
            let mut schedule = Schedule::new(rate, burst_us);
            let mut now = 0u64;
            let mut first: Option<u64> = None;
            let mut through = 0u128;
            for (gap_us, bytes) in reads {
                now += gap_us;
                let start = *first.get_or_insert(now);
                now += schedule.charge(now, bytes);
                through += u128::from(bytes);
                let allowed = u128::from(rate) * u128::from(now - start + burst_us) / 1_000_000;
                prop_assert!(through <= allowed + 1, "{through} > {allowed} at {now}");
            }
        }
    }
}
