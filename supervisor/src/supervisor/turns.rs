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
