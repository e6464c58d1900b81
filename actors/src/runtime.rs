//! The embeddable runtime: build it, register asset types, request assets, tick frames.
//!
//! [`Runtime`] is the engine's side. Everything it does on the caller's thread is non-blocking:
//! `request` validates the key, creates the request's shared cell and posts one message for
//! each request of its dependency tree; `begin_frame` publishes within its budget under one
//! lock. (While recording, both also take the recorder's order lock, which the core thread's
//! immediate publishes and the engine's other calls share.) Only the queries and barriers for tools ([`Runtime::cache_stats`], [`Runtime::sync`],
//! [`Runtime::subscribe`], [`Runtime::flush_telemetry`]) and [`Runtime::shutdown`] wait on
//! other threads.
//!
//! # Errors
//!
//! Caller mistakes are refused at once with a [`RequestError`]. A load's own failures
//! (including a full queue) arrive on the handle as `Failed(AssetLoadError)`.

mod builder;
mod config;
mod core;
mod registry;
mod stop;
mod submit;

pub use builder::RuntimeBuilder;

pub use config::{
    ConfigError, RetryPolicy, RuntimeConfig, CREDITS_MAX, DEPENDENCY_DEPTH_MAX,
    EVENTS_BUFFERED_MAX, RESTART_BACKOFF_MS_MAX, RETRY_BACKOFF_MS_MAX, SHUTDOWN_ACK_MS_MAX,
    TELEMETRY_INTERVAL_MS_MAX, THREADS_MAX, WORKER_NICE_MAX,
};

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use streamrt_messages::replay_log::LogRecord;
use streamrt_messages::{AssetKey, InvalidKey, Priority, Status};
use streamrt_supervisor::{Escalation, Mailbox, WorkerPool};

use crate::cache::CacheStats;
use crate::chaos::CrashTarget;
use crate::frame::{FrameChoice, FrameMsg, FrameReport, FrameShared, RecordedPublishes};
use crate::lock::lock;
use crate::replay::{published_records, Recorder};
use crate::request::{Handle, RootHandle};
use crate::resident::{MemoryStats, Residency};
use crate::scheduler::SchedulerMsg;
use crate::tasks::FrameTaskGroup;
use crate::telemetry::{Counters, EventStream, Probe, SinkMsg};
use crate::work::{DecodeJob, ReadOrder};

use self::core::Core;
use self::registry::TypeEntry;
pub(crate) use self::registry::TypeLink;
use self::stop::Joins;
use self::stop::{escalation_hook, EscalationListener};
use self::submit::Submitter;

/// Asset types a runtime registers at most: each has a cache actor of its own, and a replay
/// log names its types, so an untrusted log must not make a runtime of millions (past the
/// limit, each further registration is refused at the cost of a length check).
pub const TYPES_MAX: usize = 1024;

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No source was given.
    #[error("no source: call RuntimeBuilder::source")]
    NoSource,
    /// A setting is out of its range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A type's own retry policy (`register_with_policy`) has a setting out of its range.
    #[error("retry policy of asset type {asset_type}: {error}")]
    TypePolicy {
        /// The type the policy was registered with.
        asset_type: String,
        /// The setting out of its range (in the message, so not also given as its source).
        error: ConfigError,
    },
    /// A decoder's type name is not a valid asset type name.
    #[error(transparent)]
    TypeName(#[from] InvalidKey),
    /// Two decoders for one type name, or for one Rust type.
    #[error("asset type {0} is registered twice")]
    DuplicateType(String),
    /// More asset types than [`TYPES_MAX`].
    #[error("more than {max} asset types registered")]
    TooManyTypes {
        /// The limit.
        max: usize,
    },
    /// A per-type memory budget names a type that is not registered (the name, cut at
    /// `ERROR_TEXT_BYTES_MAX` bytes).
    #[error("memory budget for unregistered asset type {0}")]
    BudgetType(String),
    /// A placeholder is given for an asset type no registered decoder makes (the Rust type's
    /// name, cut at `ERROR_TEXT_BYTES_MAX` bytes).
    #[error("placeholder for {0}, which no registered decoder makes")]
    PlaceholderType(String),
    /// A thread could not be started or the telemetry file created.
    #[error("starting the runtime: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The key is not a confined relative path.
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    /// No decoder is registered for the asset type.
    #[error("no decoder registered for {0}")]
    UnknownType(String),
    /// The runtime is shutting down.
    #[error("runtime shut down")]
    Shutdown,
}

