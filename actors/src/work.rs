//! Loads in flight: the job a load travels as, and the IO and decode workers that run it.
//!
//! A load is queued by the scheduler as a ticket naming its cache slot; once dispatched, its cache
//! makes its [`Job`] from the slot ([`DispatchOrder`]) and sends it on through the [`IoPort`]; an
//! [`IoWorker`] reads it and a [`DecodeWorker`] decodes it. Dispatched loads wait for an IO worker,
//! and read ones for a decode worker, in a [`Staging`] queue, most urgent first, while each pool's
//! own FIFO queue carries one order per load ([`ReadOrder::Next`], [`DecodeJob::NextLoad`]): so a
//! critical load dispatched behind many small ones is still the next one read and the next one
//! decoded; a `High` or `Critical` load is decoded by the IO worker that read it, without waiting
//! for a decode thread (unless `urgent_decodes_on_io` is off: its decode worker then wakes its
//! cache as soon as it is decoded). A load raised after its dispatch goes at its new priority
//! from there on: moved up in the queue it waits in, and read so by the workers from its type's
//! [`RaiseTable`]. Its [`JobRoute`] (one per asset type) carries what only the
//! type knows: how to decode and which cache to tell. A decode worker with more loads waiting
//! batches the wakes of its replies (see `replies`).
//!
//! # Invariants
//!
//! - Every dispatched job ends exactly once, at its cache: decoded, failed or dropped. A job
//!   travels inside a [`JobGuard`] whose `Drop` ends it as failed if a worker lost it (a panic
//!   in the worker itself, a closed pool), so a job is never silently lost.
//! - Workers check whether the job is cancelled ([`Job::is_cancelled`], in its type's
//!   [`CancelTable`]) before the read, after the read and before the decode, so a cancelled
//!   load stops at the next check.
//!
//! # Supervision
//!
//! Both worker kinds run in a `WorkerPool`: a panic rebuilds the worker with fresh state and
//! the pool keeps its size. A decoder panic is caught by the route, reported as
//! `DecoderPanicked`, then re-raised so the worker that ran the decoder (a decode worker, or the
//! IO worker that decoded an urgent load itself) is rebuilt too.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use streamrt_messages::replay_log::{LogRecord, ReadOutcome};
use streamrt_messages::{
    AssetKey, CancelStage, ErrorKind, Event, EventKind, Generation, Priority, RequestId,
};
use streamrt_supervisor::{panic_message, PoolSender, Worker};

use crate::scheduler::{LoadRef, ReadCredit};
use crate::source::{Locator, Source, SourceError};
use crate::tasks::GroupWork;
use crate::telemetry::Probe;
use crate::throttle::Throttle;

mod cancels;
mod raises;
mod replies;
mod slot_words;
mod staging;

pub(crate) use cancels::CancelTable;
pub(crate) use raises::RaiseTable;
use replies::ReplyBatch;
pub(crate) use staging::Staging;

/// The least urgent priority of the loads the engine is waiting on, which skip what is built
/// for throughput (`streamctl bench priority`, a critical request behind 10,000 queued ones):
/// one read credit is kept for them, so one is dispatched at once while normal loads hold the
/// others; when that one is taken too, a starved scheduler wakes for one at the first read
/// credit back rather than at half of them (half-credit wakes put its p99 at 4.4 times the
/// idle runtime's); and, in a threaded runtime, the IO worker that read one decodes it itself
/// rather than wait for a decode thread to get a core, at the cost of that worker's next read.
pub(crate) const URGENT: Priority = Priority::High;

/// How a job ended, other than with a decoded value.
#[derive(Debug, Clone)]
pub(crate) enum JobEnd {
    /// The load failed.
    Failed(ErrorKind),
    /// The source's read failed (its error, or its panic as `WorkerLost`): a failure as
    /// `Failed` is, recorded (while recording) where the cache takes it, as a decode's
    /// outcome is, so that a replay fails the load at the same point among the engine's
    /// inputs.
    ReadFailed(ErrorKind),
    /// A worker saw the load cancelled and stopped.
    Dropped(CancelStage),
}

