//! The engine's side of a request: its [`Handle`] (cheap clones sharing the request, the
//! last one's drop cancelling and releasing it), [`ReadyError`], and [`RootHandle`], the
//! handle as the replay and the dependency walk hold it without its type.
//!
//! A handle is the request's cell itself; it counts the handles apart from the cell's other
//! holders (its ticket, a ready queue entry), so the last handle's drop is acted on once (a
//! handle a `Sharer` brings back can make a later drop the last again; the release it would
//! make twice is made once).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crossbeam_utils::Backoff;
use streamrt_messages::replay_log::LogRecord;
use streamrt_messages::{AssetKey, AssetLoadError, LoadState, Priority, RequestId};

use super::{RequestCell, Ticket};
use crate::cache::EngineMsg;
use crate::deps::{ByteProgress, Counted, DepGate, DepHandle, DepSharer, Dependent};
use crate::replay::Recorder;
use crate::signal::{deadline_after, listen_async, wait_until, Signal};

/// Why [`Handle::ready`] produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadyError {
    /// The load failed.
    #[error(transparent)]
    Failed(Arc<AssetLoadError>),
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// The shortest timeout [`Handle::wait_timeout`] spins before sleeping for: the spin takes
/// microseconds, a few yields to busy threads can take longer.
const SPIN_TIMEOUT_MIN: Duration = Duration::from_millis(1);

/// Clones of one request's handle, at most: the count is 32 bits to keep the cell small.
const HANDLES_MAX: u32 = u32::MAX / 2;

/// The engine's view of one request. Cheap to clone; clones share the request.
///
/// Reading the state or error is an atomic load, the value a clone under the request's own
/// lock. Dropping the last clone cancels the
/// request (if it has not ended) and releases the asset, as [`Handle::cancel`] does; other
/// requests for the same asset keep their load. A handle is the request's cell itself, which
/// counts the handles apart from the cell's other holders (its ticket, a ready queue entry).
///
/// # Panics
///
/// Cloning panics once `u32::MAX / 2` clones of one request are live (only handles leaked in
/// a loop get there), as `Arc` aborts past its own limit.
pub struct Handle<T: Send + Sync + 'static> {
    cell: Arc<RequestCell<T>>,
}

/// A request watched without being held: what a future waiting on it keeps, so that the
/// request still ends (cancelled) once every handle let go of it, the future pending or not,
/// and the future then resolves with that end.
pub(crate) struct Watched<T: Send + Sync + 'static>(Arc<RequestCell<T>>);

impl<T: Send + Sync + 'static> Watched<T> {
    pub(crate) fn is_terminal(&self) -> bool {
        self.0.state().is_terminal()
    }

    /// The runtime's "a request decoded or ended" signal.
    pub(crate) fn any_progressed(&self) -> &Signal {
        self.0.probe().any_progressed()
    }

    /// Resolves with the request's outcome (see [`Handle::ready`]).
    pub(crate) fn ready(self) -> impl Future<Output = Result<Arc<T>, ReadyError>> + Send + 'static {
        let cell = self.0;
        async move {
            loop {
                if let Some(outcome) = cell.outcome() {
                    return outcome;
                }
                let listener = listen_async(&cell.changed);
                if let Some(outcome) = cell.outcome() {
                    return outcome;
                }
                listener.await;
            }
        }
    }
}

impl<T: Send + Sync + 'static> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self::counted(Arc::clone(&self.cell))
    }
}

impl<T: Send + Sync + 'static> Handle<T> {
    /// One more handle of `cell`'s request. From a live handle (a clone) the count cannot
    /// reach zero meanwhile; from a sharer whose request every handle let go of, the request
    /// is cancelled and released already, and the new handle's drop changes nothing.
    fn counted(cell: Arc<RequestCell<T>>) -> Self {
        let before = cell.handles.fetch_add(1, Ordering::Relaxed);
        // As `Arc` does with its own count: only handles leaked in a loop get here, and a
        // wrapped count would release the request under live handles. The count is taken
        // back first, so a caught panic leaves it as it was.
        if before >= HANDLES_MAX {
            cell.handles.fetch_sub(1, Ordering::Relaxed);
            panic!("more than {HANDLES_MAX} handles of one request");
        }
        Self { cell }
    }
}

impl<T: Send + Sync + 'static> Drop for Handle<T> {
    fn drop(&mut self) {
        if self.cell.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.cell.cancel_and_release(true);
        }
    }
}

