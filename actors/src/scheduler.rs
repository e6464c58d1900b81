//! The scheduler actor: pending loads in priority order, dispatched within credits to their
//! caches, which send them to the IO pool.
//!
//! A pending load is a 12-byte ticket in the queue (see `loads`) naming its cache slot (a
//! [`LoadRef`]: type, slot index, generation); the
//! job itself is built by the cache at dispatch, from the slot that already holds its key,
//! origin and size, so the queue keeps no copy of them (`streamctl bench scale`).
//!
//! # Ordering
//!
//! Loads leave the queue most urgent first and, within one priority, in the order they were
//! queued (or last moved to that priority).
//!
//! # Backpressure
//!
//! - At most `queue_capacity` loads wait; one more new load fails with `QueueFull` at its
//!   cache. A load queued again (a retry, or after a cache's or the scheduler's restart) was
//!   admitted once and is never refused for room, so the queue can pass its capacity by loads
//!   that were out of it when they were admitted again: in flight or in backoff. A cache that
//!   fails takes its queued loads out of the queue. After the scheduler's own restart, new
//!   loads wait aside (`held_new`) until every cache it asked has resubmitted
//!   (`Resubmitted`), and are then checked against the rebuilt queue: checked against the
//!   empty queue of a fresh incarnation, they let it grow to about twice its capacity. Nothing
//!   is dispatched meanwhile either: the loads in flight are counted from the caches' answers
//!   (`Adopt`), and a dispatch before the last answer would pass the bound below. A cache in
//!   its own restart's backoff (`restart_backoff`, at most 100 ms by default) answers once it
//!   is back, and holds every type's dispatch until then. A `Resubmitted` a cache sent after
//!   its own restart, still queued when the scheduler restarts, is taken as that cache's
//!   answer: the loads the failed incarnation dispatched after it go uncounted, so the bound
//!   can still be passed by those, and only until they end.
//! - At most `reads_in_flight` credits' worth of loads are being read, and at most
//!   `reads_in_flight + decode_backlog_max` are between dispatch and their end, plus the urgent
//!   reserve below; only then is the next load dispatched. The IO pool's queue and the decode
//!   pool's loads are bounded by these credits (the decode pool's queue also carries the
//!   engine's frame tasks, which the engine bounds).
//! - Credits are counted in shares, 16 to a credit: a load whose declared size is below
//!   `read_credit_bytes` takes shares in proportion (at least one), any other load a whole
//!   credit; so the bounds are on bytes in flight, and small assets get more loads in flight.
//! - Read credits come back without a message per read (see `credits`): a scheduler out of
//!   credits sleeps until half of them are back, then dispatches a batch; when its next load
//!   is `High` or `Critical`, only until that load's shares are back. Another message (a
//!   load finished, a new one) wakes it sooner, and it then dispatches whatever fits.
//! - One more credit ([`URGENT_RESERVE_SHARES`]) is kept for `High` and `Critical` loads, on
//!   both bounds: an urgent load is dispatched at once while normal ones hold every other
//!   credit, instead of waiting for one of their reads to end (`streamctl bench priority`,
//!   docs/PERFORMANCE.md). So at most `reads_in_flight + 1` credits are being read, and at
//!   most `reads_in_flight + decode_backlog_max + 1` are between dispatch and their end.
//!
//! # Supervision
//!
//! Permanent child of the runtime's supervisor. The queue and the table of loads in flight
//! are the scheduler's own state and a restart loses them; it loses no request, because the
//! caches own the requests: a restarted scheduler asks every cache to resubmit (queued loads
//! are re-enqueued with their generation, loads in flight are adopted so the bound on loads
//! between dispatch and their end holds). The read credits are kept outside the actor, like
//! its mailbox, and shared by every incarnation: a read its predecessor started still holds its
//! credit, so a restart never lets more than the bound above (`reads_in_flight` credits'
//! worth, plus the urgent reserve) be read at once.
//! Messages taken but not handled when it failed go back to its mailbox.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
use streamrt_messages::{ErrorKind, Generation, Priority};
use streamrt_supervisor::{drain_turn, ChildLink, ExitReason, Mailbox, StopChild, Wake};

use crate::id_hash::IdMap;
use crate::telemetry::Probe;
use crate::work::{DispatchOrder, JobRoute, URGENT};

mod credits;
mod loads;

