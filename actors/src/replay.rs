//! Record and replay: a session's nondeterministic inputs written to a log as it runs, and run
//! again on a deterministic runtime whose transcript is the same every time.
//!
//! - [`RuntimeBuilder::record`](crate::RuntimeBuilder::record) writes the log
//!   (`record.rs`; format in `streamrt_messages::replay_log` and `docs/PROTOCOL.md`).
//! - [`replay`] reads a log, builds a deterministic runtime (`stepper.rs`) over the recorded
//!   backend (`script.rs`), feeds it the records in order and returns the transcript
//!   (`transcript.rs`), its hash, and the first request whose terminal state differs from the
//!   recording, if any.
//!
//! # Invariants
//!
//! - The same log gives the same transcript and hash, whatever worker counts are configured:
//!   a deterministic runtime runs one job at a time in an order fixed by the inputs.
//! - A bad log is a [`ReplayError`] naming the byte offset; replaying never panics on input.

mod kept;
mod record;
mod script;
mod stepper;
mod transcript;

pub(crate) use record::{log_header, published_records, type_policy_record, OrderHeld, Recorder};
pub(crate) use stepper::{CancelNotes, Deterministic, VirtualTimers};
pub use transcript::TranscriptLine;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use streamrt_messages::replay_log::{
    read_whole_log, LogError, LogHeader, LogPublish, LogRecord, WholeLog,
};
use streamrt_messages::{
    error_text_of, AssetKey, ErrorKind, Event, EventKind, LoadState, Priority, RequestId,
};

use crate::frame::{FramePolicy, PublishMode, RecordedPublishes};
use crate::request::RootHandle;
use crate::runtime::{
    BuildError, RequestError, RetryPolicy, Runtime, RuntimeConfig, DEPENDENCY_DEPTH_MAX,
};
use crate::source::EntryInfo;
use kept::Kept;
use script::{Script, ScriptedDecoder, ScriptedSource};
use stepper::{Stalled, Stepper};
use transcript::transcript_hash;

/// The most requests one dependency tree may walk in a replay of a log before version 6, whose
/// walks go through every path of a tree (its recorder's did): a few hostile `Entry` records
/// could otherwise make a walk of billions of requests. From version 6 a walk meets each
/// request once, so the log's own records bound it and its limit is taken as recorded.
const TREE_NODES_MAX: u64 = 1 << 20;

/// The most events a replay keeps for its transcript (each with its line, about 330 bytes). A
/// log's records are bounded, but one `Request` can walk a dependency tree of a million
/// requests: without this, a few hostile records could take any memory.
pub const REPLAY_EVENTS_MAX: usize = 1 << 22;

/// The most bytes the events a replay keeps and their transcript lines take, by an estimate
/// that counts their keys and error texts (1.5 GiB). The count alone does not bound them: a
/// failure shared by a million requests gives each request's event and line its own copy of
/// the error's text, up to 4 KiB.
pub const REPLAY_KEPT_BYTES_MAX: u64 = 3 << 29;

/// How to replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// IO and decode workers to configure instead of the recorded ones. A deterministic
    /// runtime runs one job at a time, so this must not change the transcript; tests check it.
    pub workers: Option<usize>,
    /// The most events the replay keeps before it stops with `TooManyEvents`: at most, and by
    /// default, [`REPLAY_EVENTS_MAX`].
    pub events_max: Option<usize>,
    /// The most bytes the kept events may take before the replay stops with
    /// `TooManyEventBytes`: at most, and by default, [`REPLAY_KEPT_BYTES_MAX`].
    pub event_bytes_max: Option<u64>,
}

