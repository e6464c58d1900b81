//! A cache's inbox: the mailbox of its messages and the lane of the scheduler's dispatch
//! orders, attached to the same actor, closed together and tracked together.
//!
//! # Ordering
//!
//! The cache drains the lane, in full, before its mailbox at every wake (see the cache's
//! `# Ordering`): a dispatched load never waits behind the engine's requests.

use std::sync::Arc;

use actix::Recipient;
use streamrt_supervisor::{Activity, Mailbox, Wake};

use super::CacheMsg;
use crate::work::DispatchOrder;

/// A cache's two mailboxes: its messages, and the lane of the scheduler's dispatch orders,
/// which the cache drains first at every wake (see `# Ordering`). Both are attached to the
/// same actor, closed together and tracked together.
pub(crate) struct CacheInbox<T: Send + Sync + 'static> {
    pub(crate) messages: Mailbox<CacheMsg<T>>,
    pub(crate) dispatches: Mailbox<DispatchOrder>,
}

impl<T: Send + Sync + 'static> Clone for CacheInbox<T> {
    fn clone(&self) -> Self {
        Self { messages: self.messages.clone(), dispatches: self.dispatches.clone() }
    }
}

impl<T: Send + Sync + 'static> CacheInbox<T> {
    pub(crate) fn new() -> Self {
        Self { messages: Mailbox::new(), dispatches: Mailbox::new() }
    }

    /// Attaches the cache incarnation that drains both.
    pub(super) fn attach(&self, waker: &Recipient<Wake>) {
        self.messages.attach(waker.clone());
        self.dispatches.attach(waker.clone());
    }

    /// Closes both. The messages not yet handled are dropped (their tickets fail their
    /// requests), and so are the orders (their read credits go back).
    pub(crate) fn close(&self) {
        drop(self.messages.close());
        drop(self.dispatches.close());
    }

    /// Counts both mailboxes' messages in a deterministic runtime's activity.
    pub(crate) fn track(&self, activity: &Arc<Activity>) {
        self.messages.track(activity);
        self.dispatches.track(activity);
    }
}