use credits::SHARES_PER_CREDIT;
pub(crate) use credits::{ReadCredit, ReadCredits};
pub(crate) use loads::LoadRef;
use loads::{LoadQueue, Standing};

/// A load a cache queues: which slot and attempt, how urgent, and its declared size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueuedLoad {
    pub(crate) load: LoadRef,
    pub(crate) priority: Priority,
    /// The stored size the source declared, in bytes (0 when unknown).
    pub(crate) declared_bytes: u64,
    pub(crate) admission: Admission,
}

/// Whether a load's requests were let into the queue before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A new load: refused `QueueFull` past the queue's capacity.
    New,
    /// A load queued again (its retry, or after a restart of its cache or of the scheduler):
    /// its requests were admitted once and are not refused for room (see the module's
    /// `# Backpressure`).
    Again,
}

/// What the scheduler is told.
pub(crate) enum SchedulerMsg {
    /// Queue a load (from a cache).
    Enqueue(QueuedLoad),
    /// Move a queued load to another priority.
    Reprioritize(LoadRef, Priority),
    /// Drop a queued load; no effect once dispatched, nor on one held aside during a restart
    /// (its cancel table stops it once dispatched).
    CancelQueued(LoadRef),
    /// Read credits came back down to the low-water mark (from an IO worker).
    CreditsReturned,
    /// A dispatched load ended (from its cache).
    JobFinished(Generation),
    /// Count a load already in flight (a cache resubmitting to a restarted scheduler).
    Adopt(Generation),
    /// The cache of the type of this index sent every load it holds (after a restarted
    /// scheduler asked it to, or after its own restart's readmission).
    Resubmitted(u16),
    /// Panic (fault injection).
    Crash,
    /// Reply once everything before it is handled and dispatched (a barrier).
    Ping(mpsc::Sender<()>),
    /// Drop everything queued and stop dispatching; reply when done.
    Shutdown(mpsc::Sender<()>),
}

/// The scheduler's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SchedulerLimits {
    pub(crate) queue_capacity: usize,
    pub(crate) reads_in_flight: usize,
    pub(crate) read_credit_bytes: u64,
    pub(crate) decode_backlog_max: usize,
    pub(crate) drain_batch_max: usize,
}

/// See the module docs.
pub(crate) struct Scheduler {
    mailbox: Mailbox<SchedulerMsg>,
    queue: LoadQueue,
    /// Loads between dispatch and their end, with the shares each holds (read credits are
    /// counted in `credits`).
    in_flight: IdMap<Generation, usize>,
    /// The sum of `in_flight`'s shares.
    in_flight_shares: usize,
    credits: Arc<ReadCredits>,
    limits: SchedulerLimits,
    /// Each asset type's route to its cache, by the type's index ([`LoadRef::ty`]).
    routes: Arc<[Arc<dyn JobRoute>]>,
    probe: Arc<Probe>,
    stopped: bool,
    pings: Vec<mpsc::Sender<()>>,
    link: ChildLink,
    /// Asks every cache to resubmit its loads; called when a restarted scheduler starts.
    /// Returns the indexes of the types whose caches were asked.
    resubmit: Arc<dyn Fn() -> Vec<u16> + Send + Sync>,
    /// The types whose caches a restarted scheduler waits for to resubmit.
    resubmits_awaited: Vec<u16>,
    /// New loads taken while `resubmits_awaited` is not empty, enqueued once it is: at most
    /// what the engine's admission limit (`requests_outstanding_max`) lets in meanwhile. A
    /// move of one (`Reprioritize`, or its cache's resubmission at its current priority)
    /// changes its priority here.
    held_new: Vec<QueuedLoad>,
    /// The loads of `held_new`, with their place there: a cache resubmits a load whose new
    /// enqueue it sent before as queued, and that resubmission must not admit it past the
    /// capacity (its priority is taken, in one lookup, not one scan of `held_new` a load).
    held_loads: HashMap<(u16, Generation), usize>,
}

/// A starved scheduler sleeps until the reads in flight fall to `1 / this` of its credits
/// (half) before it dispatches again, so that its wakes come in batches, not one per credit
/// back (an urgent load wakes it at its first credit back instead).
const WAKE_AT_CREDITS_BACK_DIVISOR: usize = 2;

