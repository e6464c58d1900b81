//! The frame coordinator: decoded requests wait here and become visible at frame boundaries,
//! most urgent first, within a per-frame budget.
//!
//! The ready queue is shared between the coordinator actor (which fills it) and the engine
//! thread (which drains it in `begin_frame`). The engine thread never waits on a cross-thread
//! round trip: `begin_frame` takes the queue's lock once and publishes up to the budget. Nor
//! does the coordinator wait for the engine to stage, move or withdraw a request (only its
//! shutdown does): publishing runs the engine's own code (its tracing subscriber, the wakers
//! of its async waits) under that lock, and the coordinator shares the core thread with every
//! cache and the scheduler, so a change it cannot make at once is left for whoever takes the
//! queue next, which makes it first (`Deferred`). Likewise, while recording, an immediate
//! publish that finds the recorder's order lock held by an engine thread is left and tried
//! again shortly (`FrameShared::publish_now`).
//!
//! # Ordering
//!
//! Requests that waited `aging_frames_max` frames first (an aged one the budget has no room
//! for ends the frame); then most urgent first and, within one priority, oldest request first.
//! The order depends only on what is waiting, never on which worker finished first.
//!
//! # Invariants
//!
//! - Publishing is the cell's `Decoded → Ready` transition, so a request cancelled while it
//!   waited is skipped (and costs no count or byte budget); it never binds.
//! - In immediate mode the coordinator publishes as soon as requests arrive (in a replay of
//!   an immediate-mode log, when the log's `Published` record says: `held`).
//!
//! # Supervision
//!
//! Permanent child of the runtime's supervisor. The ready queue lives outside the actor, so a
//! restart loses nothing but the message whose handling panicked.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
use streamrt_messages::{EventKind, Priority, RequestId};
use streamrt_supervisor::{drain_turn, ChildLink, ExitReason, Mailbox, StopChild, Wake};

use crate::id_hash::IdSet;
use crate::lock::lock;
use crate::replay::{published_records, OrderHeld, Recorder};
use crate::request::{PublishBatch, Publishable, RequestCell};
use crate::tasks::GroupWork;
use crate::telemetry::Probe;

mod adaptive;
mod ready;

pub use adaptive::AdaptivePolicy;
pub use ready::FramePolicy;
pub(crate) use ready::RecordedPublishes;

use adaptive::AdaptiveBudget;
use ready::{Published, ReadySet, Waiting};

/// When decoded assets become visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// As soon as they decode: for programs without a frame loop.
    Immediate,
    /// At `begin_frame`, within the policy's budgets, most urgent first, with aging.
    Frames(FramePolicy),
}

/// A decoded request waiting to be published.
pub(crate) struct ReadyEntry {
    request: RequestId,
    priority: Priority,
    bytes: u64,
    cell: Arc<dyn Publishable>,
}

impl ReadyEntry {
    pub(crate) fn new<T: Send + Sync + 'static>(cell: &Arc<RequestCell<T>>, bytes: u64) -> Self {
        Self {
            request: cell.id(),
            priority: cell.priority(),
            bytes,
            cell: Arc::clone(cell) as Arc<dyn Publishable>,
        }
    }

    /// The same entry at its request's current priority, which may have changed since it was
    /// staged (while it waited for its dependencies, or on its way to the coordinator).
    pub(crate) fn refreshed(mut self) -> Self {
        self.priority = self.cell.priority();
        self
    }
}

impl Waiting for ReadyEntry {
    fn bytes(&self) -> u64 {
        self.bytes
    }

    type Batch = PublishBatch;

    fn publish(&self, batch: &PublishBatch) -> bool {
        self.cell.publish_in(batch)
    }

    fn is_waiting(&self) -> bool {
        self.cell.is_waiting()
    }
}

