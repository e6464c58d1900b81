//! The threads a runtime starts, the supervision tree over its actors, and how they stop.
//!
//! - `streamrt-core`: an actix system whose arbiter hosts the root supervisor and its
//!   children (scheduler, frame coordinator, one cache per type), so their messages stay on
//!   one thread.
//! - telemetry arbiter: a supervisor of its own over the sink, so writing never delays loads.
//! - `streamrt-io-N` and `streamrt-decode-N`: the worker pools, which rebuild a worker after a
//!   panic and never shrink.
//!
//! Both supervisors escalate to the runtime, which then shuts down. Every thread is joined by
//! [`Core::stop`], each within `shutdown_ack_ms_max`: one still in the engine's code then (a
//! source's read, a decoder, a frame task, an asset's `Drop`) is left behind, detached, to end
//! on its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use actix::{Actor, Arbiter, System};
use streamrt_supervisor::{
    log_caught, AskPatience, ChildSpec, Clock, Escalation, Mailbox, PoolSender, PoolStats,
    RestartKind, RestartPolicy, Strategy, Supervisor, SupervisorMsg, Worker, WorkerPool,
};

use crate::cache::{CacheLinks, CacheStats};
use crate::frame::{FrameCoordinator, FrameMsg, FrameShared};
use crate::replay::Deterministic;
use crate::resident::Residency;
use crate::runtime::registry::{CacheControl, TypeSpec};
use crate::runtime::RuntimeConfig;
use crate::scheduler::{ReadCredits, Scheduler, SchedulerLimits, SchedulerMsg};
use crate::source::{LoadHints, Source};
use crate::tasks::TaskPool;
use crate::telemetry::{Probe, SinkMsg, SinkOutputs, SinkTiming, TelemetrySink};
use crate::throttle::Throttle;
use crate::work::{
    CrashRequests, DecodeJob, DecodeQueue, DecodeWorker, IoPort, IoWorker, JobRoute, ReadOrder,
    ReadQueue,
};

/// Called (once per supervisor) when a supervisor gives up.
pub(crate) type EscalateFn = Arc<dyn Fn(Escalation) + Send + Sync>;

/// The name of the supervisor of the caches, the scheduler and the frame coordinator.
pub(crate) const CORE_SUPERVISOR: &str = "runtime";

/// What the core is started with.
pub(crate) struct CoreParts {
    pub(crate) config: RuntimeConfig,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) probe: Arc<Probe>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) types: Vec<Box<dyn TypeSpec>>,
    pub(crate) sink: Arc<Mutex<SinkOutputs>>,
    pub(crate) frame: Arc<FrameShared>,
    /// The frame coordinator's mailbox, made first: dependency gates post to it.
    pub(crate) frame_mailbox: Mailbox<FrameMsg>,
    /// The memory budget the caches share.
    pub(crate) residency: Arc<Mutex<Residency>>,
    pub(crate) escalate: EscalateFn,
    /// Set for a deterministic runtime: stepped pools, tracked mailboxes, virtual timers.
    pub(crate) deterministic: Option<Arc<Deterministic>>,
}

/// Handles for fault injection and figures of the pools.
pub(crate) struct Pools {
    pub(crate) io_crashes: Arc<CrashRequests>,
    pub(crate) decode_crashes: Arc<CrashRequests>,
    pub(crate) io: Arc<PoolStats>,
    pub(crate) decode: Arc<PoolStats>,
}

/// The running threads and the mailboxes shutdown talks to.
pub(crate) struct Core {
    system: System,
    core_thread: JoinHandle<()>,
    telemetry: Arbiter,
    /// The telemetry arbiter's thread, once it told it.
    telemetry_thread: Option<ThreadId>,
    io: WorkerPool<ReadOrder>,
    decode: WorkerPool<DecodeJob>,
    pub(crate) scheduler: Mailbox<SchedulerMsg>,
    pub(crate) frame: Mailbox<FrameMsg>,
    pub(crate) sink: Mailbox<SinkMsg>,
    pub(crate) caches: Vec<Arc<dyn CacheControl>>,
    pub(crate) pools: Pools,
    supervisors: [Mailbox<SupervisorMsg>; 2],
    ack_max: Duration,
    /// Where a telemetry log that did not end with the session is reported, if there is one
    /// (a runtime with a telemetry file).
    log_probe: Option<Arc<Probe>>,
}

