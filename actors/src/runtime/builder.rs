//! [`RuntimeBuilder`]: the settings, the source and the asset types of a runtime, and
//! [`RuntimeBuilder::build`], which checks them and starts the runtime's threads and actors.
//!
//! # Errors
//!
//! A bad setting, type or budget is a [`BuildError`] from `build`; a type registered twice is
//! kept until then, so the builder's calls chain.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use streamrt_messages::replay_log::REPLAY_LOG_VERSION;
use streamrt_messages::{error_text_of, AssetTypeName, EventKind};
use streamrt_supervisor::{Clock, Escalation, Mailbox, MonotonicClock};

use super::core::{Core, CoreParts};
use super::registry::{DecoderSpec, TypeSpec};
use super::submit::{DepRequester, Submitter, TreeLimits};
use super::{
    escalation_hook, BuildError, EngineSides, EscalationListener, Inner, RetryPolicy, Runtime,
    RuntimeConfig, TYPES_MAX,
};
use crate::asset::Decoder;
use crate::frame::{FramePolicy, FrameShared, PublishMode};
use crate::lock::lock;
use crate::replay::{log_header, type_policy_record, Deterministic, Recorder};
use crate::resident::Residency;
use crate::source::Source;
use crate::telemetry::{EventTap, Probe, SinkOutputs};

/// Builds a [`Runtime`]; see [`RuntimeConfig`] for every setting.
pub struct RuntimeBuilder {
    config: RuntimeConfig,
    source: Option<Arc<dyn Source>>,
    clock: Arc<dyn Clock>,
    types: Vec<Box<dyn TypeSpec>>,
    type_error: Option<BuildError>,
    /// `Arc<T>` per asset type, shown by handles until their value is ready, with the type's
    /// name (for the error if no decoder makes the type).
    placeholders: Placeholders,
    /// Where to record the session, and what records it.
    record: Option<(PathBuf, String)>,
    /// Set for a deterministic runtime (replays), with the tap its transcript comes from.
    deterministic: Option<(Arc<Deterministic>, EventTap)>,
    /// Told once the runtime gave up and shut itself down.
    on_escalation: Option<EscalationListener>,
    /// Whether immediate publishes wait for a replay's word (see `FrameShared::held`).
    held: bool,
    /// The replay log version whose recorders' dependency walks this runtime's walks follow
    /// (see `TreeLimits::as_recorded_by`).
    walks_of_version: u16,
}

impl RuntimeBuilder {
    /// The default configuration, no source and no types yet.
    pub(super) fn new() -> Self {
        Self {
            config: RuntimeConfig::default(),
            source: None,
            clock: Arc::new(MonotonicClock::new()),
            types: Vec::new(),
            type_error: None,
            placeholders: HashMap::new(),
            record: None,
            deterministic: None,
            on_escalation: None,
            held: false,
            walks_of_version: REPLAY_LOG_VERSION,
        }
    }

    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// IO worker threads.
    #[must_use]
    pub fn workers(mut self, n: usize) -> Self {
        self.config.workers = n;
        self
    }

    /// Read credits: loads dispatched and not yet read, at most, plus one credit kept for
    /// urgent loads (see [`RuntimeConfig::reads_in_flight`]).
    #[must_use]
    pub fn reads_in_flight(mut self, n: usize) -> Self {
        self.config.reads_in_flight = n;
        self
    }

    /// The bytes one read credit stands for (see [`RuntimeConfig::read_credit_bytes`]).
    #[must_use]
    pub fn read_credit_bytes(mut self, bytes: u64) -> Self {
        self.config.read_credit_bytes = bytes;
        self
    }

    /// Bytes read per second at most (see [`RuntimeConfig::io_bytes_per_sec_max`]).
    #[must_use]
    pub fn io_bytes_per_sec_max(mut self, bytes_per_sec: u64) -> Self {
        self.config.io_bytes_per_sec_max = Some(bytes_per_sec);
        self
    }

    /// Decode worker threads.
    #[must_use]
    pub fn decode_threads(mut self, n: usize) -> Self {
        self.config.decode_threads = n;
        self
    }

    /// Runs the IO and decode threads `nice` steps of CPU priority below the building thread
    /// (see [`RuntimeConfig::worker_nice`]).
    #[must_use]
    pub fn worker_nice(mut self, nice: u8) -> Self {
        self.config.worker_nice = nice;
        self
    }

