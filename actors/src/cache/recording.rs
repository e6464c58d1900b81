//! What a recording session's log gets from a cache: each load's read and its decoder's
//! outcome, recorded as the cache takes the load's end, where it takes effect among the
//! engine's inputs (not on the worker that met it, which a replay would run ahead of them).
//!
//! An outcome that takes no effect is not recorded: that of a load cancelled, or whose every
//! request let go (their releases still to come), which the cache drops. A replay takes the
//! engine's cancel first and drops that load's job before its work, so the outcome's record
//! would be left banked for a later load of the key. A key's recorded outcomes are therefore
//! those of its loads that took effect, which never overlap: a load is cancelled before
//! another of its key starts, so they follow each other in its log as in its replay.

use streamrt_messages::replay_log::{DecodeOutcome, LogRecord, ReadOutcome};

use super::abandoned::all_released;
use super::route::decoder_outcome;
use super::Cache;
use crate::work::{Job, JobEnd};

impl<T: Send + Sync + 'static> Cache<T> {
    /// Records that `job` was read and decoded a value of `size` resident bytes, as the cache
    /// takes it.
    pub(super) fn record_decoded(&mut self, job: &Job, size: u64) {
        self.record_taken(job, || read_and_decode(job, Some(DecodeOutcome::Value(size))));
    }

    /// Records how a job that gave no value ended, as the cache takes it: its read's failure,
    /// or its read and its decoder's outcome (a decode thread lost is the read alone).
    pub(super) fn record_end(&mut self, job: &Job, end: &JobEnd) {
        self.record_taken(job, || match end {
            JobEnd::ReadFailed(kind) => {
                let outcome = ReadOutcome::Failed(kind.clone());
                [Some(LogRecord::Read { key: job.key.clone(), outcome }), None]
            }
            _ => read_and_decode(job, decoder_outcome(end)),
        });
    }

    /// Records what `records` makes, in order, if the runtime is recording and `job`'s outcome
    /// takes effect (see the module docs).
    fn record_taken(&mut self, job: &Job, records: impl FnOnce() -> [Option<LogRecord>; 2]) {
        let Some(recorder) = self.links.probe.recorder() else { return };
        let slot = self.table.current_mut(job.slot(), job.generation);
        if slot.is_some_and(|s| !all_released(s)) {
            records().iter().flatten().for_each(|record| recorder.record(record));
        }
    }
}

/// `job`'s read, if it read, then its decoder's `outcome`, if it has one.
fn read_and_decode(job: &Job, outcome: Option<DecodeOutcome>) -> [Option<LogRecord>; 2] {
    let Some(n) = job.read_bytes else { return [None, None] };
    let read = LogRecord::Read { key: job.key.clone(), outcome: ReadOutcome::Bytes(n) };
    [Some(read), outcome.map(|outcome| LogRecord::Decode { key: job.key.clone(), outcome })]
}