impl<T: Send + Sync + 'static> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("id", &self.id())
            .field("key", &self.key())
            .field("state", &self.state())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Handle<T> {
    /// A handle and the ticket its cache keeps.
    pub(crate) fn new(mut cell: RequestCell<T>) -> (Self, Ticket<T>) {
        cell.handles = AtomicU32::new(1);
        let cell = Arc::new(cell);
        let ticket = Ticket { cell: Arc::clone(&cell) };
        (Self { cell }, ticket)
    }

    /// The value once `Ready`, until then the type's placeholder (if one was registered with
    /// `RuntimeBuilder::placeholder`), so the engine always has something to draw.
    pub fn get_or_placeholder(&self) -> Option<Arc<T>> {
        self.get().or_else(|| self.cell.link.placeholder.clone())
    }

    /// The request as its dependency gate sees it.
    pub(crate) fn dependent(&self) -> Weak<dyn Dependent> {
        let weak: Weak<RequestCell<T>> = Arc::downgrade(&self.cell);
        weak
    }

    /// How much of this request's dependency tree has loaded, weighted by bytes; never goes
    /// backwards. See [`ByteProgress`].
    pub fn progress(&self) -> ByteProgress {
        self.cell.progress()
    }

    /// The probe's signal, notified whenever any request of the runtime decodes or ends.
    pub(crate) fn any_progressed(&self) -> &Signal {
        self.cell.probe().any_progressed()
    }

    /// The request's id.
    pub fn id(&self) -> RequestId {
        self.cell.id()
    }

    /// The requested asset (put together from the request's path and type: a pending request
    /// keeps no key of its own, see `streamctl bench scale`).
    pub fn key(&self) -> AssetKey {
        self.cell.key()
    }

    /// The request's current priority.
    pub fn priority(&self) -> Priority {
        self.cell.priority()
    }

    /// The request's current state.
    pub fn state(&self) -> LoadState {
        self.cell.state()
    }

    /// Whether the request reached `Ready`, `Failed` or `Cancelled`.
    pub fn is_terminal(&self) -> bool {
        self.state().is_terminal()
    }

    /// The value, once `Ready`.
    pub fn get(&self) -> Option<Arc<T>> {
        self.cell.value()
    }

    /// The error, once `Failed`.
    pub fn error(&self) -> Option<Arc<AssetLoadError>> {
        self.cell.error()
    }

    /// Microseconds from the request to its terminal state, once terminal; at most
    /// `u32::MAX` (about 71.6 minutes), which a longer wait reads as.
    pub fn latency_us(&self) -> Option<u64> {
        self.cell.latency_us()
    }

    /// Cancels the request now: unless it already ended, its state becomes `Cancelled` before
    /// this returns and it will never bind a value. The cache then drops the load if no other
    /// request holds the asset. Returns whether this call ended the request (`false` when it
    /// had already ended, ready or not). A request already `Ready` is left as it is: it keeps
    /// its value, which stays resident (held, never evicted) until its last handle is dropped.
    pub fn cancel(&self) -> bool {
        self.cell.cancel_and_release(false)
    }

    /// Changes the request's priority: a queued load moves in the scheduler's queue, a decoded
    /// request moves in the publish queue. Does nothing once the request ended, or when it
    /// already has `priority` (an engine that sets every priority each frame sends only the
    /// changes).
    pub fn reprioritize(&self, priority: Priority) {
        // While recording, the change and its record happen under the recorder's order lock,
        // as a cancel's do: two threads moving one request leave it where the log says.
        let _order = self.cell.root_recorder().and_then(Recorder::order);
        let unchanged = self.cell.priority() == priority;
        if unchanged || self.is_terminal() || self.cell.released.load(Ordering::Acquire) {
            return;
        }
        self.cell.record_input(|| LogRecord::Reprioritize { id: self.id().0, priority });
        self.cell.set_priority(priority);
        // The cache, and the gate here (once locked), read the request's priority when they
        // apply it, not this call's: with two threads moving one request, the change applied
        // last then reads the priority set last, wherever their sets and posts interleaved.
        if self.cell.claim_priority_post() {
            let _ = self.cell.link.engine.post(EngineMsg::Reprioritize(Arc::clone(&self.cell)));
        }
        if let Some(gate) = self.cell.gate() {
            gate.reprioritize(|| self.cell.priority());
        }
    }

    /// The outcome, once terminal, without waiting.
    pub fn outcome(&self) -> Option<Result<Arc<T>, ReadyError>> {
        self.cell.outcome()
    }

    /// Waits for the terminal state, asynchronously (any executor).
    ///
    /// The future watches the request without holding it: it resolves `Cancelled` once every
    /// handle let go, so `rt.request(..)?.ready().await`, whose handle is dropped at the end
    /// of the statement that makes the future, ends cancelled. Keep the handle while it waits.
    ///
    /// # Errors
    ///
    /// [`ReadyError::Failed`] or [`ReadyError::Cancelled`].
    pub fn ready(&self) -> impl Future<Output = Result<Arc<T>, ReadyError>> + Send + 'static {
        self.watched().ready()
    }

    /// The request, watched without being held (see [`Watched`]).
    pub(crate) fn watched(&self) -> Watched<T> {
        Watched(Arc::clone(&self.cell))
    }

    /// Blocks the calling thread until the terminal state or `timeout`; `None` on timeout.
    /// In frames mode, not on the thread that calls `begin_frame` (see `wait`'s `# Frames`).
    ///
    /// For a timeout of 1 ms or more, spins and yields briefly (crossbeam's `Backoff`: a few
    /// microseconds) before it sleeps:
    /// a request about to end then costs its publisher no wake-up call and this thread no
    /// sleep, which is what made waiting on each of many small loads slow.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<Arc<T>, ReadyError>> {
        let deadline = deadline_after(timeout);
        let cell = &self.cell;
        let backoff = Backoff::new();
        // A short timeout (a poll, at zero) is not spun on: the spin could outlast it.
        while timeout >= SPIN_TIMEOUT_MIN && !backoff.is_completed() {
            if let Some(outcome) = cell.outcome() {
                return Some(outcome);
            }
            backoff.snooze();
        }
        wait_until(deadline, || cell.outcome().ok_or(&cell.changed))
    }
}