    /// Loads waiting in the scheduler, at most.
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.config.queue_capacity = n;
        self
    }

    /// Publishes at frame boundaries, at most `publish_count_max` requests per frame (no
    /// byte or time limit; see [`RuntimeBuilder::frame_policy`] for those).
    #[must_use]
    pub fn frame_budget(mut self, publish_count_max: u32) -> Self {
        self.config.publish = PublishMode::Frames(FramePolicy::count(publish_count_max));
        self
    }

    /// Publishes at frame boundaries within `policy`'s count, byte and time budgets.
    #[must_use]
    pub fn frame_policy(mut self, policy: FramePolicy) -> Self {
        self.config.publish = PublishMode::Frames(policy);
        self
    }

    /// Publishes as soon as assets decode (no frame loop).
    #[must_use]
    pub fn immediate(mut self) -> Self {
        self.config.publish = PublishMode::Immediate;
        self
    }

    /// Bytes of decoded assets kept resident at most, all types together (see
    /// [`RuntimeConfig::bytes_resident_max`]).
    #[must_use]
    pub fn bytes_resident_max(mut self, bytes: u64) -> Self {
        self.config.bytes_resident_max = bytes;
        self
    }

    /// Bytes of decoded assets of type `type_name` kept resident at most.
    #[must_use]
    pub fn type_bytes_resident_max(mut self, type_name: &str, bytes: u64) -> Self {
        self.config.type_bytes_resident_max.insert(type_name.to_owned(), bytes);
        self
    }

    /// Writes telemetry as JSON lines to `path`.
    #[must_use]
    pub fn telemetry_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.telemetry_path = Some(path.into());
        self
    }

    /// Where assets are read from.
    #[must_use]
    pub fn source(mut self, source: impl Source) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The runtime's clock (a virtual one for deterministic runs, such as the simulator's): it
    /// stamps events, times the frames (`FrameReport`'s time since the last boundary, an
    /// adaptive budget's frame costs) and counts the supervisors' restarts within their
    /// intensity window. A clock that is never moved on keeps every restart in the window:
    /// the `restart_intensity` then bounds the restarts of the runtime's whole life.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The value handles of asset type `T` show until theirs is ready
    /// ([`Handle::get_or_placeholder`](crate::Handle::get_or_placeholder)).
    #[must_use]
    pub fn placeholder<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        let placeholder: Box<dyn Any + Send + Sync> = Box::new(Arc::new(value));
        self.placeholders.insert(TypeId::of::<T>(), (std::any::type_name::<T>(), placeholder));
        self
    }

    /// Registers an asset type's decoder, with the configuration's retry policy.
    #[must_use]
    pub fn register<D: Decoder>(self, decoder: D) -> Self {
        self.register_spec(decoder, None)
    }

    /// Registers an asset type's decoder with a retry policy of its own.
    #[must_use]
    pub fn register_with_policy<D: Decoder>(self, decoder: D, policy: RetryPolicy) -> Self {
        self.register_spec(decoder, Some(policy))
    }

    /// Records the session's inputs to a replay log at `path` (`streamctl replay` runs it
    /// again), created or truncated as the runtime is built. A named pipe must have a reader
    /// by then, else the build fails with `Io`. `recorded_by` names the program in the log's
    /// header.
    #[must_use]
    pub fn record(mut self, path: impl Into<PathBuf>, recorded_by: &str) -> Self {
        self.record = Some((path.into(), recorded_by.to_owned()));
        self
    }

    /// Calls `listener` once the runtime gave up (a supervisor's restarts ran past its
    /// policy) and shut itself down: every request has ended and every thread of the runtime's
    /// is joined (but those [`Runtime::shutdown`] leaves behind, with the requests a held core
    /// thread holds), so the listener may start a new runtime or end the program. It runs on a
    /// thread of its own, once at most; [`Runtime::escalation`] says the same to a program
    /// that polls. [`Runtime::shutdown`] (and the runtime's drop) on another thread waits for
    /// the listener to return: a listener must not wait on that thread. It may itself call
    /// `shutdown`. Should that thread fail to start, the listener is not called: the runtime
    /// only refuses new requests, and [`Runtime::escalation`] tells a program that polls to
    /// shut it down.
    ///
    /// # Panics
    ///
    /// Never for the listener's panic: it is caught and logged.
    #[must_use]
    pub fn on_escalation(mut self, listener: impl Fn(&Escalation) + Send + Sync + 'static) -> Self {
        self.on_escalation = Some(Arc::new(listener));
        self
    }

    /// Holds immediate publishes until the replay publishes them (see `FrameShared::held`).
    pub(crate) fn held_publishes(mut self) -> Self {
        self.held = true;
        self
    }

    /// Walks dependency trees as the runtimes recording logs of `version` did: a replay of
    /// such a log needs the ids those walks took.
    pub(crate) fn walks_of_version(mut self, version: u16) -> Self {
        self.walks_of_version = version;
        self
    }

    /// Makes the runtime deterministic (see `replay::stepper`), passing every event to `tap`.
    pub(crate) fn deterministic(mut self, det: &Arc<Deterministic>, tap: EventTap) -> Self {
        self.clock = Arc::clone(&det.clock) as Arc<dyn Clock>;
        self.deterministic = Some((Arc::clone(det), tap));
        self
    }

    /// Registers a decoder whose asset type may be another's: such types are requested by
    /// name only ([`Runtime::request_by_name`]), as a replay does; with a retry policy of its
    /// own if `policy` is given.
    pub(crate) fn register_by_name<D: Decoder>(
        self,
        decoder: D,
        policy: Option<RetryPolicy>,
    ) -> Self {
        self.register_as(decoder, policy, TypeSharing::ByNameOnly)
    }

    fn register_spec<D: Decoder>(self, decoder: D, policy: Option<RetryPolicy>) -> Self {
        self.register_as(decoder, policy, TypeSharing::Unique)
    }

    fn register_as<D: Decoder>(
        mut self,
        decoder: D,
        policy: Option<RetryPolicy>,
        sharing: TypeSharing,
    ) -> Self {
        if self.types.len() >= TYPES_MAX {
            self.type_error.get_or_insert(BuildError::TooManyTypes { max: TYPES_MAX });
            return self;
        }
        match AssetTypeName::new(decoder.type_name()) {
            Ok(name) => {
                let spec = DecoderSpec::new(name.clone(), decoder, policy);
                let same_type = |t: &dyn TypeSpec| t.asset_type_id() == spec.asset_type_id();
                let taken = self.types.iter().any(|t| {
                    *t.name() == name || (sharing == TypeSharing::Unique && same_type(&**t))
                });
                if taken {
                    self.type_error.get_or_insert(BuildError::DuplicateType(name.to_string()));
                } else {
                    self.types.push(Box::new(spec));
                }
            }
            Err(e) => {
                self.type_error.get_or_insert(BuildError::TypeName(e));
            }
        }
        self
    }

    /// Starts the runtime's threads and actors.
    ///
    /// # Errors
    ///
    /// A [`BuildError`]: no source, a bad setting or type, or a thread or file that could not
    /// be created.
    pub fn build(self) -> Result<Runtime, BuildError> {
        if let Some(e) = self.type_error {
            return Err(e);
        }
        self.config.validate()?;
        for t in &self.types {
            if let Some(policy) = t.policy() {
                policy.validate().map_err(|error| BuildError::TypePolicy {
                    asset_type: t.name().to_string(),
                    error,
                })?;
            }
        }
        let source = self.source.ok_or(BuildError::NoSource)?;
        let config = self.config;
        // Checked before the logs are created: a build that fails leaves the files at their
        // paths (the last session's) as they were.
        unmade_placeholder(&self.types, &self.placeholders)?;
        let residency = Arc::new(Mutex::new(residency(&config, &self.types)?));
        let type_names: Vec<String> = self.types.iter().map(|t| t.name().to_string()).collect();
        let recorder = self.record.as_ref().map(|(path, by)| {
            let header = log_header(by, type_names.clone(), &config);
            let flush_wait = Duration::from_millis(config.shutdown_ack_ms_max);
            let recorder = Recorder::create(path, &header, flush_wait)?;
            let policies = self.types.iter().filter_map(|t| Some((t.name(), t.policy()?)));
            recorder.record_all(&policies.map(type_policy_record).collect::<Vec<_>>());
            Ok::<_, std::io::Error>(Arc::new(recorder))
        });
        let (det, tap) = self.deterministic.unzip();
        let probe = started_probe(&self.clock, &config, recorder.transpose()?, tap);
        let sink_mailbox = Mailbox::new();
        let sink = SinkOutputs::new(config.telemetry_path.as_deref())?;
        let (types, by_name) = engine_sides(&self.types, &self.placeholders, &probe);
        let frame = Arc::new(FrameShared::new(config.publish, self.held, Arc::clone(&probe)));
        let frame_mailbox = Mailbox::new();
        if let Some(det) = &det {
            frame_mailbox.track(&det.activity);
            self.types.iter().for_each(|t| t.control().track(&det.activity));
        }
        let tree = TreeLimits::as_recorded_by(
            self.walks_of_version,
            config.dependency_depth_max,
            config.dependency_nodes_max,
        );
        let submitter = Submitter::new(
            Arc::clone(&probe),
            Arc::clone(&source),
            frame_mailbox.clone(),
            config.requests_outstanding_max,
            tree,
            by_name,
        );
        let inner = Arc::new(Inner {
            type_names,
            config: config.clone(),
            probe: Arc::clone(&probe),
            types,
            frame: Arc::clone(&frame),
            sink: sink_mailbox.clone(),
            submitter,
            residency: Arc::clone(&residency),
            core: Mutex::new(None),
            stopping: Mutex::new(()),
            escalation: Mutex::new(None),
            stoppers: Mutex::new(Vec::new()),
            own_threads: OnceLock::new(),
            actor_threads: OnceLock::new(),
        });
        let parts = CoreParts {
            config,
            source,
            probe,
            clock: self.clock,
            types: self.types,
            sink,
            frame,
            frame_mailbox,
            residency,
            escalate: escalation_hook(Arc::downgrade(&inner), self.on_escalation),
            deterministic: det,
        };
        let core = Core::start(parts, sink_mailbox)?;
        let _ = inner.own_threads.set(core.thread_ids().into());
        let _ = inner.actor_threads.set(core.actor_thread_ids().into());
        *lock(&inner.core) = Some(core);
        Ok(Runtime { inner })
    }
}