impl Scheduler {
    /// A scheduler taking its messages from `mailbox` and its read credits from `credits`,
    /// both kept from incarnation to incarnation (see `# Supervision`).
    pub(crate) fn new(
        mailbox: Mailbox<SchedulerMsg>,
        credits: Arc<ReadCredits>,
        limits: SchedulerLimits,
        routes: Arc<[Arc<dyn JobRoute>]>,
        probe: Arc<Probe>,
        link: ChildLink,
        resubmit: Arc<dyn Fn() -> Vec<u16> + Send + Sync>,
    ) -> Self {
        Self {
            credits,
            mailbox,
            queue: LoadQueue::default(),
            in_flight: IdMap::default(),
            in_flight_shares: 0,
            limits,
            routes,
            probe,
            stopped: false,
            pings: Vec::new(),
            link,
            resubmit,
            resubmits_awaited: Vec::new(),
            held_new: Vec::new(),
            held_loads: HashMap::new(),
        }
    }

    fn handle_msg(&mut self, msg: SchedulerMsg) {
        match msg {
            SchedulerMsg::Enqueue(job) => self.enqueue_or_hold(job),
            SchedulerMsg::Resubmitted(ty) => {
                self.resubmits_awaited.retain(|&t| t != ty);
                if self.resubmits_awaited.is_empty() {
                    self.held_loads.clear();
                    std::mem::take(&mut self.held_new).into_iter().for_each(|j| self.enqueue(j));
                }
            }
            SchedulerMsg::Reprioritize(load, priority) => {
                if !self.queue.reprioritize(load, priority) {
                    self.reprioritize_held(load, priority);
                }
            }
            SchedulerMsg::CancelQueued(load) => {
                self.queue.remove(load);
            }
            // Handled by dispatching after the batch.
            SchedulerMsg::CreditsReturned => {}
            SchedulerMsg::JobFinished(generation) => {
                if let Some(shares) = self.in_flight.remove(&generation) {
                    self.in_flight_shares -= shares;
                    self.probe.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                }
            }
            SchedulerMsg::Adopt(generation) => {
                // Its read may be over or not; its read credit, if it still holds one, is
                // counted in the credits every incarnation shares, so it is charged here to
                // the pipeline's bound only, a whole credit as its shares are not known. A
                // load this incarnation dispatched itself (an enqueue put back from the failed
                // batch, sent on before the cache's resubmission) keeps its own shares.
                if let Entry::Vacant(entry) = self.in_flight.entry(generation) {
                    entry.insert(SHARES_PER_CREDIT);
                    self.in_flight_shares += SHARES_PER_CREDIT;
                    self.probe.counters.in_flight.fetch_add(1, Ordering::Relaxed);
                }
            }
            SchedulerMsg::Crash => panic!("injected crash of the scheduler"),
            SchedulerMsg::Ping(ack) => self.pings.push(ack),
            SchedulerMsg::Shutdown(ack) => {
                self.stopped = true;
                // The loads' requests are held by their caches, which fail them on shutdown.
                self.queue.clear();
                self.held_new.clear();
                self.held_loads.clear();
                // The caches are shut down first: no load still being read or decoded will
                // report its end, and the pools stop next, so nothing is in flight any more.
                self.in_flight.clear();
                self.in_flight_shares = 0;
                self.probe.counters.in_flight.store(0, Ordering::Relaxed);
                let _ = ack.send(());
            }
        }
    }

    /// The route of `load`'s type.
    fn route(&self, load: LoadRef) -> &Arc<dyn JobRoute> {
        &self.routes[usize::from(load.ty)]
    }

    fn is_cancelled(&self, load: LoadRef) -> bool {
        self.route(load).cancels().is_cancelled(load.slot as usize, load.generation)
    }

    /// Enqueues `queued`, unless a restarted scheduler still waits for resubmissions: then a
    /// new load waits aside, and the resubmission of a load waiting aside is dropped (see
    /// `held_new`).
    fn enqueue_or_hold(&mut self, queued: QueuedLoad) {
        if self.resubmits_awaited.is_empty() {
            return self.enqueue(queued);
        }
        let load = (queued.load.ty, queued.load.generation);
        match queued.admission {
            Admission::New => {
                self.held_loads.insert(load, self.held_new.len());
                self.held_new.push(queued);
            }
            // The cache resubmits at its slot's priority now, which a reprioritisation the
            // scheduler took while the load waited aside may not have reached.
            Admission::Again if self.held_loads.contains_key(&load) => {
                self.reprioritize_held(queued.load, queued.priority);
            }
            Admission::Again => self.enqueue(queued),
        }
    }