/// What only the asset type knows; see the module docs.
pub(crate) trait JobRoute: Send + Sync {
    /// Hands the cache a load the scheduler dispatched, with its read credit: the cache builds
    /// the job from its slot and sends it to the IO pool.
    fn dispatch(&self, order: DispatchOrder);
    /// Tells the cache the scheduler refused its load (`QueueFull`).
    fn refuse(&self, load: LoadRef, kind: ErrorKind);
    /// Decodes on the calling thread (a decode worker's, or the IO worker's that read an
    /// urgent load), calls `done` once the decoder returned
    /// or panicked, and tells the cache. A decoder panic is reported to the cache as
    /// `DecoderPanicked`, then handed back for the caller to re-raise. The reply is posted
    /// without waking the cache: the caller owes it a [`JobRoute::wake`], now or for a batch.
    fn decode(
        &self,
        job: Job,
        bytes: Vec<u8>,
        done: &dyn Fn(&Job),
    ) -> Result<(), Box<dyn Any + Send>>;
    /// Wakes the cache, for replies [`JobRoute::decode`] posted.
    fn wake(&self);
    /// Tells the cache its load ended without a value.
    fn end(&self, job: Job, end: JobEnd);
    /// Which loads of the type are cancelled.
    fn cancels(&self) -> &CancelTable;
    /// Which dispatched loads of the type were raised since, and to what.
    fn raises(&self) -> &RaiseTable;
}

/// One load of one slot.
pub(crate) struct Job {
    /// The cache's slot index; valid only together with `generation`. 32 bits, as the cache's
    /// key index holds them, so that a queued job is 8 bytes smaller.
    pub(crate) slot: u32,
    /// The load's generation, unique within the runtime.
    pub(crate) generation: Generation,
    pub(crate) key: AssetKey,
    /// Its priority when dispatched; [`Job::priority_now`] reads a raise since.
    pub(crate) priority: Priority,
    /// Where the source keeps the asset, if it said (see `Source::read_located`).
    pub(crate) locator: Option<Locator>,
    /// The request that started the load.
    pub(crate) origin: RequestId,
    pub(crate) route: Arc<dyn JobRoute>,
}

impl Job {
    /// Whether the load is no longer wanted; checked by the workers between stages.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.route.cancels().is_cancelled(self.slot(), self.generation)
    }

    /// Its priority now: a reprioritisation after its dispatch may have raised it.
    pub(crate) fn priority_now(&self) -> Priority {
        self.route.raises().priority(self.slot(), self.generation, self.priority)
    }

    /// The cache's slot index; valid only together with `generation`.
    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }

    /// A fresh `kind` event about this load: its request, generation and key.
    pub(crate) fn event(&self, probe: &Probe, kind: EventKind) -> Event {
        let event = probe.event(kind).with_request(self.origin).with_generation(self.generation);
        event.with_key(self.key.clone())
    }
}

/// Ends its job as failed with `WorkerLost(lost)` if dropped before the job was handed on.
pub(crate) struct JobGuard {
    job: Option<Job>,
    /// Which worker lost the job; the error is built only then, so a guard costs no
    /// allocation on the path where nothing is lost.
    lost: &'static str,
}

impl JobGuard {
    pub(crate) fn new(job: Job, lost: &'static str) -> Self {
        Self { job: Some(job), lost }
    }

    /// The job, until a worker took it.
    pub(crate) fn job(&self) -> &Job {
        self.job.as_ref().expect("a guard holds its job until it is taken")
    }

    fn take(&mut self) -> Job {
        self.job.take().expect("a guard's job is taken once")
    }

    /// Ends the job as dropped while it loaded: a worker saw it cancelled.
    fn drop_cancelled(mut self) {
        end(self.take(), JobEnd::Dropped(CancelStage::Loading));
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            end(job, JobEnd::Failed(ErrorKind::WorkerLost(self.lost.into())));
        }
    }
}

fn end(job: Job, end: JobEnd) {
    let route = Arc::clone(&job.route);
    route.end(job, end);
}

