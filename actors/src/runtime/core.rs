//! The threads a runtime starts, and how they start and stop.
//!
//! - `streamrt-core`: an actix system whose arbiter hosts the tightly coupled actors (scheduler,
//!   caches, frame coordinator), so their messages stay on one thread.
//! - `streamrt-telemetry`: an arbiter of its own for the sink, so writing never delays loads.
//! - `streamrt-io-N` and `streamrt-decode-N`: the worker pools.
//!
//! Every one of them is joined by [`Core::stop`].

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::{Actor, Arbiter, System};
use streamrt_supervisor::{Mailbox, WorkerPool};

use crate::cache::CacheLinks;
use crate::frame::{FrameCoordinator, FrameMsg, FrameShared};
use crate::runtime::registry::{CacheControl, TypeSpec};
use crate::runtime::RuntimeConfig;
use crate::scheduler::{Scheduler, SchedulerLimits, SchedulerMsg};
use crate::source::Source;
use crate::telemetry::{self, Probe, SinkMsg, TelemetrySink};
use crate::work::{DecodeJob, DecodeWorker, IoWorker, ReadJob};

/// What the core thread is started with.
pub(crate) struct CoreParts {
    pub(crate) config: RuntimeConfig,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) probe: Arc<Probe>,
    pub(crate) types: Vec<Box<dyn TypeSpec>>,
    pub(crate) sink: TelemetrySink,
    pub(crate) frame: Arc<FrameShared>,
}

/// The running threads and the mailboxes shutdown talks to.
pub(crate) struct Core {
    system: System,
    core_thread: JoinHandle<()>,
    telemetry: Arbiter,
    io: WorkerPool<ReadJob>,
    decode: WorkerPool<DecodeJob>,
    pub(crate) scheduler: Mailbox<SchedulerMsg>,
    pub(crate) frame: Mailbox<FrameMsg>,
    pub(crate) sink: Mailbox<SinkMsg>,
    pub(crate) caches: Vec<Box<dyn CacheControl>>,
    ack_max: Duration,
}

