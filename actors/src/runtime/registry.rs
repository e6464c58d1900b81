//! Registered asset types: what the engine side needs to route a request to its cache, and what
//! the core thread needs to start that cache.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use streamrt_messages::AssetTypeName;
use streamrt_supervisor::{Activity, AskPatience, ChildSpec, Mailbox, RestartKind};

use crate::asset::Decoder;
use crate::cache::{
    salvage_lock, Cache, CacheInbox, CacheLinks, CacheMsg, CacheStats, EngineMsg, Salvage,
    TypeRoute,
};
use crate::runtime::submit::DepRequester;
use crate::runtime::RetryPolicy;
use crate::telemetry::Probe;
use crate::work::JobRoute;

/// The engine side of one registered type.
pub(crate) struct TypeEntry<T: Send + Sync + 'static> {
    /// Its link, which names the type too.
    pub(crate) link: Arc<TypeLink<T>>,
}

/// What each request of a type keeps of it and of its runtime: one pointer in the request's
/// cell for all of them, so that a pending request's cell needs no pointer of its own for each
/// (`streamctl bench scale`).
pub(crate) struct TypeLink<T: Send + Sync + 'static> {
    /// The type's name: the cell keeps only its key's path.
    pub(crate) asset_type: AssetTypeName,
    /// The type's cache's lane of the engine's messages: new requests, `Release` and
    /// `Reprioritize`.
    pub(crate) engine: Mailbox<EngineMsg<T>>,
    /// The type's placeholder, if one was registered.
    pub(crate) placeholder: Option<Arc<T>>,
    /// The runtime's clock, counters and event stream.
    pub(crate) probe: Arc<Probe>,
}

/// A registration waiting for the runtime to start.
pub(crate) trait TypeSpec: Send {
    fn name(&self) -> &AssetTypeName;
    /// The retry policy the type was registered with, if it has its own.
    fn policy(&self) -> Option<RetryPolicy>;
    fn asset_type_id(&self) -> TypeId;
    /// The engine side, as `Arc<TypeEntry<Asset>>`, seen as `Any` (for requests by Rust type)
    /// and as a [`DepRequester`] (for dependencies, known by type name).
    /// `placeholder`, if given, is an `Arc<Asset>` shown until a request is ready.
    fn entry(
        &self,
        placeholder: Option<&(dyn Any + Send + Sync)>,
        probe: &Arc<Probe>,
    ) -> (Arc<dyn Any + Send + Sync>, Arc<dyn DepRequester>);
    fn control(&self) -> Arc<dyn CacheControl>;
    /// The type's route: its decoder and its cache, as jobs and the scheduler see them.
    fn route(&self) -> Arc<dyn JobRoute>;
    /// The supervisor's spec of the cache actor: each call of its start function makes a
    /// fresh incarnation on the current arbiter.
    /// `type_index` is the type's place in the memory budget and in the scheduler's routes;
    /// `route` is what [`TypeSpec::route`] made.
    fn child_spec(
        self: Box<Self>,
        links: CacheLinks,
        type_index: usize,
        route: Arc<dyn JobRoute>,
    ) -> ChildSpec;
}

pub(crate) struct DecoderSpec<D: Decoder> {
    name: AssetTypeName,
    decoder: Arc<D>,
    inbox: CacheInbox<D::Asset>,
    policy: Option<RetryPolicy>,
    salvage: Salvage<D::Asset>,
}

impl<D: Decoder> DecoderSpec<D> {
    pub(crate) fn new(name: AssetTypeName, decoder: D, policy: Option<RetryPolicy>) -> Self {
        Self {
            name,
            decoder: Arc::new(decoder),
            inbox: CacheInbox::new(),
            policy,
            salvage: Arc::default(),
        }
    }
}

impl<D: Decoder> TypeSpec for DecoderSpec<D> {
    fn name(&self) -> &AssetTypeName {
        &self.name
    }

    fn policy(&self) -> Option<RetryPolicy> {
        self.policy
    }

    fn asset_type_id(&self) -> TypeId {
        TypeId::of::<D::Asset>()
    }

    fn entry(
        &self,
        placeholder: Option<&(dyn Any + Send + Sync)>,
        probe: &Arc<Probe>,
    ) -> (Arc<dyn Any + Send + Sync>, Arc<dyn DepRequester>) {
        let link = TypeLink {
            asset_type: self.name.clone(),
            engine: self.inbox.engine.clone(),
            placeholder: placeholder.and_then(|p| p.downcast_ref::<Arc<D::Asset>>()).cloned(),
            probe: Arc::clone(probe),
        };
        let entry = Arc::new(TypeEntry { link: Arc::new(link) });
        (Arc::clone(&entry) as _, entry)
    }

