//! The cache actor, one per asset type: the slot table, the requests holding each slot, and the
//! cancellation race.
//!
//! # The cancellation race
//!
//! Each load has a generation, unique in the runtime, carried by its job. When the last request
//! holding a slot that is not resident lets go, the cache trips the load's cancel token, drops
//! the slot (so its generation is no longer current) and, if still queued, removes it from the
//! scheduler. A `Decoded` whose generation is no longer current is dropped and counted as
//! `cancelled_after_decode`. Requests still holding a slot keep its load.
//!
//! # Ordering
//!
//! A request attached to a resident slot is staged at once; requests are handed to the frame
//! coordinator in the order their slots decode.
//!
//! # Backpressure
//!
//! Engine commands enter through the runtime's admission limit (`requests_outstanding_max`);
//! worker replies are bounded by the scheduler's credits.
//!
//! # Supervision
//!
//! The slot table is the cache's own state and is the truth about requests: a restart of the
//! scheduler is recovered from it (queued loads are re-enqueued). A restart of the cache itself
//! loses its table; its requests are failed with `Shutdown` by their tickets, never left hanging.

mod slots;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use actix::{Actor, AsyncContext, Context, Handler};
use streamrt_messages::{
    AssetLoadError, ErrorKind, EventKind, Generation, LoadState, Priority, RequestId,
};
use streamrt_supervisor::{panic_message, Mailbox, Wake};

use crate::asset::Decoder;
use crate::frame::{FrameMsg, ReadyEntry};
use crate::request::Ticket;
use crate::scheduler::SchedulerMsg;
use crate::telemetry::{Counters, Probe};
use crate::work::{Job, JobEnd, JobRoute};

use slots::{Holder, Phase, SlotTable};

/// What a cache is told.
pub(crate) enum CacheMsg<T: Send + Sync + 'static> {
    /// A new request (`LoadAsset`).
    Load(Ticket<T>),
    /// A request's handle let go (cancelled or dropped).
    Release(RequestId),
    /// A request's priority changed.
    Reprioritize(RequestId, Priority),
    /// The scheduler dispatched the load of `slot` with this generation.
    Dispatched(Generation, usize),
    /// A load decoded (`AssetDecoded`): its value and resident size.
    Decoded(Job, Arc<T>, u64),
    /// A load ended without a value.
    Ended(Job, JobEnd),
    /// A stats query (`GetCacheStats`).
    Stats(mpsc::Sender<CacheStats>),
    /// Flush what was produced so far, then reply (a barrier for `Runtime::sync`).
    Ping(mpsc::Sender<()>),
    /// Fail every request with `Shutdown` and stop; reply when done.
    Shutdown(mpsc::Sender<()>),
}

/// One cache's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The asset type.
    pub asset_type: String,
    /// Slots: assets queued, loading or resident.
    pub entries: usize,
    /// Assets decoded and held.
    pub resident: usize,
    /// Bytes held by resident assets.
    pub resident_bytes: u64,
    /// Requests attached to slots.
    pub holders: usize,
}

impl<T: Send + Sync + 'static> Holder for Ticket<T> {
    fn request(&self) -> RequestId {
        self.cell().id()
    }
}

/// The decoder and cache of one asset type, as jobs see them.
pub(crate) struct TypeRoute<D: Decoder> {
    decoder: Arc<D>,
    cache: Mailbox<CacheMsg<D::Asset>>,
}

impl<D: Decoder> TypeRoute<D> {
    pub(crate) fn new(decoder: Arc<D>, cache: Mailbox<CacheMsg<D::Asset>>) -> Self {
        Self { decoder, cache }
    }
}

impl<D: Decoder> JobRoute for TypeRoute<D> {
    fn dispatched(&self, job: &Job) {
        let _ = self
            .cache
            .post(CacheMsg::Dispatched(job.generation, job.slot));
    }

    fn decode(&self, job: Job, bytes: Vec<u8>) -> Result<(), Box<dyn Any + Send>> {
        let decoder = &*self.decoder;
        let decoded = catch_unwind(AssertUnwindSafe(|| decoder.decode(&job.key, bytes)));
        // A closed mailbox means shutdown; the requests were failed already.
        match decoded {
            Ok(Ok(value)) => {
                let size = decoder.size_bytes(&value);
                let _ = self
                    .cache
                    .post(CacheMsg::Decoded(job, Arc::new(value), size));
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = self
                    .cache
                    .post(CacheMsg::Ended(job, JobEnd::Failed(e.into())));
                Ok(())
            }
            Err(panic) => {
                let kind = ErrorKind::DecoderPanicked(panic_message(&*panic));
                let _ = self.cache.post(CacheMsg::Ended(job, JobEnd::Failed(kind)));
                Err(panic)
            }
        }
    }

    fn end(&self, job: Job, end: JobEnd) {
        let _ = self.cache.post(CacheMsg::Ended(job, end));
    }
}