/// Why a log could not be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The log is corrupt, truncated or of an unknown version.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The recorded configuration or types do not make a runtime.
    #[error("the recorded configuration is unusable: {0}")]
    Build(#[from] BuildError),
    /// The runtime stopped making progress at the record at `offset`.
    #[error("replay stalled at the record at byte {offset}: {stalled}")]
    Stalled {
        /// The record's byte offset.
        offset: u64,
        /// What stalled.
        stalled: String,
    },
    /// The replay's runtime did not become idle once started, before the first record.
    #[error("replay stalled before the first record: {0}")]
    StalledAtStart(String),
    /// A record no recording writes: a hand-made or damaged log.
    #[error("the record at byte {offset} cannot be replayed: {reason}")]
    BadRecord {
        /// The record's byte offset.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The replay emitted more than `max` events (see [`ReplayOptions::events_max`]) by the
    /// record at `offset` (the log's length: by the replay's own shutdown of a log cut short).
    #[error("the replay passed {max} events at the record at byte {offset}")]
    TooManyEvents {
        /// The record's byte offset.
        offset: u64,
        /// The limit.
        max: usize,
    },
    /// The events the replay kept took more than `max` bytes (see
    /// [`ReplayOptions::event_bytes_max`]) by the record at `offset`, as `TooManyEvents`
    /// names it.
    #[error("the replay's events passed {max} bytes at the record at byte {offset}")]
    TooManyEventBytes {
        /// The record's byte offset.
        offset: u64,
        /// The limit, in bytes.
        max: u64,
    },
}

/// Where a replay first differs from its recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The transcript line (0-based) where it shows, or the transcript's length when a
    /// request the recording saw end never ended in the replay.
    pub event: usize,
    /// The request, by the replay's id (a log's own ids are translated).
    pub request: u64,
    /// Its terminal state in the recording.
    pub recorded: LoadState,
    /// Its terminal state in the replay, if it reached one before the replay's own shutdown
    /// (a request that shutdown failed never ended in the replay).
    pub replayed: Option<LoadState>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let replayed = self.replayed.map_or("never ended", LoadState::name);
        write!(
            f,
            "replay diverges at event {}: request r{} ended {} in the recording, {} in the replay",
            self.event,
            self.request,
            self.recorded.name(),
            replayed
        )
    }
}

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Who recorded the log.
    pub recorded_by: String,
    /// The transcript.
    pub lines: Vec<TranscriptLine>,
    /// FNV-1a of the transcript.
    pub hash: u64,
    /// Requests found to end as recorded: before the divergence, if there is one (the ones
    /// after it were not compared).
    pub checked: usize,
    /// Recorded reads' and decodes' outcomes that no job of the replay took. Requests can all
    /// end as recorded while their loads took other outcomes than the recording's (a load's
    /// outcome taken by a later load of its key): a whole log replayed faithfully leaves none
    /// but, rarely, a read that ended as its load was cancelled.
    pub unused_outcomes: usize,
    /// The first difference from the recording, if any.
    pub divergence: Option<Divergence>,
    /// Whether the session ends within the log: its `Shutdown` record came, which a recorder
    /// writes however the runtime was shut down (by the engine, or by itself when a supervisor
    /// gave up); the ends recorded after it are checks, not inputs. A log cut short before it
    /// (its recorder's process died) is replayed to its last record and shut down here; its
    /// last requests' ends are unknown.
    pub complete: bool,
}