/// A request the engine made, whatever its asset type (what a replay holds).
pub(crate) trait RootHandle: Send + Sync {
    fn id(&self) -> RequestId;
    fn cancel(&self);
    fn reprioritize(&self, priority: Priority);
}

impl<T: Send + Sync + 'static> RootHandle for Handle<T> {
    fn id(&self) -> RequestId {
        Handle::id(self)
    }

    fn cancel(&self) {
        Handle::cancel(self);
    }

    fn reprioritize(&self, priority: Priority) {
        Handle::reprioritize(self, priority);
    }
}

impl<T: Send + Sync + 'static> DepHandle for Handle<T> {
    fn reprioritize(&self, priority: Priority) {
        Handle::reprioritize(self, priority);
    }

    fn progress_in(&self, counted: &mut Counted) -> ByteProgress {
        self.cell.progress_in(counted)
    }

    fn sharer(&self) -> Box<dyn DepSharer> {
        Box::new(Sharer(Arc::clone(&self.cell)))
    }
}

/// See [`DepSharer`].
struct Sharer<T: Send + Sync + 'static>(Arc<RequestCell<T>>);

impl<T: Send + Sync + 'static> DepSharer for Sharer<T> {
    fn share(&self, parent: Weak<DepGate>) -> Box<dyn DepHandle> {
        let handle = Handle::counted(Arc::clone(&self.0));
        handle.cell.add_sharer(parent);
        Box::new(handle)
    }
}

#[cfg(test)]
mod tests {
    use streamrt_messages::{AssetKey, Priority, RequestId};
    use streamrt_supervisor::{Mailbox, MonotonicClock};

    use super::*;
    use crate::cache::EngineMsg;
    use crate::request::Lineage;
    use crate::runtime::TypeLink;
    use crate::telemetry::Probe;

    #[test]
    fn changes_of_priority_made_before_the_cache_takes_the_last_ride_on_its_post() {
        let probe = Arc::new(Probe::new(Arc::new(MonotonicClock::new()), 16, false));
        let key = AssetKey::parse("blob:a").unwrap();
        let engine = Mailbox::new();
        let link = Arc::new(TypeLink {
            asset_type: key.asset_type().clone(),
            engine: engine.clone(),
            placeholder: None,
            probe,
        });
        let cell = RequestCell::new(
            RequestId(1),
            &key,
            Priority::Normal,
            0,
            Lineage::new(None, None),
            link,
        );
        let handle = Handle::<u8>::counted(Arc::new(cell));
        let levels = [Priority::High, Priority::Low, Priority::Critical];
        for round in 0..1_000 {
            handle.reprioritize(levels[round % levels.len()]);
        }
        assert_eq!(engine.len(), 1, "one post for a thousand changes");
        let mut posted = Vec::new();
        engine.drain_into(usize::MAX, &mut posted);
        let Some(EngineMsg::Reprioritize(cell)) = posted.pop() else { panic!("a Reprioritize") };
        // The cache takes it and reads the last change; the next change posts again.
        assert_eq!(cell.take_priority_change(), levels[999 % levels.len()]);
        handle.reprioritize(Priority::Background);
        assert_eq!(engine.len(), 1, "a change after the take is posted");
    }
}
