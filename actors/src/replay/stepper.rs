//! Deterministic mode: the runtime's own actors and workers, run in an order fixed by the
//! inputs alone.
//!
//! A deterministic runtime keeps its actors on their one core thread, but its IO and decode
//! pools are stepped (`WorkerPool::stepped`: no thread, one worker each), its clock is a
//! [`ManualClock`], its retry backoffs are [`VirtualTimers`], and the core actors' mailboxes are
//! tracked by one [`Activity`]. The [`Stepper`] then alternates strictly: it waits until the
//! actors are idle, runs one runnable job on the calling thread (decodes before reads, oldest
//! first, found among the jobs an outcome or a cancel may have let run: `waiting`), and repeats;
//! with no job runnable it fires the earliest timer, moving the clock to it. A replay of a log that
//! records when each retry came due (version 8) fires a retry's timer at that record instead
//! ([`Stepper::fire_timers_of`]), never when nothing can move: a retry fired then could take a read
//! credit ahead of inputs its recording saw first. Each of its own steps (and each input the replay
//! feeds) runs with the activity held, so the actors wake only once the step is over. Only one
//! thread ever works at a time, so the same inputs give the same events in the same order, and the
//! configured worker counts cannot change them.
//!
//! # Errors
//!
//! [`Stalled`] when the actors handle no message for [`SETTLE_PATIENCE`] before they become
//! idle (an actor died and nothing restarted it; noticed within twice that), or are still not
//! idle after `Activity::WAIT_PATIENCES_MAX` of it; a long step that keeps handling them is
//! waited out up to then.

mod waiting;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamrt_messages::AssetKey;
use streamrt_supervisor::{Activity, Clock, ManualClock};

use crate::lock::lock;
use crate::work::{DecodeJob, Job, ReadOrder};
use crate::Runtime;
use waiting::Waiting;

/// How long the actors may go without handling a message, before they become idle, before a
/// step gives up.
pub(crate) const SETTLE_PATIENCE: Duration = Duration::from_secs(30);

/// What a deterministic runtime is built with.
pub(crate) struct Deterministic {
    pub(crate) activity: Arc<Activity>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) timers: Arc<VirtualTimers>,
    pub(crate) cancels: Arc<CancelNotes>,
}

/// The slots whose loads a deterministic runtime's caches cancelled since the stepper last
/// looked: their jobs may run now, to be dropped.
#[derive(Default)]
pub(crate) struct CancelNotes(Mutex<Vec<usize>>);

impl CancelNotes {
    /// A load of `slot` was cancelled.
    pub(crate) fn note(&self, slot: usize) {
        lock(&self.0).push(slot);
    }

    fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *lock(&self.0))
    }
}

impl Deterministic {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            activity: Arc::new(Activity::new()),
            clock: Arc::new(ManualClock::new()),
            timers: Arc::new(VirtualTimers::default()),
            cancels: Arc::new(CancelNotes::default()),
        })
    }
}

/// A deferred action due at a virtual time.
type Deferred = Box<dyn FnOnce() + Send>;

/// Delays on the virtual clock: what a deterministic cache uses instead of a timer.
#[derive(Default)]
pub(crate) struct VirtualTimers {
    timers: Mutex<Timers>,
    next: AtomicU64,
}

/// The timers set, by due time then by the order they were set, and by the key whose retry each
/// is: a log's `RetryDue` finds its key's without a walk of every timer (a version 8 replay
/// never fires the timer of a load let go in its backoff, and such timers stay).
#[derive(Default)]
struct Timers {
    due: BTreeMap<(u64, u64), (AssetKey, Deferred)>,
    by_key: HashMap<AssetKey, Vec<(u64, u64)>>,
}

impl VirtualTimers {
    /// Runs `action`, the retry of `key`, once the virtual clock reaches `now_us + delay_ms`
    /// (or the log says its retry came due).
    pub(crate) fn after(&self, now_us: u64, delay_ms: u64, key: AssetKey, action: Deferred) {
        let at = now_us.saturating_add(delay_ms.saturating_mul(1_000));
        let id = (at, self.next.fetch_add(1, Ordering::Relaxed));
        let mut timers = self.timers();
        timers.by_key.entry(key.clone()).or_default().push(id);
        timers.due.insert(id, (key, action));
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, Timers> {
        lock(&self.timers)
    }

    fn pop(&self) -> Option<(u64, Deferred)> {
        let mut timers = self.timers();
        let (id, (key, action)) = timers.due.pop_first()?;
        if let Some(ids) = timers.by_key.get_mut(&key) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                timers.by_key.remove(&key);
            }
        }
        Some((id.0, action))
    }

    /// Takes every timer set for `key`, earliest first: one is live at most (a key has one
    /// load at a time), any other the retry of a load since let go, which does nothing.
    fn take_of(&self, key: &AssetKey) -> Vec<(u64, Deferred)> {
        let mut timers = self.timers();
        let mut ids = timers.by_key.remove(key).unwrap_or_default();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| timers.due.remove(&id).map(|(_, a)| (id.0, a))).collect()
    }
}