/// Replays the log in `bytes`; see the module docs.
///
/// # Errors
///
/// A [`ReplayError`]: a bad log (with its byte offset), an unusable recorded configuration, or
/// a runtime that stopped making progress.
pub fn replay(bytes: &[u8], options: ReplayOptions) -> Result<ReplayReport, ReplayError> {
    // The whole log is checked before anything runs: a damaged log gives its error, not half
    // a transcript.
    let WholeLog { header, version, records: mut policies } = read_whole_log(bytes)?;
    check_versions(&header, version, &policies)?;
    // The types' own retry policies come first (version 5), before the session's records.
    let first = policies.iter().position(|(_, r)| !matches!(r, LogRecord::TypePolicy { .. }));
    let records = policies.split_off(first.unwrap_or(policies.len()));
    let policies = type_policies(&header, policies)?;
    // From version 4 an immediate-mode log lists what each publish published.
    let held = version >= 4 && header.config.publish == LogPublish::Immediate;
    let script = Arc::new(Script::default());
    let kept = Arc::new(Kept::new(options));
    let det = Deterministic::new();
    let built = Built { policies: &policies, held, version };
    let runtime = deterministic_runtime(&header, &built, options, &script, &det, &kept)?;
    // From version 8 the log says when each retry came due.
    let stepper = Stepper::new(det, version < 8);
    let mut session = Session::new(held, &kept, &runtime, &script, stepper);
    let fed = session.feed_all(records);
    let complete = session.shut_down;
    // Also when the log shut it down (idempotent): it joins a shutdown the replayed runtime
    // began itself, which must be over before the handles go.
    runtime.shutdown();
    // Handles go after the shutdown: dropping one then cancels nothing.
    drop(session.handles);
    // Under the replay's ids, now that every engine request's is known: an end can be
    // recorded before its request (one failed while it was being made).
    let ids = &session.replayed_ids;
    let replayed = |recorded: &BTreeSet<u64>| {
        recorded.iter().map(|&id| replayed_id(ids, id)).collect::<BTreeSet<u64>>()
    };
    let expected: BTreeMap<u64, LoadState> =
        session.expected.iter().map(|(&id, &state)| (replayed_id(ids, id), state)).collect();
    // In a log cut short, the ends recorded after its last frame's record: `begin_frame`
    // records the requests it published before its own record, so the frame that published
    // them may be cut off, and the replay cannot reach those ends. Nor those of the requests
    // a recorded frame published that the replay staged after its last frame.
    // Nor, in any log, those recorded after the `Shutdown` record: the request had not ended
    // when the recording's stop began, and an engine's cancel or an immediate publish raced
    // the stop's failing it; the replay's shutdown, at the record, failed them all. (A request
    // ended before the `Shutdown` is checked, whenever its handle was dropped.)
    let mut unreachable = replayed(&session.ended_after_shutdown);
    if !complete {
        unreachable.extend(replayed(&session.ended_since_frame));
        unreachable
            .extend(session.to_publish.iter().flat_map(|list| list.pending().map(|id| id.0)));
    }
    drop(runtime);
    fed?;
    // The replay's own shutdown of a log cut short fails what is still outstanding, as many
    // requests as a tree holds: the limit is checked again after it.
    kept.check(bytes.len() as u64)?;
    let events = kept.take();
    let lines: Vec<TranscriptLine> = events.iter().filter_map(TranscriptLine::of).collect();
    let (divergence, checked) = first_divergence(&events, &expected, lines.len(), &unreachable);
    Ok(ReplayReport {
        recorded_by: header.recorded_by,
        hash: transcript_hash(&lines),
        checked,
        unused_outcomes: script.unused(),
        divergence,
        lines,
        complete,
    })
}

/// A replay in progress.
struct Session<'a> {
    /// Whether the runtime holds immediate publishes until the log's `Published` records say
    /// (see `FrameShared::held`).
    held: bool,
    /// The events kept for the transcript.
    kept: &'a Kept,
    runtime: &'a Runtime,
    script: &'a Script,
    stepper: Stepper,
    /// The engine's requests by their recorded id.
    handles: HashMap<u64, Box<dyn RootHandle>>,
    /// The replay's id of each engine request, by its recorded id: a log's ids need not be
    /// the ones the replay gives (a hand-made log; a request refused in the recording took no
    /// ids for its dependencies), and the recorded ends are checked under the replay's ids.
    replayed_ids: BTreeMap<u64, u64>,
    /// Recorded terminal states by recorded request id.
    expected: BTreeMap<u64, LoadState>,
    /// The recorded ids of the ends recorded since the last `BeginFrame` record (or, for a
    /// held immediate-mode replay, the last `Published` record).
    ended_since_frame: BTreeSet<u64>,
    /// The requests the recording's frames published that the replay has not, by the
    /// replay's ids, from the `Published` records; `None` until the first (a version 2 log
    /// has none). A request is listed once: one published already is not listed again.
    to_publish: Option<RecordedPublishes>,
    shut_down: bool,
    /// The recorded ids of the ends recorded after the `Shutdown` record.
    ended_after_shutdown: BTreeSet<u64>,
}