/// A worker factory that reports every build after the first of each thread as a restart.
fn reporting<W>(
    actor: &'static str,
    threads: usize,
    probe: &Arc<Probe>,
    make: impl Fn(u32) -> W + Send + Sync + 'static,
) -> impl Fn(usize) -> W + Send + Sync + 'static {
    let built: Vec<AtomicBool> = (0..threads).map(|_| AtomicBool::new(false)).collect();
    let probe = Arc::clone(probe);
    move |index| {
        if built[index].swap(true, Ordering::AcqRel) {
            probe.restarted(actor);
        }
        make(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// The decode pool: `decode_threads` threads, or one stepped worker for a deterministic run.
fn decode_pool(
    parts: &CoreParts,
    staged: &Arc<DecodeQueue>,
    crashes: &Arc<CrashRequests>,
) -> std::io::Result<WorkerPool<DecodeJob>> {
    let (probe, staged, crashes) =
        (Arc::clone(&parts.probe), Arc::clone(staged), Arc::clone(crashes));
    let threads = parts.config.decode_threads;
    pool(parts, "decode-worker", "streamrt-decode", threads, move |index| DecodeWorker {
        crashes: Arc::clone(&crashes),
        probe: Arc::clone(&probe),
        staged: Arc::clone(&staged),
        index,
        replies: Default::default(),
    })
}

/// The IO pool: `workers` threads, or one stepped worker for a deterministic run. Its workers
/// take dispatched loads from `staged` and hand read ones to `staged_decodes` (none when
/// deterministic: the job then travels in the decode pool's order).
fn io_pool(
    parts: &CoreParts,
    staged: &Arc<ReadQueue>,
    staged_decodes: Option<Arc<DecodeQueue>>,
    throttle: Option<&Arc<Throttle>>,
    decode: &WorkerPool<DecodeJob>,
    crashes: &Arc<CrashRequests>,
) -> std::io::Result<WorkerPool<ReadOrder>> {
    let config = &parts.config;
    let worker = {
        let (source, probe) = (Arc::clone(&parts.source), Arc::clone(&parts.probe));
        let staged = Arc::clone(staged);
        let (decode, crashes) = (decode.sender(), Arc::clone(crashes));
        let throttle = throttle.cloned();
        let urgent_decodes_here = config.urgent_decodes_on_io;
        move |index| IoWorker {
            throttle: throttle.clone(),
            index,
            source: Arc::clone(&source),
            staged: Arc::clone(&staged),
            staged_decodes: staged_decodes.clone(),
            decode: decode.clone(),
            probe: Arc::clone(&probe),
            crashes: Arc::clone(&crashes),
            urgent_decodes_here,
        }
    };
    pool(parts, "io-worker", "streamrt-io", config.workers, worker)
}

/// A pool of `threads` threads named `name`, or one stepped worker for a deterministic run;
/// its workers' rebuilds are reported as restarts of `actor`.
fn pool<W: Worker>(
    parts: &CoreParts,
    actor: &'static str,
    name: &str,
    threads: usize,
    make: impl Fn(u32) -> W + Send + Sync + 'static,
) -> std::io::Result<WorkerPool<W::Job>> {
    let worker = reporting(actor, threads, &parts.probe, make);
    match parts.deterministic {
        Some(_) => Ok(WorkerPool::stepped(worker)),
        None => WorkerPool::start_below(name, threads, parts.config.worker_nice, worker),
    }
}

impl Core {
    /// Starts the pools, the supervision trees and their threads.
    ///
    /// # Errors
    ///
    /// A thread could not be spawned; whatever was started is stopped again.
    pub(crate) fn start(parts: CoreParts, sink_mailbox: Mailbox<SinkMsg>) -> std::io::Result<Self> {
        let scheduler = Mailbox::new();
        let det = parts.deterministic.clone();
        if let Some(det) = &det {
            scheduler.track(&det.activity);
        }
        let frame_mailbox = parts.frame_mailbox.clone();
        let staged = Arc::new(ReadQueue::default());
        let staged_decodes = Arc::new(DecodeQueue::default());
        let (io_crashes, decode_crashes) = (Arc::default(), Arc::<CrashRequests>::default());
        let config = &parts.config;
        let decode = decode_pool(&parts, &staged_decodes, &decode_crashes)?;
        let staged_decodes = det.is_none().then_some(staged_decodes);
        let throttle = config
            .io_bytes_per_sec_max
            .map(|rate| Arc::new(Throttle::new(rate, &*parts.source, config.workers)));
        let io = io_pool(
            &parts,
            &staged,
            staged_decodes.clone(),
            throttle.as_ref(),
            &decode,
            &io_crashes,
        )?;
        let caches: Vec<_> = parts.types.iter().map(|t| t.control()).collect();
        let supervisors = [Mailbox::new(), Mailbox::new()];
        let ack_max = Duration::from_millis(config.shutdown_ack_ms_max);
        let log_probe = config.telemetry_path.is_some().then(|| Arc::clone(&parts.probe));
        let actors = CoreActors {
            parts,
            scheduler: scheduler.clone(),
            frame_mailbox: frame_mailbox.clone(),
            sink_mailbox: sink_mailbox.clone(),
            io: io.sender(),
            staged: det.is_none().then_some(staged),
            staged_decodes,
            throttle,
            pool_stats: [io.stats(), decode.stats()],
            caches: caches.clone(),
            supervisors: supervisors.clone(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let core_thread = std::thread::Builder::new()
            .name("streamrt-core".into())
            .spawn(move || run_core(actors, &ready_tx))?;
        let (system, telemetry) = ready_rx.recv().map_err(|_| {
            std::io::Error::other("the streamrt core thread stopped while starting")
        })?;
        let telemetry_thread = thread_of(&telemetry);
        let pools = Pools { io_crashes, decode_crashes, io: io.stats(), decode: decode.stats() };
        Ok(Self {
            system,
            core_thread,
            telemetry,
            telemetry_thread,
            io,
            decode,
            scheduler,
            frame: frame_mailbox,
            sink: sink_mailbox,
            caches,
            pools,
            supervisors,
            ack_max,
            log_probe,
        })
    }

    /// Fails every outstanding request with `Shutdown`, stops every actor and joins every
    /// thread. Each live actor gets `shutdown_ack_ms_max` to acknowledge, waited for as
    /// `patience` says when asked (read again before each ask); a dead one (its supervisor
    /// gave up) has its mailbox closed by this thread instead, which fails its requests. Each worker pool gets as long for its threads to end; a thread still in a
    /// job then (blocked in a source, a decoder or a frame task) is left behind, detached.
    ///
    /// The core thread's actors (the caches, the scheduler, the frame coordinator, their
    /// supervisor) share it: once one of them did not answer in `shutdown_ack_ms_max`, the
    /// others are asked without waiting, as the thread is held (in the engine's code: an
    /// asset's `Drop`, a source's hint) and they would not answer either. A held core thread
    /// so holds the stop for that limit twice (its first ask, its join), not once per actor.
    pub(crate) fn stop(self, patience: &dyn Fn() -> AskPatience, last_event: impl FnOnce()) {
        let mut core = HeldThreadAsks { ack_max: self.ack_max, held: false };
        for cache in &self.caches {
            core.ask(|timeout| cache.ask_shutdown(timeout, patience()));
            cache.close();
        }
        core.ask(|timeout| {
            self.scheduler.ask_with(SchedulerMsg::Shutdown, timeout, patience()).is_some()
        });
        core.ask(|timeout| self.frame.ask_with(FrameMsg::Shutdown, timeout, patience()).is_some());
        // A job blocked in the engine's code (a source's read from a stalled store, a decoder,
        // a frame task) must not hold the shutdown for ever: its thread is left behind.
        for (pool, left) in [
            ("IO", self.io.shutdown_within(self.ack_max)),
            ("decode", self.decode.shutdown_within(self.ack_max)),
        ] {
            if left > 0 {
                log_caught(|| {
                    tracing::warn!(
                        target: "streamrt", threads = left,
                        "{pool} threads still ran their jobs at shutdown: left to end on their own"
                    );
                });
            }
        }
        last_event();
        // Not waited for if dead (its supervisor gave up): nothing would answer.
        let while_alive = AskPatience::WhileAlive;
        let flushed = self.sink.ask_with(SinkMsg::Flush, self.ack_max, while_alive).is_some();
        // Stopped supervisors restart nothing while the system winds down. The first is the
        // core thread's.
        let [core_supervisor, telemetry_supervisor] = &self.supervisors;
        core.ask(|timeout| {
            core_supervisor.ask_with(SupervisorMsg::Stop, timeout, while_alive).is_some()
        });
        telemetry_supervisor.ask_with(SupervisorMsg::Stop, self.ack_max, while_alive);
        self.scheduler.close_dropping("a scheduler message left at shutdown");
        self.frame.close_dropping("a frame message left at shutdown");
        self.sink.close_dropping("a telemetry message left at shutdown");
        self.supervisors.iter().for_each(|s| s.close_dropping("a supervisor message"));
        self.telemetry.stop();
        // A sink blocked writing its file (a pipe no one reads, a hung mount) must not hold
        // the shutdown for ever either: its thread is left behind, to end with its write.
        let telemetry = self.telemetry;
        let joined =
            join_or_leave(move || drop(telemetry.join()), self.ack_max, "telemetry thread");
        if let Some(probe) = self.log_probe.as_ref().filter(|_| !(flushed && joined)) {
            let ms = self.ack_max.as_millis();
            probe.telemetry_failed(&format!(
                "the telemetry sink did not finish its last writes within shutdown_ack_ms_max \
                 ({ms} ms), or had stopped for good before: the log may end before the session \
                 did"
            ));
        }
        self.system.stop();
        // An actor held in the engine's code (an asset's `Drop` waiting on the thread that
        // shuts down, say) must not hold the shutdown for ever: the thread is left behind.
        let core_thread = self.core_thread;
        join_or_leave(move || drop(core_thread.join()), self.ack_max, "core thread");
        // A cache restarted between its shutdown's ask (it was dead then) and the supervisors'
        // stop salvaged again what it took back when it was stopped: nothing restarts now, so
        // what is left in a salvage fails with `Shutdown` here, before `shutdown` returns.
        for cache in &self.caches {
            cache.close();
        }
    }

    /// The threads [`Core::stop`] joins or waits on: the core's, the telemetry arbiter's and
    /// the pools' (a deterministic runtime's run their jobs on the driver's thread instead).
    pub(crate) fn thread_ids(&self) -> Vec<ThreadId> {
        let pools = self.io.thread_ids().chain(self.decode.thread_ids());
        self.actor_thread_ids().into_iter().chain(pools).collect()
    }

    /// The threads the actors run on: the core's and the telemetry arbiter's.
    pub(crate) fn actor_thread_ids(&self) -> Vec<ThreadId> {
        let own = [Some(self.core_thread.thread().id()), self.telemetry_thread];
        own.into_iter().flatten().collect()
    }

    /// The IO pool (a deterministic runtime's driver runs its jobs).
    pub(crate) fn io(&self) -> &WorkerPool<ReadOrder> {
        &self.io
    }

    /// The decode pool.
    pub(crate) fn decode(&self) -> &WorkerPool<DecodeJob> {
        &self.decode
    }

    /// Where frame tasks are queued: the decode pool, a group's notes at most its size (one
    /// for a deterministic runtime's stepped pool).
    pub(crate) fn task_pool(&self) -> TaskPool {
        TaskPool { sender: self.decode.sender(), notes_max: self.decode.size().max(1) }
    }

    /// What the engine's queries ask the actors through, to use with the core's lock let go.
    pub(crate) fn asks(&self) -> CoreAsks {
        CoreAsks {
            caches: self.caches.clone(),
            scheduler: self.scheduler.clone(),
            frame: self.frame.clone(),
        }
    }
}

/// The core actors' mailboxes, cloned out of the [`Core`] for queries that wait on answers:
/// a stop takes the core under its lock and closes these mailboxes, which ends every such
/// wait, so no query may hold that lock while it waits.
pub(crate) struct CoreAsks {
    caches: Vec<Arc<dyn CacheControl>>,
    scheduler: Mailbox<SchedulerMsg>,
    frame: Mailbox<FrameMsg>,
}

impl CoreAsks {
    /// Round trips through the caches, the scheduler, the caches again (which send on what
    /// the scheduler dispatched) and the frame coordinator, in the order their messages flow
    /// (see `Runtime::sync`).
    pub(crate) fn sync(&self, timeout: Duration) -> bool {
        let caches = || self.caches.iter().all(|cache| cache.ask_ping(timeout));
        caches()
            && self.scheduler.ask(SchedulerMsg::Ping, timeout).is_some()
            && caches()
            && self.frame.ask(FrameMsg::Ping, timeout).is_some()
    }

    /// Each cache's figures; see `Runtime::cache_stats`.
    pub(crate) fn cache_stats(&self, timeout: Duration) -> Vec<CacheStats> {
        self.caches.iter().filter_map(|cache| cache.ask_stats(timeout)).collect()
    }
}

/// The asks [`Core::stop`] makes of the actors on the core thread, each waited for
/// `ack_max` until one is not answered in that time: the thread is then held, and the asks
/// after are made without waiting.
struct HeldThreadAsks {
    ack_max: Duration,
    held: bool,
}

impl HeldThreadAsks {
    /// Makes `ask` with the time it may wait, which tells whether it was answered.
    fn ask(&mut self, ask: impl FnOnce(Duration) -> bool) {
        if self.held {
            ask(Duration::ZERO);
            return;
        }
        let asked = Instant::now();
        // One not answered sooner was dead, not held: a dead actor's ask returns at once.
        self.held = !ask(self.ack_max) && asked.elapsed() >= self.ack_max;
    }
}

/// What the core thread starts its actors from.
struct CoreActors {
    parts: CoreParts,
    scheduler: Mailbox<SchedulerMsg>,
    frame_mailbox: Mailbox<FrameMsg>,
    sink_mailbox: Mailbox<SinkMsg>,
    io: PoolSender<ReadOrder>,
    /// Where dispatched loads wait for the IO workers (`None` when deterministic).
    staged: Option<Arc<ReadQueue>>,
    /// Where read loads wait for the decode workers (`None` when deterministic).
    staged_decodes: Option<Arc<DecodeQueue>>,
    /// The IO bandwidth limit the IO workers pay, if one is set.
    throttle: Option<Arc<Throttle>>,
    pool_stats: [Arc<PoolStats>; 2],
    caches: Vec<Arc<dyn CacheControl>>,
    supervisors: [Mailbox<SupervisorMsg>; 2],
}

impl CoreActors {
    fn policy(&self) -> RestartPolicy {
        RestartPolicy {
            strategy: Strategy::OneForOne,
            intensity: self.parts.config.restart_intensity,
            backoff: self.parts.config.restart_backoff,
        }
    }

    fn scheduler_spec(&self, routes: Arc<[Arc<dyn JobRoute>]>) -> ChildSpec {
        let config = &self.parts.config;
        let limits = SchedulerLimits {
            queue_capacity: config.queue_capacity,
            reads_in_flight: config.reads_in_flight,
            read_credit_bytes: config.read_credit_bytes,
            decode_backlog_max: config.decode_backlog_max,
            drain_batch_max: config.drain_batch_max,
        };
        let (mailbox, probe) = (self.scheduler.clone(), Arc::clone(&self.parts.probe));
        // One count of read credits for every incarnation, as the reads it counts outlive one.
        let credits = ReadCredits::new(mailbox.clone());
        let caches = self.caches.clone();
        let resubmit: Arc<dyn Fn() -> Vec<u16> + Send + Sync> = Arc::new(move || {
            let asked = caches.iter().enumerate().filter(|(_, c)| c.post_resubmit());
            asked.map(|(ty, _)| u16::try_from(ty).expect("fewer than 65,536 asset types")).collect()
        });
        ChildSpec::new("scheduler", RestartKind::Permanent, move |link| {
            let scheduler = Scheduler::new(
                mailbox.clone(),
                Arc::clone(&credits),
                limits,
                Arc::clone(&routes),
                Arc::clone(&probe),
                link,
                Arc::clone(&resubmit),
            );
            Ok(scheduler.start().recipient())
        })
    }

    fn frame_spec(&self) -> ChildSpec {
        let (mailbox, shared) = (self.frame_mailbox.clone(), Arc::clone(&self.parts.frame));
        let batch = self.parts.config.drain_batch_max;
        ChildSpec::new("frame", RestartKind::Permanent, move |link| {
            let coordinator =
                FrameCoordinator::new(mailbox.clone(), Arc::clone(&shared), batch, link);
            Ok(coordinator.start().recipient())
        })
    }

    fn sink_spec(&self) -> ChildSpec {
        let (probe, mailbox) = (Arc::clone(&self.parts.probe), self.sink_mailbox.clone());
        let outputs = Arc::clone(&self.parts.sink);
        let timing = SinkTiming {
            flush_ms: self.parts.config.telemetry_flush_ms,
            sample_ms: self.parts.config.telemetry_sample_ms,
        };
        let pools = self.pool_stats.clone();
        ChildSpec::new("telemetry", RestartKind::Permanent, move |link| {
            let sink = TelemetrySink::new(
                Arc::clone(&probe),
                mailbox.clone(),
                Arc::clone(&outputs),
                timing,
                pools.clone(),
                link,
            );
            Ok(sink.start().recipient())
        })
    }
}

fn run_core(mut actors: CoreActors, ready: &mpsc::Sender<(System, Arbiter)>) {
    let system = System::new();
    let started = system.block_on(async move {
        let policy = actors.policy();
        if let Some(det) = &actors.parts.deterministic {
            det.activity.deliver_on(Arbiter::current());
        }
        let clock = Arc::clone(&actors.parts.clock);
        let escalate = Arc::clone(&actors.parts.escalate);
        let telemetry = Arbiter::new();
        let sink_spec = actors.sink_spec();
        let (telemetry_escalate, telemetry_clock) = (Arc::clone(&escalate), Arc::clone(&clock));
        let telemetry_mailbox = actors.supervisors[1].clone();
        Supervisor::start_in_arbiter(&telemetry.handle(), move |_| {
            Supervisor::new("telemetry", policy, telemetry_clock, telemetry_mailbox, move |e| {
                telemetry_escalate(e);
            })
            .child(sink_spec)
        });
        let types = std::mem::take(&mut actors.parts.types);
        let routes: Arc<[Arc<dyn JobRoute>]> = types.iter().map(|t| t.route()).collect();
        let mut root = Supervisor::new(
            CORE_SUPERVISOR,
            policy,
            clock,
            actors.supervisors[0].clone(),
            move |e| {
                escalate(e);
            },
        )
        .child(actors.scheduler_spec(Arc::clone(&routes)))
        .child(actors.frame_spec());
        let generations = Arc::new(AtomicU64::new(0));
        let config = &actors.parts.config;
        let links = CacheLinks {
            scheduler: actors.scheduler.clone(),
            io: IoPort {
                io: actors.io.clone(),
                staged: actors.staged.clone(),
                staged_decodes: actors.staged_decodes.clone(),
                throttle: actors.throttle.clone(),
            },
            frame: actors.frame_mailbox.clone(),
            probe: Arc::clone(&actors.parts.probe),
            generations,
            drain_batch_max: config.drain_batch_max,
            retry: config.retry,
            residency: Arc::clone(&actors.parts.residency),
            timers: actors.parts.deterministic.as_ref().map(|d| Arc::clone(&d.timers)),
            cancel_notes: actors.parts.deterministic.as_ref().map(|d| Arc::clone(&d.cancels)),
            hints: Arc::new(LoadHints::new(Arc::clone(&actors.parts.source))),
        };
        for (index, (spec, route)) in types.into_iter().zip(routes.iter()).enumerate() {
            root = root.child(spec.child_spec(links.clone(), index, Arc::clone(route)));
        }
        root.start();
        (System::current(), telemetry)
    });
    if ready.send(started).is_ok() {
        if let Err(e) = system.run() {
            log_caught(|| {
                tracing::error!(target: "streamrt", error = %e, "core system stopped with an error");
            });
        }
    }
}

/// The id of `arbiter`'s thread, which it tells once it runs what it was given before; `None`
/// if it stopped first.
fn thread_of(arbiter: &Arbiter) -> Option<ThreadId> {
    let (tx, rx) = mpsc::channel();
    arbiter.spawn_fn(move || {
        let _ = tx.send(std::thread::current().id());
    });
    rx.recv().ok()
}

/// [`join_within`], warning that `thread` was left behind when it was: still in the engine's
/// code (an asset's `Drop` on the core thread) or blocked writing (the telemetry file).
/// Whether it ended.
fn join_or_leave(join: impl FnOnce() + Send + 'static, within: Duration, thread: &str) -> bool {
    let joined = join_within(join, within);
    if !joined {
        log_caught(|| {
            tracing::warn!(target: "streamrt", "the {thread} still ran at shutdown: left to end on its own");
        });
    }
    joined
}

/// Runs `join` (a thread's join), waiting `within` at most (from a thread of its own, as a
/// thread's join has no time limit); whether it ended. One that did not is left behind,
/// detached.
fn join_within(join: impl FnOnce() + Send + 'static, within: Duration) -> bool {
    let (joined, ended) = mpsc::channel();
    let joiner = std::thread::Builder::new().name("streamrt-join".into()).spawn(move || {
        join();
        let _ = joined.send(());
    });
    // No thread to join it from: it is left behind at once.
    joiner.is_ok() && ended.recv_timeout(within).is_ok()
}