/// The runtime's probe (its clock, event buffer and counters, and the recorder and tap if
/// any), which has emitted the `Started` event.
fn started_probe(
    clock: &Arc<dyn Clock>,
    config: &RuntimeConfig,
    recorder: Option<Arc<Recorder>>,
    tap: Option<EventTap>,
) -> Arc<Probe> {
    let probe = Arc::new(
        Probe::new(Arc::clone(clock), config.events_buffered_max, config.events_enabled)
            .observed(recorder, tap),
    );
    probe.set_read(config.telemetry_path.is_some());
    probe.emit(probe.event(EventKind::Started {
        worker_count: u32::try_from(config.workers).unwrap_or(u32::MAX),
        decode_threads: u32::try_from(config.decode_threads).unwrap_or(u32::MAX),
        queue_capacity: config.queue_capacity as u64,
        urgent_decodes_on_io: config.urgent_decodes_on_io,
    }));
    probe
}

/// Each type's dependency requester, by type name.
type RequestersByName = HashMap<AssetTypeName, Arc<dyn DepRequester>>;

/// The placeholders, each with its type's name.
type Placeholders = HashMap<TypeId, (&'static str, Box<dyn Any + Send + Sync>)>;

/// Refuses a placeholder for an asset type no registered decoder makes: no handle would ever
/// show it.
///
/// # Errors
///
/// [`BuildError::PlaceholderType`], naming the first such type.
fn unmade_placeholder(
    specs: &[Box<dyn TypeSpec>],
    placeholders: &Placeholders,
) -> Result<(), BuildError> {
    let made = |id: &TypeId| specs.iter().any(|t| t.asset_type_id() == *id);
    match placeholders.iter().find(|(id, _)| !made(id)) {
        Some((_, (name, _))) => Err(BuildError::PlaceholderType(error_text_of(name))),
        None => Ok(()),
    }
}

/// Each registered type's engine side: by Rust type (for `request::<T>`) and, as a dependency
/// requester, by type name.
fn engine_sides(
    specs: &[Box<dyn TypeSpec>],
    placeholders: &Placeholders,
    probe: &Arc<Probe>,
) -> (EngineSides, RequestersByName) {
    let mut types = HashMap::new();
    let mut by_name = HashMap::new();
    for t in specs {
        let id = t.asset_type_id();
        let (entry, requester) = t.entry(placeholders.get(&id).map(|(_, p)| &**p), probe);
        types.insert(id, entry);
        by_name.insert(t.name().clone(), requester);
    }
    (types, by_name)
}

/// Whether a registered decoder's asset type may be another registered decoder's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TypeSharing {
    /// No: the type is requested by Rust type (`Runtime::request::<T>`).
    Unique,
    /// Yes: the type is requested by name only (a replay's decoders).
    ByNameOnly,
}

/// The memory budget of `config` over the registered `types`, in registration order.
fn residency(config: &RuntimeConfig, types: &[Box<dyn TypeSpec>]) -> Result<Residency, BuildError> {
    let budgets = &config.type_bytes_resident_max;
    if let Some(unknown) = budgets.keys().find(|n| !types.iter().any(|t| t.name().as_str() == *n)) {
        return Err(BuildError::BudgetType(error_text_of(unknown)));
    }
    let type_max: Vec<u64> =
        types.iter().map(|t| budgets.get(t.name().as_str()).copied().unwrap_or(u64::MAX)).collect();
    Ok(Residency::new(config.bytes_resident_max, &type_max))
}