impl<'a> Session<'a> {
    /// A replay of a log about to be fed, on `runtime`.
    fn new(
        held: bool,
        kept: &'a Kept,
        runtime: &'a Runtime,
        script: &'a Script,
        stepper: Stepper,
    ) -> Self {
        Self {
            held,
            kept,
            runtime,
            script,
            stepper,
            handles: HashMap::new(),
            replayed_ids: BTreeMap::new(),
            expected: BTreeMap::new(),
            ended_since_frame: BTreeSet::new(),
            to_publish: None,
            shut_down: false,
            ended_after_shutdown: BTreeSet::new(),
        }
    }

    fn feed_all(&mut self, records: Vec<(u64, LogRecord)>) -> Result<(), ReplayError> {
        for (offset, record) in records {
            let moved = self.feed(record);
            let moved = moved.map_err(|reason| ReplayError::BadRecord { offset, reason })?;
            let stalled = |Stalled| ReplayError::Stalled { offset, stalled: Stalled.to_string() };
            // A record that moved nothing (an end, an entry, a cancel of a request the replay
            // never made, an outcome no waiting job is for) leaves the runtime settled: a settle
            // would find nothing new, and costs what a log of millions of such records would
            // multiply.
            if moved && !self.shut_down {
                self.stepper.settle(self.runtime, self.script).map_err(stalled)?;
                // A publish can stage more (a dependent of the published, a load its credit
                // let through): published too before the next record, as the recording did.
                while self.publish_held() {
                    self.stepper.settle(self.runtime, self.script).map_err(stalled)?;
                }
            }
            self.kept.check(offset)?;
        }
        Ok(())
    }

    /// Publishes, outside any frame, the requests a recorded immediate publish published that
    /// the replay has staged (one staged later, its load dispatched later here, is published
    /// after the step that stages it); true if any was.
    fn publish_held(&mut self) -> bool {
        let Some(recorded) = self.to_publish.as_mut().filter(|r| self.held && !r.is_empty()) else {
            return false;
        };
        let before = recorded.len();
        self.runtime.publish_as(recorded);
        recorded.len() < before
    }

    /// Feeds one record.
    ///
    /// # Errors
    ///
    /// What makes the record one no recording writes.
    fn feed(&mut self, record: LogRecord) -> Result<bool, String> {
        if record == LogRecord::Shutdown {
            // Shutdown waits on the actors' answers: it must not hold them back.
            self.runtime.shutdown();
            self.shut_down = true;
            return Ok(true);
        }
        let activity = Arc::clone(self.stepper.activity());
        activity.hold();
        let fed = self.feed_held(record);
        activity.release();
        fed
    }

