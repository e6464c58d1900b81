//! A supervisor actor: starts children from specs, turns their panics and abnormal stops into
//! restarts per policy, and escalates past the restart intensity.
//!
//! Children are actix actors on the supervisor's arbiter. Each gets a [`ChildLink`] when it
//! starts and reports through it how it ended; [`guarded`] runs a child's `started` body or a
//! handler body with `catch_unwind`, so a panic becomes a reported exit instead of a closed
//! mailbox. The supervisor stops a child with [`StopChild`].
//!
//! # Supervision
//!
//! On a child's exit the supervisor consults the child's [`RestartKind`]; if it restarts, the
//! restart is counted in the supervisor's [`RestartWindow`], which decides when to escalate,
//! and in the child's own, which sets its backoff. A restart whose start fails counts as
//! another exit of the child. Past the intensity the supervisor stops every child, calls its
//! escalation hook (a parent supervisor or, at the root, the runtime's shutdown) and stops
//! itself. Children whose state must survive a restart keep it outside the actor (see the
//! runtime's mailboxes and salvage).
//!
//! # Ordering
//!
//! Children start in the order they were added; rest-for-one restarts the failed child and
//! every child added after it, in order.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient,
};

use crate::{
    take_panic_message, Clock, Mailbox, RestartKind, RestartPolicy, RestartWindow, Strategy, Wake,
};

/// Tells a supervised child to stop.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopChild;

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped by itself.
    Normal,
    /// It returned an error from `started` or a handler.
    Error(String),
    /// It panicked; the panic was caught.
    Panicked(String),
}

impl ExitReason {
    /// Whether the exit was abnormal (an error or a panic).
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, Self::Normal)
    }
}

/// What a supervisor is told.
pub enum SupervisorMsg {
    /// A child ended.
    Exited {
        /// The child's index.
        child: usize,
        /// Which start of the child ended; stale reports are ignored.
        incarnation: u64,
        /// How it ended.
        reason: ExitReason,
    },
    /// Reply once everything before it is handled (a barrier).
    Ping(mpsc::Sender<()>),
    /// Stop every child (last first) and reply.
    Stop(mpsc::Sender<()>),
}

/// A child's way to report to its supervisor. Only the first report of an incarnation counts.
///
/// # Supervision
///
/// A child that ends without a report (a panic in its `stopped` hook before it reports, or in
/// one that does not report) drops its link unreported. The last clone's drop then reports the
/// exit as a panic, so such a child is restarted (or escalated) like one whose panic was
/// caught, not left dead with its mailbox filling.
#[derive(Clone)]
pub struct ChildLink {
    inner: Arc<LinkInner>,
}

/// What every clone of one incarnation's link shares.
struct LinkInner {
    supervisor: Option<Mailbox<SupervisorMsg>>,
    child: usize,
    incarnation: u64,
    reported: AtomicBool,
}

impl ChildLink {
    /// A link that reports nowhere, for an actor run without a supervisor.
    pub fn detached() -> Self {
        Self::new(None, 0, 0)
    }

    fn new(supervisor: Option<Mailbox<SupervisorMsg>>, child: usize, incarnation: u64) -> Self {
        let reported = AtomicBool::new(false);
        Self { inner: Arc::new(LinkInner { supervisor, child, incarnation, reported }) }
    }

    /// Which start of the child this is, from 1.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// Reports how the child ended (only the first report counts). A normal exit reported
    /// while the thread unwinds is a panic's: actix runs a dying actor's `stopped` hook as
    /// its task is dropped by a panic outside [`guarded`].
    pub fn exit(&self, reason: ExitReason) {
        let reason = match reason {
            ExitReason::Normal if std::thread::panicking() => {
                ExitReason::Panicked("panicked outside `guarded`".to_owned())
            }
            reason => reason,
        };
        self.inner.exit(reason);
    }
}

impl LinkInner {
    fn exit(&self, reason: ExitReason) {
        if self.reported.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(supervisor) = &self.supervisor {
            let msg =
                SupervisorMsg::Exited { child: self.child, incarnation: self.incarnation, reason };
            // A closed supervisor mailbox means the whole tree is shutting down.
            let _ = supervisor.post(msg);
        }
    }
}

