//! Recording a session: the runtime's nondeterministic inputs, written to a replay log as
//! they happen (format: `streamrt_messages::replay_log`, `docs/PROTOCOL.md`).
//!
//! What is recorded, and where:
//! - the engine's calls: root requests (`Submitter`), cancels and drops, reprioritisations
//!   (`Handle`), frame boundaries with the requests published, shutdown (`Runtime`);
//! - in immediate mode, the requests each publish published (the frame coordinator);
//! - what the source said: each key's dependencies and size once, every read's outcome (IO
//!   worker);
//! - every decoder's outcome, panics included (the type's route);
//! - every request's terminal state (from the events), which a replay is checked against.
//!
//! # Ordering
//!
//! Records are appended under one lock in the order their threads reached it, which is the
//! order a replay feeds them back. Root requests, frame boundaries and cancels also take the
//! order lock across their effect and its record, so that among them the log's order is the
//! order they took effect in (a request's ids, a publish against a cancel), as do immediate
//! publishes and the shutdown.
//!
//! # Errors
//!
//! A write that fails stops the recording (the first error is logged and kept for
//! [`Recorder::finish`]); the runtime itself carries on.
//!
//! # Backpressure
//!
//! The log is written on a thread of its own (`log_file::Spool`): a record is handed over
//! without waiting on the file. A file that falls `SPOOL_BEHIND_BYTES_MAX` behind (a pipe no
//! one reads, a hung mount) fails the next write, which stops the recording; the finish at
//! shutdown waits for the last writes at most `shutdown_ack_ms_max`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use streamrt_messages::replay_log::{
    LogConfig, LogHeader, LogPublish, LogRecord, LogWriter, PUBLISHED_PER_RECORD_MAX,
};
use streamrt_messages::{AssetKey, AssetTypeName, Event, EventKind, LoadState, RequestId};
use streamrt_supervisor::log_caught;

use crate::frame::PublishMode;
use crate::lock::{lock, HeldMark};
use crate::log_file::{Spool, SPOOL_BEHIND_BYTES_MAX};
use crate::runtime::{RetryPolicy, RuntimeConfig};
use crate::source::EntryInfo;

/// The records of a publish that published `published`, in order: none for none, else one
/// per [`PUBLISHED_PER_RECORD_MAX`] requests.
pub(crate) fn published_records(published: &[RequestId]) -> Vec<LogRecord> {
    let chunks = published.chunks(PUBLISHED_PER_RECORD_MAX);
    chunks
        .map(|chunk| LogRecord::Published { requests: chunk.iter().map(|r| r.0).collect() })
        .collect()
}

/// See the module docs.
pub(crate) struct Recorder {
    state: Mutex<State>,
    /// Held across a root request's admission, a frame's publishes, an immediate publish, a
    /// cancel, a reprioritise and the shutdown's closing, each with its record, so requests made on
    /// several threads get their ids in the order the log lists them, a publish and a cancel of one
    /// request are listed as they took effect, and no request is listed after the shutdown.
    /// While recording, a request holds it across its source's `entry_info`; an immediate
    /// publish on the core thread does not wait for it, and is made once it is free (see
    /// `FrameShared::publish_now`).
    order: Mutex<()>,
}

thread_local! {
    /// The recorders whose order lock this thread holds, by address: a publish or a cancel
    /// runs the engine's code under it (its wakers), which may call the runtime back (request,
    /// cancel, move a request, shut down), each of which takes the lock to record itself.
    static ORDER_HELD_HERE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Another thread holds the recorder's order lock (see `Recorder::try_order`).
#[derive(Debug)]
pub(crate) struct OrderHeld;

/// The recorder's order lock, held (see `Recorder::order`).
pub(crate) struct OrderGuard<'a> {
    // Unmarked before the lock is let go: fields drop in order.
    _mark: Option<HeldMark>,
    _lock: MutexGuard<'a, ()>,
}

struct State {
    writer: Option<LogWriter<Spool>>,
    /// Keys whose `Entry` was recorded, with a digest of what it said: recorded again only
    /// when the source's answer changed (a memory source's entries may be added or replaced
    /// while the runtime runs).
    entries: HashMap<AssetKey, u64>,
    error: Option<String>,
    /// Whether a finish returned `error` already.
    error_told: bool,
}

