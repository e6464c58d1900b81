//! The cache actor, one per asset type: the slot table, the requests holding each slot, and the
//! cancellation race.
//!
//! # The cancellation race
//!
//! Each load has a generation, unique in the runtime, carried by its job. When the last request
//! holding a slot that is not resident lets go, the cache marks the load cancelled in the type's
//! `CancelTable` (which the route shares with the workers, and which outlives a restart), drops
//! the slot (so its generation is no longer current) and, if still queued, removes it from the
//! scheduler. A `Decoded` whose generation is no longer current is dropped and counted as
//! `cancelled_after_decode`. Requests still holding a slot keep its load.
//!
//! # Ordering
//!
//! A request attached to a resident slot is staged at once; requests are handed to the frame
//! coordinator in the order their slots decode.
//!
//! The scheduler's dispatch orders arrive in a lane of their own, drained before the mailbox at
//! every wake, so a dispatched load reaches the IO pool without waiting behind the engine's
//! requests. The engine's new requests and its handles' commands (`Release`, `Reprioritize`)
//! have a lane of their own too, one FIFO (see `inbox`), drained in batches after the orders
//! and before the mailbox; so a request's `Release` or `Reprioritize` comes after its load (see
//! `inbox` for the one exception, which changes nothing). A `Ping` or a `Stats` query takes in
//! the requests waiting in their lane before it replies.
//!
//! Each cache sends its orders on in the scheduler's order; across asset types they
//! reach the IO pool in the order the caches wake, which within one dispatch round may put a
//! less urgent load of one type before a more urgent one of another (the IO workers take the
//! most urgent staged load first, so this matters only to a worker already idle, and to a
//! deterministic replay, whose stepper reads in arrival order).
//!
//! # Backpressure
//!
//! Engine commands enter through the runtime's admission limit (`requests_outstanding_max`),
//! which counts requests not yet ended: a request whose handle is dropped before its cache
//! took its `Load` ended at once, and its `Load` and `Release` wait in the engine's lane
//! uncounted. So an engine that makes and drops requests while the cache takes nothing in
//! (during its restart's backoff) grows the lane at that rate, 16 bytes a message, until the
//! cache drains it. Worker replies and the scheduler's dispatch orders are bounded by its
//! credits.
//!
//! # Memory budget
//!
//! A decoded asset stays in its holders' cells (each is staged with it; its slot keeps its size)
//! while requests hold it. When the last one lets go, the value moves to the shared
//! [`Residency`] pool, where the next request for the key finds it (a hit) unless the budget
//! evicted it (an `evicted` event). See `resident` for the bounds.
//!
//!
//! # Failures, retries and quarantine
//!
//! A transient failure is retried with backoff under a fresh generation; a key whose decoder
//! keeps panicking is quarantined; other failures fail every holder (see `failures`).
//!
//! # Supervision
//!
//! Permanent child of the runtime's supervisor. The slot table is the truth about requests:
//! a restarted scheduler is rebuilt from it (`Resubmit`). When the cache itself fails, it
//! salvages its slots before it stops: the tickets of every unfinished request, which its next
//! incarnation admits again as new loads, and every decoded asset's slot whole, with all its
//! holders (ready requests included) and its size, which the next incarnation puts back as it
//! was, still counted in the memory budget. A restart loses quarantine records, loads in
//! flight (each marked cancelled in the table before it empties; their late replies are
//! stale) and retries' state (a load waiting out a backoff is loaded again at once, from its
//! first attempt; the supervisor's intensity bounds how often), never a request nor a
//! decoded asset. Parked values live in the shared budget,
//! outside the actor, and survive it. An incarnation that panics while it takes back what
//! the failed one salvaged is stopped and restarted the same way: what it took back is
//! salvaged again with what it had not, and only the asset or request it was taking back
//! when it panicked is lost (its requests fail), as a message whose handler panics is.

