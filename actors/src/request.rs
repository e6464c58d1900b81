//! Requests as the engine and the caches share them: the cell, the engine's [`Handle`], and the
//! cache's [`Ticket`].
//!
//! A request's state lives in a [`RequestCell`] shared by its handle (engine thread) and its
//! ticket (cache actor). Reading a handle's state is an atomic load, and its value a clone under
//! the request's own lock (uncontended but for threads reading one handle at once), never a
//! round trip to an actor.
//!
//! # Invariants
//!
//! - Every change of state is a compare-and-swap checked by [`LoadState::can_become`]: a
//!   terminal one, and `Decoded` (set once its value is stored), through
//!   [`RequestCell::transition`], the others through [`RequestCell::advance`]. A terminal
//!   state is therefore reached exactly once, and a
//!   cancelled request can never become `Ready`: a publish after a cancel fails its CAS.
//! - The value is stored before the cell becomes `Decoded` and only read once it is `Ready`;
//!   the error is stored before the cell becomes `Failed`.
//! - Reaching a terminal state updates the counters and emits exactly one terminal event
//!   (`published`, `failed` or `cancelled`), from the thread that won the CAS.
//! - A ticket dropped while its request is not terminal fails it with `Shutdown`: whatever path
//!   loses a request (a closed mailbox, a stopped actor), the request still ends.
//! - A request's place in a dependency tree ([`Lineage`]) is fixed when it is made: a request
//!   with dependencies owns their gate, a dependency request reports its end to its parent's
//!   and to those of the other dependents sharing it in the tree, each once.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use once_cell::race::OnceBox;
use streamrt_messages::replay_log::LogRecord;
use streamrt_messages::{
    AssetKey, AssetLoadError, AssetPath, CancelStage, ErrorKind, EventKind, LoadState, Priority,
    RequestId,
};

use crate::cache::EngineMsg;
use crate::deps::{DepGate, Dependent};
use crate::frame::ReadyEntry;
use crate::replay::Recorder;
use crate::runtime::TypeLink;
use crate::signal::{wake_listeners, Signal};
use crate::telemetry::{Counters, Probe};

mod handle;
mod lineage;
mod staged;

pub use handle::{Handle, ReadyError};
pub(crate) use handle::{RootHandle, Watched};
pub(crate) use lineage::Lineage;
use staged::StagedValue;

/// A request's shared state; see the module docs.
///
/// # Size
///
/// Every pending request has one, and its allocation is most of what a pending request costs
/// (`streamctl bench scale`): 72 bytes, which with the reference counts is a 96-byte
/// allocation, where one field more would make it 112. So the cell keeps what only it can
/// hold and reaches the rest through `link`: the key's type, the runtime's probe. Its times
/// and the declared size are 32 bits where nothing needs more (see each field), and what a
/// pending request outside a dependency tree does not have yet (its value, its error, its
/// tree's links) is one pointer to a box made when it first needs one ([`Side`]);
/// `a_pending_requests_cell_fits_a_96_byte_allocation` fails when it grows. The trade: a
/// request in a dependency tree has its side (a 48-byte allocation) from the start, about 32
/// bytes and one allocation more than before the side box, for 16 bytes less on every other.
pub(crate) struct RequestCell<T: Send + Sync + 'static> {
    id: RequestId,
    /// The key's path; its type is `link`'s.
    path: AssetPath,
    state: AtomicU8,
    priority: AtomicU8,
    /// Whether the request let go of its asset at its cache (`Release` was posted).
    released: AtomicBool,
    /// Whether a `Reprioritize` is posted to the cache and not yet taken: the changes made
    /// meanwhile ride on it (the cache reads the priority as it applies it), so an engine
    /// moving a request every frame adds one message at most to the cache's lane, not one per
    /// change. In the padding after the bytes above: the cell does not grow (see `# Size`).
    reprioritize_posted: AtomicBool,
    /// Clones of the engine's [`Handle`]: dropping the last one cancels and releases.
    handles: AtomicU32,
    /// The asset's size as the source declares it, in bytes (0 when unknown), saturating at
    /// `u32::MAX`: a load that large takes a whole read credit either way, and in progress it
    /// weighs 4 GiB (see `ByteProgress`).
    declared_bytes: u32,
    /// Microseconds from `created_us` to the terminal state, saturating at `u32::MAX` (71
    /// minutes); 0 until then.
    terminal_after_us: AtomicU32,
    /// The value, error and tree links: made with the cell for a request in a dependency tree,
    /// else when the request is staged or fails. A `OnceBox` is one pointer where a `OnceLock`
    /// is two words (see `# Size`).
    side: OnceBox<Side<T>>,
    created_us: u64,
    changed: Signal,
    /// The request's type and runtime: its cache (for `Release` and `Reprioritize`), its
    /// placeholder, its type name and the probe.
    link: Arc<TypeLink<T>>,
}

