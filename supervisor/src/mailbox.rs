//! A batched mailbox that outlives the actor draining it.
//!
//! # Ordering
//!
//! Messages from one producer are drained in the order that producer posted them.
//!
//! # Backpressure
//!
//! The mailbox itself does not refuse messages: every path into one is bounded upstream (the
//! runtime's admission limit for engine commands, dispatch credits for worker replies), and each
//! actor's docs name the bound. A closed mailbox refuses with [`MailboxClosed`], handing the
//! message back so the caller can fail it properly.
//!
//! # Wake protocol
//!
//! At most one [`Wake`] is outstanding: a post pushes under the queue's lock, then sends a wake
//! only when it flips `wake_pending` from false to true. A batch sets the flag under the same
//! lock, after its take: clear when it emptied the queue, so a message posted after the take
//! always causes a new wake; set when it left messages behind, as its actor then wakes itself
//! for them, and a post meanwhile sends no wake of its own (a busy actor is not woken once per
//! producer's post as well). A wake may find the queue empty; that is harmless.
//! A producer posting a batch may post each message unwoken ([`Mailbox::post_unwoken`]) and
//! then wake once; until it does, the actor may not see them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::SendError;
use actix::{Message, Recipient};

use crate::Activity;

/// Tells an actor its mailbox has messages.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Sends `waker` a wake; false if its actor is gone. actix's `try_send` also refuses a live
/// actor's channel as `Full` once a send found it holding 16 messages or more (other senders'
/// wakes, a `StopChild`): the wake goes past the capacity then.
///
/// # Backpressure
///
/// Not the channel's: the messages wait in the [`Mailbox`], bounded by its producers' own
/// limits, and a mailbox has at most one wake outstanding (`wake_pending`), so going past the
/// capacity adds one small message per mailbox at most.
pub(crate) fn send_wake(waker: &Recipient<Wake>) -> bool {
    match waker.try_send(Wake) {
        Ok(()) => true,
        Err(SendError::Full(_)) => {
            waker.do_send(Wake);
            true
        }
        Err(SendError::Closed(_)) => false,
    }
}

/// How [`Mailbox::ask_with`] waits for its reply, within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskPatience {
    /// Until the reply comes: the question is posted even while the actor is between two
    /// incarnations (the old one dead, its successor not started yet, as during a restart's
    /// backoff), and an actor that stops after it is posted leaves it for its successor; the
    /// successor answers.
    ThroughRestarts,
    /// Until the reply comes or the actor is found dead (when asked, then every 10 ms):
    /// for an actor no supervisor will restart (its supervisor gave up), whose queued messages
    /// nobody will handle, so a full timeout would be waited for nothing.
    WhileAlive,
}

/// How often an ask waiting [`AskPatience::WhileAlive`] looks whether its actor still lives.
const ASK_LOOK_INTERVAL: Duration = Duration::from_millis(10);

/// The mailbox was closed (its runtime is shutting down); the message is handed back.
#[derive(Debug, thiserror::Error)]
#[error("mailbox closed")]
pub struct MailboxClosed<M>(pub M);

struct Shared<M> {
    queue: Mutex<VecDeque<M>>,
    wake_pending: Arc<AtomicBool>,
    closed: AtomicBool,
    waker: Mutex<Option<Recipient<Wake>>>,
    /// Counts messages in and out when a deterministic driver tracks this mailbox.
    activity: OnceLock<Arc<Activity>>,
}

