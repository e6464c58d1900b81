//! Registered asset types: what the engine side needs to route a request to its cache, and what
//! the core thread needs to start that cache.

use std::any::{Any, TypeId};
use std::sync::mpsc;
use std::sync::Arc;

use actix::Actor;
use streamrt_messages::AssetTypeName;
use streamrt_supervisor::Mailbox;

use crate::asset::Decoder;
use crate::cache::{Cache, CacheLinks, CacheMsg, CacheStats, TypeRoute};

/// The engine side of one registered type.
pub(crate) struct TypeEntry<T: Send + Sync + 'static> {
    pub(crate) name: AssetTypeName,
    pub(crate) mailbox: Mailbox<CacheMsg<T>>,
}

/// A registration waiting for the runtime to start.
pub(crate) trait TypeSpec: Send {
    fn name(&self) -> &AssetTypeName;
    fn asset_type_id(&self) -> TypeId;
    /// The engine side, as `Arc<TypeEntry<Asset>>`.
    fn entry(&self) -> Arc<dyn Any + Send + Sync>;
    fn control(&self) -> Box<dyn CacheControl>;
    /// Starts the cache actor on the current arbiter.
    fn start(self: Box<Self>, links: CacheLinks);
}

pub(crate) struct DecoderSpec<D: Decoder> {
    name: AssetTypeName,
    decoder: Arc<D>,
    mailbox: Mailbox<CacheMsg<D::Asset>>,
}

impl<D: Decoder> DecoderSpec<D> {
    pub(crate) fn new(name: AssetTypeName, decoder: D) -> Self {
        Self {
            name,
            decoder: Arc::new(decoder),
            mailbox: Mailbox::new(),
        }
    }
}

impl<D: Decoder> TypeSpec for DecoderSpec<D> {
    fn name(&self) -> &AssetTypeName {
        &self.name
    }

    fn asset_type_id(&self) -> TypeId {
        TypeId::of::<D::Asset>()
    }

    fn entry(&self) -> Arc<dyn Any + Send + Sync> {
        Arc::new(TypeEntry {
            name: self.name.clone(),
            mailbox: self.mailbox.clone(),
        })
    }

    fn control(&self) -> Box<dyn CacheControl> {
        Box::new(self.mailbox.clone())
    }

    fn start(self: Box<Self>, links: CacheLinks) {
        let route = Arc::new(TypeRoute::new(self.decoder, self.mailbox.clone()));
        Cache::new(self.name.to_string(), self.mailbox, route, links).start();
    }
}

/// The runtime's type-erased grip on a cache, for shutdown and queries.
pub(crate) trait CacheControl: Send + Sync {
    /// Asks the cache to shut down; false if its mailbox is closed.
    fn post_shutdown(&self, ack: mpsc::Sender<()>) -> bool;
    /// Asks for the cache's stats; false if its mailbox is closed.
    fn post_stats(&self, reply: mpsc::Sender<CacheStats>) -> bool;
    /// Asks the cache to flush what it produced and reply; false if its mailbox is closed.
    fn post_ping(&self, ack: mpsc::Sender<()>) -> bool;
    /// Closes the mailbox, failing the requests of every message not yet handled.
    fn close(&self);
}

impl<T: Send + Sync + 'static> CacheControl for Mailbox<CacheMsg<T>> {
    fn post_shutdown(&self, ack: mpsc::Sender<()>) -> bool {
        self.post(CacheMsg::Shutdown(ack)).is_ok()
    }

    fn post_stats(&self, reply: mpsc::Sender<CacheStats>) -> bool {
        self.post(CacheMsg::Stats(reply)).is_ok()
    }

    fn post_ping(&self, ack: mpsc::Sender<()>) -> bool {
        self.post(CacheMsg::Ping(ack)).is_ok()
    }

    fn close(&self) {
        drop(Mailbox::close(self));
    }
}
