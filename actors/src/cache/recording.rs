//! What a recording session's log gets from a cache: each load's decoder's outcome and its
//! read's failure, recorded as the cache takes them, where they take effect among the engine's
//! inputs (not on the worker that met them, which a replay would run ahead of them). A
//! successful read is recorded on the IO worker, as it gives its read credit back (see
//! `IoWorker::record_read`), and only if the load was not cancelled by then.
//!
//! A decode's outcome or a read's failure that takes no effect is not recorded: that of a
//! load cancelled, or whose every request let go (their releases still to come), which the
//! cache drops. (A successful read is recorded unless its load was cancelled by then.) A replay takes the
//! engine's cancel first and drops that load's job before its work, so the outcome's record
//! would be left banked for a later load of the key. A key's recorded outcomes are therefore
//! those of its loads that took effect, which never overlap: a load is cancelled before
//! another of its key starts, so they follow each other in its log as in its replay.
//!
//! Whether every request let go is looked at under the lock the record is appended under, and
//! an engine's cancel marks its request released before it records itself: a decode's outcome
//! is logged before the cancel, or not at all. One logged is taken, even if the last request
//! let go just after (its release still to come cancels the load), as its replay takes it
//! before the cancel. One window remains: a read that ends after the
//! engine's cancel was recorded but before the cache marked the load cancelled (the cache's turn to
//! take the cancel, microseconds) is recorded, and left banked in a replay for the key's next load.

use streamrt_messages::replay_log::{DecodeOutcome, LogRecord, ReadOutcome};

use super::abandoned::all_released;
use super::route::decoder_outcome;
use super::Cache;
use crate::work::{Job, JobEnd};

impl<T: Send + Sync + 'static> Cache<T> {
    /// Records that `job` decoded a value of `size` resident bytes, as the cache takes it.
    pub(super) fn record_decoded(&mut self, job: &Job, size: u64) -> bool {
        self.record_taken(job, || Some(decode(job, DecodeOutcome::Value(size))))
    }

    /// Records how a job that gave no value ended, as the cache takes it: its decoder's
    /// outcome, or its read's failure (a decode thread lost records nothing here). Whether it
    /// was recorded, as `record_taken` says.
    pub(super) fn record_end(&mut self, job: &Job, end: &JobEnd) -> bool {
        self.record_taken(job, || match end {
            JobEnd::ReadFailed(kind) => Some(LogRecord::Read {
                key: job.key.clone(),
                outcome: ReadOutcome::Failed(kind.clone()),
            }),
            _ => decoder_outcome(end).map(|outcome| decode(job, outcome)),
        })
    }

    /// Records what `record` makes, if the runtime is recording and `job`'s outcome takes
    /// effect (see the module docs). Whether it recorded one: the outcome then takes effect
    /// here too, whoever lets go of the load after the record (the caller does not look
    /// again, or a cancel recorded after it would find the outcome taken in a replay and
    /// dropped here).
    fn record_taken(&mut self, job: &Job, record: impl FnOnce() -> Option<LogRecord>) -> bool {
        let Some(recorder) = self.links.probe.recorder() else { return false };
        let slot = self.table.current_mut(job.slot(), job.generation);
        // Looked at as the record is appended: an engine's cancel marks its request released
        // before it records itself, so it is either seen here (nothing recorded) or recorded
        // after the outcome, which its load then takes in a replay too.
        recorder.record_if(|| slot.is_some_and(|s| !all_released(s)).then(record).flatten())
    }
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Whether a request still holds the slot at `at`, whose retry's backoff ran out on a
    /// timer, recording the retry if the runtime is recording and one does: where it takes
    /// effect among the engine's inputs, which a replay's retry then follows too (a timer has
    /// no order of its own against them). Looked at as the record is appended, as a decode's
    /// outcome is (see the module docs): the retry is logged before a cancel that reaches it,
    /// or the load is cancelled, unlogged.
    pub(super) fn record_retry_due(&self, at: usize) -> bool {
        let Some(slot) = self.table.get(at) else { return false };
        let Some(recorder) = self.links.probe.recorder() else { return !all_released(slot) };
        let due = || LogRecord::RetryDue { key: self.key_of(slot.path()) };
        recorder.record_if(|| (!all_released(slot)).then(due))
    }
}

fn decode(job: &Job, outcome: DecodeOutcome) -> LogRecord {
    LogRecord::Decode { key: job.key.clone(), outcome }
}