/// A multi-producer mailbox; clones post into the same queue.
pub struct Mailbox<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<M> Default for Mailbox<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Mailbox<M> {
    /// An empty, open mailbox with no actor attached yet; posts queue until one attaches.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                wake_pending: Arc::new(AtomicBool::new(false)),
                closed: AtomicBool::new(false),
                waker: Mutex::new(None),
                activity: OnceLock::new(),
            }),
        }
    }

    /// Counts this mailbox's messages in `activity` from now on (messages already queued
    /// included). A mailbox is tracked by one activity at most; later calls are ignored.
    pub fn track(&self, activity: &Arc<Activity>) {
        let q = self.queue();
        if self.shared.activity.set(Arc::clone(activity)).is_ok() {
            activity.add(q.len());
        }
    }

    fn counted(&self, n: usize) {
        if let Some(activity) = self.shared.activity.get() {
            activity.add(n);
        }
    }

    /// Reports `n` messages taken by [`Mailbox::drain_into`] as handled.
    pub fn handled(&self, n: usize) {
        if let Some(activity) = self.shared.activity.get() {
            activity.done(n);
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<M>> {
        // A poisoned lock still guards a consistent queue: push and drain do not panic, and a
        // `post_all` whose iterator panics under the lock leaves the messages it pushed whole.
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Posts a message and wakes the actor if no wake is outstanding. Never blocks on the actor.
    ///
    /// # Errors
    ///
    /// [`MailboxClosed`] with the message, once [`Mailbox::close`] was called.
    pub fn post(&self, msg: M) -> Result<(), MailboxClosed<M>> {
        self.post_unwoken(msg)?;
        self.wake();
        Ok(())
    }

    /// Posts a message without waking the actor: the caller owes a [`Mailbox::wake`], which it
    /// makes once the batch it is posting is complete. A producer that posts several replies
    /// in quick succession wakes the actor's thread once for all of them, not once each.
    ///
    /// # Errors
    ///
    /// [`MailboxClosed`] with the message, once [`Mailbox::close`] was called.
    pub fn post_unwoken(&self, msg: M) -> Result<(), MailboxClosed<M>> {
        let mut q = self.queue();
        // Checked under the lock so that `close` sees every message posted before it.
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(MailboxClosed(msg));
        }
        self.counted(1);
        q.push_back(msg);
        Ok(())
    }

    /// Posts several messages with one lock and at most one wake.
    ///
    /// # Errors
    ///
    /// [`MailboxClosed`] with every message, once the mailbox is closed.
    pub fn post_all(&self, msgs: impl IntoIterator<Item = M>) -> Result<(), MailboxClosed<Vec<M>>> {
        {
            let q = self.queue();
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(MailboxClosed(msgs.into_iter().collect()));
            }
            // Counted by a guard: should the caller's iterator panic part-way, what it pushed
            // is still counted, or a deterministic run's activity would settle with it queued.
            let before = q.len();
            let mut pushed = Pushed { mailbox: self, queue: q, before };
            pushed.queue.extend(msgs);
        }
        self.wake();
        Ok(())
    }

    /// Wakes the actor if no wake is outstanding: what [`Mailbox::post`] does after its push,
    /// and what a producer owes after [`Mailbox::post_unwoken`].
    pub fn wake(&self) {
        if self.shared.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let waker = self.shared.waker.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(waker), Some(activity)) = (waker.as_ref(), self.shared.activity.get()) {
            if activity.defer(waker, &self.shared.wake_pending) {
                return;
            }
        }
        let delivered = waker.as_ref().is_some_and(send_wake);
        if !delivered {
            // No live actor to wake (not attached yet, or restarting): the next `attach` wakes it.
            self.shared.wake_pending.store(false, Ordering::Release);
        }
    }

    /// Attaches the actor that drains this mailbox (on start and on every restart) and wakes it
    /// if messages are waiting.
    pub fn attach(&self, waker: Recipient<Wake>) {
        *self.shared.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(waker);
        self.shared.wake_pending.store(false, Ordering::Release);
        if !self.queue().is_empty() {
            self.wake();
        }
    }

    /// Takes up to `max` messages into `out`, oldest first. Returns whether more remain, in
    /// which case the caller must wake itself again after handling the batch: the wake stays
    /// pending meanwhile, so producers send none of their own (see the wake protocol).
    pub fn drain_into(&self, max: usize, out: &mut Vec<M>) -> bool {
        let mut q = self.queue();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        let more = !q.is_empty();
        // Under the lock, after the take: a post pushed before it is in this batch or left for
        // the caller's own next wake; a post pushed after it finds the flag clear and wakes.
        self.shared.wake_pending.store(more, Ordering::Release);
        more
    }

    /// Puts messages taken but not handled back at the front, in their order (after a drained
    /// actor failed mid-batch, so its successor handles them).
    pub fn unread(&self, msgs: Vec<M>) {
        if msgs.is_empty() {
            return;
        }
        {
            let mut q = self.queue();
            // Closed meanwhile (a shutdown that stopped waiting for the actor): what `close`
            // returned is all it fails, so these are dropped here (their own drop reports a
            // job's end), and counted handled, as nothing will take them.
            if self.shared.closed.load(Ordering::Acquire) {
                drop(q);
                // Counted first: a message's drop is the caller's code, and may panic.
                self.handled(msgs.len());
                crate::drop_each_warning_on_panic("a message's drop", msgs);
                return;
            }
            for msg in msgs.into_iter().rev() {
                q.push_front(msg);
            }
        }
        self.wake();
    }

    /// Whether a reply can be expected: an attached actor is alive, or none attached yet (one
    /// may be starting). False once the attached actor died and none replaced it.
    pub fn actor_alive_or_starting(&self) -> bool {
        let waker = self.shared.waker.lock().unwrap_or_else(PoisonError::into_inner);
        waker.as_ref().is_none_or(Recipient::connected)
    }

    /// Posts a message carrying a reply channel (built by `make`) and waits up to `timeout`
    /// for the reply, through restarts ([`AskPatience::ThroughRestarts`]). `None` at once if
    /// the mailbox is closed, else `None` on timeout. For tools, tests and shutdown: never
    /// from an arbiter thread.
    pub fn ask<R>(&self, make: impl FnOnce(mpsc::Sender<R>) -> M, timeout: Duration) -> Option<R> {
        self.ask_with(make, timeout, AskPatience::ThroughRestarts)
    }

    /// [`Mailbox::ask`], waiting as `patience` says.
    pub fn ask_with<R>(
        &self,
        make: impl FnOnce(mpsc::Sender<R>) -> M,
        timeout: Duration,
        patience: AskPatience,
    ) -> Option<R> {
        if patience == AskPatience::WhileAlive && !self.actor_alive_or_starting() {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        self.post(make(tx)).ok()?;
        if patience == AskPatience::ThroughRestarts {
            return rx.recv_timeout(timeout).ok();
        }
        // `None` for a timeout past what an `Instant` holds: never short of time then.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            match rx.recv_timeout(left.min(ASK_LOOK_INTERVAL)) {
                Ok(reply) => return Some(reply),
                Err(mpsc::RecvTimeoutError::Timeout)
                    if !left.is_zero() && self.actor_alive_or_starting() => {}
                // A reply sent just before its actor stopped is still taken.
                Err(mpsc::RecvTimeoutError::Timeout) => return rx.try_recv().ok(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Closes the mailbox: later posts are refused. Returns the messages not yet drained.
    pub fn close(&self) -> Vec<M> {
        let mut q = self.queue();
        self.shared.closed.store(true, Ordering::Release);
        self.handled(q.len());
        q.drain(..).collect()
    }

    /// Closes the mailbox and drops the messages not yet drained one at a time, each under a
    /// catch of its own: a message may hold the embedding program's value (a decoded asset),
    /// whose `Drop` may panic, and a stop must go on past it. `what` names them in the warning.
    pub fn close_dropping(&self, what: &str) {
        crate::drop_each_warning_on_panic(what, self.close());
    }

    /// Whether [`Mailbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue().len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The messages [`Mailbox::post_all`] pushed under the lock, counted as the lock is let go.
struct Pushed<'a, M> {
    mailbox: &'a Mailbox<M>,
    queue: MutexGuard<'a, VecDeque<M>>,
    before: usize,
}

impl<M> Drop for Pushed<'_, M> {
    fn drop(&mut self) {
        self.mailbox.counted(self.queue.len() - self.before);
        // The iterator panicked: `post_all` will not reach its wake, owed for what is queued
        // (a wake takes the waker's lock, never the queue's).
        if std::thread::panicking() {
            self.mailbox.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
    use std::sync::mpsc;

    struct Drainer {
        mailbox: Mailbox<u32>,
        seen: mpsc::Sender<Vec<u32>>,
    }

    impl Actor for Drainer {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            self.mailbox.attach(ctx.address().recipient());
        }
    }

    impl Handler<Wake> for Drainer {
        type Result = ();
        fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
            let mut batch = Vec::new();
            if self.mailbox.drain_into(3, &mut batch) {
                ctx.notify(Wake);
            }
            if !batch.is_empty() {
                self.seen.send(batch).unwrap();
            }
        }
    }

    #[test]
    fn messages_posted_together_by_an_iterator_that_panics_part_way_are_still_counted() {
        let mailbox = Mailbox::new();
        let activity = Arc::new(Activity::new());
        mailbox.track(&activity);
        let posted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let messages = (0..3).map(|i| if i == 2 { panic!("the third") } else { i });
            let _ = mailbox.post_all(messages);
        }));
        assert!(posted.is_err());
        assert_eq!(mailbox.len(), 2, "the two before the panic are queued");
        assert_eq!(activity.pending(), 2, "and counted, or a run would settle with them queued");
    }

    #[test]
    fn messages_put_back_after_the_mailbox_closed_are_dropped_and_counted_handled() {
        let mailbox = Mailbox::new();
        let activity = Arc::new(Activity::new());
        mailbox.track(&activity);
        for i in 0..3 {
            mailbox.post(i).unwrap();
        }
        let mut batch = Vec::new();
        mailbox.drain_into(3, &mut batch);
        // A shutdown closes the mailbox while the batch is being handled; one is handled.
        assert!(mailbox.close().is_empty());
        mailbox.handled(1);
        mailbox.unread(batch.split_off(1));
        assert!(mailbox.is_empty(), "nothing is left in a closed mailbox");
        assert_eq!(activity.pending(), 0, "nothing is counted pending for ever");
    }

    #[test]
    fn posts_before_attach_are_delivered_in_order_in_batches() {
        let mailbox = Mailbox::new();
        for i in 0..7 {
            mailbox.post(i).unwrap();
        }
        let (tx, rx) = mpsc::channel();
        let sys = actix::System::new();
        let mb = mailbox.clone();
        sys.block_on(async move {
            Drainer { mailbox: mb, seen: tx }.start();
        });
        let mut all = Vec::new();
        // Each turn of the executor lets the actor handle one wake; a bounded number of turns
        // keeps a broken wake protocol from spinning forever.
        for _ in 0..100 {
            if all.len() == 7 {
                break;
            }
            sys.block_on(async { actix_rt::task::yield_now().await });
            while let Ok(batch) = rx.try_recv() {
                assert!(batch.len() <= 3, "batch over the limit: {batch:?}");
                all.extend(batch);
            }
        }
        assert_eq!(all, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn an_unwoken_post_waits_for_its_wake() {
        let mailbox = Mailbox::new();
        let (tx, rx) = mpsc::channel();
        let sys = actix::System::new();
        let mb = mailbox.clone();
        sys.block_on(async move {
            Drainer { mailbox: mb, seen: tx }.start();
        });
        let turns = |n: usize| {
            for _ in 0..n {
                sys.block_on(async { actix_rt::task::yield_now().await });
            }
        };
        turns(10);
        mailbox.post_unwoken(1).unwrap();
        mailbox.post_unwoken(2).unwrap();
        turns(10);
        assert!(rx.try_recv().is_err(), "an unwoken post woke the actor");
        assert_eq!(mailbox.len(), 2);
        mailbox.wake();
        turns(10);
        assert_eq!(rx.try_iter().flatten().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_batch_that_leaves_messages_keeps_the_wake_pending_and_an_emptying_one_clears_it() {
        let mailbox = Mailbox::new();
        for i in 0..5 {
            mailbox.post_unwoken(i).unwrap();
        }
        let pending = || mailbox.shared.wake_pending.load(Ordering::Acquire);
        let mut batch = Vec::new();
        assert!(mailbox.drain_into(3, &mut batch));
        assert!(pending(), "the caller wakes itself for the rest: producers need not");
        assert!(!mailbox.drain_into(3, &mut batch));
        assert!(!pending(), "a post after an emptying batch must wake the actor");
        assert_eq!(batch, vec![0, 1, 2, 3, 4]);
    }

    /// Answers each question with its incarnation; `None` stops it.
    struct Answerer {
        mailbox: Mailbox<Option<mpsc::Sender<u32>>>,
        incarnation: u32,
    }

    impl Actor for Answerer {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            self.mailbox.attach(ctx.address().recipient());
        }
    }

    impl Handler<Wake> for Answerer {
        type Result = ();
        fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
            let mut batch = Vec::new();
            self.mailbox.drain_into(usize::MAX, &mut batch);
            for question in batch {
                match question {
                    Some(reply) => reply.send(self.incarnation).unwrap(),
                    None => ctx.stop(),
                }
            }
        }
    }

    #[test]
    fn an_ask_made_between_two_incarnations_is_answered_by_the_second() {
        let mailbox = Mailbox::new();
        let sys = actix::System::new();
        let turn = || sys.block_on(async { actix_rt::task::yield_now().await });
        let started = |incarnation| {
            let mailbox = mailbox.clone();
            sys.block_on(async move { Answerer { mailbox, incarnation }.start() });
        };
        started(1);
        mailbox.post(None).unwrap();
        for _ in 0..100 {
            if !mailbox.actor_alive_or_starting() {
                break;
            }
            turn();
        }
        assert!(!mailbox.actor_alive_or_starting(), "the first incarnation stopped");
        let asking = {
            let mailbox = mailbox.clone();
            std::thread::spawn(move || mailbox.ask(Some, Duration::from_secs(30)))
        };
        // The question is posted, or the ask gave up without posting it.
        while mailbox.is_empty() && !asking.is_finished() {
            std::thread::yield_now();
        }
        started(2);
        for _ in 0..100 {
            if mailbox.is_empty() {
                break;
            }
            turn();
        }
        assert_eq!(asking.join().unwrap(), Some(2));
    }

    #[test]
    fn closed_mailbox_hands_messages_back() {
        let mailbox = Mailbox::new();
        mailbox.post(1).unwrap();
        assert_eq!(mailbox.close(), vec![1]);
        assert!(matches!(mailbox.post(2), Err(MailboxClosed(2))));
        assert!(mailbox.is_closed() && mailbox.is_empty());
    }

    /// Counts its drops, and panics in the first `panics` of them.
    struct PanicsOnDrop(Arc<std::sync::atomic::AtomicUsize>, usize);

    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            let dropped = self.0.fetch_add(1, Ordering::Relaxed);
            assert!(dropped >= self.1, "scripted panic dropping a message");
        }
    }

    #[test]
    fn closing_drops_every_message_left_though_the_first_drops_panic() {
        let mailbox = Mailbox::new();
        let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..4 {
            mailbox.post(PanicsOnDrop(Arc::clone(&dropped), 2)).ok().unwrap();
        }
        mailbox.close_dropping("a message left at a stop");
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
        assert!(mailbox.is_closed());
    }
}