impl Drop for LinkInner {
    fn drop(&mut self) {
        // A child the supervisor stopped reports too late to count (its incarnation is
        // already the next one), so only a child that died unreported is restarted here.
        let reason = "ended without reporting its exit";
        self.exit(ExitReason::Panicked(reason.to_owned()));
    }
}

/// Runs a child's `started` or handler body. A panic or an error is reported as the child's
/// exit and `None` is returned: the caller must then stop the actor.
pub fn guarded<R>(link: &ChildLink, body: impl FnOnce() -> Result<R, String>) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            link.exit(ExitReason::Error(e));
            None
        }
        Err(panic) => {
            link.exit(ExitReason::Panicked(take_panic_message(panic)));
            None
        }
    }
}

/// What [`drain_guarded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every message taken was handled and none is waiting.
    Done,
    /// Every message taken was handled; more are waiting (wake yourself again).
    More,
    /// A handler panicked or failed: the exit is reported, the messages not handled are back
    /// in the mailbox for the next incarnation; stop the actor.
    Failed,
}

/// Takes up to `max` messages and handles them one by one under [`guarded`]. A message whose
/// handler panics is the only one lost; the rest of the batch goes back to the mailbox.
pub fn drain_guarded<M>(
    mailbox: &Mailbox<M>,
    link: &ChildLink,
    max: usize,
    handle: impl FnMut(M) -> Result<(), String>,
) -> Drained {
    let (drained, handled) = drain_batch(mailbox, link, max, handle);
    mailbox.handled(handled);
    drained
}

/// [`drain_guarded`] without reporting the handled messages to the mailbox's activity: the
/// caller reports them once everything the batch caused was posted.
fn drain_batch<M>(
    mailbox: &Mailbox<M>,
    link: &ChildLink,
    max: usize,
    mut handle: impl FnMut(M) -> Result<(), String>,
) -> (Drained, usize) {
    let mut batch = Vec::new();
    let more = mailbox.drain_into(max, &mut batch);
    let taken = batch.len();
    let mut batch = batch.into_iter();
    let ok = guarded(link, || batch.by_ref().try_for_each(&mut handle));
    match (ok, more) {
        (None, _) => {
            let rest: Vec<M> = batch.collect();
            // The message whose handler failed counts as handled: it is lost, not pending.
            let handled = taken - rest.len();
            mailbox.unread(rest);
            (Drained::Failed, handled)
        }
        (Some(()), true) => (Drained::More, taken),
        (Some(()), false) => (Drained::Done, taken),
    }
}

/// A turn of a supervised actor's own that no message starts (a timer's): `work` runs under
/// [`guarded`] as a handler's body does, and a panic in it is reported and stops the actor.
/// Returns false when it stops the actor, for the caller to do what a failed turn does (a
/// cache salvages its requests).
pub fn guarded_turn<A>(
    actor: &mut A,
    ctx: &mut Context<A>,
    link: &ChildLink,
    work: impl FnOnce(&mut A),
) -> bool
where
    A: Actor<Context = Context<A>>,
{
    let ran = guarded(link, || {
        work(actor);
        Ok(())
    })
    .is_some();
    if !ran {
        ctx.stop();
    }
    ran
}

/// One turn of a supervised actor's `Wake` handler: drains up to `max` messages through
/// `handle` under [`drain_guarded`], then runs `after` (what the actor does once per batch:
/// flush, dispatch), wakes the actor again when more are waiting, and stops it when a handler
/// panicked. Returns false when the actor is stopping.
///
/// The batch is reported handled to the mailbox's activity only after `after`, so a
/// deterministic driver never sees the actors idle while a batch's effects are still unposted.
pub fn drain_turn<A, M>(
    actor: &mut A,
    ctx: &mut Context<A>,
    mailbox: &Mailbox<M>,
    link: &ChildLink,
    max: usize,
    handle: impl FnMut(&mut A, M),
    after: impl FnOnce(&mut A, &mut Context<A>),
) -> bool
where
    A: Actor<Context = Context<A>> + Handler<Wake, Result = ()>,
{
    match drain_lane(actor, ctx, mailbox, link, max, handle, after) {
        Drained::Done => true,
        Drained::More => {
            wake_after_others(ctx);
            true
        }
        Drained::Failed => {
            ctx.stop();
            false
        }
    }
}