    /// Feeds one record with the actors held; whether it may have moved the runtime (a record
    /// that only tells the replay something, names a request it never made, or banks an
    /// outcome no waiting job is for, from version 8, does not).
    fn feed_held(&mut self, record: LogRecord) -> Result<bool, String> {
        match record {
            LogRecord::Request { id, key, priority } => self.request(id, key, priority)?,
            // Asked for by a request's own record, which the replay settles after.
            LogRecord::Entry { key, dependencies, size } => {
                self.script.entry(key, EntryInfo { dependencies, size, locator: None });
                return Ok(false);
            }
            LogRecord::Cancel { id } => {
                let Some(handle) = self.handles.remove(&id) else { return Ok(false) };
                handle.cancel();
            }
            LogRecord::Reprioritize { id, priority } => {
                let Some(handle) = self.handles.get(&id) else { return Ok(false) };
                handle.reprioritize(priority);
            }
            LogRecord::Published { requests } => {
                // An immediate publish records its requests' ends, then its `Published`: its
                // boundary, as a frame's record is a frame's (a log cut short between the two
                // excuses only those ends; one with no frames would excuse every end).
                if self.held {
                    self.ended_since_frame.clear();
                }
                self.list_to_publish(&requests);
            }
            // The recorded requests are published, not the replay's own pick: the replay stages
            // a request as soon as its decode is fed, sooner than the threaded run's frame
            // coordinator received it, so its pick could publish a request that the recording
            // published later, or never, as the engine cancelled it first. A recorded one the
            // replay has not staged yet (its load was dispatched later here: dispatch order is
            // not recorded) is published at the first frame after it is. A version 2 log has
            // only the count, which is not imposed: a request staged sooner would push a
            // recorded one to a later frame.
            LogRecord::BeginFrame { .. } => self.begin_frame(),
            LogRecord::EndFrame => self.runtime.end_frame(),
            // An outcome no waiting job is for moves nothing now: the job it is for takes it as
            // it comes in (a settle's work, were it run for each, is what a log of millions
            // of such records would multiply).
            LogRecord::Read { key, outcome } => {
                let waited = self.stepper.read_banked(&key);
                self.script.bank_read(key, outcome);
                return Ok(waited);
            }
            LogRecord::Decode { key, outcome } => {
                let waited = self.stepper.decode_banked(&key);
                self.script.bank_decode(key, outcome);
                return Ok(waited);
            }
            LogRecord::Ended { id, state } => {
                self.expected.insert(id, state);
                self.ended_since_frame.insert(id);
                if self.shut_down {
                    self.ended_after_shutdown.insert(id);
                }
                return Ok(false);
            }
            LogRecord::Shutdown => {}
            LogRecord::EntryPanicked { key, message } => {
                self.script.bank_entry_panic(key, message);
                return Ok(false);
            }
            // A retry the replay has not met (its load was not retried here, or not yet)
            // moves nothing: the ends checked then show what differs.
            LogRecord::RetryDue { key } => return Ok(self.stepper.fire_timers_of(&key)),
            LogRecord::TypePolicy { type_name, .. } => {
                let name = error_text_of(&type_name);
                return Err(format!("a retry policy for {name} after the session began"));
            }
        }
        Ok(true)
    }

    /// Makes the recorded request `id`. A recording gives each request a new id, and records
    /// none after its shutdown (both under one lock), and only of the types its header lists.
    fn request(&mut self, id: u64, key: AssetKey, priority: Priority) -> Result<(), String> {
        if self.replayed_ids.contains_key(&id) {
            return Err(format!("request r{id} is made a second time"));
        }
        let handle = self.runtime.request_by_name(key, priority).map_err(|e| match e {
            RequestError::Shutdown => format!("request r{id} is made after the shutdown"),
            other => format!("request r{id}: {other}"),
        })?;
        self.replayed_ids.insert(id, handle.id().0);
        self.handles.insert(id, handle);
        Ok(())
    }

    /// Begins a frame that publishes what the recorded one did (see `feed_held`).
    fn begin_frame(&mut self) {
        self.ended_since_frame.clear();
        match self.to_publish.as_mut() {
            // Immediate mode: its frames publish nothing, as the recording's did.
            _ if self.held => self.runtime.begin_frame_as(None),
            Some(recorded) => self.runtime.begin_frame_as(Some(recorded)),
            None => self.runtime.begin_frame(),
        };
    }

    /// Adds the requests a recorded frame published to those still to publish, under the
    /// replay's ids. A recorded request is always made before it is published, so an id past
    /// the replay's requests, or one listed before, is a damaged log's and is dropped: the
    /// list holds each request made at most once.
    fn list_to_publish(&mut self, recorded: &[u64]) {
        // Every request made, dependencies and refused ones included, takes the next id and
        // counts in `requested`, so this is the highest id given out.
        let made = self.runtime.status().requested;
        let list = self.to_publish.get_or_insert_with(RecordedPublishes::default);
        for &id in recorded {
            let id = RequestId(replayed_id(&self.replayed_ids, id));
            if (1..=made).contains(&id.0) {
                list.list(id);
            }
        }
    }
}

/// How a log's version and leading records shape the runtime that replays it.
struct Built<'a> {
    /// The types' own retry policies (version 5).
    policies: &'a HashMap<String, RetryPolicy>,
    /// Whether immediate publishes wait for the log's `Published` records (version 4).
    held: bool,
    /// The log's version: dependency walks go as its recorder's did.
    version: u16,
}

