//! A fixed-size, panic-safe pool of worker threads.
//!
//! # Supervision
//!
//! Each thread owns one [`Worker`]. A panic inside [`Worker::run`] is caught; the worker is
//! dropped and rebuilt from the pool's factory with fresh state, on the same thread, and the
//! restart is counted. The thread itself never dies of a job's panic, so the pool keeps its
//! configured size for its whole life, as long as the factory itself does not panic (a
//! rebuild that panics ends its thread: streamrt's factories cannot). The job that panicked is dropped during unwinding: job
//! types carry a guard whose `Drop` reports the failure, so no job is silently lost.
//!
//! # Backpressure
//!
//! The job queue is unbounded; callers bound it with credits (streamrt's scheduler never has
//! more loads between dispatch and their end than its read and decode credits allow).
//!
//! # Stepped pools
//!
//! [`WorkerPool::stepped`] starts no thread: jobs wait on the queue until the owner takes them
//! ([`WorkerPool::take_queued`]) and runs each on the caller's thread ([`WorkerPool::run`]),
//! with the same panic handling. Deterministic runs use it to choose the order of every job.
//!
//! # Shutdown
//!
//! [`WorkerPool::shutdown`] closes the queue (later submits are refused, even through senders
//! still held elsewhere), lets every thread finish the jobs already queued, and joins every
//! thread. [`WorkerPool::shutdown_within`] waits only so long for them: a job blocked in the
//! caller's code (a read from a stalled network store) must not hold its owner's shutdown for
//! ever. A thread still running then is left behind, detached: it ends once its job returns
//! and it finds its stop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::take_panic_message;

/// The state one pool thread keeps between jobs.
pub trait Worker: Send + 'static {
    /// What the pool's queue carries.
    type Job: Send + 'static;
    /// Runs one job. May panic; the pool then rebuilds this worker.
    fn run(&mut self, job: Self::Job);

    /// Called when the pool's queue is empty, before the worker waits for its next job (and
    /// on a stepped pool after every job): where a worker sends on what it batched while more
    /// jobs were waiting. May panic, as `run` may.
    fn idle(&mut self) {}
}

/// Live figures of a pool.
#[derive(Debug, Default)]
pub struct PoolStats {
    live: AtomicUsize,
    busy: AtomicUsize,
    restarts: AtomicU64,
    jobs: AtomicU64,
}

impl PoolStats {
    /// Threads started and not yet ended (a thread counts from `start`, before it runs); a
    /// stepped pool's one worker, run on its driver's thread, counts as one for its life.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
    /// Threads running a job right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }
    /// Workers rebuilt after a panic.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Acquire)
    }
    /// Jobs run (including ones that panicked).
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Acquire)
    }
}

/// The pool's queue was closed; the job is handed back.
#[derive(Debug, thiserror::Error)]
#[error("worker pool closed")]
pub struct PoolClosed<J>(pub J);

/// What travels on a pool's queue.
enum Slot<J> {
    Job(J),
    /// Ends the thread that takes it; one per thread at shutdown.
    Stop,
}

/// Submits jobs to a pool from any thread.
pub struct PoolSender<J> {
    tx: Sender<Slot<J>>,
    /// `true` once the pool shut down. Submits hold the read side while sending, so none can
    /// slip in after shutdown began.
    closed: Arc<RwLock<bool>>,
}

impl<J> Clone for PoolSender<J> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), closed: Arc::clone(&self.closed) }
    }
}

impl<J> PoolSender<J> {
    /// Queues a job for the next idle worker.
    ///
    /// # Errors
    ///
    /// [`PoolClosed`] with the job once the pool shut down.
    pub fn submit(&self, job: J) -> Result<(), PoolClosed<J>> {
        self.submit_all([job]).map_err(|PoolClosed(mut jobs)| {
            PoolClosed(jobs.pop().expect("the one job is handed back"))
        })
    }

    /// Queues jobs for the next idle workers, in order, checking once that the pool is open:
    /// a producer with several jobs at hand takes the shutdown lock once, not once a job.
    ///
    /// # Errors
    ///
    /// [`PoolClosed`] with the jobs not queued once the pool shut down.
    pub fn submit_all(&self, jobs: impl IntoIterator<Item = J>) -> Result<(), PoolClosed<Vec<J>>> {
        let mut jobs = jobs.into_iter();
        let closed = self.closed.read().unwrap_or_else(PoisonError::into_inner);
        if *closed {
            return Err(PoolClosed(jobs.collect()));
        }
        while let Some(job) = jobs.next() {
            if let Err(e) = self.tx.send(Slot::Job(job)) {
                let Slot::Job(job) = e.0 else { unreachable!("submit only sends jobs") };
                return Err(PoolClosed(std::iter::once(job).chain(jobs).collect()));
            }
        }
        Ok(())
    }
}