/// A job on its way to an IO worker, with the read credit it holds until its read is over.
pub(crate) struct ReadJob {
    pub(crate) guard: JobGuard,
    pub(crate) credit: ReadCredit,
}

/// A load the scheduler let go, on its way to its cache with the read credit it took.
pub(crate) struct DispatchOrder {
    pub(crate) load: LoadRef,
    pub(crate) credit: ReadCredit,
}

/// Where dispatched loads go: the IO pool's queue, through the staging queue.
#[derive(Clone)]
pub(crate) struct IoPort {
    pub(crate) io: PoolSender<ReadOrder>,
    /// Where dispatched loads wait, most urgent first (`None`: a deterministic runtime, whose
    /// stepper is sent each load itself).
    pub(crate) staged: Option<Arc<ReadQueue>>,
    /// Where read loads wait for a decode worker (`None` when deterministic).
    pub(crate) staged_decodes: Option<Arc<DecodeQueue>>,
    /// The IO bandwidth limit, if one is set: nudged when an urgent load is staged or a load
    /// is raised to urgent, so that the workers paying for their reads let them go.
    pub(crate) throttle: Option<Arc<Throttle>>,
}

impl IoPort {
    /// Sends `reads` to the IO pool, leaving the vector empty: staged under one lock, then one
    /// order each. Every staging and every order is a write to memory the IO workers share, so
    /// a cache sends the loads of a turn's dispatch orders at once (`perf` of `bench tiny`: the
    /// staging lock taken once a load was 6.5 % of the core thread's samples). A closed pool
    /// (shutdown) drops the orders: the loads staged stay there until the staging queue is
    /// dropped with the pool, and their guards fail them then.
    pub(crate) fn submit_all(&self, reads: &mut Vec<ReadJob>) {
        match &self.staged {
            Some(staged) => {
                let count = reads.len();
                let most_urgent = staged.push_all(reads.drain(..));
                let _ = self.io.submit_all(std::iter::repeat_with(|| ReadOrder::Next).take(count));
                if most_urgent.is_some_and(|p| p <= URGENT) {
                    self.nudge();
                }
            }
            None => {
                let orders = reads.drain(..).map(|read| ReadOrder::This(Box::new(read)));
                let _ = self.io.submit_all(orders);
            }
        }
    }

    /// Moves the load `generation`, if it waits for a read or a decode, to `priority`'s level
    /// of its queue; its type's [`RaiseTable`] must say so first, so that a load staged for
    /// its decode after this looked is staged at `priority` (see [`Staging::raise`]).
    pub(crate) fn raise(&self, generation: Generation, priority: Priority) {
        if let Some(staged) = &self.staged {
            staged.raise(generation, priority);
        }
        if let Some(staged) = &self.staged_decodes {
            staged.raise(generation, priority);
        }
        // The load may be neither: its worker may be paying for its bytes.
        if priority <= URGENT {
            self.nudge();
        }
    }

    fn nudge(&self) {
        if let Some(throttle) = &self.throttle {
            throttle.nudge();
        }
    }
}

/// Dispatched loads waiting for an IO worker.
pub(crate) type ReadQueue = Staging<ReadJob>;

/// Read loads waiting for a decode worker, with their bytes.
pub(crate) type DecodeQueue = Staging<(JobGuard, Vec<u8>)>;

/// What the IO pool's queue carries.
pub(crate) enum ReadOrder {
    /// Read the most urgent load in the [`ReadQueue`] (one order per load pushed there).
    Next,
    /// Read this load: a deterministic runtime's stepper chooses every job itself. Boxed: the
    /// pool's channel stores every order at the size of the largest, and a threaded runtime
    /// sends only `Next` (a larger order made its channel zero and copy blocks of about 3 KiB,
    /// 130 instructions per load on the core thread, `streamctl bench tiny`).
    This(Box<ReadJob>),
}

/// What a decode worker runs.
pub(crate) enum DecodeJob {
    /// Read bytes on their way to the decoder (a deterministic runtime's; boxed, as
    /// [`ReadOrder::This`]).
    Load(Box<(JobGuard, Vec<u8>)>),
    /// Decode the most urgent load in the [`DecodeQueue`] (one order per load pushed there).
    NextLoad,
    /// A frame task (see `tasks`): run one task of this group, if one is still waiting.
    Task(Arc<dyn GroupWork>),
}

