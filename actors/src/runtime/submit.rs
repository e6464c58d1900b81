//! Admission: turning a request into a cell, a handle and a ticket, and requesting its
//! dependencies, on the engine's thread.
//!
//! A request's dependency tree is requested when the request is made: the source lists each
//! asset's dependencies from memory, and every dependency becomes an internal request owned by
//! its dependent's gate (see `deps`); a dependency asked for again within the tree is the
//! request made for it first, shared. The tree is bounded: at most `dependency_depth_max`
//! levels (a shared request's subtree counted at every place it is shared) and
//! `dependency_nodes_max` requests per tree, and a cycle a custom source reports
//! (packs refuse cycles when they are built) fails its root with `DependencyFailed` naming it
//! instead of recursing forever.
//!
//! # Backpressure
//!
//! Every request, dependencies included, passes the admission limit
//! (`requests_outstanding_max`); one past it is returned already failed with `QueueFull`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use streamrt_messages::replay_log::LogRecord;
use streamrt_messages::{AssetKey, AssetLoadError, AssetTypeName, ErrorKind, Priority, RequestId};
use streamrt_supervisor::{log_caught, take_panic_message, Mailbox};

use crate::cache::EngineMsg;
use crate::deps::{DepGate, DepHandle, DepSharer};
use crate::frame::FrameMsg;
use crate::key_hash::KeyMap;
use crate::replay::Recorder;
use crate::request::{Handle, Lineage, RequestCell, RootHandle};
use crate::runtime::registry::TypeEntry;
use crate::runtime::RequestError;
use crate::source::{EntryInfo, Source};
use crate::telemetry::{Counters, Probe};

/// Limits of one dependency tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TreeLimits {
    pub(crate) depth_max: usize,
    pub(crate) nodes_max: usize,
    /// Whether a walk stops at the first dependency it fails itself (refused, or a source that
    /// panicked describing it), which fails every request up to the root: the rest of the
    /// tree would be requested and released at once, each an event, a count and the source's
    /// hints for nothing. Only a failure the walk makes stops it, never one another thread
    /// ends a dependency with meanwhile, so a replay walks as far as its recording did.
    pub(crate) stop_at_failure: bool,
    /// Whether a dependency asked for again within the tree shares the request made for it
    /// first (and an ancestor asked for again is refused as a cycle), instead of a request of
    /// its own each time, its whole tree again below it. A level whose 1,000 props share a
    /// material with 4 textures is 1,006 requests, not 6,001; a chain of diamonds (each
    /// level's two assets depending on both of the next level's) is linear in its levels, not
    /// exponential.
    pub(crate) share_dependencies: bool,
    /// Whether a shared dependency whose subtree would sit past `depth_max` is refused, as a
    /// request made anew there would be (a chain of shares otherwise bypassed the limit).
    pub(crate) share_depth_checked: bool,
}

impl TreeLimits {
    /// The limits, and the walk of the runtimes recording replay logs of `version`: from
    /// version 5 a walk stops at its own failure, from version 6 it shares a dependency, from
    /// version 7 a share meets the depth limit.
    pub(crate) fn as_recorded_by(version: u16, depth_max: usize, nodes_max: usize) -> Self {
        Self {
            depth_max,
            nodes_max,
            stop_at_failure: version >= 5,
            share_dependencies: version >= 6,
            share_depth_checked: version >= 7,
        }
    }
}

/// Where a request sits while its tree is being requested.
pub(crate) struct Walk {
    depth: usize,
    nodes: usize,
    limits: TreeLimits,
    /// Whether the walk failed a request of the tree (see `TreeLimits::stop_at_failure`).
    failed: bool,
    /// The keys from the root down to the request whose dependencies are being requested: at
    /// most `depth_max` + 1.
    path: Vec<AssetKey>,
    /// Each dependency requested so far, for the dependents after the first to share (see
    /// `TreeLimits::share_dependencies` and `DepSharer`: the walk keeps no request alive, so a
    /// request its dependents let go of while the walk runs on ends then, as it did before
    /// sharing, and is shared ended). At most `nodes_max`.
    made: KeyMap<Made>,
    /// The deepest level a request of the subtree being walked sits at, shared ones included.
    deepest: usize,
}

/// A dependency the walk made, and the levels of its subtree below it (0 for a leaf).
struct Made {
    sharer: Box<dyn DepSharer>,
    height: usize,
}

impl Walk {
    fn new(limits: TreeLimits) -> Self {
        Self {
            depth: 0,
            nodes: 0,
            limits,
            failed: false,
            path: Vec::new(),
            made: KeyMap::default(),
            deepest: 0,
        }
    }

    fn stops(&self) -> bool {
        self.failed && self.limits.stop_at_failure
    }

    /// The cycle `dep` closes, asked for by the request at the end of `path` (when the walk
    /// shares dependencies: a walk that does not finds it at the depth limit).
    fn cycle(&self, dep: &AssetKey) -> Option<String> {
        if !self.limits.share_dependencies {
            return None;
        }
        let at = self.path.iter().position(|k| k == dep)?;
        let cycle: Vec<String> =
            self.path[at..].iter().chain([dep]).map(ToString::to_string).collect();
        Some(format!("dependency cycle: {}", cycle.join(" -> ")))
    }