impl Recorder {
    /// Creates the log at `path`, starts the thread that writes it, and hands it its header.
    /// A [`Recorder::finish`] waits at most `flush_wait` for the thread to write out.
    ///
    /// # Errors
    ///
    /// The file could not be created, it is a named pipe with no reader, or the thread could
    /// not be started.
    pub(crate) fn create(
        path: &Path,
        header: &LogHeader,
        flush_wait: Duration,
    ) -> std::io::Result<Self> {
        // Whole frames only: a write that fails part way (a full disk) is taken back, and the
        // log ends at its last whole frame, which replays as a log cut short. Written on a
        // thread of its own: a file that takes no writes holds no thread that records.
        let file = crate::log_file::create(path)?;
        let writer = LogWriter::new(Spool::new(file, flush_wait, SPOOL_BEHIND_BYTES_MAX)?, header)?;
        let state =
            State { writer: Some(writer), entries: HashMap::new(), error: None, error_told: false };
        Ok(Self { state: Mutex::new(state), order: Mutex::new(()) })
    }

    /// Serialises root requests, frames and cancels while recording; see the field's docs.
    /// `None` if this thread holds the lock already: the engine's code run under it (a waker
    /// a publish or a cancel wakes) requesting, cancelling, moving a request or closing the
    /// session, whose section the lock already orders. Its record then comes before the
    /// records of the section it ran in (a frame's publishes are recorded once they all
    /// happened): a cancel made so of a request the same frame published first is replayed
    /// before the publish, and the replay says where it diverges, where taking the lock again
    /// would hang the thread.
    pub(crate) fn order(&self) -> Option<OrderGuard<'_>> {
        if HeldMark::is_marked(&ORDER_HELD_HERE, self.address()) {
            return None;
        }
        let lock = lock(&self.order);
        Some(OrderGuard { _mark: HeldMark::new(&ORDER_HELD_HERE, self.address()), _lock: lock })
    }

    /// [`Recorder::order`] without waiting: `Err` while another thread holds the lock.
    pub(crate) fn try_order(&self) -> Result<Option<OrderGuard<'_>>, OrderHeld> {
        if HeldMark::is_marked(&ORDER_HELD_HERE, self.address()) {
            return Ok(None);
        }
        let lock = match self.order.try_lock() {
            Ok(lock) => lock,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(OrderHeld),
        };
        Ok(Some(OrderGuard { _mark: HeldMark::new(&ORDER_HELD_HERE, self.address()), _lock: lock }))
    }

    fn address(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Appends `record`.
    pub(crate) fn record(&self, record: &LogRecord) {
        self.state().append(record);
    }

    /// Appends what `record` makes, if anything, deciding under the lock records are appended
    /// under: a record another thread appends after something `record` looks at changed (an
    /// engine's cancel, once its request is marked released) comes after this one. Whether it
    /// appended one.
    pub(crate) fn record_if(&self, record: impl FnOnce() -> Option<LogRecord>) -> bool {
        let mut state = self.state();
        let Some(record) = record() else { return false };
        state.append(&record);
        true
    }

    /// Appends `records` together: no other thread's record comes between them.
    pub(crate) fn record_all(&self, records: &[LogRecord]) {
        let mut state = self.state();
        for record in records {
            state.append(record);
        }
    }

    /// Records what the source said of `key`: the first time it is asked, and whenever its
    /// answer changed since (a replay's source answers as the last record said).
    pub(crate) fn entry(&self, key: &AssetKey, info: &EntryInfo) {
        let digest = entry_digest(info);
        let mut state = self.state();
        // Once recording stopped, nothing reads the keys' digests: none is kept.
        if state.writer.is_none() || state.entries.get(key) == Some(&digest) {
            return;
        }
        state.entries.insert(key.clone(), digest);
        state.append(&LogRecord::Entry {
            key: key.clone(),
            dependencies: info.dependencies.clone(),
            size: info.size,
        });
    }

    /// Records that the source panicked looking `key` up, with `message`. What it says of the
    /// key next time is recorded only if it differs from what was recorded of it before (a
    /// replay's source answers with the last `Entry` of the key, which is the same).
    pub(crate) fn entry_panicked(&self, key: &AssetKey, message: &str) {
        let record = LogRecord::EntryPanicked { key: key.clone(), message: message.to_owned() };
        self.state().append(&record);
    }

    /// Records a request's terminal state from its terminal event.
    pub(crate) fn observe(&self, event: &Event) {
        let state = match event.kind {
            EventKind::Published => LoadState::Ready,
            EventKind::Failed { .. } => LoadState::Failed,
            EventKind::Cancelled { .. } => LoadState::Cancelled,
            _ => return,
        };
        if let Some(id) = event.request {
            self.record(&LogRecord::Ended { id: id.0, state });
        }
    }

    /// The first write error, if any: the log ends before it.
    pub(crate) fn error(&self) -> Option<String> {
        self.state().error.clone()
    }

    /// Flushes the log; the first write error, if any, the first time a finish finds it (a
    /// stopper's stop and the engine's shutdown both finish the log: one of them reports it).
    pub(crate) fn finish(&self) -> Option<String> {
        let mut state = self.state();
        if let Some(Err(e)) = state.writer.as_mut().map(LogWriter::flush) {
            // The log ends here: recording stops, as after a failed append.
            state.error.get_or_insert(e.to_string());
            state.writer = None;
            state.entries = HashMap::new();
        }
        if state.error_told {
            return None;
        }
        state.error_told = state.error.is_some();
        state.error.clone()
    }
}