/// Crashes requested of a pool's workers (fault injection): the next job a worker takes while
/// this is above zero panics before it starts, and its guard reports the job lost.
#[derive(Debug, Default)]
pub(crate) struct CrashRequests(AtomicUsize);

impl CrashRequests {
    pub(crate) fn request(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn take(&self) -> bool {
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }
}

/// Reads jobs' bytes from the source and passes them to the decode pool.
pub(crate) struct IoWorker {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) decode: PoolSender<DecodeJob>,
    pub(crate) probe: Arc<Probe>,
    pub(crate) crashes: Arc<CrashRequests>,
    /// This worker's index in the IO pool.
    pub(crate) index: u32,
    /// Where [`ReadOrder::Next`] takes its load from.
    pub(crate) staged: Arc<ReadQueue>,
    /// Where read loads wait for a decode worker (`None`: a deterministic runtime, whose
    /// stepper is sent each load itself).
    pub(crate) staged_decodes: Option<Arc<DecodeQueue>>,
    /// The IO bandwidth limit, if one is set.
    pub(crate) throttle: Option<Arc<Throttle>>,
    /// Whether urgent loads are decoded here (`RuntimeConfig::urgent_decodes_on_io`).
    pub(crate) urgent_decodes_here: bool,
}

/// Emits a worker's stage event for `job`.
fn stage_event(probe: &Probe, kind: EventKind, job: &Job, worker: u32, bytes: Option<u64>) {
    stage_event_at(probe, kind, job, (worker, bytes), None);
}

/// A stage event, with the load's `priority` where the stage decided by it.
fn stage_event_at(
    probe: &Probe,
    kind: EventKind,
    job: &Job,
    (worker, bytes): (u32, Option<u64>),
    priority: Option<Priority>,
) {
    probe.emit_with(|| {
        let mut event = job.event(probe, kind).with_worker(worker);
        event.bytes = bytes;
        event.priority = priority;
        event
    });
}

impl Worker for IoWorker {
    type Job = ReadOrder;

    fn run(&mut self, order: ReadOrder) {
        let read = match order {
            ReadOrder::This(read) => *read,
            ReadOrder::Next => match self.staged.pop() {
                Some((read, _)) => read,
                // Orders and loads are one to one; an order without a load has nothing to do.
                None => return,
            },
        };
        // After the load is taken, so an injected crash loses exactly this load to its guard.
        assert!(!self.crashes.take(), "injected crash of an IO worker");
        self.read(read);
    }
}

/// A panic of a source's code, and the end of the load it makes.
type SourcePanic = (ErrorKind, Box<dyn Any + Send>);

impl IoWorker {
    fn decode_guard(job: Job) -> JobGuard {
        JobGuard::new(job, "a decode worker crashed")
    }

    /// Records that `job`'s read brought `n` bytes, if the runtime is recording: here, just
    /// after its read credit is given back, so that a replay gives the credit back at the same
    /// place among the engine's inputs (recorded with the decode's outcome, the read held its
    /// credit through the decode in the replay, and loads dispatched after it started late).
    /// Called only once the load is seen not cancelled: a replay takes the engine's cancel
    /// first and drops the job before its read, so the record would be left banked for the
    /// key's next load (see `cache/recording.rs` for the window that remains).
    fn record_read(&self, job: &Job, n: u64) {
        if let Some(recorder) = self.probe.recorder() {
            let outcome = ReadOutcome::Bytes(n);
            recorder.record(&LogRecord::Read { key: job.key.clone(), outcome });
        }
    }