/// What a request holds once it is staged, fails or sits in a dependency tree: boxed apart
/// from the cell, so a pending request outside a tree pays one pointer for all of it (see the
/// cell's `# Size`).
struct Side<T> {
    /// Set once, when staged; read once `Ready`; taken by the cache at the release (setting an
    /// `ArcSwapOption`, the first choice, walked every thread's debt list: 8 % of the core
    /// thread's instructions in `bench tiny`).
    value: StagedValue<T>,
    /// Set once, before the request moves to `Failed`.
    error: OnceBox<Arc<AssetLoadError>>,
    lineage: Lineage,
}

/// The lineage of a request whose side holds none, or that has no side yet.
static NO_LINEAGE: Lineage = Lineage::NONE;

impl<T> Side<T> {
    /// The side of a new request at `lineage`'s place: made now for a request in a tree, which
    /// it never changes, else made when first needed (empty then).
    fn with(lineage: Lineage) -> OnceBox<Self> {
        if lineage.in_tree() {
            OnceBox::with_value(Box::new(Self::of(lineage)))
        } else {
            OnceBox::new()
        }
    }

    fn of(lineage: Lineage) -> Self {
        Self { value: StagedValue::new(), error: OnceBox::new(), lineage }
    }
}

impl<T: Send + Sync + 'static> RequestCell<T> {
    /// A pending request for `key` (whose type must be `link`'s), declared `size` bytes long
    /// by its source, at `lineage`'s place in a dependency tree.
    pub(crate) fn new(
        id: RequestId,
        key: &AssetKey,
        priority: Priority,
        size: u64,
        lineage: Lineage,
        link: Arc<TypeLink<T>>,
    ) -> Self {
        debug_assert_eq!(key.asset_type(), &link.asset_type, "a request of another type");
        Self {
            id,
            path: key.asset_path().clone(),
            state: AtomicU8::new(LoadState::Pending.code()),
            priority: AtomicU8::new(priority.index() as u8),
            released: AtomicBool::new(false),
            reprioritize_posted: AtomicBool::new(false),
            handles: AtomicU32::new(0),
            declared_bytes: u32::try_from(size).unwrap_or(u32::MAX),
            terminal_after_us: AtomicU32::new(0),
            side: Side::with(lineage),
            created_us: link.probe.now_us(),
            changed: Signal::new(),
            link,
        }
    }

    fn probe(&self) -> &Probe {
        &self.link.probe
    }

    /// The request's side, made now if it has none yet (see [`Side`]).
    fn side_or_made(&self) -> &Side<T> {
        // Made empty: were two threads to race (a decode staging it, a dependency failing
        // it), the box that loses is dropped with nothing in it.
        self.side.get_or_init(|| Box::new(Side::of(Lineage::NONE)))
    }

    /// The error the request was failed with, if one was stored (whatever its state since).
    fn stored_error(&self) -> Option<&Arc<AssetLoadError>> {
        self.side.get()?.error.get()
    }

    /// Where the request sits in a dependency tree (nowhere without a side: a request in a
    /// tree is made with its side).
    fn lineage(&self) -> &Lineage {
        self.side.get().map_or(&NO_LINEAGE, |side| &side.lineage)
    }

    /// Whether the engine made this request (not a dependency's gate).
    pub(crate) fn is_root(&self) -> bool {
        self.lineage().parent().is_none()
    }

    /// Records `record` if the runtime is recording and the engine made this request.
    pub(crate) fn record_input(&self, record: impl FnOnce() -> LogRecord) {
        if let Some(recorder) = self.root_recorder() {
            recorder.record(&record());
        }
    }

    /// The runtime's recorder, if it is recording and the engine made this request: what
    /// records the engine's inputs about it.
    fn root_recorder(&self) -> Option<&Recorder> {
        self.probe().recorder().filter(|_| self.is_root())
    }

    /// The gate of this request's dependencies, if it has any.
    pub(crate) fn gate(&self) -> Option<&Arc<DepGate>> {
        self.lineage().gate()
    }

    /// `entry` (this request, decoded) if it may be published now; `None` if it waits for its
    /// dependencies, whose gate hands it over when they are ready.
    pub(crate) fn when_dependencies_ready(&self, entry: ReadyEntry) -> Option<ReadyEntry> {
        match self.lineage().gate() {
            Some(gate) => gate.hold(entry),
            None => Some(entry),
        }
    }

    /// The asset's size as the source declares it, in bytes (0 when unknown).
    pub(crate) fn declared_bytes(&self) -> u64 {
        u64::from(self.declared_bytes)
    }

    pub(crate) fn id(&self) -> RequestId {
        self.id
    }

    /// The request's key, put together from its path and its type's name.
    pub(crate) fn key(&self) -> AssetKey {
        AssetKey::from_parts(self.link.asset_type.clone(), self.path.clone())
    }

    /// The key's path: what the type's cache looks its slot up by.
    pub(crate) fn path(&self) -> &AssetPath {
        &self.path
    }

    pub(crate) fn state(&self) -> LoadState {
        LoadState::from_code(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn priority(&self) -> Priority {
        Priority::from_index(usize::from(self.priority.load(Ordering::Acquire))).unwrap_or_default()
    }

    pub(crate) fn set_priority(&self, priority: Priority) {
        self.priority.store(priority.index() as u8, Ordering::Release);
    }

    /// Whether a change of priority just set needs a `Reprioritize` posted: false while one
    /// is posted and not yet taken ([`RequestCell::take_priority_change`]), which will read it.
    pub(crate) fn claim_priority_post(&self) -> bool {
        !self.reprioritize_posted.swap(true, Ordering::AcqRel)
    }

    /// The priority a posted `Reprioritize` applies, read once the post is taken: a change set
    /// after this read posts again. (A swap, not a store: it reads the claim of the change
    /// that rode on this post, and so sees the priority that change set.)
    pub(crate) fn take_priority_change(&self) -> Priority {
        self.reprioritize_posted.swap(false, Ordering::AcqRel);
        self.priority()
    }

    /// Moves to `to` if the transition check allows it from the current state. Returns the
    /// state left, or the state that refused the move.
    ///
    /// # Panics
    ///
    /// In debug builds, on a move that no race can explain (from a non-terminal state that
    /// cannot become `to`): that is a bug in the caller's protocol.
    pub(crate) fn transition(&self, to: LoadState) -> Result<LoadState, LoadState> {
        self.transition_in(to, None)
    }

    /// [`RequestCell::transition`], as part of `batch` when one is given: a frame boundary
    /// that stamps every request it publishes with one time, counts them once and wakes
    /// waiters once, since each of those touches memory every thread shares.
    fn transition_in(
        &self,
        to: LoadState,
        batch: Option<&PublishBatch>,
    ) -> Result<LoadState, LoadState> {
        let mut current = self.state.load(Ordering::Acquire);
        // The end is stamped before the state moves, so whoever sees the terminal state sees
        // its time too.
        let ended_us = (to.is_terminal() && !LoadState::from_code(current).is_terminal())
            .then(|| self.stamp_end(batch));
        loop {
            let from = LoadState::from_code(current);
            if !from.can_become(to) {
                debug_assert!(
                    from.is_terminal() || from == to,
                    "illegal transition {from:?} -> {to:?} for {}",
                    self.id
                );
                return Err(from);
            }
            match self.state.compare_exchange_weak(
                current,
                to.code(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if let Some(now_us) = ended_us {
                        self.on_terminal(from, to, now_us, batch.is_some());
                    }
                    return Ok(from);
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Moves from exactly `from` to the non-terminal `to`, in one compare-and-swap; false
    /// (and no change) in any other state. For moves that apply only to requests still where
    /// the caller expects them: a request re-admitted after a restart may already be decoded,
    /// and any request may have ended meanwhile.
    ///
    /// # Panics
    ///
    /// In debug builds, if `from` may not become `to` or `to` is terminal (terminal moves go
    /// through [`RequestCell::transition`], which reports them).
    pub(crate) fn advance(&self, from: LoadState, to: LoadState) -> bool {
        debug_assert!(from.can_become(to) && !to.is_terminal(), "{from:?} -> {to:?}");
        self.state
            .compare_exchange(from.code(), to.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Reads the clock (or takes `batch`'s time) and records it as the request's end, unless
    /// an earlier attempt to end it did; returns it, for the end's event (one clock read for
    /// both).
    fn stamp_end(&self, batch: Option<&PublishBatch>) -> u64 {
        let now_us = batch.map_or_else(|| self.probe().now_us(), |b| b.now_us);
        let after_us = u32::try_from(now_us.saturating_sub(self.created_us)).unwrap_or(u32::MAX);
        let _ = self.terminal_after_us.compare_exchange(
            0,
            after_us,
            Ordering::Release,
            Ordering::Relaxed,
        );
        now_us
    }

    /// What reaching the terminal state `to` at `now_us` does, once, on the thread that moved
    /// it there: counts it (unless it is part of a batch, counted by its maker), emits its
    /// event, wakes its waiters and tells its dependency tree.
    fn on_terminal(&self, from: LoadState, to: LoadState, now_us: u64, batched: bool) {
        let probe = self.probe();
        let (counter, kind) = match to {
            LoadState::Ready => (&probe.counters.ready, EventKind::Published),
            LoadState::Cancelled => {
                (&probe.counters.cancelled, EventKind::Cancelled { stage: CancelStage::of(from) })
            }
            _ => {
                let kind = self.stored_error().map_or(ErrorKind::Shutdown, |e| e.kind.clone());
                (&probe.counters.failed, EventKind::Failed { kind })
            }
        };
        probe.emit_with(|| {
            probe
                .event_at(now_us, kind)
                .with_request(self.id)
                .with_key(self.key())
                .with_priority(self.priority())
        });
        wake_listeners(&self.changed);
        if !batched {
            Counters::bump(counter);
            wake_listeners(probe.any_progressed());
        }
        self.tell_tree(to);
    }

    /// Stores the decoded value and moves to `Decoded`. False if the request already ended.
    pub(crate) fn stage(&self, value: Arc<T>) -> bool {
        self.side_or_made().value.set(value);
        let staged = self.transition(LoadState::Decoded).is_ok();
        if staged {
            wake_listeners(self.probe().any_progressed());
        }
        staged
    }

    /// Makes a staged value visible as part of `batch`, which counts it and wakes waiters.
    /// False if the request ended meanwhile (it was cancelled).
    pub(crate) fn publish_in(&self, batch: &PublishBatch) -> bool {
        self.transition_in(LoadState::Ready, Some(batch)).is_ok()
    }

    /// Fails the request with `error`. False if it already ended.
    pub(crate) fn fail(&self, error: &Arc<AssetLoadError>) -> bool {
        self.fail_with(|| Arc::clone(error))
    }

    /// [`RequestCell::fail`] with the error `make` builds, built only if the request has not
    /// ended: most requests a ticket or a gate fails on its way out have ended already, and
    /// building an error costs two allocations.
    pub(crate) fn fail_with(&self, make: impl FnOnce() -> Arc<AssetLoadError>) -> bool {
        if self.state().is_terminal() {
            return false;
        }
        // A side set already keeps its error; the one refused is dropped here.
        let _ = self.side_or_made().error.set(Box::new(make()));
        self.transition(LoadState::Failed).is_ok()
    }

    /// Cancels the request. False if it already ended.
    pub(crate) fn cancel(&self) -> bool {
        self.transition(LoadState::Cancelled).is_ok()
    }

    /// Whether the request was ever staged with a value (whatever its state since).
    pub(crate) fn is_staged(&self) -> bool {
        self.side.get().is_some_and(|s| s.value.was_set())
    }

    /// The value this request was staged with, whatever its state since: a resident asset's
    /// value, as its cache reads it from its holders. None once taken at the release.
    pub(crate) fn staged_value(&self) -> Option<Arc<T>> {
        self.side.get().and_then(|s| s.value.get())
    }

    /// The staged value, for the cache to park at the release: taken out of a request that
    /// ended without handing it out (see `request/staged.rs`); a copy of a `Ready` one's,
    /// which a `ready()` future may still read once the last handle is gone.
    pub(crate) fn released_value(&self) -> Option<Arc<T>> {
        match self.state() {
            LoadState::Cancelled | LoadState::Failed => self.side.get()?.value.take(),
            state => {
                // A release follows the request's end, always.
                debug_assert!(state.is_terminal(), "released while {state:?}");
                self.staged_value()
            }
        }
    }

    fn value(&self) -> Option<Arc<T>> {
        (self.state() == LoadState::Ready).then(|| self.staged_value()).flatten()
    }

    fn error(&self) -> Option<Arc<AssetLoadError>> {
        (self.state() == LoadState::Failed).then(|| self.stored_error().cloned()).flatten()
    }

    fn outcome(&self) -> Option<Result<Arc<T>, ReadyError>> {
        match self.state() {
            LoadState::Ready => {
                let value = self.value();
                // A request is published with its value, which is never taken from a `Ready`
                // one: without it, a waiter would wait for a wake that never comes.
                debug_assert!(value.is_some(), "ready without a value");
                value.map(Ok)
            }
            LoadState::Failed => Some(Err(ReadyError::Failed(
                self.error()
                    .unwrap_or_else(|| AssetLoadError::shared(self.key(), ErrorKind::Shutdown)),
            ))),
            LoadState::Cancelled => Some(Err(ReadyError::Cancelled)),
            _ => None,
        }
    }

    /// Cancels the request (false if it had already ended) and, if that ended it or `always`
    /// (its last handle is gone), lets go of it at its cache. A request already `Ready` keeps
    /// its asset held, and counted in the budget, while a handle can still read it.
    /// While recording, an engine request's cancel and its `Cancel` record happen under the
    /// recorder's order lock, as a frame's publishes and their records do, so the log lists a
    /// cancel that lost the race to a publish after that frame, as it took effect.
    fn cancel_and_release(self: &Arc<Self>, always: bool) -> bool {
        let _order = self.root_recorder().and_then(Recorder::order);
        let ended_it = self.cancel();
        if ended_it || always {
            self.release();
        }
        ended_it
    }

    /// Lets go of the asset at the cache, once: the cache then drops the load if no other
    /// request holds it.
    fn release(self: &Arc<Self>) {
        if self.mark_released() {
            self.record_input(|| LogRecord::Cancel { id: self.id.0 });
            self.post_release();
        }
    }

    /// Whether the request let go of its asset (its `Release` was posted to its cache).
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Marks the request released; true the first time only.
    pub(crate) fn mark_released(&self) -> bool {
        !self.released.swap(true, Ordering::AcqRel)
    }

    fn post_release(self: &Arc<Self>) {
        // A closed mailbox means the runtime shut down and the cache already let go.
        let _ = self.link.engine.post(EngineMsg::Release(Arc::clone(self)));
    }

    /// Microseconds from the request to its terminal state, once terminal.
    fn latency_us(&self) -> Option<u64> {
        self.state()
            .is_terminal()
            .then(|| u64::from(self.terminal_after_us.load(Ordering::Acquire)))
    }
}

impl<T: Send + Sync + 'static> Dependent for RequestCell<T> {
    fn fail_dependent(self: Arc<Self>, kind: &dyn Fn() -> ErrorKind) {
        let failed = self
            .fail_with(|| Arc::new(AssetLoadError { key: self.key(), attempt: 0, kind: kind() }));
        // Its own asset can never be handed out now, so the cache lets go of it as for a
        // cancel: a failed handle the engine keeps (to show the error) holds no load, nor a
        // value its own decode staged before the failure (the release takes it). Not an
        // engine input, so not recorded; the replay fails it the same way.
        if failed && self.mark_released() {
            self.post_release();
        }
    }
}

/// Requests published together (at one frame boundary, or from one message of the caches in
/// immediate mode): stamped with one time; whoever made the batch adds them to the `ready`
/// counter and notifies the runtime's progress signal once, after the last (see
/// [`PublishBatch::finish`]).
pub(crate) struct PublishBatch {
    now_us: u64,
}

impl PublishBatch {
    pub(crate) fn new(now_us: u64) -> Self {
        Self { now_us }
    }

    /// Counts the `published` requests of the batch and wakes those waiting for any progress.
    pub(crate) fn finish(self, probe: &Probe, published: u32) {
        if published > 0 {
            probe.counters.ready.fetch_add(u64::from(published), Ordering::Relaxed);
            wake_listeners(probe.any_progressed());
        }
    }
}

/// What a decoded request waiting for its frame boundary needs, without its value type.
pub(crate) trait Publishable: Send + Sync {
    /// Its current priority.
    fn priority(&self) -> Priority;
    /// Makes the value visible as part of `batch` (see [`PublishBatch`]); false if the
    /// request was cancelled meanwhile.
    fn publish_in(&self, batch: &PublishBatch) -> bool;
    /// Whether the request can still be published.
    fn is_waiting(&self) -> bool;
    /// Fails the request with `Shutdown` if it has not ended.
    fn fail_shutdown(&self);
}

impl<T: Send + Sync + 'static> Publishable for RequestCell<T> {
    fn priority(&self) -> Priority {
        RequestCell::priority(self)
    }

    fn publish_in(&self, batch: &PublishBatch) -> bool {
        RequestCell::publish_in(self, batch)
    }

    fn is_waiting(&self) -> bool {
        self.state() == LoadState::Decoded
    }

    fn fail_shutdown(&self) {
        self.fail_with(|| AssetLoadError::shared(self.key(), ErrorKind::Shutdown));
    }
}

/// The cache's reference to a request. Dropping it while the request is not terminal fails
/// the request with `Shutdown` (see the module invariants).
pub(crate) struct Ticket<T: Send + Sync + 'static> {
    cell: Arc<RequestCell<T>>,
}

impl<T: Send + Sync + 'static> Ticket<T> {
    pub(crate) fn cell(&self) -> &Arc<RequestCell<T>> {
        &self.cell
    }
}

impl<T: Send + Sync + 'static> Drop for Ticket<T> {
    fn drop(&mut self) {
        self.cell.fail_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cell's allocation is the reference counts (16 bytes) and the cell, rounded by the
    /// allocator to 16 bytes with 8 of its own: a cell of 72 bytes takes 96, of 80 takes 112.
    /// See the cell's `# Size`.
    #[test]
    fn a_pending_requests_cell_fits_a_96_byte_allocation() {
        let allocation = std::mem::size_of::<RequestCell<u8>>() + 16;
        let chunk = (allocation + 8).next_multiple_of(16);
        assert!(chunk <= 96, "a cell of {allocation} bytes takes a {chunk}-byte chunk");
    }
}