/// Wakes the actor again once every other actor its arbiter has ready has had a turn: what an
/// actor that left messages in its mailboxes does at the end of its turn.
///
/// Not `ctx.notify(Wake)`: actix handles a notification within the same poll of the actor's
/// context, and so would it a `Wake` sent to its own address, so an actor that kept finding
/// messages left would hold its arbiter until its mailboxes were empty. A cache taking in a
/// burst of a million requests held the scheduler off for all of them, whose queued loads
/// then waited in the scheduler's mailbox, 154,000–184,000 at once (`streamctl bench
/// scale`). Here the next turn waits behind one yield to the arbiter's other tasks.
pub fn wake_after_others<A>(ctx: &mut Context<A>)
where
    A: Actor<Context = Context<A>> + Handler<Wake, Result = ()>,
{
    let yielded = actix::fut::wrap_future::<_, A>(actix_rt::task::yield_now());
    ctx.spawn(yielded.map(|(), actor, ctx| actor.handle(Wake, ctx)));
}

/// One mailbox of a turn: [`drain_turn`] without its own wake or stop, which it leaves to the
/// caller, for an actor that drains several mailboxes in one turn and wakes itself once for
/// all of them (one wake a turn, not one per mailbox with messages left).
pub fn drain_lane<A, M>(
    actor: &mut A,
    ctx: &mut Context<A>,
    mailbox: &Mailbox<M>,
    link: &ChildLink,
    max: usize,
    mut handle: impl FnMut(&mut A, M),
    after: impl FnOnce(&mut A, &mut Context<A>),
) -> Drained
where
    A: Actor<Context = Context<A>>,
{
    let (drained, handled) = drain_batch(mailbox, link, max, |msg| {
        handle(actor, msg);
        Ok(())
    });
    // `after` is the actor's work too (a dispatch, a flush): its panic is reported and stops
    // the actor as a handler's does, and the batch still counts as handled.
    let after_ok = drained == Drained::Failed
        || guarded(link, || {
            after(actor, ctx);
            Ok(())
        })
        .is_some();
    mailbox.handled(handled);
    if after_ok {
        drained
    } else {
        Drained::Failed
    }
}

/// Starts one incarnation of a child on the current arbiter.
pub type StartFn = Box<dyn FnMut(ChildLink) -> Result<Recipient<StopChild>, String> + Send>;

/// How to start a child and whether to restart it.
pub struct ChildSpec {
    name: String,
    kind: RestartKind,
    start: StartFn,
}

impl ChildSpec {
    /// A child named `name` of restart kind `kind`, started by `start`.
    pub fn new(
        name: impl Into<String>,
        kind: RestartKind,
        start: impl FnMut(ChildLink) -> Result<Recipient<StopChild>, String> + Send + 'static,
    ) -> Self {
        Self { name: name.into(), kind, start: Box::new(start) }
    }
}

/// What a supervisor escalates when it gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    /// The supervisor that gave up.
    pub supervisor: String,
    /// The child whose exit was one too many.
    pub child: String,
    /// How that child ended.
    pub reason: ExitReason,
}

/// Live figures of a supervisor.
#[derive(Debug, Default)]
pub struct SupervisorStats {
    restarts: AtomicU64,
    escalated: AtomicBool,
}

impl SupervisorStats {
    /// Children restarted so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Acquire)
    }
    /// Whether the supervisor gave up.
    pub fn escalated(&self) -> bool {
        self.escalated.load(Ordering::Acquire)
    }
}

struct Child {
    spec: ChildSpec,
    incarnation: u64,
    running: Option<Recipient<StopChild>>,
    /// Whether it exited and its kind does not restart it after that exit (a temporary child,
    /// a transient one that stopped normally): a sibling's restart does not bring it back.
    /// Not set for one stopped for a restart still to come.
    ended: bool,
    /// This child's own restarts within the intensity window, which set its backoff: a child
    /// that keeps failing waits longer each time, its siblings do not.
    restarts: RestartWindow,
}