    /// Reads `job`'s bytes from the source, with its stage events and the bandwidth limit's
    /// payment (the read credit stays taken while it is paid); with the load's priority as
    /// the read ended, which decides where it is decoded.
    ///
    /// # Errors
    ///
    /// The panic of the source's code, with the load's end it makes (`WorkerLost`, with the
    /// panic's message); the read's own result is the `Ok`.
    fn read_bytes(
        &self,
        job: &Job,
    ) -> Result<(Result<Vec<u8>, SourceError>, Priority), SourcePanic> {
        stage_event(&self.probe, EventKind::ReadStarted, job, self.index, None);
        let read = {
            let _span = tracing::debug_span!(target: "streamrt", "read", request = job.origin.0, key = %job.key).entered();
            catch_unwind(AssertUnwindSafe(|| match job.locator {
                Some(locator) => self.source.read_located(&job.key, locator),
                None => self.source.read(&job.key),
            }))
        };
        let read = match read {
            Ok(read) => read,
            Err(panic) => {
                // A lost worker, which a replay's source reproduces by panicking.
                let lost = ErrorKind::WorkerLost(panic_message(&*panic));
                // The read's span ends here too, with no bytes, as a failed read's does: a
                // report would otherwise count the worker idle from its start on.
                stage_event(&self.probe, EventKind::ReadDone, job, self.index, None);
                return Err((lost, panic));
            }
        };
        let n = read.as_ref().ok().map(|b| b.len() as u64);
        // Where the load is decoded is decided by its priority now, which the event says, so
        // that a report puts the decode on the pool that ran it (a raise may have made it
        // urgent since its dispatch).
        let priority = job.priority_now();
        stage_event_at(&self.probe, EventKind::ReadDone, job, (self.index, n), Some(priority));
        if let Some(throttle) = &self.throttle {
            // What the storage was asked for, where the source counts it (a pack's windows
            // whole, failed reads too), else what the read handed over. The read credit stays
            // taken while the bytes are paid for, so a throttled source does not pile up reads.
            let charged = match throttle.storage_count(&*self.source) {
                Some(total) => throttle.storage_charge(total),
                None => n.unwrap_or(0),
            };
            if charged > 0 {
                // Let go of early for an urgent load: this one raised, or one waiting for a
                // worker while every worker pays.
                let let_go = || {
                    job.is_cancelled()
                        || job.priority_now() <= URGENT
                        || (throttle.all_paying() && self.staged.holds_at_least(URGENT))
                };
                throttle.pay(charged, priority <= URGENT, let_go);
            }
        }
        Ok((read, priority))
    }

    fn read(&self, ReadJob { mut guard, credit }: ReadJob) {
        if guard.job().is_cancelled() {
            drop(credit);
            return guard.drop_cancelled();
        }
        // A panic of the source's code ends the load as lost (a transient failure, retried),
        // with the panic's message, then goes on so that the pool rebuilds this worker.
        let (read, priority) = match self.read_bytes(guard.job()) {
            Ok(read) => read,
            Err((lost, panic)) => {
                drop(credit);
                end(guard.take(), JobEnd::ReadFailed(lost));
                resume_unwind(panic);
            }
        };
        drop(credit);
        // Counted whatever becomes of the load: the bytes were read.
        if let Ok(bytes) = &read {
            self.probe.counters.bytes_read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if guard.job().is_cancelled() {
            return guard.drop_cancelled();
        }
        match read {
            Err(e) => end(guard.take(), JobEnd::ReadFailed(e.into())),
            Ok(bytes) => {
                self.record_read(guard.job(), bytes.len() as u64);
                // By the priority its `read_done` event said, so a report can tell where its
                // decode ran: a raise after the read (while its bytes are paid for under the
                // bandwidth limit, too) still moves it up the decode queue, not onto this
                // worker.
                let urgent = priority <= URGENT;
                let next = match &self.staged_decodes {
                    Some(_) if urgent && self.urgent_decodes_here => {
                        // An urgent load is decoded here: handing it to the decode pool would
                        // make it wait for a decode thread to get a core.
                        return decode(&self.probe, self.index, guard, bytes, None);
                    }
                    Some(staged) => {
                        staged.push((Self::decode_guard(guard.take()), bytes));
                        DecodeJob::NextLoad
                    }
                    None => DecodeJob::Load(Box::new((Self::decode_guard(guard.take()), bytes))),
                };
                // A closed decode pool drops the job here (a threaded runtime's staged load
                // waits in the staging queue until it is dropped), and its guard fails it.
                let _ = self.decode.submit(next);
            }
        }
    }
}

/// Runs decoders.
pub(crate) struct DecodeWorker {
    pub(crate) crashes: Arc<CrashRequests>,
    pub(crate) probe: Arc<Probe>,
    /// This worker's index in the decode pool.
    pub(crate) index: u32,
    /// Where [`DecodeJob::NextLoad`] takes its load from.
    pub(crate) staged: Arc<DecodeQueue>,
    /// The replies this worker posted without waking their caches (see `replies`).
    pub(crate) replies: ReplyBatch,
}

impl Worker for DecodeWorker {
    type Job = DecodeJob;