/// What the coordinator is told.
pub(crate) enum FrameMsg {
    /// Requests decoded (`ReadyToPublish`).
    Ready(Vec<ReadyEntry>),
    /// A waiting request's priority changed: its entry moves to the priority its request has
    /// when the change is made.
    Reprioritize(RequestId),
    /// Requests cancelled after they were staged: their entries leave the ready set now.
    Withdraw(Vec<RequestId>),
    /// Reply once everything before it is handled (a barrier).
    Ping(mpsc::Sender<()>),
    /// Panic (fault injection).
    Crash,
    /// Fail every waiting request with `Shutdown`; reply when done.
    Shutdown(mpsc::Sender<()>),
}

impl FrameMsg {
    /// Fails with `Shutdown` the requests of a `Ready` message no coordinator will stage (its
    /// mailbox closed, or it is shutting down); any other message is dropped.
    pub(crate) fn fail_undelivered(self) {
        if let Self::Ready(entries) = self {
            fail_shutdown(&entries);
        }
    }
}

/// Fails the entries' requests with `Shutdown`.
fn fail_shutdown(entries: &[ReadyEntry]) {
    entries.iter().for_each(|e| e.cell.fail_shutdown());
}

/// What one frame boundary did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameReport {
    /// The frame that began.
    pub frame: u64,
    /// Requests published at this boundary.
    pub published: u32,
    /// Bytes of the requests published.
    pub published_bytes: u64,
    /// Entries still in the ready set for a later frame: decoded requests waiting (those the
    /// coordinator staged during this boundary included, though they enter the set at its
    /// next taker), those cancelled since whose withdrawal the coordinator has not yet made
    /// (it waits for the next taker of the set when it came during this boundary), and, in a
    /// replay, those held for their recorded frame.
    pub waiting: usize,
    /// The count budget this boundary published under (it moves with an adaptive policy).
    pub budget: u32,
    /// Time since the previous boundary, by the runtime's clock (0 at the first).
    pub frame_us: u64,
}

/// What the engine thread keeps between boundaries: when the last frame began, and the
/// adaptive budget.
struct Pacing {
    last_begin_us: Option<u64>,
    /// What the previous boundary published.
    last_published: u32,
    adaptive: Option<AdaptiveBudget>,
}

impl Pacing {
    fn new(mode: PublishMode) -> Self {
        let adaptive = match mode {
            PublishMode::Frames(FramePolicy { adaptive: Some(a), publish_count_max, .. }) => {
                Some(AdaptiveBudget::new(a, publish_count_max))
            }
            _ => None,
        };
        Self { last_begin_us: None, last_published: 0, adaptive }
    }

    /// Takes the time of a boundary; returns the frame time that ended and the count budget
    /// for the frame that begins.
    fn begin(&mut self, now_us: u64, configured: u32) -> (u64, u32) {
        let frame_us = self.last_begin_us.map_or(0, |last| now_us.saturating_sub(last));
        let first = self.last_begin_us.is_none();
        self.last_begin_us = Some(now_us);
        let budget = match &mut self.adaptive {
            Some(a) if !first => a.observe(frame_us, self.last_published),
            Some(a) => a.budget(),
            None => configured,
        };
        (frame_us, budget)
    }
}

