//! A type's route: its decoder and its cache, as the scheduler and the workers see them
//! through the type-erased [`JobRoute`].
//!
//! # Panics
//!
//! A decoder's panic (in `decode` or in `size_bytes`) is caught here, reported to the cache as
//! `DecoderPanicked`, and handed back for the worker to re-raise (so the worker is rebuilt).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use streamrt_messages::replay_log::DecodeOutcome;
use streamrt_messages::ErrorKind;
use streamrt_supervisor::panic_message;

use super::{CacheInbox, CacheMsg};
use crate::asset::{DecodeError, Decoder, ASSET_BYTES_MAX};
use crate::scheduler::LoadRef;
use crate::work::{CancelTable, DispatchOrder, Job, JobEnd, JobRoute, RaiseTable};

/// The decoder and cache of one asset type, as jobs see them.
pub(crate) struct TypeRoute<D: Decoder> {
    decoder: Arc<D>,
    cache: CacheInbox<D::Asset>,
    /// Written by the cache (every incarnation: the route outlives them), read by workers.
    cancels: CancelTable,
    /// Written and read as `cancels` is.
    raises: RaiseTable,
}

impl<D: Decoder> TypeRoute<D> {
    pub(crate) fn new(decoder: Arc<D>, cache: CacheInbox<D::Asset>) -> Self {
        Self { decoder, cache, cancels: CancelTable::default(), raises: RaiseTable::default() }
    }
}

impl<D: Decoder> JobRoute for TypeRoute<D> {
    fn dispatch(&self, order: DispatchOrder) {
        // A closed lane means shutdown: the order's credit goes back as it is dropped.
        let _ = self.cache.dispatches.post(order);
    }

    fn refuse(&self, load: LoadRef, kind: ErrorKind) {
        let _ = self.cache.messages.post(CacheMsg::Refused(load, kind));
    }

    fn decode(
        &self,
        job: Job,
        bytes: Vec<u8>,
        done: &dyn Fn(&Job),
    ) -> Result<(), Box<dyn Any + Send>> {
        let decoder = &*self.decoder;
        // `size_bytes` is the decoder's code too: a panic there is caught like one in
        // `decode`, or the job would be lost and its requests left loading.
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let value = decoder.decode(&job.key, bytes)?;
            let size = decoder.size_bytes(&value).min(ASSET_BYTES_MAX);
            Ok::<_, DecodeError>((value, size))
        }));
        // After a panic too: the decode's span ends as the decoder stopped, or a report would
        // count its worker idle from its start on.
        done(&job);
        let (reply, outcome) = match decoded {
            Ok(Ok((value, size))) => (CacheMsg::Decoded(job, Arc::new(value), size), Ok(())),
            Ok(Err(e)) => (CacheMsg::Ended(job, JobEnd::Failed(e.into())), Ok(())),
            Err(panic) => {
                let kind = ErrorKind::DecoderPanicked(panic_message(&*panic));
                (CacheMsg::Ended(job, JobEnd::Failed(kind)), Err(panic))
            }
        };
        // Posted without a wake: the caller wakes the cache, now or once for a batch. A closed
        // mailbox means shutdown; the requests were failed already.
        let _ = self.cache.messages.post_unwoken(reply);
        outcome
    }

    fn wake(&self) {
        self.cache.messages.wake();
    }

    fn end(&self, job: Job, end: JobEnd) {
        let _ = self.cache.messages.post(CacheMsg::Ended(job, end));
    }

    fn cancels(&self) -> &CancelTable {
        &self.cancels
    }

    fn raises(&self) -> &RaiseTable {
        &self.raises
    }
}

/// The decoder's outcome in a job's end, if a decoder ended it.
pub(super) fn decoder_outcome(end: &JobEnd) -> Option<DecodeOutcome> {
    match end {
        JobEnd::Failed(ErrorKind::DecoderPanicked(message)) => {
            Some(DecodeOutcome::Panicked(message.clone()))
        }
        JobEnd::Failed(kind @ (ErrorKind::Decode(_) | ErrorKind::Validation(_))) => {
            Some(DecodeOutcome::Failed(kind.clone()))
        }
        _ => None,
    }
}