/// Runs one job on a stepped pool's single worker, rebuilding it after a panic.
type StepFn<J> = Box<dyn FnMut(J) + Send>;

/// A fixed number of threads, each running a [`Worker`].
pub struct WorkerPool<J> {
    sender: PoolSender<J>,
    rx: Receiver<Slot<J>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<PoolStats>,
    /// Set for a stepped pool (no threads): its one worker, run by the owner.
    stepped: Option<Mutex<StepFn<J>>>,
    /// How many of `threads` have ended, whatever ended them.
    ended: Arc<Ended>,
    /// Whether the pool was stopped (its threads joined or left behind).
    stopped: bool,
}

/// The count of a pool's threads that ended, and a wake for whoever waits for it.
#[derive(Default)]
struct Ended {
    count: Mutex<usize>,
    changed: Condvar,
}

/// Counts its thread as ended however the thread's closure ends.
struct EndGuard(Arc<Ended>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.changed.notify_all();
    }
}

impl<J: Send + 'static> WorkerPool<J> {
    /// Starts `threads` threads named `{name}-{i}`, each with a worker from `factory(i)`.
    ///
    /// # Errors
    ///
    /// The OS error if a thread cannot be spawned (the threads already started are joined).
    pub fn start<W, F>(name: &str, threads: usize, factory: F) -> std::io::Result<Self>
    where
        W: Worker<Job = J>,
        F: Fn(usize) -> W + Send + Sync + 'static,
    {
        Self::start_below(name, threads, 0, factory)
    }

    /// As [`WorkerPool::start`], each thread at a CPU priority `nice` steps below the calling
    /// thread's (a nice increment, clamped at the lowest priority, 19), so the OS gives the
    /// program's own threads most of a contended core. Linux (and Android) only, where each
    /// thread has its own priority; elsewhere `nice` is ignored.
    ///
    /// # Errors
    ///
    /// As [`WorkerPool::start`].
    pub fn start_below<W, F>(
        name: &str,
        threads: usize,
        nice: u8,
        factory: F,
    ) -> std::io::Result<Self>
    where
        W: Worker<Job = J>,
        F: Fn(usize) -> W + Send + Sync + 'static,
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let factory = Arc::new(factory);
        let stats = Arc::new(PoolStats::default());
        let sender = PoolSender { tx, closed: Arc::new(RwLock::new(false)) };
        let mut pool = Self {
            sender,
            rx,
            threads: Vec::with_capacity(threads),
            stats,
            stepped: None,
            ended: Arc::default(),
            stopped: false,
        };
        for index in 0..threads {
            let rx = pool.rx.clone();
            let factory = Arc::clone(&factory);
            let stats = Arc::clone(&pool.stats);
            // Made on the thread: a thread that could not be spawned never ended.
            let ended = Arc::clone(&pool.ended);
            // Counted before the thread runs, so `live` is the pool's size from `start` on.
            pool.stats.live.fetch_add(1, Ordering::AcqRel);
            let spawned =
                std::thread::Builder::new().name(format!("{name}-{index}")).spawn(move || {
                    let _ended = EndGuard(ended);
                    lower_priority(nice);
                    worker_loop(index, &rx, &*factory, &stats);
                });
            match spawned {
                Ok(handle) => pool.threads.push(handle),
                Err(e) => {
                    pool.stats.live.fetch_sub(1, Ordering::AcqRel);
                    pool.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// A pool with no thread and one worker from `factory(0)`: jobs wait on the queue until
    /// [`WorkerPool::take_queued`] and run on the caller's thread in [`WorkerPool::run`].
    pub fn stepped<W, F>(factory: F) -> Self
    where
        W: Worker<Job = J>,
        F: Fn(usize) -> W + Send + Sync + 'static,
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(PoolStats::default());
        stats.live.store(1, Ordering::Release);
        let sender = PoolSender { tx, closed: Arc::new(RwLock::new(false)) };
        let mut worker = factory(0);
        let step_stats = Arc::clone(&stats);
        let step: StepFn<J> = Box::new(move |job| {
            if run_caught(0, &mut worker, job, &step_stats)
                || caught(0, || worker.idle(), &step_stats)
            {
                rebuild(0, &mut worker, &factory);
            }
        });
        Self {
            sender,
            rx,
            threads: Vec::new(),
            stats,
            stepped: Some(Mutex::new(step)),
            ended: Arc::default(),
            stopped: false,
        }
    }

    /// Takes every job queued so far, oldest first (stepped pools; a threaded pool's workers
    /// take their own).
    pub fn take_queued(&self) -> Vec<J> {
        if self.stepped.is_none() {
            return Vec::new();
        }
        self.rx
            .try_iter()
            .filter_map(|slot| match slot {
                Slot::Job(job) => Some(job),
                Slot::Stop => None,
            })
            .collect()
    }

    /// Runs `job` on a stepped pool's worker on the calling thread; a panic rebuilds the
    /// worker, as on a pool thread. On a threaded pool the job is queued instead.
    pub fn run(&self, job: J) {
        match &self.stepped {
            Some(step) => (step.lock().unwrap_or_else(PoisonError::into_inner))(job),
            None => drop(self.sender.submit(job)),
        }
    }

    /// A sender for submitting jobs from other threads.
    pub fn sender(&self) -> PoolSender<J> {
        self.sender.clone()
    }

    /// The pool's live figures.
    pub fn stats(&self) -> Arc<PoolStats> {
        Arc::clone(&self.stats)
    }

    /// The configured number of threads.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Its threads' ids (none for a stepped pool, whose jobs run on the owner's thread), for
    /// an owner that must know whether it is called from a job.
    pub fn thread_ids(&self) -> impl Iterator<Item = ThreadId> + '_ {
        self.threads.iter().map(|h| h.thread().id())
    }

    /// Closes the queue, lets queued jobs finish and joins every thread (but the calling one,
    /// when a job of this pool calls it).
    pub fn shutdown(self) {
        // `Drop` does the work, so a pool dropped without `shutdown` stops the same way.
        drop(self);
    }

    /// As [`WorkerPool::shutdown`], but waits at most `patience` for the threads to end (a
    /// `patience` past what an `Instant` can reach waits for ever). Returns how many other
    /// than the calling thread were still running their jobs then: they are left behind,
    /// detached, and end on their own once their jobs return.
    pub fn shutdown_within(mut self, patience: Duration) -> usize {
        self.stop(Instant::now().checked_add(patience))
    }
}