mod abandoned;
mod budget;
mod failures;
mod holders;
mod inbox;
mod lifecycle;
mod priority;
mod recording;
mod route;
mod slots;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
use streamrt_messages::{
    AssetKey, AssetLoadError, AssetPath, AssetTypeName, ErrorKind, EventKind, Generation,
    LoadState, Priority, RequestId,
};
use streamrt_supervisor::{
    drain_lane, guarded, wake_after_others, ChildLink, Drained, ExitReason, Mailbox, StopChild,
    Wake,
};

use crate::frame::{FrameMsg, ReadyEntry};
use crate::key_hash::PathMap;
use crate::replay::{CancelNotes, VirtualTimers};
use crate::request::{RequestCell, Ticket};
use crate::resident::Residency;
use crate::runtime::RetryPolicy;
use crate::scheduler::{Admission, LoadRef, QueuedLoad, ReadCredit, SchedulerMsg};
use crate::source::{LoadHints, Locator};
use crate::telemetry::{Counters, Probe};
use crate::work::{DispatchOrder, IoPort, Job, JobEnd, JobGuard, JobRoute, ReadJob};

use failures::Due;
pub(crate) use inbox::{CacheInbox, EngineMsg};
pub(crate) use lifecycle::{lock as salvage_lock, Salvaged};
pub(crate) use route::TypeRoute;
use slots::{Detached, Holder, Phase, Slot, SlotTable};

/// What a cache is told.
pub(crate) enum CacheMsg<T: Send + Sync + 'static> {
    /// The scheduler refused a load (`QueueFull`).
    Refused(LoadRef, ErrorKind),
    /// A retry's backoff is over (a deterministic runtime's virtual timer).
    RetryDue(LoadRef),
    /// A load decoded (`AssetDecoded`): its value and resident size.
    Decoded(Job, Arc<T>, u64),
    /// A load ended without a value.
    Ended(Job, JobEnd),
    /// A stats query (`GetCacheStats`).
    Stats(mpsc::Sender<CacheStats>),
    /// Flush what was produced so far, then reply (a barrier for `Runtime::sync`).
    Ping(mpsc::Sender<()>),
    /// Re-enqueue queued loads and report loads in flight (to a restarted scheduler).
    Resubmit,
    /// Panic (fault injection).
    Crash,
    /// Fail every request with `Shutdown` and close the inbox; reply when done (the actor
    /// itself ends with its arbiter, at the system's stop).
    Shutdown(mpsc::Sender<()>),
}

/// One cache's figures (`GetCacheStats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The asset type.
    pub asset_type: String,
    /// Assets queued, loading, held or parked.
    pub entries: usize,
    /// Keys quarantined after repeated decoder panics.
    pub quarantined: usize,
    /// Assets decoded and held by requests.
    pub resident: usize,
    /// Assets decoded and no longer held, kept for reuse until the budget needs their bytes.
    pub parked: usize,
    /// Bytes of held and parked assets.
    pub resident_bytes: u64,
    /// Requests attached to slots.
    pub holders: usize,
    /// Requests served from memory (a held or parked asset).
    pub hits: u64,
    /// Loads started for requests (a request whose load a cache's restart starts again counts
    /// again).
    pub misses: u64,
    /// Parked assets dropped for the memory budget.
    pub evictions: u64,
}

impl<T: Send + Sync + 'static> Holder for Ticket<T> {
    fn request(&self) -> RequestId {
        self.cell().id()
    }

    fn path(&self) -> &AssetPath {
        self.cell().path()
    }
}

/// `at`'s load of `generation` in the type `ty`, as the scheduler names it.
/// The priorities of `slot`'s holders that have not ended, in the holders' order.
fn live_priorities<T: Send + Sync + 'static>(
    slot: &Slot<Ticket<T>>,
) -> impl Iterator<Item = Priority> + '_ {
    let live = slot.holders.iter().filter(|t| !t.cell().state().is_terminal());
    live.map(|t| t.cell().priority())
}

fn load_ref(ty: u16, at: usize, generation: Generation) -> LoadRef {
    LoadRef { ty, slot: slots::index32(at), generation }
}