    /// Moves `load` to `priority` if it waits aside (see `held_new`): its cache sends the
    /// move once, and the load is queued from there at the priority it holds then.
    fn reprioritize_held(&mut self, load: LoadRef, priority: Priority) {
        let Some(&at) = self.held_loads.get(&(load.ty, load.generation)) else { return };
        if let Some(held) = self.held_new.get_mut(at).filter(|held| held.load == load) {
            held.priority = priority;
        }
    }

    fn enqueue(&mut self, queued: QueuedLoad) {
        let QueuedLoad { load, priority, declared_bytes, admission } = queued;
        // A load already dispatched is queued again when a restarted scheduler gets both the
        // enqueue put back from the failed batch and the cache's resubmission: read it once.
        // A load already queued (or superseded there) is refused by the queue: it must not
        // be refused `QueueFull`, which would fail the requests of a load that is queued.
        let standing = self.queue.standing(load);
        if self.stopped
            || self.is_cancelled(load)
            || self.in_flight.contains_key(&load.generation)
            || standing == Standing::Covered
        {
            return;
        }
        // A load replacing its slot's older one does not grow the queue, and a load queued
        // again was admitted before.
        let full = self.queue.len() >= self.limits.queue_capacity;
        if standing == Standing::Absent && admission == Admission::New && full {
            let capacity = self.limits.queue_capacity;
            self.route(load).refuse(load, ErrorKind::QueueFull { capacity });
            return;
        }
        let shares = shares(declared_bytes, self.limits.read_credit_bytes);
        self.queue.push_as(load, priority, shares, standing);
    }

    /// The shares the next queued load takes, and whether it is urgent (see [`URGENT`]).
    fn next_load(&mut self) -> Option<(usize, bool)> {
        self.queue.peek().map(|(shares, priority)| (shares, priority <= URGENT))
    }

    /// The read shares loads may hold at once, counting the urgent reserve when `urgent`.
    fn reads_max_shares(&self, urgent: bool) -> usize {
        self.limits.reads_in_flight * SHARES_PER_CREDIT + reserve(urgent)
    }

    /// The shares a normal load and an urgent one may take now: within the read credits and
    /// within the loads between dispatch and their end (none once stopped). One read of the
    /// credit count, which the IO workers write, for both.
    fn shares_free(&self) -> [usize; 2] {
        self.shares_free_at(self.credits.reading())
    }

    /// As [`Scheduler::shares_free`], with `reading` shares being read.
    fn shares_free_at(&self, reading: usize) -> [usize; 2] {
        if self.stopped {
            return [0; 2];
        }
        let jobs_max =
            (self.limits.reads_in_flight + self.limits.decode_backlog_max) * SHARES_PER_CREDIT;
        [false, true].map(|urgent| {
            let reads_free = self.reads_max_shares(urgent).saturating_sub(reading);
            let jobs_free = (jobs_max + reserve(urgent)).saturating_sub(self.in_flight_shares);
            reads_free.min(jobs_free)
        })
    }

    /// Dispatches while credits last; out of read credits with loads still queued, sleeps
    /// until half of the read credits are back (or enough for the next load), or, when the
    /// next load is urgent, only until enough for it are back.
    fn dispatch(&mut self) {
        // A restarted scheduler learns of the loads its predecessor dispatched from each
        // cache's resubmission (`Adopt`): dispatching before every cache has answered would
        // count against the bound only the loads adopted so far, and let the loads between
        // dispatch and their end pass `reads_in_flight + decode_backlog_max`.
        if !self.resubmits_awaited.is_empty() {
            return;
        }
        loop {
            self.dispatch_within_credits();
            let Some((next, urgent)) = self.next_load() else { return };
            if self.stopped {
                return;
            }
            // One read of the count for the whole decision: the IO workers return credits
            // while it is made, and a return after the pass looked posts nothing unless a mark
            // is armed.
            let reading = self.credits.reading();
            let free = self.shares_free_at(reading)[usize::from(urgent)];
            match after_pass(next, reading, free, self.reads_max_shares(urgent), urgent) {
                AfterPass::Again => {}
                AfterPass::Idle => return,
                AfterPass::SleepUntil(wake_at) => {
                    if self.credits.sleep_until(wake_at) {
                        return;
                    }
                }
            }
        }
    }