/// Which waiting requests a frame publishes.
pub(crate) enum FrameChoice<'a> {
    /// The most urgent first within the budget; each one published is pushed to the vector
    /// when one is given (a recording session).
    Budget(Option<&'a mut Vec<RequestId>>),
    /// Those of these waiting, in their order, whatever the budget, leaving the others
    /// listed: a replay publishing what its recording's frames published. None publishes
    /// nothing (an immediate-mode replay's frames, as its recording's).
    These(Option<&'a mut RecordedPublishes>),
}

/// A change to the ready set the coordinator could not make at once, as an engine thread held
/// the set to publish (see the module docs).
enum Deferred {
    /// Entries to stage, and the frame they arrived in: staged later, by whoever takes the
    /// set next (a boundary, or the coordinator's next change), they still age from when they
    /// came.
    Stage(Vec<ReadyEntry>, u64),
    /// Read from the request when made, so that one is as good as many.
    Reprioritize(RequestId),
    Withdraw(Vec<RequestId>),
}

/// The changes left for the ready set, with the requests whose reprioritisation is among them.
#[derive(Default)]
struct DeferredChanges {
    changes: Vec<Deferred>,
    reprioritized: IdSet<RequestId>,
}

impl DeferredChanges {
    /// Leaves `change`, unless it is a reprioritisation of a request one left already reads.
    ///
    /// A later stage or withdrawal of that request does not need it again: a stage reads its
    /// request's priority as it is made.
    fn push(&mut self, change: Deferred) {
        if let Deferred::Reprioritize(request) = change {
            if !self.reprioritized.insert(request) {
                return;
            }
        }
        self.changes.push(change);
    }
}

/// The ready queue and publish policy, shared by the coordinator and the engine thread.
pub(crate) struct FrameShared {
    ready: Mutex<ReadySet<ReadyEntry>>,
    /// Changes the coordinator left while `ready` was held, in the order it made them; made
    /// by whoever takes `ready` next, before anything else. At most what the coordinator
    /// handles during one publish: its stages and withdrawals are bounded by the outstanding
    /// requests (`requests_outstanding_max`), each staged and withdrawn once, and its
    /// reprioritisations are merged, one per request, however often an engine thread moves a
    /// request while a publish the engine's own code holds up (a waker or subscriber that
    /// blocks) keeps the set.
    deferred: Mutex<DeferredChanges>,
    pacing: Mutex<Pacing>,
    /// Task groups made during the current frame, cancelled at its end.
    groups: Mutex<Vec<Weak<dyn GroupWork>>>,
    mode: PublishMode,
    /// In immediate mode, whether decoded requests wait here, as in frames mode, for a replay
    /// to publish what its recording's publishes did (`publish_held`): a replay stages a
    /// request as soon as its decode is fed, which may be before the engine's recorded cancel
    /// of it. Logs from version 4 record immediate publishes.
    held: bool,
    /// Immediate publishes left, in the order they came, while another thread held the
    /// recorder's order lock: the coordinator does not wait for the engine's code that may run
    /// under it (a dependency walk's source lookups, a cancel's wakers). At most the
    /// outstanding requests, each published once.
    unpublished: Mutex<Vec<ReadyEntry>>,
    probe: Arc<Probe>,
}

impl FrameShared {
    pub(crate) fn new(mode: PublishMode, held: bool, probe: Arc<Probe>) -> Self {
        Self {
            ready: Mutex::new(ReadySet::default()),
            deferred: Mutex::default(),
            pacing: Mutex::new(Pacing::new(mode)),
            groups: Mutex::new(Vec::new()),
            mode,
            held,
            unpublished: Mutex::default(),
            probe,
        }
    }

    /// Publishes those of `recorded` waiting, in their order, outside any frame, and leaves
    /// the others listed (see `held`).
    pub(crate) fn publish_held(&self, recorded: &mut RecordedPublishes) {
        let batch = PublishBatch::new(self.probe.now_us());
        let done = self.ready().publish_these(recorded, &batch);
        batch.finish(&self.probe, done.count);
    }

    /// The ready set, with the changes left for it made.
    fn ready(&self) -> ReadyGuard<'_> {
        // Publishing cannot panic while holding the lock; a poisoned queue is still consistent.
        self.with_deferred_made(lock(&self.ready))
    }

    /// `set`, taken, with the changes left for it made.
    fn with_deferred_made<'a>(
        &'a self,
        mut set: MutexGuard<'a, ReadySet<ReadyEntry>>,
    ) -> ReadyGuard<'a> {
        let withdrawn = self.make_deferred(&mut set);
        ReadyGuard { set, _withdrawn: withdrawn }
    }

    /// The entries in the stages left for the ready set.
    fn deferred_stages(&self) -> usize {
        let deferred = lock(&self.deferred);
        deferred
            .changes
            .iter()
            .map(|change| if let Deferred::Stage(e, _) = change { e.len() } else { 0 })
            .sum()
    }

    /// Makes the changes left for `ready`, in order; the entries they withdrew.
    fn make_deferred(&self, ready: &mut ReadySet<ReadyEntry>) -> Vec<ReadyEntry> {
        let deferred = std::mem::take(&mut *lock(&self.deferred));
        deferred.changes.into_iter().flat_map(|change| self.make(ready, change)).collect()
    }

    /// Makes `change` to `ready`; the entries it withdrew.
    fn make(&self, ready: &mut ReadySet<ReadyEntry>, change: Deferred) -> Vec<ReadyEntry> {
        match change {
            Deferred::Stage(entries, frame) => {
                for entry in entries.into_iter().filter(|e| e.cell.is_waiting()) {
                    // At the request's priority now: a reprioritisation posted after the entry
                    // was staged, but handled before it arrived here, found nothing to move.
                    let entry = entry.refreshed();
                    let (request, priority) = (entry.request, entry.priority);
                    ready.push(request, priority, entry, frame);
                }
                Vec::new()
            }
            Deferred::Reprioritize(request) => {
                if let Some(priority) = ready.get(request).map(|entry| entry.cell.priority()) {
                    ready.reprioritize(request, priority);
                }
                Vec::new()
            }
            Deferred::Withdraw(requests) => {
                requests.iter().filter_map(|&r| ready.withdraw(r)).collect()
            }
        }
    }

    /// The coordinator's change: made now if the ready set is free, else left for whoever
    /// takes it next (see the module docs).
    fn change(&self, change: Deferred) {
        let locked = self.ready.try_lock();
        // A stage is stamped with the frame read once the lock is taken or found held, not
        // before: `begin_frame` advances the frame, then takes the lock, so an entry arriving
        // as a boundary begins, which that boundary sees or finds deferred, belongs to its
        // frame either way.
        let change = match change {
            Deferred::Stage(entries, _) => Deferred::Stage(entries, self.probe.frame()),
            other => other,
        };
        let mut ready = match locked {
            Ok(ready) => ready,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return lock(&self.deferred).push(change),
        };
        let mut withdrawn = self.make_deferred(&mut ready);
        withdrawn.extend(self.make(&mut ready, change));
        // Dropped after the lock is let go: an entry may hold the last reference to its
        // request's cell, and dropping that may drop what the engine's code left in it.
        drop(ready);
        drop(withdrawn);
    }

    /// Starts a frame: publishes waiting requests as `choice` says (most urgent first, within
    /// the budget, unless a replay imposes its recording's).
    pub(crate) fn begin_frame(&self, choice: FrameChoice<'_>) -> FrameReport {
        // Boundaries begun at once from two threads take their frames and times in the order
        // they publish in: one read out of order made a frame 0 µs long for the adaptive budget.
        let mut pacing = lock(&self.pacing);
        let frame = self.probe.next_frame();
        let mut policy = match self.mode {
            PublishMode::Immediate => FramePolicy::count(0),
            PublishMode::Frames(policy) => policy,
        };
        let now_us = self.probe.now_us();
        let (frame_us, budget) = pacing.begin(now_us, policy.publish_count_max);
        policy.publish_count_max = budget;
        let batch = PublishBatch::new(now_us);
        let set = lock(&self.ready);
        // Timed by the runtime's clock from the lock taken, the changes left for the set
        // included (they are the engine thread's work too): waiting for the coordinator to let
        // go of it is not publishing, and counted against `publish_time_us_max` it cut frames
        // short.
        let started_us = self.probe.now_us();
        let mut ready = self.with_deferred_made(set);
        let mut elapsed = || self.probe.now_us().saturating_sub(started_us);
        let done = match choice {
            FrameChoice::Budget(record) => {
                ready.publish_frame(frame, &policy, &batch, &mut elapsed, record)
            }
            FrameChoice::These(Some(recorded)) => ready.publish_these(recorded, &batch),
            FrameChoice::These(None) => Published::default(),
        };
        let (published, published_bytes) = (done.count, done.bytes);
        pacing.last_published = published;
        // Stages the coordinator left during this boundary wait too: read under the set's lock,
        // which keeps them from moving into it meanwhile.
        let waiting = ready.len() + self.deferred_stages();
        drop(ready);
        batch.finish(&self.probe, published);
        let event = self.probe.event(EventKind::FrameBegin { published, budget });
        self.probe.emit(event.with_bytes(published_bytes));
        FrameReport { frame, published, published_bytes, waiting, budget, frame_us }
    }

    /// Publishes `entries` at once (immediate mode), in one batch as at a frame boundary: one
    /// clock read, one count, one wake for every request the caches sent together. While
    /// recording, the publishes and their record happen under the order lock, as the engine's
    /// cancels do: a cancel that lost the race to a publish is recorded after it, and a
    /// request a cancel reached first is neither published nor recorded as such. While another
    /// thread holds that lock they are left, behind those left before, for
    /// [`FrameShared::publish_left`]. Whether any are left.
    fn publish_now(&self, mut entries: Vec<ReadyEntry>) -> bool {
        let recorder = self.probe.recorder();
        let order = match recorder.map(Recorder::try_order) {
            Some(Err(OrderHeld)) => {
                lock(&self.unpublished).append(&mut entries);
                return true;
            }
            Some(Ok(order)) => {
                let mut unpublished = std::mem::take(&mut *lock(&self.unpublished));
                if !unpublished.is_empty() {
                    unpublished.append(&mut entries);
                    entries = unpublished;
                }
                order
            }
            None => None,
        };
        let batch = PublishBatch::new(self.probe.now_us());
        let published = entries.iter().filter(|e| e.cell.publish_in(&batch)).map(|e| e.request);
        let count = match recorder {
            None => published.count(),
            Some(recorder) => {
                let published: Vec<RequestId> = published.collect();
                if !published.is_empty() {
                    recorder.record_all(&published_records(&published));
                }
                published.len()
            }
        };
        drop(order);
        batch.finish(&self.probe, u32::try_from(count).unwrap_or(u32::MAX));
        false
    }

    /// Publishes the immediate publishes left while the order lock was held, if it is free
    /// now. Whether any are still left.
    fn publish_left(&self) -> bool {
        if lock(&self.unpublished).is_empty() {
            return false;
        }
        self.publish_now(Vec::new())
    }

    /// Ends a frame: cancels the task groups made during it.
    pub(crate) fn end_frame(&self) {
        let groups = std::mem::take(&mut *lock(&self.groups));
        groups.iter().filter_map(Weak::upgrade).for_each(|g| g.cancel());
        self.probe.emit(self.probe.event(EventKind::FrameEnd));
    }

    /// Ties a task group to the current frame.
    pub(crate) fn adopt_group(&self, group: &Arc<dyn GroupWork>) {
        let mut groups = lock(&self.groups);
        // Groups already waited for and dropped leave dead entries; shed them as we go.
        groups.retain(|g| g.strong_count() > 0);
        groups.push(Arc::downgrade(group));
    }

    /// Publishes or stages `entries` (immediate publishes may be left for later: see
    /// [`FrameShared::publish_now`]).
    fn accept(&self, entries: Vec<ReadyEntry>) {
        if self.mode == PublishMode::Immediate && !self.held {
            self.publish_now(entries);
            return;
        }
        // Stamped with its frame by `change`.
        self.change(Deferred::Stage(entries, self.probe.frame()));
    }

    fn fail_all(&self) {
        // Failed with the lock released: each failure runs waiters' wakers, telemetry and
        // dependency gates, which must not hold up an engine thread's `begin_frame`.
        let drained = self.ready().drain();
        fail_shutdown(&drained);
        let unpublished = std::mem::take(&mut *lock(&self.unpublished));
        fail_shutdown(&unpublished);
    }
}