/// Each type's engine side (`Arc<TypeEntry<Asset>>`), by the asset's Rust type.
type EngineSides = HashMap<TypeId, Arc<dyn Any + Send + Sync>>;

/// A running streamrt instance; see the module docs.
///
/// Dropping it shuts it down (as [`Runtime::shutdown`]). Dropped last on a thread of the
/// runtime's own (a frame task's, an asset's drop on the core thread), it hands the stop to a
/// thread that nothing joins, since no handle is left to: the stop, and the replay log's last
/// flush, may then still be under way when the program exits. Keep the runtime and drop it
/// on the engine's thread.
pub struct Runtime {
    inner: Arc<Inner>,
}

/// The runtime's state, shared with the escalation hook.
struct Inner {
    /// Registered type names, in the order of the caches.
    type_names: Vec<String>,
    config: RuntimeConfig,
    probe: Arc<Probe>,
    types: EngineSides,
    frame: Arc<FrameShared>,
    sink: Mailbox<SinkMsg>,
    submitter: Submitter,
    residency: Arc<Mutex<Residency>>,
    core: Mutex<Option<Core>>,
    /// Held by a stop from taking the core until the core's stop returns (its threads
    /// joined): a second stop waits on it for the first.
    stopping: Mutex<()>,
    /// Set when a supervisor gave up: why.
    escalation: Mutex<Option<Escalation>>,
    /// The threads a stop was handed to (see `stop.rs`), for the engine's shutdown to join.
    stoppers: Mutex<Vec<JoinHandle<()>>>,
    /// The threads the core's stop joins or waits on, set once they all started.
    own_threads: OnceLock<Box<[ThreadId]>>,
    /// Those of them the actors run on.
    actor_threads: OnceLock<Box<[ThreadId]>>,
}

impl Inner {
    fn type_names(&self) -> impl Iterator<Item = &str> {
        self.type_names.iter().map(String::as_str)
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Option<Core>> {
        lock(&self.core)
    }
}

impl Runtime {
    /// A builder with the default configuration.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    /// The configuration the runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Requests the asset of type `T` at `path`. Returns at once; the handle tracks the load.
    ///
    /// # Errors
    ///
    /// [`RequestError::InvalidKey`] for a path that is not confined, `UnknownType` when no
    /// decoder produces `T`, `Shutdown` once the runtime is shutting down.
    pub fn request<T: Send + Sync + 'static>(
        &self,
        path: &str,
        priority: Priority,
    ) -> Result<Handle<T>, RequestError> {
        let entry = self.entry::<T>()?;
        let key = AssetKey::new(entry.link.asset_type.clone(), path)?;
        self.submit(entry, key, priority)
    }

    /// Requests the asset `key`, whose type must be the one registered for `T`.
    ///
    /// # Errors
    ///
    /// As [`Runtime::request`]; `UnknownType` also when `key`'s type is not `T`'s.
    pub fn request_key<T: Send + Sync + 'static>(
        &self,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Handle<T>, RequestError> {
        let entry = self.entry::<T>()?;
        if *key.asset_type() != entry.link.asset_type {
            return Err(RequestError::UnknownType(key.asset_type().to_string()));
        }
        self.submit(entry, key, priority)
    }

    /// `Shutdown` once the runtime is closing.
    fn open(&self) -> Result<(), RequestError> {
        self.inner.submitter.open()
    }