impl Core {
    /// Starts the pools, the actors and their threads.
    ///
    /// # Errors
    ///
    /// A thread could not be spawned; whatever was started is stopped again.
    pub(crate) fn start(parts: CoreParts, sink_mailbox: Mailbox<SinkMsg>) -> std::io::Result<Self> {
        let CoreParts {
            config,
            source,
            probe,
            types,
            sink,
            frame,
        } = parts;
        let scheduler = Mailbox::new();
        let frame_mailbox = Mailbox::new();
        let decode = WorkerPool::start("streamrt-decode", config.decode_threads, |_| DecodeWorker)?;
        let io_worker = {
            let (source, scheduler, probe) = (source, scheduler.clone(), Arc::clone(&probe));
            let decode = decode.sender();
            move |_| IoWorker {
                source: Arc::clone(&source),
                scheduler: scheduler.clone(),
                decode: decode.clone(),
                probe: Arc::clone(&probe),
            }
        };
        let io = WorkerPool::start("streamrt-io", config.workers, io_worker)?;
        let caches = types.iter().map(|t| t.control()).collect();
        let actors = CoreActors {
            config: config.clone(),
            probe,
            types,
            sink,
            frame,
            scheduler: scheduler.clone(),
            frame_mailbox: frame_mailbox.clone(),
            io: io.sender(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let core_thread = std::thread::Builder::new()
            .name("streamrt-core".into())
            .spawn(move || run_core(actors, &ready_tx))?;
        let (system, telemetry) = ready_rx.recv().map_err(|_| {
            std::io::Error::other("the streamrt core thread stopped while starting")
        })?;
        Ok(Self {
            system,
            core_thread,
            telemetry,
            io,
            decode,
            scheduler,
            frame: frame_mailbox,
            sink: sink_mailbox,
            caches,
            ack_max: Duration::from_millis(config.shutdown_ack_ms_max),
        })
    }

    /// Fails every outstanding request with `Shutdown`, stops every actor and joins every
    /// thread. Each actor gets `shutdown_ack_ms_max` to acknowledge; one that does not (it
    /// died) has its mailbox closed by this thread instead, which fails its requests.
    pub(crate) fn stop(self) {
        for cache in &self.caches {
            let (tx, rx) = mpsc::channel();
            if cache.post_shutdown(tx) {
                let _ = rx.recv_timeout(self.ack_max);
            }
            cache.close();
        }
        self.ask(&self.scheduler, SchedulerMsg::Shutdown);
        self.ask(&self.frame, FrameMsg::Shutdown);
        self.io.shutdown();
        self.decode.shutdown();
        telemetry::flush(&self.sink);
        drop(self.scheduler.close());
        drop(self.frame.close());
        drop(self.sink.close());
        self.telemetry.stop();
        let _ = self.telemetry.join();
        self.system.stop();
        let _ = self.core_thread.join();
    }

    fn ask<M>(&self, mailbox: &Mailbox<M>, make: impl FnOnce(mpsc::Sender<()>) -> M) {
        ask(mailbox, make, self.ack_max);
    }

    /// Round trips through the caches, the scheduler and the frame coordinator, in the order
    /// their messages flow.
    pub(crate) fn sync(&self, timeout: Duration) -> bool {
        let caches = self.caches.iter().all(|cache| {
            let (tx, rx) = mpsc::channel();
            cache.post_ping(tx) && rx.recv_timeout(timeout).is_ok()
        });
        caches
            && ask(&self.scheduler, SchedulerMsg::Ping, timeout)
            && ask(&self.frame, FrameMsg::Ping, timeout)
    }
}

/// Posts a message carrying a reply channel and waits up to `timeout` for the reply.
fn ask<M>(
    mailbox: &Mailbox<M>,
    make: impl FnOnce(mpsc::Sender<()>) -> M,
    timeout: Duration,
) -> bool {
    let (tx, rx) = mpsc::channel();
    mailbox.post(make(tx)).is_ok() && rx.recv_timeout(timeout).is_ok()
}

impl Core {}

/// What the core thread starts its actors from.
struct CoreActors {
    config: RuntimeConfig,
    probe: Arc<Probe>,
    types: Vec<Box<dyn TypeSpec>>,
    sink: TelemetrySink,
    frame: Arc<FrameShared>,
    scheduler: Mailbox<SchedulerMsg>,
    frame_mailbox: Mailbox<FrameMsg>,
    io: streamrt_supervisor::PoolSender<ReadJob>,
}

fn run_core(actors: CoreActors, ready: &mpsc::Sender<(System, Arbiter)>) {
    let system = System::new();
    let started = system.block_on(async move {
        let CoreActors {
            config,
            probe,
            types,
            sink,
            frame,
            scheduler,
            frame_mailbox,
            io,
        } = actors;
        let telemetry = Arbiter::new();
        TelemetrySink::start_in_arbiter(&telemetry.handle(), move |_| sink);
        let limits = SchedulerLimits {
            queue_capacity: config.queue_capacity,
            reads_in_flight: config.reads_in_flight,
            decode_backlog_max: config.decode_backlog_max,
            drain_batch_max: config.drain_batch_max,
        };
        Scheduler::new(scheduler.clone(), limits, io, Arc::clone(&probe)).start();
        FrameCoordinator::new(frame_mailbox.clone(), frame, config.drain_batch_max).start();
        let generations = Arc::new(AtomicU64::new(0));
        for spec in types {
            spec.start(CacheLinks {
                scheduler: scheduler.clone(),
                frame: frame_mailbox.clone(),
                probe: Arc::clone(&probe),
                generations: Arc::clone(&generations),
                drain_batch_max: config.drain_batch_max,
            });
        }
        (System::current(), telemetry)
    });
    if ready.send(started).is_ok() {
        if let Err(e) = system.run() {
            tracing::error!(target: "streamrt", error = %e, "core system stopped with an error");
        }
    }
}