/// The deterministic runtime a replay of `header` runs on, over `script`, its events kept in
/// `kept`, its actors attached and idle.
fn deterministic_runtime(
    header: &LogHeader,
    built: &Built<'_>,
    options: ReplayOptions,
    script: &Arc<Script>,
    det: &Arc<Deterministic>,
    kept: &Arc<Kept>,
) -> Result<Runtime, ReplayError> {
    let tap = {
        let kept = Arc::clone(kept);
        Arc::new(move |e: &Event| kept.keep(e))
    };
    let mut builder = Runtime::builder()
        .config(replay_config(header, built.version, options))
        .source(ScriptedSource(Arc::clone(script)))
        .deterministic(det, tap);
    if built.held {
        builder = builder.held_publishes();
    }
    builder = builder.walks_of_version(built.version);
    for name in &header.types {
        let decoder = ScriptedDecoder { name: name.clone(), script: Arc::clone(script) };
        builder = builder.register_by_name(decoder, built.policies.get(name).copied());
    }
    let runtime = builder.build()?;
    // Every actor attached to its mailbox before the first input, so none is woken by its
    // start rather than by the replay's order.
    if !runtime.sync(stepper::SETTLE_PATIENCE) {
        return Err(ReplayError::StalledAtStart(Stalled.to_string()));
    }
    Ok(runtime)
}

/// Refuses a record the log's version cannot hold, or that no recorder writes (an end in a
/// state that is not terminal): a hand-made or damaged log (`docs/PROTOCOL.md` says which
/// version brought each record).
fn check_versions(
    header: &LogHeader,
    version: u16,
    records: &[(u64, LogRecord)],
) -> Result<(), ReplayError> {
    let immediate = header.config.publish == LogPublish::Immediate;
    for (at, (offset, record)) in records.iter().enumerate() {
        let (name, since) = match record {
            LogRecord::TypePolicy { .. } => ("a retry policy", 5),
            LogRecord::EntryPanicked { .. } => ("a source panic", 5),
            LogRecord::RetryDue { .. } => ("a retry's due time", 8),
            // A frame's own record, which version 3 wrote in either mode: a frame in
            // immediate mode published nothing then, and a replay's publishes nothing.
            LogRecord::Published { requests }
                if requests.is_empty()
                    && matches!(records.get(at + 1), Some((_, LogRecord::BeginFrame { .. }))) =>
            {
                ("a frame's publish list", 3)
            }
            LogRecord::Published { .. } if immediate => ("an immediate publish", 4),
            LogRecord::Published { .. } => ("a frame's publish list", 3),
            LogRecord::Ended { state, .. } if !state.is_terminal() => {
                let reason = format!("an end in the {} state, which is not an end", state.name());
                return Err(ReplayError::BadRecord { offset: *offset, reason });
            }
            _ => continue,
        };
        if version < since {
            let reason = format!("{name} record, which logs hold from version {since}");
            return Err(ReplayError::BadRecord { offset: *offset, reason });
        }
    }
    Ok(())
}

/// The retry policies of the types that have their own, from a log's leading `TypePolicy`
/// records.
///
/// # Errors
///
/// [`ReplayError::BadRecord`] for a policy of a type the header does not register, or a
/// second one for a type.
fn type_policies(
    header: &LogHeader,
    records: Vec<(u64, LogRecord)>,
) -> Result<HashMap<String, RetryPolicy>, ReplayError> {
    let mut policies = HashMap::new();
    for (offset, record) in records {
        let LogRecord::TypePolicy { type_name, attempts_max, backoff_ms, panics_max } = record
        else {
            continue;
        };
        let bad = |reason: String| ReplayError::BadRecord { offset, reason };
        if !header.types.contains(&type_name) {
            let name = error_text_of(&type_name);
            return Err(bad(format!("a retry policy for {name}, which is not registered")));
        }
        let policy = retry_policy(attempts_max, backoff_ms, panics_max);
        if policies.insert(type_name.clone(), policy).is_some() {
            return Err(bad(format!("a second retry policy for {type_name}")));
        }
    }
    Ok(policies)
}

