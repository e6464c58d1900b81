//! A cache's inbox: the mailbox of its messages, the lane of the engine's new requests, the lane
//! of its handles' commands (release, reprioritise) and the lane of the scheduler's dispatch
//! orders, attached to the same actor, closed together and tracked together.
//!
//! # Ordering
//!
//! At every wake the cache drains the dispatch lane in full, then a batch of new requests, then
//! a batch of handle commands, then a batch of its messages (see the cache's `# Ordering`): a
//! dispatched load never waits behind the engine's requests.
//!
//! # Size
//!
//! New requests have a lane of their own because they come in bursts (a level's assets, all at
//! once) faster than the cache takes them in: a request waits there as a 16-byte
//! [`NewRequest`] (its ticket and its source's locator), not as a 136-byte message (the size of
//! the largest, a worker's reply). At a million requests made at once, 700,000 of them waited
//! (`streamctl bench scale`).
//!
//! Handle commands have a lane of their own for the same reason: dropping a level's handles
//! posts a `Release` for each at once. As 136-byte messages, the million handles `streamctl
//! bench scale` drops after its deepest run left half a million waiting at once, in a buffer
//! of 1,048,576 slots: 136 MiB; as 32-byte [`HandleCommand`]s, 32 MiB.

use std::sync::Arc;

use actix::Recipient;
use streamrt_supervisor::{Activity, Mailbox, Wake};

use super::CacheMsg;
use streamrt_messages::{AssetPath, Priority, RequestId};

use crate::request::Ticket;
use crate::source::Locator;
use crate::work::DispatchOrder;

/// What a request's handle asks of its cache; the request's path finds its slot.
pub(crate) struct HandleCommand {
    pub(crate) request: RequestId,
    pub(crate) path: AssetPath,
    pub(crate) change: HandleChange,
}

/// See [`HandleCommand`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandleChange {
    /// The handle let go (cancelled or dropped).
    Release,
    /// The request's priority changed.
    Reprioritize(Priority),
}

/// A request the engine made, on its way to its cache: its ticket, and where the source keeps
/// its asset (from the source's `entry_info`), kept in the slot for the read. Dropped unhandled,
/// its ticket fails the request.
pub(crate) struct NewRequest<T: Send + Sync + 'static> {
    pub(crate) ticket: Ticket<T>,
    pub(crate) locator: Option<Locator>,
}

/// A cache's four mailboxes: its messages, the engine's new requests (`LoadAsset`), its
/// handles' commands and the scheduler's dispatch orders (see `# Ordering`). All four are
/// attached to the same actor, closed together and tracked together.
pub(crate) struct CacheInbox<T: Send + Sync + 'static> {
    pub(crate) messages: Mailbox<CacheMsg<T>>,
    pub(crate) loads: Mailbox<NewRequest<T>>,
    pub(crate) handles: Mailbox<HandleCommand>,
    pub(crate) dispatches: Mailbox<DispatchOrder>,
}

impl<T: Send + Sync + 'static> Clone for CacheInbox<T> {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
            loads: self.loads.clone(),
            handles: self.handles.clone(),
            dispatches: self.dispatches.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> CacheInbox<T> {
    pub(crate) fn new() -> Self {
        Self {
            messages: Mailbox::new(),
            loads: Mailbox::new(),
            handles: Mailbox::new(),
            dispatches: Mailbox::new(),
        }
    }

    /// Attaches the cache incarnation that drains all four.
    pub(super) fn attach(&self, waker: &Recipient<Wake>) {
        self.messages.attach(waker.clone());
        self.loads.attach(waker.clone());
        self.handles.attach(waker.clone());
        self.dispatches.attach(waker.clone());
    }

    /// Closes all four. The messages, requests and commands not yet handled are dropped (the
    /// requests' tickets fail them), and so are the orders (their read credits go back).
    pub(crate) fn close(&self) {
        drop(self.messages.close());
        drop(self.loads.close());
        drop(self.handles.close());
        drop(self.dispatches.close());
    }

    /// Counts the four mailboxes' messages in a deterministic runtime's activity.
    pub(crate) fn track(&self, activity: &Arc<Activity>) {
        self.messages.track(activity);
        self.loads.track(activity);
        self.handles.track(activity);
        self.dispatches.track(activity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_command_is_32_bytes() {
        assert_eq!(std::mem::size_of::<HandleCommand>(), 32);
    }
}