/// Where a cache sends what it produces.
pub(crate) struct CacheLinks {
    pub(crate) scheduler: Mailbox<SchedulerMsg>,
    pub(crate) frame: Mailbox<FrameMsg>,
    pub(crate) probe: Arc<Probe>,
    /// The runtime-wide generation counter.
    pub(crate) generations: Arc<AtomicU64>,
    pub(crate) drain_batch_max: usize,
}

/// See the module docs.
pub(crate) struct Cache<T: Send + Sync + 'static> {
    asset_type: String,
    mailbox: Mailbox<CacheMsg<T>>,
    route: Arc<dyn JobRoute>,
    links: CacheLinks,
    table: SlotTable<T, Ticket<T>>,
    to_scheduler: Vec<SchedulerMsg>,
    to_frame: Vec<ReadyEntry>,
}

impl<T: Send + Sync + 'static> Cache<T> {
    pub(crate) fn new(
        asset_type: String,
        mailbox: Mailbox<CacheMsg<T>>,
        route: Arc<dyn JobRoute>,
        links: CacheLinks,
    ) -> Self {
        Self {
            asset_type,
            mailbox,
            route,
            links,
            table: SlotTable::default(),
            to_scheduler: Vec::new(),
            to_frame: Vec::new(),
        }
    }

    fn handle_msg(&mut self, msg: CacheMsg<T>) {
        match msg {
            CacheMsg::Load(ticket) => self.load(ticket),
            CacheMsg::Release(request) => self.release(request),
            CacheMsg::Reprioritize(request, priority) => self.reprioritize(request, priority),
            CacheMsg::Dispatched(generation, slot) => self.dispatched(slot, generation),
            CacheMsg::Decoded(job, value, size) => self.decoded(&job, value, size),
            CacheMsg::Ended(job, end) => self.ended(&job, end),
            CacheMsg::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            CacheMsg::Ping(ack) => {
                self.flush();
                let _ = ack.send(());
            }
            CacheMsg::Shutdown(ack) => {
                self.shutdown();
                let _ = ack.send(());
            }
        }
    }

    fn load(&mut self, ticket: Ticket<T>) {
        let cell = Arc::clone(ticket.cell());
        if cell.state().is_terminal() {
            // Cancelled before the cache saw it: start nothing.
            return;
        }
        let probe = &self.links.probe;
        let priority = cell.priority();
        probe.emit(
            probe
                .event(EventKind::Queued)
                .with_request(cell.id())
                .with_key(cell.key().clone())
                .with_priority(priority),
        );
        let Some(at) = self.table.lookup_key(cell.key()) else {
            return self.start_load(ticket, priority);
        };
        let slot = self.table.get_mut(at).expect("indexed slot exists");
        match slot.phase {
            Phase::Resident => {
                let value = slot.value.as_ref().expect("resident slot holds a value");
                if cell.stage(value) {
                    self.to_frame.push(ReadyEntry::new(&cell, slot.bytes));
                }
            }
            Phase::Loading => {
                let _ = cell.transition(LoadState::Loading);
            }
            Phase::Queued => {
                if priority < slot.priority {
                    slot.priority = priority;
                    self.to_scheduler
                        .push(SchedulerMsg::Reprioritize(slot.generation, priority));
                }
            }
        }
        self.table.attach(at, ticket);
    }

    fn start_load(&mut self, ticket: Ticket<T>, priority: Priority) {
        let generation = Generation(self.links.generations.fetch_add(1, Ordering::Relaxed) + 1);
        let key = ticket.cell().key().clone();
        let origin = ticket.cell().id();
        let at = self.table.start_load(key.clone(), generation, priority);
        let token = self.table.get(at).expect("just started").token.clone();
        self.table.attach(at, ticket);
        self.to_scheduler.push(SchedulerMsg::Enqueue(Job {
            slot: at,
            generation,
            key,
            priority,
            origin,
            token,
            route: Arc::clone(&self.route),
        }));
    }

    fn release(&mut self, request: RequestId) {
        let Some((at, ticket)) = self.table.detach(request) else {
            return;
        };
        ticket.cell().cancel();
        drop(ticket);
        let slot = self.table.get(at).expect("detached from a live slot");
        if !slot.holders.is_empty() || slot.phase == Phase::Resident {
            return;
        }
        // The last holder let go of a load in progress: cancel the load itself.
        let slot = self.table.remove(at);
        slot.token.cancel();
        if slot.phase == Phase::Queued {
            self.to_scheduler
                .push(SchedulerMsg::CancelQueued(slot.generation));
        }
    }

    fn reprioritize(&mut self, request: RequestId, priority: Priority) {
        let Some(at) = self.table.lookup_request(request) else {
            return;
        };
        let slot = self.table.get_mut(at).expect("indexed slot exists");
        match slot.phase {
            Phase::Queued => {
                let most_urgent = slot
                    .holders
                    .iter()
                    .filter(|t| !t.cell().state().is_terminal())
                    .map(|t| t.cell().priority())
                    .min()
                    .unwrap_or(priority);
                if most_urgent != slot.priority {
                    slot.priority = most_urgent;
                    self.to_scheduler
                        .push(SchedulerMsg::Reprioritize(slot.generation, most_urgent));
                }
            }
            Phase::Resident => {
                let _ = self
                    .links
                    .frame
                    .post(FrameMsg::Reprioritize(request, priority));
            }
            // In flight: the new priority orders the publish, read from the request at staging.
            Phase::Loading => {}
        }
    }

    fn dispatched(&mut self, at: usize, generation: Generation) {
        let Some(slot) = self.table.current_mut(at, generation) else {
            return;
        };
        if slot.phase != Phase::Queued {
            return;
        }
        slot.phase = Phase::Loading;
        for ticket in &slot.holders {
            let _ = ticket.cell().transition(LoadState::Loading);
        }
    }

    fn decoded(&mut self, job: &Job, value: Arc<T>, size: u64) {
        self.to_scheduler
            .push(SchedulerMsg::JobFinished(job.generation));
        let probe = Arc::clone(&self.links.probe);
        let Some(slot) = self.table.current_mut(job.slot, job.generation) else {
            Counters::bump(&probe.counters.cancelled_after_decode);
            probe.emit(
                probe
                    .event(EventKind::CancelledAfterDecode)
                    .with_request(job.origin)
                    .with_generation(job.generation)
                    .with_key(job.key.clone())
                    .with_bytes(size),
            );
            return;
        };
        probe.emit(
            probe
                .event(EventKind::Decoded)
                .with_request(job.origin)
                .with_generation(job.generation)
                .with_key(job.key.clone())
                .with_priority(slot.priority)
                .with_bytes(size),
        );
        slot.phase = Phase::Resident;
        slot.bytes = size;
        for ticket in &slot.holders {
            if ticket.cell().stage(&value) {
                self.to_frame.push(ReadyEntry::new(ticket.cell(), size));
            }
        }
        slot.value = Some(value);
    }

    fn ended(&mut self, job: &Job, end: JobEnd) {
        self.to_scheduler
            .push(SchedulerMsg::JobFinished(job.generation));
        if self.table.current_mut(job.slot, job.generation).is_none() {
            // The load was cancelled; its requests were told when they let go.
            return;
        }
        let kind = match end {
            JobEnd::Failed(kind) => kind,
            JobEnd::Dropped(stage) => {
                // Tokens are only tripped when a slot is removed, so a current load is never
                // dropped; fail its requests rather than leave them waiting if that changes.
                debug_assert!(
                    false,
                    "current load {:?} dropped at {stage:?}",
                    job.generation
                );
                ErrorKind::Io(format!("load dropped while {}", stage.name()))
            }
        };
        let slot = self.table.remove(job.slot);
        let error = Arc::new(AssetLoadError {
            key: slot.key.clone(),
            attempt: 1,
            kind,
        });
        for ticket in &slot.holders {
            ticket.cell().fail(&error);
        }
    }

    fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            asset_type: self.asset_type.clone(),
            ..CacheStats::default()
        };
        for slot in self.table.iter() {
            stats.entries += 1;
            stats.holders += slot.holders.len();
            if slot.phase == Phase::Resident {
                stats.resident += 1;
                stats.resident_bytes += slot.bytes;
            }
        }
        stats
    }

    fn shutdown(&mut self) {
        // Messages not yet handled are dropped: their tickets fail their requests.
        drop(self.mailbox.close());
        for slot in self.table.drain() {
            slot.token.cancel();
            let error = AssetLoadError::shared(slot.key.clone(), ErrorKind::Shutdown);
            for ticket in &slot.holders {
                ticket.cell().fail(&error);
            }
        }
        self.to_frame.clear();
        self.to_scheduler.clear();
    }

    fn flush(&mut self) {
        if !self.to_scheduler.is_empty() {
            // A closed scheduler means shutdown; this cache is told to shut down next.
            let _ = self.links.scheduler.post_all(self.to_scheduler.drain(..));
        }
        if !self.to_frame.is_empty() {
            let batch = std::mem::take(&mut self.to_frame);
            if let Err(closed) = self.links.frame.post(FrameMsg::Ready(batch)) {
                let FrameMsg::Ready(batch) = closed.0 else {
                    return;
                };
                batch.iter().for_each(|e| e.cell().fail_shutdown());
            }
        }
    }
}

impl<T: Send + Sync + 'static> Actor for Cache<T> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
    }
}

impl<T: Send + Sync + 'static> Handler<Wake> for Cache<T> {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let mut batch = Vec::new();
        if self
            .mailbox
            .drain_into(self.links.drain_batch_max, &mut batch)
        {
            ctx.notify(Wake);
        }
        for msg in batch {
            self.handle_msg(msg);
        }
        self.flush();
    }
}
