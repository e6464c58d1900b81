//! A cache's inbox: the mailbox of its messages, the lane of what the engine asks of it (new
//! requests and handle commands) and the lane of the scheduler's dispatch orders, attached to
//! the same actor, closed together and tracked together.
//!
//! # Ordering
//!
//! At every wake the cache drains the dispatch lane in full, then a batch of the engine's lane,
//! then a batch of its messages (see the cache's `# Ordering`): a dispatched load never waits
//! behind the engine's requests. The engine's lane is one FIFO, so a request's `Release` or
//! `Reprioritize` always comes after its load. The one exception changes nothing: a request
//! refused a dependency while it is made fails, and lets go, before its load is posted; the
//! cache finds no holder to release, then drops the load of a request that already ended.
//!
//! # Size
//!
//! The engine's lane is a lane of its own because its messages come in bursts (a level's
//! assets requested at once, or its handles dropped at once) faster than the cache takes them
//! in: each waits there as a 16-byte [`EngineMsg`] (a release names its request by its cell),
//! not as a 136-byte message (the size of the largest, a worker's reply). At a million
//! requests made at once, 700,000 of them waited (`streamctl bench scale`); the million
//! handles that bench drops after its deepest run left half a million releases waiting at
//! once, in a buffer of 1,048,576 slots: 136 MiB as messages, 16 MiB here.

use std::sync::Arc;

use actix::Recipient;
use streamrt_supervisor::{Activity, Mailbox, Wake};

use super::CacheMsg;
use crate::request::{RequestCell, Ticket};
use crate::source::Locator;
use crate::work::DispatchOrder;

/// What the engine's side asks of a cache, in the order it asked (see `# Ordering`).
pub(crate) enum EngineMsg<T: Send + Sync + 'static> {
    /// A new request, with where its source keeps its asset (from the source's `entry_info`),
    /// kept in the slot for the read. Fields of the variant, not a struct: the tag then fits
    /// beside the locator and the message in 16 bytes (see `# Size`).
    Load(Ticket<T>, Option<Locator>),
    /// A request's handle let go (cancelled or dropped); the request's path finds its slot.
    Release(Arc<RequestCell<T>>),
    /// A request's priority changed; the request's path finds its slot, and its priority is
    /// read from it as the change is applied.
    Reprioritize(Arc<RequestCell<T>>),
}

/// A cache's three mailboxes: its messages, the engine's lane and the scheduler's dispatch
/// orders (see `# Ordering`). All three are attached to the same actor, closed together and
/// tracked together.
pub(crate) struct CacheInbox<T: Send + Sync + 'static> {
    pub(crate) messages: Mailbox<CacheMsg<T>>,
    pub(crate) engine: Mailbox<EngineMsg<T>>,
    pub(crate) dispatches: Mailbox<DispatchOrder>,
}

impl<T: Send + Sync + 'static> Clone for CacheInbox<T> {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
            engine: self.engine.clone(),
            dispatches: self.dispatches.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> CacheInbox<T> {
    pub(crate) fn new() -> Self {
        Self { messages: Mailbox::new(), engine: Mailbox::new(), dispatches: Mailbox::new() }
    }

    /// Attaches the cache incarnation that drains all three.
    pub(super) fn attach(&self, waker: &Recipient<Wake>) {
        self.messages.attach(waker.clone());
        self.engine.attach(waker.clone());
        self.dispatches.attach(waker.clone());
    }

    /// Closes all three. The messages and requests not yet handled are dropped (their tickets
    /// fail their requests), and so are the orders (their read credits go back).
    pub(crate) fn close(&self) {
        self.messages.close_dropping("a cache's message left at its stop");
        self.engine.close_dropping("a request's message left at its cache's stop");
        self.dispatches.close_dropping("a dispatch order left at its cache's stop");
    }

    /// Counts the three mailboxes' messages in a deterministic runtime's activity.
    pub(crate) fn track(&self, activity: &Arc<Activity>) {
        self.messages.track(activity);
        self.engine.track(activity);
        self.dispatches.track(activity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_message_is_16_bytes() {
        assert_eq!(std::mem::size_of::<EngineMsg<u8>>(), 16);
    }
}