impl State {
    fn append(&mut self, record: &LogRecord) {
        let Some(writer) = self.writer.as_mut() else { return };
        if let Err(e) = writer.append(record) {
            self.error = Some(e.to_string());
            self.writer = None;
            self.entries = HashMap::new();
            log_caught(|| {
                tracing::error!(target: "streamrt", error = %e, "replay log write failed; recording stops");
            });
        }
    }
}

/// A digest of what an `Entry` record says of a key (its locator is not recorded).
fn entry_digest(info: &EntryInfo) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    info.dependencies.hash(&mut hasher);
    info.size.hash(&mut hasher);
    hasher.finish()
}

/// The record of a type registered with a retry policy of its own.
pub(crate) fn type_policy_record((name, policy): (&AssetTypeName, RetryPolicy)) -> LogRecord {
    LogRecord::TypePolicy {
        type_name: name.to_string(),
        attempts_max: policy.attempts_max,
        backoff_ms: (policy.backoff.min_ms, policy.backoff.max_ms),
        panics_max: policy.panics_max,
    }
}

/// The header of a log recorded by `recorded_by` from a runtime with `types` and `config`.
pub(crate) fn log_header(
    recorded_by: &str,
    types: Vec<String>,
    config: &RuntimeConfig,
) -> LogHeader {
    let publish = match config.publish {
        PublishMode::Immediate => LogPublish::Immediate,
        PublishMode::Frames(policy) => LogPublish::Frames {
            publish_count_max: policy.publish_count_max,
            publish_bytes_max: policy.publish_bytes_max,
            aging_frames_max: policy.aging_frames_max,
        },
    };
    let as_u64 = |n: usize| n as u64;
    LogHeader {
        recorded_by: recorded_by.to_owned(),
        types,
        config: LogConfig {
            workers: as_u64(config.workers),
            reads_in_flight: as_u64(config.reads_in_flight),
            read_credit_bytes: config.read_credit_bytes,
            decode_backlog_max: as_u64(config.decode_backlog_max),
            queue_capacity: as_u64(config.queue_capacity),
            requests_outstanding_max: as_u64(config.requests_outstanding_max),
            dependency_depth_max: as_u64(config.dependency_depth_max),
            dependency_nodes_max: as_u64(config.dependency_nodes_max),
            bytes_resident_max: config.bytes_resident_max,
            type_bytes_resident_max: config
                .type_bytes_resident_max
                .iter()
                .map(|(name, bytes)| (name.clone(), *bytes))
                .collect(),
            retry_attempts_max: config.retry.attempts_max,
            retry_backoff_ms: (config.retry.backoff.min_ms, config.retry.backoff.max_ms),
            panics_max: config.retry.panics_max,
            publish,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_error_is_told_by_the_first_finish_only_and_kept_for_the_engine() {
        let header = log_header("test", vec!["blob".into()], &RuntimeConfig::default());
        // A device that takes no byte: the buffered header fails as the log is flushed.
        let patience = Duration::from_secs(600);
        let recorder = Recorder::create(Path::new("/dev/full"), &header, patience).unwrap();
        recorder.record(&LogRecord::Shutdown);
        let told = recorder.finish();
        assert!(told.is_some(), "the first finish tells it");
        assert_eq!(recorder.finish(), None, "a second stop does not tell it again");
        assert_eq!(recorder.error(), told, "the engine still reads it");
    }

    #[test]
    fn once_recording_stopped_no_key_is_kept() {
        let header = log_header("test", vec!["blob".into()], &RuntimeConfig::default());
        let patience = Duration::from_secs(600);
        let recorder = Recorder::create(Path::new("/dev/full"), &header, patience).unwrap();
        let key = |i: usize| AssetKey::parse(&format!("blob:k{i}")).unwrap();
        recorder.entry(&key(0), &EntryInfo::default());
        assert_eq!(recorder.state().entries.len(), 1, "kept while recording");
        assert!(recorder.finish().is_some(), "the device took nothing: recording stops");
        recorder.entry(&key(1), &EntryInfo::default());
        assert!(recorder.state().writer.is_none());
        for i in 2..100 {
            recorder.entry(&key(i), &EntryInfo::default());
        }
        assert!(
            recorder.state().entries.is_empty(),
            "{} keys kept",
            recorder.state().entries.len()
        );
    }
}