/// See the module docs.
pub(crate) struct FrameCoordinator {
    mailbox: Mailbox<FrameMsg>,
    shared: Arc<FrameShared>,
    drain_batch_max: usize,
    stopped: bool,
    link: ChildLink,
    /// Whether a retry of the immediate publishes left is set (see `retry_left`).
    retry_armed: bool,
}

impl FrameCoordinator {
    pub(crate) fn new(
        mailbox: Mailbox<FrameMsg>,
        shared: Arc<FrameShared>,
        drain_batch_max: usize,
        link: ChildLink,
    ) -> Self {
        Self { mailbox, shared, drain_batch_max, stopped: false, link, retry_armed: false }
    }

    /// Tries the immediate publishes left again every `PUBLISH_RETRY` while some are left and
    /// no retry is set yet.
    fn retry_left(&mut self, ctx: &mut Context<Self>) {
        const PUBLISH_RETRY: Duration = Duration::from_millis(1);
        if self.retry_armed || self.stopped || lock(&self.shared.unpublished).is_empty() {
            return;
        }
        self.retry_armed = true;
        ctx.run_later(PUBLISH_RETRY, |actor, ctx| {
            actor.retry_armed = false;
            if !actor.stopped && actor.shared.publish_left() {
                actor.retry_left(ctx);
            }
        });
    }