impl<J> WorkerPool<J> {
    /// Closes the queue, queues a stop per thread and waits for the threads to end until
    /// `deadline` (`None`: for ever); joins those that ended. Returns how many it left
    /// running, the calling thread (a job of this pool stopping it) not counted. Only the
    /// first call does anything.
    fn stop(&mut self, deadline: Option<Instant>) -> usize {
        if std::mem::replace(&mut self.stopped, true) {
            return 0;
        }
        *self.sender.closed.write().unwrap_or_else(PoisonError::into_inner) = true;
        // Queued jobs come before the stops, so they still run.
        for _ in &self.threads {
            let _ = self.sender.tx.send(Slot::Stop);
        }
        // A job of this pool stopping it (a frame task shutting its runtime down) cannot join
        // its own thread, which would panic: that thread ends once the job returns, after it
        // ran what is still queued and took its stop.
        let me = std::thread::current().id();
        let others = self.threads.iter().filter(|h| h.thread().id() != me).count();
        // Once counted ended, a thread is past its jobs: joining it waits only for its exit.
        let all_ended = self.wait_ended(others, deadline);
        let (mut left, mut mine) = (0, false);
        for handle in self.threads.drain(..) {
            if handle.thread().id() == me {
                mine = true;
            } else if all_ended || handle.is_finished() {
                // A thread only ends by returning from `worker_loop`, which catches job
                // panics; a join error would mean a panic in the factory, already reported.
                let _ = handle.join();
            } else {
                left += 1;
            }
        }
        // With no thread left, whatever is still queued is dropped here, and a job's own drop
        // guard reports it. A thread left running keeps the queue: its stop is in it.
        if left == 0 && !mine {
            crate::drop_each_warning_on_panic("a queued job's drop", self.rx.try_iter());
        }
        left
    }