/// Stages `cell` with `value` and queues it for publishing, unless it ended meanwhile or waits
/// for its dependencies (their gate queues it then).
fn stage<T: Send + Sync + 'static>(
    cell: &Arc<RequestCell<T>>,
    value: Arc<T>,
    bytes: u64,
    to_frame: &mut Vec<ReadyEntry>,
) {
    if cell.stage(value) {
        queue_ready(cell, bytes, to_frame);
    }
}

/// Queues the staged `cell` for publishing, unless it waits for its dependencies (their gate
/// queues it then).
fn queue_ready<T: Send + Sync + 'static>(
    cell: &Arc<RequestCell<T>>,
    bytes: u64,
    to_frame: &mut Vec<ReadyEntry>,
) {
    to_frame.extend(cell.when_dependencies_ready(ReadyEntry::new(cell, bytes)));
}

/// Where a cache sends what it produces.
#[derive(Clone)]
pub(crate) struct CacheLinks {
    pub(crate) scheduler: Mailbox<SchedulerMsg>,
    /// Where dispatched loads go.
    pub(crate) io: IoPort,
    pub(crate) frame: Mailbox<FrameMsg>,
    pub(crate) probe: Arc<Probe>,
    /// The runtime-wide generation counter.
    pub(crate) generations: Arc<AtomicU64>,
    pub(crate) drain_batch_max: usize,
    /// The runtime's default retry policy, for types registered without one.
    pub(crate) retry: RetryPolicy,
    /// The memory budget every cache shares.
    pub(crate) residency: Arc<Mutex<Residency>>,
    /// A deterministic runtime's retry delays, on its virtual clock instead of a timer.
    pub(crate) timers: Option<Arc<VirtualTimers>>,
    /// A deterministic runtime's notes of the slots whose loads were cancelled, for its stepper.
    pub(crate) cancel_notes: Option<Arc<CancelNotes>>,
    /// Tells the source which located entries loads wait for (want at a load's start, unwant
    /// when it decodes, fails or is cancelled), so a pack's windows skip the cancelled ones.
    pub(crate) hints: Arc<LoadHints>,
}

/// What a failed cache hands to its next incarnation (see `lifecycle`).
pub(crate) type Salvage<T> = Arc<Mutex<Salvaged<T>>>;