    fn handle_msg(&mut self, msg: FrameMsg) {
        match msg {
            FrameMsg::Ready(entries) if self.stopped => fail_shutdown(&entries),
            FrameMsg::Ready(entries) => self.shared.accept(entries),
            FrameMsg::Reprioritize(request) => {
                self.shared.change(Deferred::Reprioritize(request));
            }
            FrameMsg::Withdraw(requests) => self.shared.change(Deferred::Withdraw(requests)),
            FrameMsg::Ping(ack) => {
                let _ = ack.send(());
            }
            FrameMsg::Crash => panic!("injected crash of the frame coordinator"),
            FrameMsg::Shutdown(ack) => {
                self.mailbox.close().into_iter().for_each(FrameMsg::fail_undelivered);
                self.shared.fail_all();
                self.stopped = true;
                let _ = ack.send(());
            }
        }
    }
}

impl Actor for FrameCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
        // Once attached: whoever sees the event can ask the successor.
        if self.link.incarnation() > 1 {
            self.shared.probe.restarted("frame");
        }
        // A predecessor's retry ended with it.
        self.retry_left(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.link.exit(ExitReason::Normal);
    }
}

impl Handler<StopChild> for FrameCoordinator {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Wake> for FrameCoordinator {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let (mailbox, link, max) = (self.mailbox.clone(), self.link.clone(), self.drain_batch_max);
        drain_turn(self, ctx, &mailbox, &link, max, Self::handle_msg, Self::retry_left);
    }
}