fn retry_policy(attempts_max: u32, (min_ms, max_ms): (u64, u64), panics_max: u32) -> RetryPolicy {
    RetryPolicy {
        attempts_max,
        backoff: streamrt_supervisor::Backoff { min_ms, max_ms },
        panics_max,
    }
}

/// The runtime configuration a replay of `header`, of log `version`, runs with.
fn replay_config(header: &LogHeader, version: u16, options: ReplayOptions) -> RuntimeConfig {
    let c = &header.config;
    // As recorded: `build` refuses a count a live runtime would (`ConfigError`), so a damaged
    // log is a typed error and a genuine one replays under its own limits.
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    // The workers do not shape a deterministic replay, which runs one job at a time.
    let workers = options.workers.unwrap_or(count(c.workers)).clamp(1, 64);
    let publish = match c.publish {
        LogPublish::Immediate => PublishMode::Immediate,
        LogPublish::Frames { publish_count_max, publish_bytes_max, aging_frames_max } => {
            // At least 1: an adaptive session may record a start of 0, raised to its minimum
            // then, and the replay's count budget is the recorded count without the policy.
            PublishMode::Frames(FramePolicy {
                publish_bytes_max,
                aging_frames_max,
                ..FramePolicy::count(publish_count_max.max(1))
            })
        }
    };
    // Before version 4 a recorder took more than `DEPENDENCY_DEPTH_MAX` levels (a build refuses
    // them now): such a genuine log replays under the limit, where a deeper chain diverges.
    let depth = match count(c.dependency_depth_max) {
        recorded if version < 4 => recorded.min(DEPENDENCY_DEPTH_MAX),
        recorded => recorded,
    };
    let nodes = match c.dependency_nodes_max {
        recorded if version < 6 => recorded.min(TREE_NODES_MAX),
        recorded => recorded,
    };
    RuntimeConfig {
        workers,
        decode_threads: workers,
        reads_in_flight: count(c.reads_in_flight),
        read_credit_bytes: c.read_credit_bytes,
        decode_backlog_max: count(c.decode_backlog_max),
        queue_capacity: count(c.queue_capacity),
        requests_outstanding_max: count(c.requests_outstanding_max),
        dependency_depth_max: depth,
        dependency_nodes_max: count(nodes),
        bytes_resident_max: c.bytes_resident_max,
        type_bytes_resident_max: c.type_bytes_resident_max.iter().cloned().collect(),
        retry: retry_policy(c.retry_attempts_max, c.retry_backoff_ms, c.panics_max),
        publish,
        ..RuntimeConfig::default()
    }
}

/// The replay's id of the request the recording called `recorded`, given the replay's ids of
/// the engine's requests by their recorded ids: an engine request's own, and a dependency's at
/// the same distance from its engine request's (a request's dependencies take the ids after
/// its own).
fn replayed_id(ids: &BTreeMap<u64, u64>, recorded: u64) -> u64 {
    match ids.range(..=recorded).next_back() {
        Some((&root, &replayed)) => replayed.saturating_add(recorded - root),
        None => recorded,
    }
}

