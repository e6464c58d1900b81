//! What a recording session's log gets from a cache: the outcomes of decodes and the failures
//! of reads, each recorded as the cache takes it, where it takes effect among the engine's
//! inputs (not on the worker that met it, which a replay would run ahead of them).

use streamrt_messages::replay_log::{DecodeOutcome, LogRecord, ReadOutcome};

use super::abandoned::all_released;
use super::route::decoder_outcome;
use super::Cache;
use crate::work::{Job, JobEnd};

impl<T: Send + Sync + 'static> Cache<T> {
    /// Records a decoder's outcome when the cache takes it (not on the decode thread): a
    /// replay stages the value at the same point among the engine's inputs.
    pub(super) fn record_decode(&self, job: &Job, outcome: impl FnOnce() -> Option<DecodeOutcome>) {
        if let Some(recorder) = self.links.probe.recorder() {
            if let Some(outcome) = outcome() {
                recorder.record(&LogRecord::Decode { key: job.key.clone(), outcome });
            }
        }
    }

    /// Records how a job that gave no value ended, as the cache takes it: its decoder's
    /// outcome, or its read's failure if that fails a request. A load cancelled, or whose
    /// every request let go (their releases still to come), takes no effect from it: a replay
    /// drops that load unread, and the record would be left for a later load of the key.
    pub(super) fn record_end(&mut self, job: &Job, end: &JobEnd) {
        let JobEnd::ReadFailed(kind) = end else {
            return self.record_decode(job, || decoder_outcome(end));
        };
        let Some(recorder) = self.links.probe.recorder() else { return };
        let slot = self.table.current_mut(job.slot(), job.generation);
        if slot.is_some_and(|s| !all_released(s)) {
            let outcome = ReadOutcome::Failed(kind.clone());
            recorder.record(&LogRecord::Read { key: job.key.clone(), outcome });
        }
    }
}
