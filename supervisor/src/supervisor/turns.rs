//! Turns on one arbiter: an actor that ends a turn with messages left ([`drain_turn`]) lets the
//! arbiter's other ready actors take theirs before its next.

use std::sync::{Arc, Mutex, PoisonError};

use actix::{Actor, AsyncContext, Context, Handler, System};

use super::*;

/// Messages a turn.
const TURN_MAX: usize = 64;

/// Drains its mailbox a turn at a time, logging its name for each message it handles.
struct Logger {
    name: &'static str,
    mailbox: Mailbox<u32>,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Actor for Logger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
    }
}

impl Handler<Wake> for Logger {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let (mailbox, log, name) = (self.mailbox.clone(), Arc::clone(&self.log), self.name);
        let link = ChildLink::detached();
        let handle =
            |_: &mut Self, _| log.lock().unwrap_or_else(PoisonError::into_inner).push(name);
        drain_turn(self, ctx, &mailbox, &link, TURN_MAX, handle, |_, _| {});
    }
}

#[test]
fn an_actor_with_messages_left_lets_the_other_actors_of_its_arbiter_take_a_turn() {
    let (busy, quiet) = (Mailbox::new(), Mailbox::new());
    for i in 0..1_000 {
        busy.post(i).unwrap();
    }
    quiet.post(0).unwrap();
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let system = System::new();
    let started = (busy.clone(), quiet.clone(), Arc::clone(&log));
    system.block_on(async move {
        let (busy, quiet, log) = started;
        Logger { name: "busy", mailbox: busy, log: Arc::clone(&log) }.start();
        Logger { name: "quiet", mailbox: quiet, log }.start();
    });
    // Each turn of the executor lets the actors run until they wait; a bounded number of
    // turns keeps a broken wake from spinning forever.
    for _ in 0..1_000 {
        if log.lock().unwrap().len() == 1_001 {
            break;
        }
        system.block_on(async { actix_rt::task::yield_now().await });
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1_001, "every message handled");
    let quiet_at = log.iter().position(|name| *name == "quiet").expect("quiet's message handled");
    assert_eq!(quiet_at, TURN_MAX, "the quiet actor's turn came after the busy one's first");
}

/// Handles nothing, then panics in its batch's `after` (as a dispatch might).
struct PanicsAfter {
    mailbox: Mailbox<u32>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Actor for PanicsAfter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stopped.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Handler<Wake> for PanicsAfter {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let mailbox = self.mailbox.clone();
        let after = |_: &mut Self, _: &mut Context<Self>| panic!("a panic after the batch");
        drain_turn(self, ctx, &mailbox, &ChildLink::detached(), TURN_MAX, |_, _| {}, after);
    }
}

#[test]
fn a_panic_after_a_batch_stops_the_actor_and_still_counts_the_batch_handled() {
    let mailbox = Mailbox::new();
    let activity = Arc::new(crate::Activity::new());
    mailbox.track(&activity);
    mailbox.post(1).unwrap();
    mailbox.post(2).unwrap();
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let system = System::new();
    let actor = PanicsAfter { mailbox: mailbox.clone(), stopped: Arc::clone(&stopped) };
    system.block_on(async move {
        actor.start();
    });
    // A bounded number of executor turns, as above.
    for _ in 0..1_000 {
        if stopped.load(std::sync::atomic::Ordering::Acquire) {
            break;
        }
        system.block_on(async { actix_rt::task::yield_now().await });
    }
    assert!(stopped.load(std::sync::atomic::Ordering::Acquire), "the actor stopped");
    assert_eq!(activity.pending(), 0, "both messages counted handled");
}
