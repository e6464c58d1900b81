//! A cache's inbox: the mailbox of its messages, the lane of the engine's new requests and the
//! lane of the scheduler's dispatch orders, attached to the same actor, closed together and
//! tracked together.
//!
//! # Ordering
//!
//! At every wake the cache drains the dispatch lane in full, then a batch of new requests, then
//! a batch of its messages (see the cache's `# Ordering`): a dispatched load never waits behind
//! the engine's requests.
//!
//! # Size
//!
//! New requests have a lane of their own because they come in bursts (a level's assets, all at
//! once) faster than the cache takes them in: a request waits there as a 16-byte
//! [`NewRequest`] (its ticket and its source's locator), not as a 128-byte message (the size of
//! the largest, a worker's reply). At a million requests made at once, 700,000 of them waited
//! (`streamctl bench scale`).

use std::sync::Arc;

use actix::Recipient;
use streamrt_supervisor::{Activity, Mailbox, Wake};

use super::CacheMsg;
use crate::request::Ticket;
use crate::source::Locator;
use crate::work::DispatchOrder;

/// A request the engine made, on its way to its cache: its ticket, and where the source keeps
/// its asset (from the source's `entry_info`), kept in the slot for the read. Dropped unhandled,
/// its ticket fails the request.
pub(crate) struct NewRequest<T: Send + Sync + 'static> {
    pub(crate) ticket: Ticket<T>,
    pub(crate) locator: Option<Locator>,
}

/// A cache's three mailboxes: its messages, the engine's new requests (`LoadAsset`) and the
/// scheduler's dispatch orders (see `# Ordering`). All three are attached to the same actor,
/// closed together and tracked together.
pub(crate) struct CacheInbox<T: Send + Sync + 'static> {
    pub(crate) messages: Mailbox<CacheMsg<T>>,
    pub(crate) loads: Mailbox<NewRequest<T>>,
    pub(crate) dispatches: Mailbox<DispatchOrder>,
}

impl<T: Send + Sync + 'static> Clone for CacheInbox<T> {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
            loads: self.loads.clone(),
            dispatches: self.dispatches.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> CacheInbox<T> {
    pub(crate) fn new() -> Self {
        Self { messages: Mailbox::new(), loads: Mailbox::new(), dispatches: Mailbox::new() }
    }

    /// Attaches the cache incarnation that drains all three.
    pub(super) fn attach(&self, waker: &Recipient<Wake>) {
        self.messages.attach(waker.clone());
        self.loads.attach(waker.clone());
        self.dispatches.attach(waker.clone());
    }

    /// Closes all three. The messages and requests not yet handled are dropped (their tickets
    /// fail their requests), and so are the orders (their read credits go back).
    pub(crate) fn close(&self) {
        drop(self.messages.close());
        drop(self.loads.close());
        drop(self.dispatches.close());
    }

    /// Counts the three mailboxes' messages in a deterministic runtime's activity.
    pub(crate) fn track(&self, activity: &Arc<Activity>) {
        self.messages.track(activity);
        self.loads.track(activity);
        self.dispatches.track(activity);
    }
}