    fn dispatch_within_credits(&mut self) {
        loop {
            // Each load is measured by its own urgency: the front of the queue is the only one
            // looked at, so a normal load behind an urgent one waits for the normal credits.
            let [free, free_urgent] = self.shares_free();
            let fits =
                |shares, priority| shares <= if priority <= URGENT { free_urgent } else { free };
            let Some((load, shares, _)) = self.queue.pop_if(fits) else { break };
            if self.is_cancelled(load) {
                continue;
            }
            let Entry::Vacant(vacant) = self.in_flight.entry(load.generation) else { continue };
            vacant.insert(shares);
            self.probe.counters.in_flight.fetch_add(1, Ordering::Relaxed);
            self.in_flight_shares += shares;
            let credit = self.credits.take(shares);
            // A closed cache (shutdown) drops the order, and with it the credit.
            self.route(load).dispatch(DispatchOrder { load, credit });
        }
    }
}

/// What a scheduler does once a pass of dispatch stopped with loads still queued.
#[derive(Debug, PartialEq, Eq)]
enum AfterPass {
    /// The next load fits now: credits came back after the pass looked.
    Again,
    /// The loads between dispatch and their end are at their bound: the `JobFinished` of one
    /// of them wakes the scheduler.
    Idle,
    /// Out of read credits: arm the mark at this many shares read and wait for it.
    SleepUntil(usize),
}

/// The step after a pass, for a next load of `next` shares (`urgent` or not) that may take
/// `free` shares now, with `reading` shares being read against `limit`.
fn after_pass(next: usize, reading: usize, free: usize, limit: usize, urgent: bool) -> AfterPass {
    if next <= free {
        return AfterPass::Again;
    }
    if reading + next <= limit {
        return AfterPass::Idle;
    }
    let low_water = limit / WAKE_AT_CREDITS_BACK_DIVISOR;
    AfterPass::SleepUntil(if urgent { limit - next } else { low_water.min(limit - next) })
}

/// Read shares only urgent loads may take: one credit (see the module docs).
const URGENT_RESERVE_SHARES: usize = SHARES_PER_CREDIT;

/// The reserve an `urgent` load may take beyond the normal limits.
fn reserve(urgent: bool) -> usize {
    if urgent {
        URGENT_RESERVE_SHARES
    } else {
        0
    }
}

/// The shares a load of `declared_bytes` takes (0: unknown): see the module docs.
fn shares(declared_bytes: u64, credit_bytes: u64) -> usize {
    let credit_bytes = credit_bytes.max(1);
    if declared_bytes == 0 || declared_bytes >= credit_bytes {
        return SHARES_PER_CREDIT;
    }
    let scaled = u128::from(declared_bytes) * SHARES_PER_CREDIT as u128;
    usize::try_from(scaled.div_ceil(u128::from(credit_bytes)))
        .map_or(SHARES_PER_CREDIT, |s| s.max(1))
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.link.incarnation() > 1 {
            // In-flight counts restart from the caches' resubmissions.
            self.probe.counters.in_flight.store(0, Ordering::Relaxed);
            self.probe.counters.queued.store(0, Ordering::Relaxed);
            // The caches are asked first: whoever sees the event may count on the request
            // being on its way (a `Runtime::sync` then covers the resubmission).
            self.resubmits_awaited = (self.resubmit)();
        }
        self.mailbox.attach(ctx.address().recipient());
        // Once attached: whoever sees the event can ask the successor.
        if self.link.incarnation() > 1 {
            self.probe.restarted("scheduler");
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.link.exit(ExitReason::Normal);
    }
}

impl Handler<StopChild> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Scheduler {
    /// The loads waiting to be dispatched, those waiting aside during a restart included: a
    /// tool that waits for the queued and in-flight counts to drain must not see a restart's
    /// loads as gone.
    fn queued(&self) -> usize {
        self.queue.len() + self.held_new.len()
    }
}