/// See the module docs.
pub(crate) struct Cache<T: Send + Sync + 'static> {
    asset_type: AssetTypeName,
    /// This type's index in the registry: in the memory budget and in the scheduler's routes.
    type_index: u16,
    inbox: CacheInbox<T>,
    route: Arc<dyn JobRoute>,
    links: CacheLinks,
    policy: RetryPolicy,
    link: ChildLink,
    salvage: Salvage<T>,
    table: SlotTable<Ticket<T>>,
    /// Decoder panics per key since its last decode that worked.
    panics: PathMap<u32>,
    quarantined: PathMap<u32>,
    to_scheduler: Vec<SchedulerMsg>,
    /// Loads dispatched this turn, sent to the IO pool together once the dispatch orders are
    /// drained (see [`IoPort::submit_all`]).
    to_io: Vec<ReadJob>,
    to_frame: Vec<ReadyEntry>,
    /// Requests cancelled after they were staged, for the ready set to let go of (one message
    /// a turn).
    to_withdraw: Vec<RequestId>,
    /// Slots a holder let go of, whose load's priority is settled once the turn is over: a
    /// level's unload lets go of a shared dependency's holders one message each, and the rest
    /// of them, cancelled on the engine's thread already, are all read past at each settle.
    /// Once a turn, a settle reads them once per turn, not once per holder.
    to_settle: Vec<usize>,
    /// Retries to start once their backoff (ms) is over.
    retry_later: Vec<(u64, LoadRef)>,
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Everything a cache is made of; several incarnations are made from the same parts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        (asset_type, type_index): (AssetTypeName, usize),
        inbox: CacheInbox<T>,
        route: Arc<dyn JobRoute>,
        links: CacheLinks,
        policy: RetryPolicy,
        link: ChildLink,
        salvage: Salvage<T>,
    ) -> Self {
        Self {
            asset_type,
            type_index: u16::try_from(type_index).expect("fewer than 65,536 asset types"),
            inbox,
            route,
            links,
            policy,
            link,
            salvage,
            table: SlotTable::default(),
            panics: PathMap::default(),
            quarantined: PathMap::default(),
            to_scheduler: Vec::new(),
            to_io: Vec::new(),
            to_frame: Vec::new(),
            to_withdraw: Vec::new(),
            to_settle: Vec::new(),
            retry_later: Vec::new(),
        }
    }

    fn engine_msg(&mut self, msg: EngineMsg<T>) {
        match msg {
            EngineMsg::Load(ticket, locator) => self.load(ticket, locator, Admission::New),
            EngineMsg::Release(cell) => self.release(&cell),
            EngineMsg::Reprioritize(cell) => {
                let priority = cell.take_priority_change();
                self.reprioritize(cell.id(), cell.path(), priority);
            }
        }
    }

    fn handle_msg(&mut self, msg: CacheMsg<T>) {
        match msg {
            CacheMsg::Refused(load, kind) => self.refused(load, kind),
            // A deterministic runtime's timer (a replay's, which records nothing).
            CacheMsg::RetryDue(load) => self.retry_due(load, Due::Timed),
            CacheMsg::Decoded(job, value, size) => {
                let recorded = self.record_decoded(&job, size);
                self.decoded(&job, value, size, recorded);
            }
            CacheMsg::Ended(job, end) => {
                // Recorded as it takes effect, as a decode's outcome is: not under the
                // recorder's order lock, which an engine thread holds while its request walks
                // the source (a core thread waiting on it would hold every load up).
                let recorded = self.record_end(&job, &end);
                self.ended(job.slot(), job.generation, end, recorded);
            }
            CacheMsg::Stats(reply) => {
                // As a `Ping`: the figures count the requests and releases made before the
                // query.
                self.take_engine();
                let _ = reply.send(self.stats());
            }
            CacheMsg::Ping(ack) => {
                self.take_engine();
                self.flush();
                let _ = ack.send(());
            }
            CacheMsg::Resubmit => self.resubmit(),
            CacheMsg::Crash => panic!("injected crash of the {} cache", self.asset_type),
            CacheMsg::Shutdown(ack) => {
                self.shutdown();
                let _ = ack.send(());
            }
        }
    }

    fn emit(&self, kind: EventKind, origin: RequestId, path: &AssetPath) {
        let probe = &self.links.probe;
        probe.emit_with(|| probe.event(kind).with_request(origin).with_key(self.key_of(path)));
    }

    /// The key of this cache's `path`.
    fn key_of(&self, path: &AssetPath) -> AssetKey {
        AssetKey::from_parts(self.asset_type.clone(), path.clone())
    }

    fn load(&mut self, ticket: Ticket<T>, locator: Option<Locator>, admission: Admission) {
        let cell = Arc::clone(ticket.cell());
        if cell.state().is_terminal() {
            // Cancelled before the cache saw it: start nothing, but tell the source that the
            // entry was asked for and let go, so that no window reads it ahead for nobody.
            self.links.hints.want(locator);
            self.links.hints.unwant(locator);
            return;
        }
        let priority = cell.priority();
        let probe = &self.links.probe;
        probe.emit_with(|| {
            probe
                .event(EventKind::Queued)
                .with_request(cell.id())
                .with_key(cell.key())
                .with_priority(priority)
        });
        if let Some(&panics) = self.quarantined.get(cell.path()) {
            let kind = ErrorKind::Quarantined { panics };
            cell.fail(&Arc::new(AssetLoadError { key: cell.key(), attempt: 0, kind }));
            return;
        }
        // A hit is a resident slot, here or taken back from the pool (`unpark` counts those).
        let Some(at) = self.table.lookup(cell.path()) else {
            return match self.unpark(cell.path()) {
                Some((value, bytes)) => {
                    // Held by a slot before the request is staged, as a decoded value is
                    // counted first: should staging panic, the salvage finds the bytes.
                    let generation = self.next_generation();
                    self.table.insert_resident(ticket, generation, bytes, locator);
                    stage(&cell, value, bytes, &mut self.to_frame);
                }
                None => self.start_load(ticket, priority, locator, admission),
            };
        };
        if self.table.get(at).is_some_and(|s| s.phase == Phase::Resident) {
            self.residency().hit(self.budget_index());
        }
        let slot = self.table.get_mut(at).expect("indexed slot exists");
        match slot.phase {
            Phase::Resident => {
                let value = slot.holders.first().and_then(|h| h.cell().staged_value());
                let value = value.expect("a resident slot's holders were staged with its value");
                stage(&cell, value, slot.bytes, &mut self.to_frame);
            }
            Phase::Loading => {
                cell.advance(LoadState::Pending, LoadState::Loading);
                self.raise_in_flight(at, priority);
            }
            // Waiting out a backoff: the retry is queued with the slot's priority then.
            Phase::Backoff => slot.priority = slot.priority.min(priority),
            Phase::Queued => {
                if priority < slot.priority {
                    slot.priority = priority;
                    let load = load_ref(self.type_index, at, slot.generation);
                    self.to_scheduler.push(SchedulerMsg::Reprioritize(load, priority));
                }
            }
        }
        self.table.attach(at, ticket);
    }

    fn next_generation(&self) -> Generation {
        Generation(self.links.generations.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// `at`'s current load, as the scheduler queues it.
    fn queued(&self, at: usize, admission: Admission) -> QueuedLoad {
        let slot = self.table.get(at).expect("live slot");
        QueuedLoad {
            load: load_ref(self.type_index, at, slot.generation),
            priority: slot.priority,
            declared_bytes: slot.bytes,
            admission,
        }
    }

    fn job(&self, at: usize) -> Job {
        let slot = self.table.get(at).expect("live slot");
        Job {
            slot: slots::index32(at),
            generation: slot.generation,
            key: self.key_of(slot.path()),
            priority: slot.priority,
            locator: slot.locator,
            origin: slot.origin(),
            route: Arc::clone(&self.route),
        }
    }

    fn start_load(
        &mut self,
        ticket: Ticket<T>,
        priority: Priority,
        locator: Option<Locator>,
        admission: Admission,
    ) {
        let generation = self.next_generation();
        let declared = ticket.cell().declared_bytes();
        let at = self.table.start_load(ticket, generation, priority, declared, locator);
        self.links.hints.want(locator);
        self.to_scheduler.push(SchedulerMsg::Enqueue(self.queued(at, admission)));
    }

    fn release(&mut self, cell: &RequestCell<T>) {
        let (request, path) = (cell.id(), cell.path());
        let detached = self.table.detach(path, request);
        if detached.is_some() {
            cell.cancel();
        }
        // Taken from a cancelled or failed request (`request/staged.rs`), so that its handle,
        // which the engine may keep, holds no asset the budget lets go of.
        let value = cell.released_value();
        // Cancelled after it was staged (whether a slot still holds it or not): its ready
        // entry would wait, holding the value, until a frame's budget reached it.
        if cell.state() == LoadState::Cancelled && cell.is_staged() {
            self.to_withdraw.push(request);
        }
        let Some(Detached { slot: at, holder: _holder, emptied }) = detached else { return };
        let Some(slot) = emptied else {
            // The others keep the load, at the most urgent priority among them now: the one
            // that let go may have been the one that raised it.
            return self.to_settle.push(at);
        };
        if slot.phase == Phase::Resident {
            // The last holder let go of a decoded asset: keep it for reuse, within the budget.
            let value = value.expect("a resident slot's holders were staged with its value");
            return self.park(path, value, slot.bytes);
        }
        // The last holder let go of a load in progress: cancel the load itself.
        self.cancel_load(at, slot.generation, slot.phase, slot.locator);
    }

    /// Marks `at`'s load of `generation` cancelled for the workers, and tells a deterministic
    /// runtime's stepper, which looks again at the jobs of that slot.
    fn mark_cancelled(&self, at: usize, generation: Generation) {
        self.route.cancels().cancel(at, generation);
        if let Some(notes) = &self.links.cancel_notes {
            notes.note(at);
        }
    }

    /// Cancels the load of generation `generation` at slot `at`, in `phase`: the source no
    /// longer waits for its bytes (unless it decoded), workers see it cancelled, and a queued
    /// one leaves the scheduler's queue.
    fn cancel_load(
        &mut self,
        at: usize,
        generation: Generation,
        phase: Phase,
        locator: Option<Locator>,
    ) {
        if phase != Phase::Resident {
            self.links.hints.unwant(locator);
        }
        self.mark_cancelled(at, generation);
        if phase == Phase::Queued {
            let load = load_ref(self.type_index, at, generation);
            self.to_scheduler.push(SchedulerMsg::CancelQueued(load));
        }
    }

    /// Queues a load the scheduler dispatched for the IO pool (sent with the turn's others by
    /// `submit_reads`), built from its slot; a load released or superseded since it was queued
    /// gives its credit back instead. The load is staged at its slot's priority now, which a
    /// reprioritisation after the scheduler took it may have raised.
    fn dispatch(&mut self, order: DispatchOrder) {
        let DispatchOrder { load, credit } = order;
        let at = load.slot as usize;
        let current = self.table.current_in(at, load.generation, Phase::Queued).is_some();
        // Abandoned, it is cancelled before it is read (an engine dropping a level's handles
        // while its loads are dispatched).
        if !current || self.release_abandoned(at) {
            return self.not_dispatched(load.generation, credit);
        }
        let slot = self.table.get_mut(at).expect("the current slot");
        slot.phase = Phase::Loading;
        for ticket in &slot.holders {
            ticket.cell().advance(LoadState::Pending, LoadState::Loading);
        }
        // Guarded before the event, whose subscribers are the engine's code: from here on,
        // whatever happens ends the load.
        let guard = JobGuard::new(self.job(at), "an IO worker crashed");
        let priority = guard.job().priority;
        let probe = &self.links.probe;
        probe.emit_with(|| guard.job().event(probe, EventKind::Dispatched).with_priority(priority));
        self.to_io.push(ReadJob { guard, credit });
    }

    /// Ends a dispatched load that is not read after all: its credit goes back, and the
    /// scheduler counts it finished.
    fn not_dispatched(&mut self, generation: Generation, credit: ReadCredit) {
        drop(credit);
        self.to_scheduler.push(SchedulerMsg::JobFinished(generation));
    }

    /// Sends the loads dispatched since the last call to the IO pool.
    fn submit_reads(&mut self) {
        if !self.to_io.is_empty() {
            self.links.io.submit_all(&mut self.to_io);
        }
    }

    /// `job`'s value, taken unless its load was cancelled; `recorded` if the replay log holds
    /// it as taken (see `record_taken`).
    fn decoded(&mut self, job: &Job, value: Arc<T>, size: u64, recorded: bool) {
        self.to_scheduler.push(SchedulerMsg::JobFinished(job.generation));
        let probe = Arc::clone(&self.links.probe);
        // Cancelled, or now, as every request let go (their releases still to come): not
        // counted in the budget, which would evict parked assets for a value no one holds.
        if self.table.current_mut(job.slot(), job.generation).is_none()
            || (!recorded && self.release_abandoned(job.slot()))
        {
            Counters::bump(&probe.counters.cancelled_after_decode);
            probe.emit(job.event(&probe, EventKind::CancelledAfterDecode).with_bytes(size));
            return;
        }
        let slot = self.table.current_mut(job.slot(), job.generation).expect("the current slot");
        // The holders' most urgent priority now: the slot's is not kept while it loads.
        probe.emit_with(|| {
            let priority = live_priorities(slot).min().unwrap_or(slot.priority);
            job.event(&probe, EventKind::Decoded).with_priority(priority).with_bytes(size)
        });
        self.links.hints.unwant(slot.locator);
        slot.phase = Phase::Resident;
        slot.bytes = size;
        // Quarantine is for a key whose decoder keeps panicking: a decode that works starts
        // its count again (and keeps the map to the keys panicking now). Only one that takes
        // effect: one for a load every request let go is neither recorded nor, in a replay,
        // run, so counting it here would make a replay quarantine what its recording did not.
        if !self.panics.is_empty() {
            self.panics.remove(slot.path());
        }
        // Counted before any holder is staged: staging wakes the engine's waiters, and should
        // one of them panic, the salvage that follows finds a resident slot counted.
        let t = self.budget_index();
        self.change_evicting(|r| r.admit(t, size));
        let slot = self.table.get(job.slot()).expect("the slot decoded just now");
        // A slot always has a holder; the last takes the value itself, the others a clone.
        if let Some((last, rest)) = slot.holders.split_last() {
            for ticket in rest {
                stage(ticket.cell(), Arc::clone(&value), size, &mut self.to_frame);
            }
            stage(last.cell(), value, size, &mut self.to_frame);
        }
    }

    fn resubmit(&mut self) {
        let slots: Vec<(usize, Phase, Generation)> =
            self.table.iter_indexed().map(|(at, s)| (at, s.phase, s.generation)).collect();
        for (at, phase, generation) in slots {
            match phase {
                Phase::Queued => {
                    self.to_scheduler
                        .push(SchedulerMsg::Enqueue(self.queued(at, Admission::Again)));
                }
                Phase::Loading => self.to_scheduler.push(SchedulerMsg::Adopt(generation)),
                // Its timer queues it when the backoff is over.
                Phase::Backoff | Phase::Resident => {}
            }
        }
        self.to_scheduler.push(SchedulerMsg::Resubmitted(self.type_index));
    }

    fn stats(&self) -> CacheStats {
        let figures = self.residency().figures(self.budget_index());
        let mut stats = CacheStats {
            asset_type: self.asset_type.to_string(),
            quarantined: self.quarantined.len(),
            entries: figures.parked,
            parked: figures.parked,
            resident_bytes: figures.resident_bytes,
            hits: figures.hits,
            misses: figures.misses,
            evictions: figures.evictions,
            ..CacheStats::default()
        };
        for slot in self.table.iter() {
            stats.entries += 1;
            stats.holders += slot.holders.len();
            if slot.phase == Phase::Resident {
                stats.resident += 1;
            }
        }
        stats
    }

    fn flush(&mut self) {
        self.submit_reads();
        if !self.to_settle.is_empty() {
            let mut slots = std::mem::take(&mut self.to_settle);
            slots.sort_unstable();
            slots.dedup();
            // A slot emptied and reused since is settled as well, which is harmless: its
            // priority becomes its holders' most urgent, at most applying early a change of
            // priority whose `Reprioritize` is still on its way (the same settle then).
            for at in slots.drain(..) {
                self.settle_priority(at, None, true);
            }
            self.to_settle = slots;
        }
        if !self.to_scheduler.is_empty() {
            // A closed scheduler means shutdown; this cache is told to shut down next.
            let _ = self.links.scheduler.post_all(self.to_scheduler.drain(..));
        }
        if !self.to_frame.is_empty() {
            let batch = std::mem::take(&mut self.to_frame);
            if let Err(closed) = self.links.frame.post(FrameMsg::Ready(batch)) {
                closed.0.fail_undelivered();
            }
        }
        if !self.to_withdraw.is_empty() {
            // A closed coordinator means shutdown, which fails what waits there.
            let _ =
                self.links.frame.post(FrameMsg::Withdraw(std::mem::take(&mut self.to_withdraw)));
        }
    }

    /// Takes in everything already in the engine's lane, one message at a time (a panic then
    /// loses none of the others, still in the lane): what a `Ping` barrier or a `Stats` query
    /// does first, so that it comes after the requests and releases made before it, though
    /// they travel in their own lane.
    fn take_engine(&mut self) {
        let engine = self.inbox.engine.clone();
        let mut one = Vec::with_capacity(1);
        loop {
            engine.drain_into(1, &mut one);
            let Some(msg) = one.pop() else { return };
            // Counted before it is handled: a panic in its handler loses it (a request's
            // ticket fails it), which must not leave it pending in a deterministic run's
            // activity. The message that asked (`Ping`, `Stats`) is pending until its batch is
            // over.
            engine.handled(1);
            self.engine_msg(msg);
        }
    }
}

impl<T: Send + Sync + 'static> Actor for Cache<T> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Attached first: a message sent from here on (by a thread the readmission below wakes,
        // say) wakes this incarnation, which handles it once `started` returns.
        self.inbox.attach(&ctx.address().recipient());
        if self.link.incarnation() <= 1 {
            return;
        }
        let link = self.link.clone();
        let taken_back = guarded(&link, || {
            self.readmit();
            // Every load it holds is with the scheduler again: a restarted scheduler waiting
            // for this cache's resubmission (which a crash can lose) need not.
            self.to_scheduler.push(SchedulerMsg::Resubmitted(self.type_index));
            self.flush();
            Ok(())
        });
        // A restart either way, counted as one, once attached: whoever sees the event can ask
        // the cache.
        self.links.probe.restarted(&format!("cache:{}", self.asset_type));
        if taken_back.is_none() {
            // Its exit is reported: what it took back goes back to the salvage, with what it
            // had not, for the next incarnation, which attaches to the inbox instead and
            // reports its own restart (see `EventKind::Restarted`).
            self.fail_over(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.link.exit(ExitReason::Normal);
    }
}

impl<T: Send + Sync + 'static> Handler<StopChild> for Cache<T> {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        self.salvage();
        ctx.stop();
    }
}