/// See the module docs.
pub struct Supervisor {
    name: String,
    policy: RestartPolicy,
    clock: Arc<dyn Clock>,
    mailbox: Mailbox<SupervisorMsg>,
    children: Vec<Child>,
    window: RestartWindow,
    on_escalate: Box<dyn FnMut(Escalation) + Send>,
    stats: Arc<SupervisorStats>,
    stopped: bool,
    /// Whether a restart is running (see [`Supervisor::restart`]).
    restarting: bool,
    /// The restarts the running one queued, in order.
    restarts_pending: VecDeque<Vec<usize>>,
}

impl Supervisor {
    /// A supervisor with no children yet; `on_escalate` is called once if it gives up.
    pub fn new(
        name: impl Into<String>,
        policy: RestartPolicy,
        clock: Arc<dyn Clock>,
        mailbox: Mailbox<SupervisorMsg>,
        on_escalate: impl FnMut(Escalation) + Send + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            policy,
            clock,
            mailbox,
            children: Vec::new(),
            window: RestartWindow::new(policy.intensity),
            on_escalate: Box::new(on_escalate),
            stats: Arc::default(),
            stopped: false,
            restarting: false,
            restarts_pending: VecDeque::new(),
        }
    }

    /// Adds a child, started after the ones added before it.
    #[must_use]
    pub fn child(mut self, spec: ChildSpec) -> Self {
        let restarts = RestartWindow::new(self.policy.intensity);
        self.children.push(Child { spec, incarnation: 0, running: None, ended: false, restarts });
        self
    }

    /// The supervisor's live figures.
    pub fn stats(&self) -> Arc<SupervisorStats> {
        Arc::clone(&self.stats)
    }

    fn start_child(&mut self, index: usize) -> Result<(), ExitReason> {
        let child = &mut self.children[index];
        child.incarnation += 1;
        let link = ChildLink::new(Some(self.mailbox.clone()), index, child.incarnation);
        let kept = link.clone();
        let failed = match catch_unwind(AssertUnwindSafe(|| (child.spec.start)(link))) {
            Ok(Ok(stop)) => {
                child.running = Some(stop);
                child.ended = false;
                return Ok(());
            }
            Ok(Err(e)) => ExitReason::Error(e),
            Err(panic) => ExitReason::Panicked(take_panic_message(panic)),
        };
        // The caller handles this exit now: the link's drop must not report it again.
        kept.inner.reported.store(true, Ordering::Release);
        Err(failed)
    }

    fn stop_child(&mut self, index: usize) {
        let child = &mut self.children[index];
        if let Some(stop) = child.running.take() {
            // Its exit report will carry the old incarnation and be ignored.
            child.incarnation += 1;
            let _ = stop.try_send(StopChild);
        }
    }

    fn on_exit(
        &mut self,
        index: usize,
        incarnation: u64,
        reason: ExitReason,
        ctx: &mut Context<Self>,
    ) {
        // A report of no child of this supervisor (the message is public) is stale as well:
        // indexing with it would panic the supervisor, and nothing restarts a root one.
        let current = self.children.get(index).is_some_and(|c| c.incarnation == incarnation);
        if self.stopped || !current {
            return;
        }
        self.children[index].running = None;
        if !self.children[index].spec.kind.restarts_after(reason.is_abnormal()) {
            self.children[index].ended = true;
            return;
        }
        let now_ms = self.clock.now_us() / 1_000;
        if !self.window.admit(now_ms) {
            self.escalate(index, reason);
            // Nothing is left for it to do: a parent starts a new supervisor in its place,
            // and could no longer reach this one to stop it.
            ctx.stop();
            return;
        }
        let delay = self.backoff_ms(index, now_ms);
        let covered = match self.policy.strategy {
            Strategy::OneForOne => index..index + 1,
            Strategy::RestForOne => index..self.children.len(),
            Strategy::OneForAll => 0..self.children.len(),
        };
        // A sibling that ended for good stays ended: a restart of another is no reason to
        // bring it back.
        let set: Vec<usize> = covered.filter(|&i| i == index || !self.children[i].ended).collect();
        for &i in set.iter().rev() {
            if i != index {
                self.stop_child(i);
            }
        }
        if delay == 0 {
            self.restart(&set, ctx);
        } else {
            ctx.run_later(Duration::from_millis(delay), move |sup, ctx| sup.restart(&set, ctx));
        }
    }

    /// Counts a restart of child `index` at `now_ms`; the delay before it, which doubles with
    /// each of the child's own restarts in the window (not its siblings').
    fn backoff_ms(&mut self, index: usize, now_ms: u64) -> u64 {
        let restarts = &mut self.children[index].restarts;
        // Only counted here: the supervisor's own window decides whether to escalate.
        let _ = restarts.admit(now_ms);
        self.policy.backoff.delay_ms(restarts.len().saturating_sub(1) as u32)
    }

    /// Restarts `set` in order. A start that fails is an exit whose own restart is queued and
    /// run by the outermost call, not by a nested one: a child whose start keeps failing
    /// restarts in a loop, not a recursion as deep as the intensity allows.
    fn restart(&mut self, set: &[usize], ctx: &mut Context<Self>) {
        if self.restarting {
            self.restarts_pending.push_back(set.to_vec());
            return;
        }
        self.restarting = true;
        self.restart_set(set, ctx);
        while let Some(set) = self.restarts_pending.pop_front() {
            self.restart_set(&set, ctx);
        }
        self.restarting = false;
    }

    fn restart_set(&mut self, set: &[usize], ctx: &mut Context<Self>) {
        for &i in set {
            if self.stopped {
                return;
            }
            // Two delayed restarts can overlap (rest-for-one: a second child failed while the
            // first's set waited): one incarnation at a time, the one started last.
            self.stop_child(i);
            self.stats.restarts.fetch_add(1, Ordering::AcqRel);
            if let Err(reason) = self.start_child(i) {
                let incarnation = self.children[i].incarnation;
                let restarts = self.children[i].spec.kind.restarts_after(reason.is_abnormal());
                self.on_exit(i, incarnation, reason, ctx);
                // Its own restart covers the rest of the set (or the supervisor escalated); a
                // child that is not restarted leaves the others to start here.
                if restarts {
                    return;
                }
            }
        }
    }

    fn escalate(&mut self, index: usize, reason: ExitReason) {
        self.stop_all();
        self.stats.escalated.store(true, Ordering::Release);
        let escalation = Escalation {
            supervisor: self.name.clone(),
            child: self.children[index].spec.name.clone(),
            reason,
        };
        crate::log_caught(|| {
            tracing::error!(target: "streamrt", ?escalation, "supervisor gave up; escalating");
        });
        // The hook is the caller's code: its panic must not cut this handler's batch short.
        let on_escalate = &mut self.on_escalate;
        crate::run_warning_on_panic("a supervisor's escalation hook", || on_escalate(escalation));
    }

    fn stop_all(&mut self) {
        self.stopped = true;
        for i in (0..self.children.len()).rev() {
            self.stop_child(i);
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
        for i in 0..self.children.len() {
            // A start that failed past the intensity escalated: start no more.
            if self.stopped {
                break;
            }
            // Started already by the restart of an earlier sibling that failed to start (its
            // strategy restarts the ones after it): a second start would orphan that one, or
            // start again a temporary child whose start failed there.
            if self.children[i].incarnation > 0 {
                continue;
            }
            if let Err(reason) = self.start_child(i) {
                let incarnation = self.children[i].incarnation;
                let restarts = self.children[i].spec.kind.restarts_after(reason.is_abnormal());
                self.on_exit(i, incarnation, reason, ctx);
                // Under rest-for-one and one-for-all its restart (now, or after its backoff)
                // starts the siblings after it: started here too, they would be started twice.
                if restarts && self.policy.strategy != Strategy::OneForOne {
                    break;
                }
            }
        }
    }
}

impl Handler<StopChild> for Supervisor {
    type Result = ();

    /// A supervisor supervised by another stops with its children.
    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        self.stop_all();
        ctx.stop();
    }
}

impl Handler<Wake> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let mut batch = Vec::new();
        if self.mailbox.drain_into(64, &mut batch) {
            wake_after_others(ctx);
        }
        for msg in batch {
            match msg {
                SupervisorMsg::Exited { child, incarnation, reason } => {
                    self.on_exit(child, incarnation, reason, ctx);
                }
                SupervisorMsg::Ping(ack) => {
                    let _ = ack.send(());
                }
                SupervisorMsg::Stop(ack) => {
                    self.stop_all();
                    let _ = ack.send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod turns;