/// The first request whose terminal state in `events` differs from `expected`, and how many
/// requests were found to end as recorded before it (or in all, without one). Excused, neither
/// checked nor a divergence: an end in `unreachable` (see `replay`) that the replay's own
/// shutdown failed.
fn first_divergence(
    events: &[Event],
    expected: &BTreeMap<u64, LoadState>,
    lines: usize,
    unreachable: &BTreeSet<u64>,
) -> (Option<Divergence>, usize) {
    let mut ended: HashMap<u64, LoadState> = HashMap::new();
    let (mut line, mut checked) = (0, 0);
    for event in events {
        let terminal = match event.kind {
            EventKind::Published => Some(LoadState::Ready),
            EventKind::Failed { .. } => Some(LoadState::Failed),
            EventKind::Cancelled { .. } => Some(LoadState::Cancelled),
            _ => None,
        };
        if let (Some(state), Some(RequestId(id))) = (terminal, event.request) {
            let first = ended.insert(id, state).is_none();
            let shut = matches!(&event.kind, EventKind::Failed { kind: ErrorKind::Shutdown });
            match expected.get(&id) {
                Some(_) if shut && unreachable.contains(&id) => {}
                // The recording's own stop records its `Shutdown` before it fails anything, so
                // an end recorded before that record was never a shutdown's: the replay's
                // shutdown failed a request that its recording saw end, even as `failed`
                // (a load stuck waiting for an outcome the log does not hold).
                Some(&recorded) if shut || recorded != state => {
                    let replayed = (!shut).then_some(state);
                    let divergence = Divergence { event: line, request: id, recorded, replayed };
                    return (Some(divergence), checked);
                }
                Some(_) => checked += usize::from(first),
                None => {}
            }
        }
        if TranscriptLine::of(event).is_some() {
            line += 1;
        }
    }
    let never = expected.iter().find(|(id, _)| !ended.contains_key(id));
    let divergence = never.map(|(&request, &recorded)| Divergence {
        event: lines,
        request,
        recorded,
        replayed: None,
    });
    (divergence, checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ConfigError;
    use streamrt_messages::replay_log::REPLAY_LOG_VERSION;

    fn replayed(config: &RuntimeConfig, version: u16) -> RuntimeConfig {
        let header = record::log_header("test", vec!["blob".into()], config);
        replay_config(&header, version, ReplayOptions::default())
    }

    #[test]
    fn a_replay_takes_the_recorded_limits_past_a_million() {
        let recorded = RuntimeConfig {
            queue_capacity: 3 << 20,
            requests_outstanding_max: usize::MAX,
            reads_in_flight: 2 << 20,
            decode_backlog_max: 5 << 20,
            dependency_nodes_max: 3 << 20,
            ..RuntimeConfig::default()
        };
        let replay = replayed(&recorded, REPLAY_LOG_VERSION);
        assert_eq!(replay.queue_capacity, recorded.queue_capacity);
        assert_eq!(replay.requests_outstanding_max, recorded.requests_outstanding_max);
        assert_eq!(replay.reads_in_flight, recorded.reads_in_flight);
        assert_eq!(replay.decode_backlog_max, recorded.decode_backlog_max);
        assert_eq!(replay.dependency_nodes_max, recorded.dependency_nodes_max);
        assert_eq!(replay.validate(), Ok(()));
    }

    #[test]
    fn a_damaged_logs_count_is_refused_as_a_live_runtime_refuses_it() {
        let zero = RuntimeConfig { reads_in_flight: 0, ..RuntimeConfig::default() };
        let replay = replayed(&zero, REPLAY_LOG_VERSION);
        assert_eq!(replay.validate(), Err(ConfigError::Zero("reads_in_flight")));
        let deep = RuntimeConfig { dependency_depth_max: 129, ..RuntimeConfig::default() };
        let replay = replayed(&deep, 4);
        assert!(matches!(replay.validate(), Err(ConfigError::TooLarge { .. })), "{replay:?}");
    }

    #[test]
    fn an_older_logs_dependency_limits_are_bounded_as_its_walks_need() {
        let deep = RuntimeConfig { dependency_depth_max: 1_000, ..RuntimeConfig::default() };
        let replay = replayed(&deep, 3);
        assert_eq!(replay.dependency_depth_max, DEPENDENCY_DEPTH_MAX, "recorded before the limit");
        assert_eq!(replay.validate(), Ok(()));
        let wide = RuntimeConfig { dependency_nodes_max: usize::MAX, ..RuntimeConfig::default() };
        assert_eq!(replayed(&wide, 5).dependency_nodes_max, 1 << 20, "every path is walked");
        assert_eq!(replayed(&wide, 6).dependency_nodes_max, usize::MAX, "each request once");
    }
}