impl<T: Send + Sync + 'static> Handler<Wake> for Cache<T> {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let (inbox, link) = (self.inbox.clone(), self.link.clone());
        let max = self.links.drain_batch_max;
        // Dispatch orders first, all of them (credits bound them): a load the scheduler let go
        // reaches the IO pool without waiting behind the engine's requests in the mailbox. The
        // mailbox's turn runs inside the orders' turn, so the orders count as handled only
        // once the whole wake is over: a deterministic driver must not see the actors idle
        // while this cache still drains its mailbox (see `Activity`).
        // Then a batch of the engine's lane, then a batch of the mailbox: a burst of requests
        // (or of releases) shares each wake with the workers' replies rather than holding them
        // up until it is all in.
        // The lanes leave the wake to this turn: one wake for whatever is left in any of them.
        let (mut engine, mut messages) = (Drained::Done, Drained::Done);
        let turn = |cache: &mut Self, ctx: &mut Context<Self>| {
            cache.submit_reads();
            let rest = |cache: &mut Self, ctx: &mut Context<Self>| {
                let after = |cache: &mut Self, ctx: &mut Context<Self>| {
                    cache.schedule_retries(ctx);
                    cache.flush();
                };
                messages =
                    drain_lane(cache, ctx, &inbox.messages, &link, max, Self::handle_msg, after);
            };
            engine = drain_lane(cache, ctx, &inbox.engine, &link, max, Self::engine_msg, rest);
        };
        let dispatches = &inbox.dispatches;
        let sent = drain_lane(self, ctx, dispatches, &link, usize::MAX, Self::dispatch, turn);
        let lanes = [sent, engine, messages];
        if lanes.contains(&Drained::Failed) {
            // Stopping: hand the unfinished requests to the next incarnation.
            self.fail_over(ctx);
        } else if lanes.contains(&Drained::More) {
            wake_after_others(ctx);
        }
    }
}