/// The actors did not become idle; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the runtime's actors did not become idle: they handled nothing for {:?}, \
     or were still busy after {:?}",
    SETTLE_PATIENCE,
    SETTLE_PATIENCE.saturating_mul(Activity::WAIT_PATIENCES_MAX)
)]
pub(crate) struct Stalled;

/// Which jobs may run now: a scripted backend holds back a job whose outcome is not known yet.
pub(crate) trait Gate {
    /// Whether the read of `key` may run.
    fn read_ready(&self, key: &AssetKey) -> bool;
    /// Whether the decode of `key` may run.
    fn decode_ready(&self, key: &AssetKey) -> bool;
}

/// Drives a deterministic runtime; see the module docs.
pub(crate) struct Stepper {
    det: Arc<Deterministic>,
    reads: Waiting<ReadOrder>,
    decodes: Waiting<DecodeJob>,
    /// Whether timers fire when nothing else can move (a log that does not record when
    /// retries came due), rather than only through [`Stepper::fire_timers_of`].
    timers_when_idle: bool,
}

impl Stepper {
    pub(crate) fn new(det: Arc<Deterministic>, timers_when_idle: bool) -> Self {
        Self { det, reads: Waiting::default(), decodes: Waiting::default(), timers_when_idle }
    }

    /// A read's outcome for `key` was banked; whether a step may move for it: a job waits for
    /// it, or (a log before version 8) a step with nothing to run fires a timer, as each record
    /// that may have moved did there.
    pub(crate) fn read_banked(&mut self, key: &AssetKey) -> bool {
        self.reads.banked(key) || self.timers_when_idle
    }

    /// A decode's outcome for `key` was banked; whether a step may move for it (as a read's).
    pub(crate) fn decode_banked(&mut self, key: &AssetKey) -> bool {
        self.decodes.banked(key) || self.timers_when_idle
    }

    /// Fires the timers set for `key`'s retry, moving the clock to each one's due time if it
    /// is later: the caller holds the activity, as it does for any input. Whether there was
    /// one.
    pub(crate) fn fire_timers_of(&self, key: &AssetKey) -> bool {
        let timers = self.det.timers.take_of(key);
        let fired = !timers.is_empty();
        for (at, action) in timers {
            self.fire(at, action);
        }
        fired
    }

    /// Runs a timer's `action`, the clock moved to its due time `at` if that is later.
    fn fire(&self, at: u64, action: Deferred) {
        let now = self.det.clock.now_us();
        self.det.clock.advance(at.saturating_sub(now));
        action();
    }

    /// The activity to hold while feeding an input (see the module docs).
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.det.activity
    }

    /// Runs until nothing can move: the actors idle, no job the gate lets run, no timer.
    ///
    /// # Errors
    ///
    /// [`Stalled`].
    pub(crate) fn settle(&mut self, runtime: &Runtime, gate: &dyn Gate) -> Result<(), Stalled> {
        loop {
            if !self.det.activity.wait_idle(SETTLE_PATIENCE) {
                return Err(Stalled);
            }
            let (reads, decodes) = (&mut self.reads, &mut self.decodes);
            for slot in self.det.cancels.take() {
                reads.cancelled(slot);
                decodes.cancelled(slot);
            }
            let activity = &self.det.activity;
            let ran = runtime.with_stepped_pools(|io, decode| {
                io.take_queued().into_iter().for_each(|job| reads.push(job));
                decode.take_queued().into_iter().for_each(|job| decodes.push(job));
                activity.hold();
                let ran = if let Some(job) = decodes.take_first(|j| decode_runnable(j, gate)) {
                    decode.run(job);
                    true
                } else if let Some(job) = reads.take_first(|j| read_runnable(j, gate)) {
                    io.run(job);
                    true
                } else {
                    false
                };
                activity.release();
                ran
            });
            match ran {
                Some(true) => continue,
                // Shut down: nothing runs any more.
                None => return Ok(()),
                Some(false) => {}
            }
            if !self.timers_when_idle {
                return Ok(());
            }
            let Some((at, action)) = self.det.timers.pop() else { return Ok(()) };
            self.det.activity.hold();
            self.fire(at, action);
            self.det.activity.release();
        }
    }
}

fn runnable(guard: &crate::work::JobGuard, gate: &dyn Gate, read: bool) -> bool {
    let job: &Job = guard.job();
    job.is_cancelled() || if read { gate.read_ready(&job.key) } else { gate.decode_ready(&job.key) }
}

fn read_runnable(order: &ReadOrder, gate: &dyn Gate) -> bool {
    match order {
        ReadOrder::This(read) => runnable(&read.guard, gate, true),
        ReadOrder::Next => true,
    }
}

fn decode_runnable(job: &DecodeJob, gate: &dyn Gate) -> bool {
    match job {
        DecodeJob::Load(load) => runnable(&load.0, gate, false),
        DecodeJob::NextLoad | DecodeJob::Task(_) => true,
    }
}