    fn control(&self) -> Arc<dyn CacheControl> {
        Arc::new(CacheHandle { inbox: self.inbox.clone(), salvage: Arc::clone(&self.salvage) })
    }

    fn route(&self) -> Arc<dyn JobRoute> {
        Arc::new(TypeRoute::new(Arc::clone(&self.decoder), self.inbox.clone()))
    }

    fn child_spec(
        self: Box<Self>,
        links: CacheLinks,
        type_index: usize,
        route: Arc<dyn JobRoute>,
    ) -> ChildSpec {
        let salvage = self.salvage;
        let policy = self.policy.unwrap_or(links.retry);
        let name = format!("cache:{}", self.name);
        let (asset_type, inbox) = (self.name, self.inbox);
        ChildSpec::new(name, RestartKind::Permanent, move |link| {
            let cache = Cache::new(
                (asset_type.clone(), type_index),
                inbox.clone(),
                Arc::clone(&route),
                links.clone(),
                policy,
                link,
                Arc::clone(&salvage),
            );
            Ok(cache.start().recipient())
        })
    }
}

/// The runtime's type-erased grip on a cache, for shutdown and queries.
pub(crate) trait CacheControl: Send + Sync {
    /// Asks the cache to shut down and waits up to `timeout`; false if it did not answer.
    fn ask_shutdown(&self, timeout: Duration, patience: AskPatience) -> bool;
    /// The cache's stats, if it answers within `timeout`.
    fn ask_stats(&self, timeout: Duration) -> Option<CacheStats>;
    /// Asks the cache to flush what it produced and waits up to `timeout` for its reply.
    fn ask_ping(&self, timeout: Duration) -> bool;
    /// Asks the cache to resubmit its loads to a restarted scheduler; false if its mailbox is
    /// closed.
    fn post_resubmit(&self) -> bool;
    /// Asks the cache to panic (fault injection), and its next incarnation too as it takes
    /// back what it held if `readmit`; false if its mailbox is closed.
    fn post_crash(&self, readmit: bool) -> bool;
    /// Closes the mailbox, failing the requests of every message not yet handled.
    fn close(&self);
    /// Counts the cache's messages in a deterministic runtime's activity.
    fn track(&self, activity: &Arc<Activity>);
}

/// A cache's mailboxes and the requests a stopped incarnation salvaged.
struct CacheHandle<T: Send + Sync + 'static> {
    inbox: CacheInbox<T>,
    salvage: Salvage<T>,
}

impl<T: Send + Sync + 'static> CacheControl for CacheHandle<T> {
    fn ask_shutdown(&self, timeout: Duration, patience: AskPatience) -> bool {
        self.inbox.messages.ask_with(CacheMsg::Shutdown, timeout, patience).is_some()
    }

    fn ask_stats(&self, timeout: Duration) -> Option<CacheStats> {
        self.inbox.messages.ask(CacheMsg::Stats, timeout)
    }

    fn ask_ping(&self, timeout: Duration) -> bool {
        self.inbox.messages.ask(CacheMsg::Ping, timeout).is_some()
    }

    fn post_resubmit(&self) -> bool {
        self.inbox.messages.post(CacheMsg::Resubmit).is_ok()
    }

    fn post_crash(&self, readmit: bool) -> bool {
        // Owed before the crash is posted, so the incarnation the crash starts owes it; a
        // mailbox closed meanwhile (a shutdown) starts none, and nothing is owed then.
        if readmit {
            salvage_lock(&self.salvage).crash_next_readmit(1);
        }
        let posted = self.inbox.messages.post(CacheMsg::Crash).is_ok();
        if readmit && !posted {
            salvage_lock(&self.salvage).crash_next_readmit(-1);
        }
        posted
    }

    fn track(&self, activity: &Arc<Activity>) {
        self.inbox.track(activity);
    }

    fn close(&self) {
        self.inbox.close();
        // Requests salvaged by an incarnation no one restarted (its supervisor gave up):
        // dropping their tickets fails them with `Shutdown`. They are dropped after the lock is
        // let go: failing them runs the engine's wakers and drops, which a restarted cache
        // taking the lock on the core thread must not wait for.
        let salvaged = std::mem::take(&mut *salvage_lock(&self.salvage));
        salvaged.drop_each();
    }
}