impl Handler<Wake> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let (mailbox, link) = (self.mailbox.clone(), self.link.clone());
        let max = self.limits.drain_batch_max;
        let after = |scheduler: &mut Self, _: &mut Context<Self>| {
            scheduler.dispatch();
            let queued = scheduler.queued() as u64;
            scheduler.probe.counters.queued.store(queued, Ordering::Relaxed);
            for ack in scheduler.pings.drain(..) {
                let _ = ack.send(());
            }
        };
        drain_turn(self, ctx, &mailbox, &link, max, Self::handle_msg, after);
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use streamrt_supervisor::MonotonicClock;

    use super::*;
    use crate::work::{CancelTable, Job, JobEnd, RaiseTable};

    /// A route that keeps the loads dispatched to it (their credits go back at once).
    #[derive(Default)]
    struct Recording {
        cancels: CancelTable,
        raises: RaiseTable,
        dispatched: std::sync::Mutex<Vec<LoadRef>>,
    }

    impl JobRoute for Recording {
        fn dispatch(&self, order: DispatchOrder) {
            self.dispatched.lock().unwrap().push(order.load);
        }
        fn refuse(&self, load: LoadRef, kind: ErrorKind) {
            unreachable!("{load:?} refused: {kind:?}")
        }
        fn decode(&self, _: Job, _: Vec<u8>, _: &dyn Fn(&Job)) -> Result<(), Box<dyn Any + Send>> {
            unreachable!("nothing is decoded")
        }
        fn wake(&self) {}
        fn end(&self, _: Job, _: JobEnd) {
            unreachable!("nothing is read")
        }
        fn cancels(&self) -> &CancelTable {
            &self.cancels
        }
        fn raises(&self) -> &RaiseTable {
            &self.raises
        }
    }

    /// A scheduler just restarted, waiting for type 0's cache to resubmit.
    fn restarted() -> Scheduler {
        restarted_with(Arc::new([Arc::new(Recording::default()) as _]))
    }

    /// A scheduler just restarted with `routes`, waiting for each of their caches to
    /// resubmit.
    fn restarted_with(routes: Arc<[Arc<dyn JobRoute>]>) -> Scheduler {
        let mailbox = Mailbox::new();
        let limits = SchedulerLimits {
            queue_capacity: 16,
            reads_in_flight: 1,
            read_credit_bytes: 1,
            decode_backlog_max: 1,
            drain_batch_max: 16,
        };
        let probe = Arc::new(Probe::new(Arc::new(MonotonicClock::new()), 16, false));
        let types: Vec<u16> = (0..routes.len() as u16).collect();
        let resubmit = Arc::new(move || types.clone());
        let credits = ReadCredits::new(mailbox.clone());
        let mut scheduler = Scheduler::new(
            mailbox,
            credits,
            limits,
            routes,
            probe,
            ChildLink::detached(),
            resubmit,
        );
        scheduler.resubmits_awaited = (scheduler.resubmit)();
        scheduler
    }

    #[test]
    fn a_restarted_scheduler_dispatches_nothing_until_every_cache_said_what_is_in_flight() {
        let route = Arc::new(Recording::default());
        let routes: Arc<[Arc<dyn JobRoute>]> = Arc::new([route.clone() as _, route.clone() as _]);
        let mut s = restarted_with(routes);
        // Type 0's cache resubmits a queued load first, a batch of the scheduler's ends...
        s.handle_msg(enqueue(load(1, 1), Priority::Normal, Admission::Again));
        s.handle_msg(SchedulerMsg::Resubmitted(0));
        s.dispatch();
        // ...then type 1's cache adopts the two loads the last incarnation dispatched: with
        // one read credit and a decode backlog of one, the bound is two loads' worth.
        s.handle_msg(SchedulerMsg::Adopt(Generation(7)));
        s.handle_msg(SchedulerMsg::Adopt(Generation(8)));
        s.handle_msg(SchedulerMsg::Resubmitted(1));
        s.dispatch();
        let bound = (s.limits.reads_in_flight + s.limits.decode_backlog_max) * SHARES_PER_CREDIT;
        assert!(s.in_flight_shares <= bound, "{} shares past {bound}", s.in_flight_shares);
        assert!(route.dispatched.lock().unwrap().is_empty(), "it waits for an end");
        assert_eq!(s.queue.len(), 1);
        // One of them ends: the queued load goes.
        s.handle_msg(SchedulerMsg::JobFinished(Generation(7)));
        s.dispatch();
        assert_eq!(*route.dispatched.lock().unwrap(), [load(1, 1)]);
    }

    #[test]
    fn a_load_waiting_aside_during_a_restart_counts_as_queued() {
        let mut s = restarted();
        s.handle_msg(enqueue(load(1, 1), Priority::Normal, Admission::New));
        assert_eq!((s.queue.len(), s.queued()), (0, 1), "aside, and counted");
        s.handle_msg(SchedulerMsg::Resubmitted(0));
        assert_eq!((s.queue.len(), s.queued()), (1, 1), "queued, counted once");
    }

    fn load(slot: u32, generation: u64) -> LoadRef {
        LoadRef { ty: 0, slot, generation: Generation(generation) }
    }

    fn enqueue(load: LoadRef, priority: Priority, admission: Admission) -> SchedulerMsg {
        SchedulerMsg::Enqueue(QueuedLoad { load, priority, declared_bytes: 0, admission })
    }

    #[test]
    fn a_load_moved_while_it_waits_aside_for_the_resubmissions_is_queued_where_it_was_moved() {
        // The cache's resubmission carries the new priority, or comes before the move.
        for resubmitted_first in [false, true] {
            let mut s = restarted();
            let (old, new) = (load(2, 2), load(1, 5));
            s.handle_msg(enqueue(old, Priority::Normal, Admission::Again));
            s.handle_msg(enqueue(new, Priority::Low, Admission::New));
            let again = if resubmitted_first { Priority::Low } else { Priority::Critical };
            if resubmitted_first {
                s.handle_msg(enqueue(new, again, Admission::Again));
            }
            s.handle_msg(SchedulerMsg::Reprioritize(new, Priority::Critical));
            if !resubmitted_first {
                s.handle_msg(enqueue(new, again, Admission::Again));
            }
            s.handle_msg(SchedulerMsg::Resubmitted(0));
            let order: Vec<_> =
                std::iter::from_fn(|| s.queue.pop()).map(|(l, _, p)| (l, p)).collect();
            assert_eq!(
                order,
                [(new, Priority::Critical), (old, Priority::Normal)],
                "resubmitted first: {resubmitted_first}"
            );
        }
    }

    #[test]
    fn a_resubmission_of_a_load_waiting_aside_carries_its_cache_s_priority() {
        let mut s = restarted();
        let new = load(1, 5);
        s.handle_msg(enqueue(new, Priority::Low, Admission::New));
        s.handle_msg(enqueue(new, Priority::High, Admission::Again));
        s.handle_msg(SchedulerMsg::Resubmitted(0));
        assert_eq!(s.queue.pop().map(|(l, _, p)| (l, p)), Some((new, Priority::High)));
        assert_eq!(s.queue.len(), 0, "queued once");
    }

    #[test]
    fn a_load_takes_shares_in_proportion_to_its_declared_size() {
        let credit = 256 << 10;
        assert_eq!(shares(0, credit), SHARES_PER_CREDIT, "unknown size: a whole credit");
        assert_eq!(shares(credit, credit), SHARES_PER_CREDIT);
        assert_eq!(shares(4 << 20, credit), SHARES_PER_CREDIT, "larger: still one credit");
        assert_eq!(shares(credit / 2, credit), SHARES_PER_CREDIT / 2);
        assert_eq!(shares(credit / 16 + 1, credit), 2, "rounded up");
        assert_eq!(shares(64, credit), 1, "the smallest load takes one share");
    }

    #[test]
    fn a_credit_back_after_the_pass_looked_dispatches_again_instead_of_idling() {
        let credit = SHARES_PER_CREDIT;
        // One credit: the pass saw it held; it came back before the decision.
        assert_eq!(after_pass(credit, 0, credit, credit, false), AfterPass::Again);
        // Read credits free, the loads in flight at their bound: a `JobFinished` wakes it.
        assert_eq!(after_pass(credit, 0, 0, credit, false), AfterPass::Idle);
        // Out of read credits: a normal load waits for half of them, an urgent one for its own.
        let limit = 4 * credit;
        assert_eq!(after_pass(credit, limit, 0, limit, false), AfterPass::SleepUntil(2 * credit));
        let urgent_limit = 4 * credit + URGENT_RESERVE_SHARES;
        assert_eq!(
            after_pass(credit, urgent_limit, 0, urgent_limit, true),
            AfterPass::SleepUntil(urgent_limit - credit)
        );
    }
}