    /// Why sharing a request whose subtree is `height` levels deep here would pass the depth
    /// limit, if it would: the chain through it is as long as a walk that made it anew would
    /// find, and releasing or weighing it recurses once a level on the thread that does it.
    fn share_too_deep(&self, height: usize) -> Option<String> {
        if !self.limits.share_depth_checked {
            return None;
        }
        self.too_deep(self.depth.saturating_add(height))
    }

    fn too_deep(&self, depth: usize) -> Option<String> {
        let max = self.limits.depth_max;
        (depth > max).then(|| format!("dependency chain deeper than {max}"))
    }

    /// Why one more request would pass the tree's limits, if it would.
    fn past_limits(&self) -> Option<String> {
        let max = self.limits.nodes_max;
        let too_large =
            || (self.nodes >= max).then(|| format!("dependency tree larger than {max} assets"));
        self.too_deep(self.depth).or_else(too_large)
    }
}

/// Requests a dependency of a type known only by name.
pub(crate) trait DepRequester: Send + Sync {
    fn request_dependency(
        &self,
        submitter: &Submitter,
        key: AssetKey,
        priority: Priority,
        parent: Weak<DepGate>,
        walk: &mut Walk,
    ) -> Box<dyn DepHandle>;

    /// Requests `key` as the engine would, by its type's name.
    fn request_root(
        &self,
        submitter: &Submitter,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Box<dyn RootHandle>, RequestError>;
}

impl<T: Send + Sync + 'static> DepRequester for TypeEntry<T> {
    fn request_dependency(
        &self,
        submitter: &Submitter,
        key: AssetKey,
        priority: Priority,
        parent: Weak<DepGate>,
        walk: &mut Walk,
    ) -> Box<dyn DepHandle> {
        Box::new(submitter.submit(self, key, priority, Some(parent), walk))
    }

    fn request_root(
        &self,
        submitter: &Submitter,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Box<dyn RootHandle>, RequestError> {
        Ok(Box::new(submitter.request(self, key, priority)?))
    }
}

/// See the module docs.
pub(crate) struct Submitter {
    pub(crate) probe: Arc<Probe>,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) frame: Mailbox<FrameMsg>,
    pub(crate) requests_outstanding_max: usize,
    pub(crate) tree: TreeLimits,
    pub(crate) by_name: HashMap<AssetTypeName, Arc<dyn DepRequester>>,
    next_request: AtomicU64,
    /// Set once the runtime shuts down: requests are refused from then on.
    closing: AtomicBool,
}

impl Submitter {
    pub(crate) fn new(
        probe: Arc<Probe>,
        source: Arc<dyn Source>,
        frame: Mailbox<FrameMsg>,
        requests_outstanding_max: usize,
        tree: TreeLimits,
        by_name: HashMap<AssetTypeName, Arc<dyn DepRequester>>,
    ) -> Self {
        Self {
            probe,
            source,
            frame,
            requests_outstanding_max,
            tree,
            by_name,
            next_request: AtomicU64::new(0),
            closing: AtomicBool::new(false),
        }
    }