    fn run(&mut self, job: DecodeJob) {
        // With another load waiting, this reply joins the batch: its cache is woken once for
        // the batch rather than once per load.
        let ((guard, bytes), more) = match job {
            DecodeJob::Load(load) => (*load, false),
            DecodeJob::NextLoad => match self.staged.pop() {
                Some(popped) => popped,
                // Orders and loads are one to one; an order without a load has nothing to do
                // (another worker took it), and the batch's replies must not wait for this
                // worker's next decode.
                None => return self.replies.flush(),
            },
            DecodeJob::Task(group) => {
                // A frame task may run long: the batch's replies do not wait for it.
                self.replies.flush();
                let crash = self.crashes.take();
                if crash {
                    // The note the crash loses is counted out, and put back while tasks wait.
                    Arc::clone(&group).note_lost();
                }
                assert!(!crash, "injected crash of a decode worker");
                return group.run_one();
            }
        };
        // After the load is taken, so an injected crash loses exactly this load to its guard.
        assert!(!self.crashes.take(), "injected crash of a decode worker");
        // An urgent load decoded here (with `urgent_decodes_on_io` off) does not wait for the
        // decodes behind it: its reply, and the batch's before it, are woken at once.
        let urgent = guard.job().priority_now() <= URGENT;
        // The reply always joins the batch, which this worker wakes below or when it is rebuilt
        // after a decoder's panic: one wake a cache per batch, never a second for its last reply.
        decode(&self.probe, self.index, guard, bytes, Some(&mut self.replies));
        if !more || urgent || self.replies.is_full() {
            self.replies.flush();
        }
    }

    fn idle(&mut self) {
        self.replies.flush();
    }
}

/// Decodes the job in `guard` on the calling worker (`worker`: its index in its own pool), and
/// wakes its cache for the reply, or leaves the wake to `batch` if one is given (see
/// `replies`).
///
/// The embedding program's `tracing` subscriber runs here too. Its events' panics are caught
/// where they are emitted; a panic entering the decode span comes while the job is still in
/// its guard, which ends the load as lost (retried); one leaving it comes after the reply is
/// posted and its cache woken. Neither leaves the requests loading.
///
/// # Panics
///
/// Re-raises a decoder's panic, already reported to the cache, so the pool rebuilds the
/// calling worker.
fn decode(
    probe: &Probe,
    worker: u32,
    mut guard: JobGuard,
    bytes: Vec<u8>,
    batch: Option<&mut ReplyBatch>,
) {
    if guard.job().is_cancelled() {
        return guard.drop_cancelled();
    }
    let route = Arc::clone(&guard.job().route);
    let n = bytes.len() as u64;
    stage_event(probe, EventKind::DecodeStarted, guard.job(), worker, Some(n));
    let span = tracing::debug_span!(
        target: "streamrt",
        "decode",
        request = guard.job().origin.0,
        key = %guard.job().key
    );
    let in_span = span.entered();
    let job = guard.take();
    let done = |job: &Job| stage_event(probe, EventKind::DecodeDone, job, worker, Some(n));
    let decoded = route.decode(job, bytes, &done);
    match batch {
        Some(batch) => batch.owe(route),
        None => route.wake(),
    }
    // Left before a decoder's panic is raised again: a subscriber's panic while unwinding
    // would abort the process.
    drop(in_span);
    if let Err(panic) = decoded {
        std::panic::resume_unwind(panic);
    }
}