    /// Waits until `threads` of the pool's threads ended, or `deadline` passed; whether they
    /// all did.
    fn wait_ended(&self, threads: usize, deadline: Option<Instant>) -> bool {
        let mut ended = self.ended.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *ended < threads {
            ended = match deadline {
                None => self.ended.changed.wait(ended).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    let waited = self.ended.changed.wait_timeout(ended, left);
                    waited.unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        true
    }
}

impl<J> Drop for WorkerPool<J> {
    fn drop(&mut self) {
        self.stop(None);
    }
}

/// Lowers the calling thread's CPU priority by `nice` steps (a nice increment, clamped at
/// the lowest priority, 19). Linux keeps a nice value per thread, so this touches no other
/// thread; the increment is applied once, when a pool thread starts, and a worker rebuilt
/// after a panic runs on the same thread at the same priority. A failure is logged, not
/// fatal: the thread keeps the priority it has. Elsewhere it does nothing: other Unixes keep
/// one nice value for the whole process, which every pool thread would lower again.
fn lower_priority(nice: u8) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if nice > 0 {
        let lowered = rustix::process::nice(i32::from(nice));
        if let Err(e) = lowered {
            // Caught: a panic out of the report would end this thread, and the pool would
            // shrink.
            crate::log_caught(|| {
                tracing::warn!(
                    target: "streamrt",
                    nice,
                    error = %e,
                    "could not lower a pool thread's priority; it keeps the priority it has"
                );
            });
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = nice;
}

fn worker_loop<W: Worker>(
    index: usize,
    rx: &Receiver<Slot<W::Job>>,
    factory: &(dyn Fn(usize) -> W + Send + Sync),
    stats: &PoolStats,
) {
    let _live = Live(&stats.live);
    let mut worker = factory(index);
    // Whether a job ran since the worker was last idle.
    let mut ran = false;
    loop {
        let slot = match rx.try_recv() {
            Ok(slot) => slot,
            Err(_) => {
                ran = false;
                if caught(index, || worker.idle(), stats) {
                    rebuild(index, &mut worker, factory);
                }
                let Ok(slot) = rx.recv() else { break };
                slot
            }
        };
        let Slot::Job(job) = slot else {
            // What the last jobs batched still goes on before the worker ends.
            if ran {
                let _ = caught(index, || worker.idle(), stats);
            }
            break;
        };
        ran = true;
        if run_caught(index, &mut worker, job, stats) {
            rebuild(index, &mut worker, factory);
        }
    }
    drop_caught(index, worker, "a pool worker's drop panicked as its thread ended");
}

/// Counts a pool thread out of `live` however its loop ends: a panic the loop does not catch
/// (its factory's) ends the thread too, and `live` must then say the pool shrank.
struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Replaces a worker that panicked with a new one from `factory`. The old one is dropped under
/// a catch of its own: a worker left half-updated by its panic is the likeliest to panic in
/// its drop too, and that panic would end the thread, shrinking the pool.
fn rebuild<W>(index: usize, worker: &mut W, factory: &(dyn Fn(usize) -> W + Send + Sync)) {
    let old = std::mem::replace(worker, factory(index));
    drop_caught(index, old, "a panicked worker's drop panicked too; its replacement runs on");
}

/// Drops `worker` under `catch_unwind`, logging `what` if its drop panics: a worker left
/// half-updated by a panic may panic again as it is dropped, and that panic must not escape
/// the pool's thread.
fn drop_caught<W>(index: usize, worker: W, what: &'static str) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(worker))) {
        let message = take_panic_message(payload);
        crate::log_caught(|| {
            tracing::warn!(target: "streamrt", worker = index, panic = %message, "{what}");
        });
    }
}

/// Runs one job under `catch_unwind`; true when it panicked and the worker must be rebuilt.
fn run_caught<W: Worker>(index: usize, worker: &mut W, job: W::Job, stats: &PoolStats) -> bool {
    stats.busy.fetch_add(1, Ordering::AcqRel);
    let panicked = caught(index, || worker.run(job), stats);
    stats.busy.fetch_sub(1, Ordering::AcqRel);
    stats.jobs.fetch_add(1, Ordering::AcqRel);
    panicked
}

/// Runs a worker's `call` under `catch_unwind`; true when it panicked (counted as a restart)
/// and the worker must be rebuilt.
fn caught(index: usize, call: impl FnOnce(), stats: &PoolStats) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(call));
    let Err(payload) = outcome else { return false };
    let message = take_panic_message(payload);
    // Caught too: a panic out of the report would end this thread, and the pool would shrink.
    crate::log_caught(|| {
        tracing::warn!(
            target: "streamrt",
            worker = index,
            panic = %message,
            "worker panicked; rebuilding it with fresh state"
        );
    });
    stats.restarts.fetch_add(1, Ordering::AcqRel);
    true
}

#[cfg(test)]
mod tests;