    /// `Shutdown` once the runtime is closing.
    pub(crate) fn open(&self) -> Result<(), RequestError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(RequestError::Shutdown);
        }
        Ok(())
    }

    /// Refuses every later request. The first call records the session's `Shutdown`, under
    /// the order lock that a recorded request takes to check `open` and record itself: a log
    /// never lists a request after its `Shutdown`.
    pub(crate) fn close(&self) {
        let recorder = self.probe.recorder();
        // Not taken again by a thread that holds it (the engine's code a publish or a cancel
        // runs under it, shutting the runtime down): the section it is in orders the record.
        let _order = recorder.and_then(Recorder::order);
        let first = !self.closing.swap(true, Ordering::AcqRel);
        if let (true, Some(recorder)) = (first, recorder) {
            recorder.record(&LogRecord::Shutdown);
        }
    }

    /// Requests `key` and its whole dependency tree; see the module docs.
    pub(crate) fn request<T: Send + Sync + 'static>(
        &self,
        entry: &TypeEntry<T>,
        key: AssetKey,
        priority: Priority,
    ) -> Result<Handle<T>, RequestError> {
        let mut walk = Walk::new(self.tree);
        // The callers checked `open` already; unrecorded, that is enough.
        let Some(recorder) = self.probe.recorder() else {
            return Ok(self.submit(entry, key, priority, None, &mut walk));
        };
        let _order = recorder.order();
        // Again under the order lock, as the shutdown's record (see `close`).
        self.open()?;
        let handle = self.submit(entry, key.clone(), priority, None, &mut walk);
        recorder.record(&LogRecord::Request { id: handle.id().0, key, priority });
        Ok(handle)
    }

    /// Requests made and not yet ended. The counters are read one by one while other threads
    /// make and end requests, so the ends read can include a request made after `requested`
    /// was read: the difference stops at zero instead of wrapping, which refused the request
    /// with a false `QueueFull` (and panicked in a debug build).
    fn outstanding(&self) -> u64 {
        let c = &self.probe.counters;
        let requested = Counters::get(&c.requested);
        let ended =
            Counters::get(&c.ready) + Counters::get(&c.failed) + Counters::get(&c.cancelled);
        requested.saturating_sub(ended)
    }

    fn submit<T: Send + Sync + 'static>(
        &self,
        entry: &TypeEntry<T>,
        key: AssetKey,
        priority: Priority,
        parent: Option<Weak<DepGate>>,
        walk: &mut Walk,
    ) -> Handle<T> {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed) + 1);
        let outstanding = self.outstanding();
        Counters::bump(&self.probe.counters.requested);
        walk.nodes += 1;
        let (info, panicked) = match self.entry_info(&key) {
            Ok(info) => (info, None),
            Err(message) => (EntryInfo::default(), Some(message)),
        };
        if let Some(recorder) = self.probe.recorder() {
            match &panicked {
                Some(message) => recorder.entry_panicked(&key, message),
                None => recorder.entry(&key, &info),
            }
        }
        let EntryInfo { dependencies: deps, size, locator } = info;
        let gate = (!deps.is_empty()).then(|| DepGate::new(deps.len(), self.frame.clone()));
        let lineage = Lineage::new(gate.clone(), parent);
        let link = Arc::clone(&entry.link);
        let cell = RequestCell::new(id, &key, priority, size.unwrap_or(0), lineage, link);
        let (handle, ticket) = Handle::new(cell);
        let refused = if let Some(message) = panicked {
            Some(ErrorKind::Io(format!("the source panicked looking the key up: {message}")))
        } else if outstanding >= self.requests_outstanding_max as u64 {
            Some(ErrorKind::QueueFull { capacity: self.requests_outstanding_max })
        } else {
            None
        };
        if let Some(kind) = refused {
            walk.failed = true;
            ticket.cell().fail(&AssetLoadError::shared(key, kind));
            // Never at its cache: its handles' drop has nothing to let go of there, and posts
            // nothing (an engine retrying refused requests fills no lane with releases).
            ticket.cell().mark_released();
            return handle;
        }
        if let Some(gate) = gate {
            gate.bind(handle.dependent());
            walk.depth += 1;
            walk.path.push(key);
            self.submit_dependencies(&gate, deps, priority, walk);
            walk.path.pop();
            walk.depth -= 1;
        }
        // A closed mailbox hands the ticket back; dropping it fails the request with Shutdown.
        let _ = entry.link.engine.post(EngineMsg::Load(ticket, locator));
        handle
    }

    /// The source's [`Source::entry_info`] for `key`, or its panic's message: the source is the
    /// engine's code, and its panic must neither reach the engine's `request` call nor leave
    /// the request counted and never ended.
    fn entry_info(&self, key: &AssetKey) -> Result<EntryInfo, String> {
        catch_unwind(AssertUnwindSafe(|| self.source.entry_info(key))).map_err(|panic| {
            let message = take_panic_message(panic);
            log_caught(|| {
                tracing::warn!(target: "streamrt", %key, %message, "the source's entry_info panicked");
            });
            message
        })
    }

    fn submit_dependencies(
        &self,
        gate: &Arc<DepGate>,
        deps: Vec<AssetKey>,
        priority: Priority,
        walk: &mut Walk,
    ) {
        for dep in deps {
            if walk.stops() {
                return;
            }
            // Sharing makes no request and walks nothing: it counts no node, but its subtree
            // sits as deep as it would made anew here. A request made is never on the path (it
            // is made once its subtree is walked).
            let refused = match walk.made.get(&dep) {
                Some(made) => match walk.share_too_deep(made.height) {
                    None => {
                        walk.deepest = walk.deepest.max(walk.depth.saturating_add(made.height));
                        gate.add(made.sharer.share(Arc::downgrade(gate)));
                        continue;
                    }
                    too_deep => too_deep,
                },
                None => walk.cycle(&dep).or_else(|| walk.past_limits()),
            };
            let requester = self.by_name.get(dep.asset_type());
            let cause = match (refused, requester) {
                (Some(cause), _) => cause,
                (None, None) => format!("no decoder registered for {}", dep.asset_type()),
                (None, Some(requester)) => {
                    let parent = Arc::downgrade(gate);
                    let outer = std::mem::replace(&mut walk.deepest, walk.depth);
                    let handle =
                        requester.request_dependency(self, dep.clone(), priority, parent, walk);
                    let height = walk.deepest - walk.depth;
                    walk.deepest = walk.deepest.max(outer);
                    if walk.limits.share_dependencies {
                        walk.made.insert(dep, Made { sharer: handle.sharer(), height });
                    }
                    gate.add(handle);
                    continue;
                }
            };
            walk.failed = true;
            gate.refuse(&dep, &cause);
            return;
        }
    }
}