/// The ready set, locked, with the changes left for it made. The entries those withdrew are
/// dropped once the lock is let go (the fields drop in order), as [`FrameShared::change`]
/// drops its own.
struct ReadyGuard<'a> {
    set: MutexGuard<'a, ReadySet<ReadyEntry>>,
    /// Held only to be dropped after `set`.
    _withdrawn: Vec<ReadyEntry>,
}

impl std::ops::Deref for ReadyGuard<'_> {
    type Target = ReadySet<ReadyEntry>;

    fn deref(&self) -> &Self::Target {
        &self.set
    }
}

impl std::ops::DerefMut for ReadyGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrt_supervisor::MonotonicClock;

    #[test]
    fn reprioritisations_left_while_a_publish_holds_the_set_are_merged_per_request() {
        let probe = Arc::new(Probe::new(Arc::new(MonotonicClock::new()), 16, false));
        let shared = FrameShared::new(PublishMode::Frames(FramePolicy::count(1)), false, probe);
        let held = lock(&shared.ready);
        for round in 0..10_000 {
            shared.change(Deferred::Reprioritize(RequestId(round % 2)));
        }
        shared.change(Deferred::Withdraw(vec![RequestId(0)]));
        shared.change(Deferred::Reprioritize(RequestId(0)));
        let left: Vec<_> = lock(&shared.deferred)
            .changes
            .iter()
            .map(|change| match change {
                Deferred::Reprioritize(request) => format!("r{}", request.0),
                Deferred::Withdraw(requests) => format!("w{}", requests.len()),
                Deferred::Stage(entries, _) => format!("s{}", entries.len()),
            })
            .collect();
        assert_eq!(left, ["r0", "r1", "w1"], "one per request, whatever came between");
        drop(held);
    }
}