    fn entry<T: Send + Sync + 'static>(&self) -> Result<&TypeEntry<T>, RequestError> {
        self.open()?;
        self.inner
            .types
            .get(&TypeId::of::<T>())
            .and_then(|e| e.downcast_ref::<TypeEntry<T>>())
            .ok_or_else(|| RequestError::UnknownType(std::any::type_name::<T>().to_owned()))
    }

    fn submit<T: Send + Sync + 'static>(
        &self,
        entry: &TypeEntry<T>,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Handle<T>, RequestError> {
        self.inner.submitter.request(entry, key, priority)
    }

    /// Requests `key` of a type known by name (a replay's types share one Rust type).
    pub(crate) fn request_by_name(
        &self,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Box<dyn RootHandle>, RequestError> {
        self.open()?;
        let submitter = &self.inner.submitter;
        let requester = submitter
            .by_name
            .get(key.asset_type())
            .ok_or_else(|| RequestError::UnknownType(key.asset_type().to_string()))?;
        requester.request_root(submitter, key, priority)
    }

    /// Runs `f` on a deterministic runtime's stepped IO and decode pools; `None` once shut
    /// down.
    pub(crate) fn with_stepped_pools<R>(
        &self,
        f: impl FnOnce(&WorkerPool<ReadOrder>, &WorkerPool<DecodeJob>) -> R,
    ) -> Option<R> {
        self.inner.core().as_ref().map(|core| f(core.io(), core.decode()))
    }

    /// Starts a frame: publishes decoded requests, most urgent first, within the frame budget.
    /// Runs on the caller's thread without waiting on any actor.
    pub fn begin_frame(&self) -> FrameReport {
        let Some(recorder) = self.inner.probe.recorder() else {
            return self.inner.frame.begin_frame(FrameChoice::Budget(None));
        };
        // The publishes and their records under the order lock, which root requests and
        // cancels take too: a dependency published here is recorded after its request, and
        // a cancel that lost the race to a publish is recorded after this frame.
        let _order = recorder.order();
        let mut published = Vec::new();
        let report = self.inner.frame.begin_frame(FrameChoice::Budget(Some(&mut published)));
        // One record even for none: a replay's frame then publishes nothing, as this one did.
        let mut records = published_records(&published);
        if records.is_empty() {
            records.push(LogRecord::Published { requests: Vec::new() });
        }
        records.push(LogRecord::BeginFrame { published: report.published });
        // In one append: no other thread's record comes between a frame's publishes and it.
        recorder.record_all(&records);
        report
    }

    /// Publishes those of `recorded` waiting, in their order, outside any frame, and leaves
    /// the others listed: a replay publishing what its recording's immediate publishes did
    /// (see `FrameShared::held`).
    pub(crate) fn publish_as(&self, recorded: &mut RecordedPublishes) {
        self.inner.frame.publish_held(recorded);
    }

    /// Starts a frame that publishes those of `recorded` waiting, in their order, and leaves
    /// the others listed: a replay's frame publishing what its recording's did. None publishes
    /// nothing.
    pub(crate) fn begin_frame_as(&self, recorded: Option<&mut RecordedPublishes>) -> FrameReport {
        self.inner.frame.begin_frame(FrameChoice::These(recorded))
    }

    /// A group of parallel tasks for the current frame, run on the decode workers and joined
    /// by [`FrameTaskGroup::wait`]. `end_frame` cancels what has not started by then. With
    /// [`RuntimeConfig::worker_nice`] set, the tasks run at the workers' lowered priority; a
    /// waiter runs the tasks no worker took yet on its own thread, at its own.
    ///
    /// A task must not wait on a request still to be decoded: tasks run on the decode threads,
    /// so tasks waiting on every one of them would leave none to decode it (a wait with a
    /// timeout then times out; one without, never returns). A task may shut the runtime down.
    pub fn frame_tasks<R: Send + 'static>(&self) -> FrameTaskGroup<R> {
        let pool = self.inner.core().as_ref().map(Core::task_pool);
        let group = FrameTaskGroup::new(pool);
        self.inner.frame.adopt_group(&group.work());
        group
    }

    /// Ends a frame; cancels its task groups' tasks that have not started.
    pub fn end_frame(&self) {
        if let Some(recorder) = self.inner.probe.recorder() {
            recorder.record(&LogRecord::EndFrame);
        }
        self.inner.frame.end_frame();
    }

    /// Ends the current frame and begins the next.
    pub fn tick(&self) -> FrameReport {
        self.end_frame();
        self.begin_frame()
    }

    /// The live status, read from counters without a round trip.
    ///
    /// A count can lag a request's own state for a moment: a request's end is visible (to
    /// `state`, and to a wait, which returns as soon as it sees it) before its thread counts
    /// it, and a publish batch is counted after its last request. After a [`Runtime::sync`],
    /// the counts include every request that had ended before it.
    pub fn status(&self) -> Status {
        let c = &self.inner.probe.counters;
        Status {
            worker_count: self.inner.config.workers,
            decode_threads: self.inner.config.decode_threads,
            queue_capacity: self.inner.config.queue_capacity,
            worker_nice: self.inner.config.worker_nice,
            in_flight: Counters::get(&c.in_flight),
            queued: Counters::get(&c.queued),
            requested: Counters::get(&c.requested),
            ready: Counters::get(&c.ready),
            failed: Counters::get(&c.failed),
            cancelled: Counters::get(&c.cancelled),
            cancelled_after_decode: Counters::get(&c.cancelled_after_decode),
            bytes_read: Counters::get(&c.bytes_read),
            events_dropped: Counters::get(&c.events_dropped),
            retries: Counters::get(&c.retries),
            restarts: Counters::get(&c.restarts),
            quarantined: Counters::get(&c.quarantined),
            frame: self.inner.probe.frame(),
        }
    }

    /// Every cache's figures. Waits for each cache's answer (up to `timeout` each): for tools,
    /// not for the frame loop. None on a thread the actors run on (see [`Runtime::sync`]).
    pub fn cache_stats(&self, timeout: Duration) -> Vec<CacheStats> {
        if self.inner.on_actor_thread() {
            return Vec::new();
        }
        let asks = self.inner.core().as_ref().map(Core::asks);
        asks.map_or_else(Vec::new, |asks| asks.cache_stats(timeout))
    }

    /// The memory budget's figures over every type, read without a round trip to an actor.
    pub fn memory_stats(&self) -> MemoryStats {
        lock(&self.inner.residency).totals()
    }

    /// A live feed of every telemetry event emitted after this returns, holding at most
    /// `capacity` undelivered events (at least one; `usize::MAX`: no limit). Room is taken as
    /// events wait, not reserved up front; events past it are dropped and counted in
    /// [`EventStream::dropped`].
    ///
    /// The feed is ended at once ([`EventStream::is_ended`]) after a shutdown, when events are
    /// off (`events_enabled`: no event would ever come), when the
    /// telemetry sink does not take the subscription within `shutdown_ack_ms_max` (its thread
    /// stuck writing the telemetry file), or asked on a thread the actors run on (see
    /// [`Runtime::sync`]): a stream either gets every event from its return on, or says it
    /// ended.
    pub fn subscribe(&self, capacity: usize) -> EventStream {
        let (tx, stream) = EventStream::channel(capacity);
        let timeout = Duration::from_millis(self.inner.config.shutdown_ack_ms_max);
        let asked = self.inner.config.events_enabled
            && !self.inner.on_actor_thread()
            && self.inner.sink.ask(|ack| SinkMsg::Subscribe(tx, ack), timeout).is_some();
        if !asked {
            stream.abandon();
        }
        stream
    }

    /// Waits until every actor has handled what was sent to it before this call: each cache,
    /// then the scheduler, then each cache again (so what the scheduler dispatched has reached
    /// the IO pool), then the frame coordinator. Loads already with the workers are not
    /// waited for. For tools and tests that need a known point; returns false on timeout or
    /// after shutdown, and at once on a thread the actors run on (the engine's code there: an
    /// asset's `Drop`, a source's load hint, a waker), where waiting would hold up the very
    /// actors it waits for. So do the other queries that wait for an actor.
    pub fn sync(&self, timeout: Duration) -> bool {
        if self.inner.on_actor_thread() {
            return false;
        }
        let asks = self.inner.core().as_ref().map(Core::asks);
        asks.is_some_and(|asks| asks.sync(timeout))
    }

    /// Why the telemetry file ([`RuntimeConfig::telemetry_path`]) was closed, if a write to it
    /// failed: the log then ends early, and every event after is counted in
    /// `Status::events_dropped`. After [`Runtime::shutdown`], also when the sink did not finish
    /// its last writes within `shutdown_ack_ms_max` (its thread blocked writing, or its
    /// supervisor gave up): the log may then end before the session did. A program whose log
    /// matters checks this when it is done.
    pub fn telemetry_error(&self) -> Option<String> {
        self.inner.probe.telemetry_error().map(str::to_owned)
    }

    /// Why the replay log ([`RuntimeBuilder::record`]) is incomplete, if a write to it failed
    /// or its file fell 64 MiB behind the recording (a pipe no one reads: the log is written on
    /// a thread of its own, and nothing waits on it): recording stops there. Its last writes
    /// are flushed by [`Runtime::shutdown`], which waits for them at most
    /// `shutdown_ack_ms_max`, so a program whose log matters checks this after it.
    pub fn record_error(&self) -> Option<String> {
        self.inner.probe.recorder().and_then(Recorder::error)
    }

    /// Writes out every telemetry event buffered so far and waits for it; false if the sink
    /// did not answer within `shutdown_ack_ms_max` (or the runtime is shut down, or asked on a
    /// thread the actors run on: see [`Runtime::sync`]).
    pub fn flush_telemetry(&self) -> bool {
        let timeout = Duration::from_millis(self.inner.config.shutdown_ack_ms_max);
        !self.inner.on_actor_thread() && self.inner.sink.ask(SinkMsg::Flush, timeout).is_some()
    }

    /// Fails every outstanding request with `Shutdown`, stops the actors and joins every thread
    /// the runtime started, but a worker thread still in the engine's code (a source's read,
    /// a decode, a frame task) after `shutdown_ack_ms_max`: that one is left behind, detached,
    /// and may call its source or decoder once more before it ends. So is the telemetry
    /// thread if it is still writing its file then (a pipe no one reads, a hung mount): its
    /// last events may be lost. So is the core thread if the engine's code holds it (an
    /// asset's drop, a source's load hint that blocks): the stop waits `shutdown_ack_ms_max`
    /// for its first actor, then asks the others without waiting, and waits as long again for
    /// the thread; the requests whose loads its caches hold then end only once the thread is
    /// let go, and a wait on them without a timeout waits until then. Idempotent; later requests are refused with `Shutdown`. A call
    /// made while another thread's shutdown (or an escalation's) is under way returns once
    /// that one is over, and the replay log is flushed after every stop has ended.
    ///
    /// Called on a thread of the runtime's own (the engine's code there: a frame task, a
    /// decoder, a source's read or load hint, an asset's drop on eviction), which the stop
    /// joins or waits on, it refuses new requests, hands the stop to a thread of its own and
    /// returns at once; the engine's next `shutdown` (or the runtime's drop) on a thread of
    /// its own waits for that stop to end. Called back on the thread that is stopping the
    /// runtime (the engine's code the stop runs as it fails requests: a waker, its
    /// subscriber, an asset's drop), it refuses new requests and returns at once: the stop
    /// under way there goes on.
    pub fn shutdown(&self) {
        if self.inner.on_own_thread() {
            Inner::hand_off_stop(&self.inner);
        } else {
            self.inner.shut_down(Joins::Stoppers);
        }
    }

    /// Why the runtime shut itself down, if a supervisor gave up. Should the thread that shuts
    /// it down fail to start, the runtime only refuses new requests and waits for the engine's
    /// [`Runtime::shutdown`] (or drop), which this tells it to call.
    pub fn escalation(&self) -> Option<Escalation> {
        lock(&self.inner.escalation).clone()
    }

    /// Makes an actor or a worker crash (fault injection, for chaos runs and tests): the actor
    /// panics in its next handler, or the next job a worker of the pool takes panics before it
    /// starts. Returns false if there is no such target or the runtime is shut down.
    pub fn inject_crash(&self, target: &CrashTarget) -> bool {
        let guard = self.inner.core();
        let Some(core) = guard.as_ref() else { return false };
        match target {
            CrashTarget::Scheduler => core.scheduler.post(SchedulerMsg::Crash).is_ok(),
            CrashTarget::FrameCoordinator => core.frame.post(FrameMsg::Crash).is_ok(),
            CrashTarget::TelemetrySink => core.sink.post(SinkMsg::Crash).is_ok(),
            CrashTarget::Cache(name) | CrashTarget::CacheRestart(name) => {
                let readmit = matches!(target, CrashTarget::CacheRestart(_));
                let at = self.inner.type_names().position(|n| n == name.as_str());
                at.and_then(|i| core.caches.get(i)).is_some_and(|c| c.post_crash(readmit))
            }
            CrashTarget::IoWorker => {
                core.pools.io_crashes.request();
                true
            }
            CrashTarget::DecodeWorker => {
                core.pools.decode_crashes.request();
                true
            }
        }
    }

    /// Live IO and decode worker threads. A pool replaces a worker whose job panicked; one
    /// whose factory panicked is not replaced, and the count goes down.
    pub fn live_workers(&self) -> (usize, usize) {
        self.inner.core().as_ref().map_or((0, 0), |c| (c.pools.io.live(), c.pools.decode.live()))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
