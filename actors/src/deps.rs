//! Dependencies between requests: the gate that holds a request back until its dependencies
//! are ready, and the byte-weighted progress of a request's whole dependency tree.
//!
//! When a request is made for an asset whose source lists dependencies (a pack's index does),
//! the runtime makes one internal request per dependency, at the dependent's priority, and
//! hands them to a [`DepGate`] owned by the dependent's cell. Dependency requests are ordinary
//! requests: they share loads with every other request for the same asset, and their cache
//! schedules the load at the most urgent priority of its holders, so a dependency inherits the
//! highest priority of the assets waiting on it. Within one tree, a dependency several assets
//! list is one request, its handle held by each of their gates (see `DepHandle::share`).
//!
//! # Invariants
//!
//! - A dependent is handed to the frame coordinator only when it decoded *and* every one of
//!   its dependencies is `Ready`: whichever of the two happens last hands it over, under the
//!   gate's lock, so exactly one of them does.
//! - A dependency that fails or is cancelled fails its dependent with `DependencyFailed`
//!   naming it and its cause (`Shutdown` stays `Shutdown`).
//! - A dependent that ends without a value releases its dependencies at once; a `Ready` one
//!   keeps them until its cell is dropped (its last handle released), so what it refers to
//!   stays resident while it is held.
//! - Progress counts each node of the tree by its size once decoded or ended (a shared one
//!   once, however many dependents list it); the tree is fixed when the request is made, and a
//!   gate that released its dependencies reports them as done, so progress never goes
//!   backwards. A released gate keeps only its total: a dependency it shared with a dependent
//!   still waiting counts under both from then on (a gate releases once its dependent failed or
//!   was cancelled, which ends the tree's root too: only the total of a tree that ended without
//!   a value can be too large).
//! - Progress and reprioritisation reach a shared dependency once per dependent but go below
//!   it once: each costs one step per request of the tree, not one per path through it (a
//!   chain of diamonds has a number of paths exponential in its length).
//!
//! # Ordering
//!
//! Locks are taken parent before child only (progress and reprioritisation walk down the tree
//! under each gate's lock); a dependency reports its end to its parent without holding its own.

use std::iter::Sum;
use std::ops::Add;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use streamrt_messages::{AssetKey, AssetLoadError, ErrorKind, LoadState, Priority, RequestId};
use streamrt_supervisor::Mailbox;

use crate::frame::{FrameMsg, ReadyEntry};
use crate::id_hash::IdSet;
use crate::lock::lock;

/// How much of a set of requests has loaded, in bytes, over their whole dependency trees.
///
/// An asset counts as loaded once it decoded or ended (a failed or cancelled asset will load
/// no further); its weight is its size as the source declares it (a pack's raw size), at most
/// 4 GiB (`u32::MAX` bytes: a request keeps its declared size in 32 bits), or 1 byte when the
/// source does not know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteProgress {
    /// Bytes of the assets loaded.
    pub done: u64,
    /// Bytes of every asset in the trees.
    pub total: u64,
}

impl ByteProgress {
    /// `done / total`, from 0 to 1; 1 for an empty set.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }

    /// Whether everything counted has loaded.
    pub fn is_complete(&self) -> bool {
        self.done >= self.total
    }

    fn complete(total: u64) -> Self {
        Self { done: total, total }
    }
}

impl Add for ByteProgress {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self { done: self.done + other.done, total: self.total + other.total }
    }
}

impl Sum for ByteProgress {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// A request that has dependencies, as its gate sees it.
pub(crate) trait Dependent: Send + Sync {
    /// Fails the request (a dependency failed) unless it already ended, and lets go of its
    /// own load. `kind` makes the error, only for a request that has not ended: cancelling a
    /// tree ends every dependency after its dependent, and none of them needs one.
    fn fail_dependent(self: Arc<Self>, kind: &dyn Fn() -> ErrorKind);
}

/// The requests a progress walk counted already: a dependency shared in a tree is reached once
/// per dependent, and counts once.
pub(crate) type Counted = IdSet<RequestId>;

/// A dependency request, whatever its asset type. Dropping it releases the request.
pub(crate) trait DepHandle: Send + Sync {
    /// Moves the dependency (and its own dependencies) to `priority`; a shared one already
    /// there is left as it is, with everything below it (a tree's requests all take its
    /// root's priority, so a shared dependency is moved once, not once per path to it).
    fn reprioritize(&self, priority: Priority);
    /// The dependency's progress, its own dependencies included, but none in `counted`.
    fn progress_in(&self, counted: &mut Counted) -> ByteProgress;
    /// What a later dependent in the same tree shares the request through.
    fn sharer(&self) -> Box<dyn DepSharer>;
}

/// A dependency request a tree's walk made, kept for the later dependents that list it again
/// (see `TreeLimits::share_dependencies`). It keeps the request's cell, not a handle: the
/// request still ends when its dependents let go of it, as at any other time, so a walk
/// never keeps a request alive longer than its recording did.
pub(crate) trait DepSharer: Send + Sync {
    /// A handle of the request for one more dependent, whose gate `parent` is told of the
    /// request's end as its first dependent's is (at once if it ended already: a request
    /// every handle let go of is cancelled, and stays so).
    fn share(&self, parent: Weak<DepGate>) -> Box<dyn DepHandle>;
}

/// See the module docs.
pub(crate) struct DepGate {
    state: Mutex<GateState>,
    dependent: OnceLock<Weak<dyn Dependent>>,
    frame: Mailbox<FrameMsg>,
}

struct GateState {
    /// Dependencies not yet `Ready`.
    pending: usize,
    /// The dependent, decoded, waiting for its dependencies.
    parked: Option<ReadyEntry>,
    deps: Vec<Box<dyn DepHandle>>,
    /// Set once the dependent ended without a value: the dependencies were released and
    /// count as done for this many bytes.
    released_total: Option<u64>,
}

/// The kind a dependent fails with when `dependency` ended without a value (`error` is `None`
/// when it was cancelled).
pub(crate) fn dependency_error(dependency: &AssetKey, error: Option<&AssetLoadError>) -> ErrorKind {
    match error.map(|e| &e.kind) {
        Some(ErrorKind::Shutdown) => ErrorKind::Shutdown,
        Some(kind) => {
            ErrorKind::DependencyFailed { dependency: dependency.clone(), cause: kind.to_string() }
        }
        None => ErrorKind::DependencyFailed {
            dependency: dependency.clone(),
            cause: "cancelled".to_owned(),
        },
    }
}

impl DepGate {
    /// A gate waiting for `pending` dependencies; the dependent's own decode is handed over
    /// through `frame` once they are ready.
    pub(crate) fn new(pending: usize, frame: Mailbox<FrameMsg>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                pending,
                parked: None,
                deps: Vec::with_capacity(pending),
                released_total: None,
            }),
            dependent: OnceLock::new(),
            frame,
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        lock(&self.state)
    }

    /// Names the request this gate belongs to; set once, before any dependency is requested.
    pub(crate) fn bind(&self, dependent: Weak<dyn Dependent>) {
        let _ = self.dependent.set(dependent);
    }

    /// Fails the dependent because `dependency` could not even be requested, for `cause`.
    pub(crate) fn refuse(&self, dependency: &AssetKey, cause: &str) {
        self.fail_dependent(&|| ErrorKind::DependencyFailed {
            dependency: dependency.clone(),
            cause: cause.to_owned(),
        });
    }

    fn fail_dependent(&self, kind: &dyn Fn() -> ErrorKind) {
        if let Some(dependent) = self.dependent.get().and_then(Weak::upgrade) {
            dependent.fail_dependent(kind);
        }
    }

    /// Keeps `dep` until the dependent ends; releases it at once if it already did.
    pub(crate) fn add(&self, dep: Box<dyn DepHandle>) {
        let mut state = self.lock();
        if state.released_total.is_none() {
            state.deps.push(dep);
            return;
        }
        let add = dep.progress_in(&mut Counted::default()).total;
        if let Some(total) = state.released_total.as_mut() {
            *total += add;
        }
        drop(state);
        drop(dep);
    }

    /// Hands `entry` (the dependent, decoded) back if every dependency is ready; otherwise
    /// keeps it and hands it to the frame coordinator when the last one is.
    pub(crate) fn hold(&self, entry: ReadyEntry) -> Option<ReadyEntry> {
        let mut state = self.lock();
        if state.released_total.is_some() {
            return None;
        }
        if state.pending == 0 {
            return Some(entry);
        }
        state.parked = Some(entry);
        None
    }

    /// A dependency reached the terminal state `to`; `dependency` gives its key, which only
    /// a failure needs (a request keeps its path only, so its key is put together).
    pub(crate) fn dependency_ended(
        &self,
        dependency: impl Fn() -> AssetKey,
        to: LoadState,
        error: Option<&AssetLoadError>,
    ) {
        if to != LoadState::Ready {
            return self.fail_dependent(&|| dependency_error(&dependency(), error));
        }
        let parked = {
            let mut state = self.lock();
            debug_assert!(state.pending > 0, "more dependencies ready than requested");
            state.pending = state.pending.saturating_sub(1);
            if state.pending == 0 {
                state.parked.take()
            } else {
                None
            }
        };
        if let Some(entry) = parked {
            if let Err(closed) = self.frame.post(FrameMsg::Ready(vec![entry])) {
                // The coordinator is gone: the runtime is shutting down.
                closed.0.fail_undelivered();
            }
        }
    }

    /// The dependent ended without a value: releases every dependency (outside the lock, as
    /// releasing one may report back here).
    pub(crate) fn release(&self) {
        let (deps, parked) = {
            let mut state = self.lock();
            if state.released_total.is_some() {
                return;
            }
            let mut counted = Counted::default();
            let total = state.deps.iter().map(|d| d.progress_in(&mut counted).total).sum();
            state.released_total = Some(total);
            (std::mem::take(&mut state.deps), state.parked.take())
        };
        drop(parked);
        drop(deps);
    }

    /// Moves every dependency to the priority `priority` reads, read once the gate is locked:
    /// of two threads moving one tree, the one that locks it last applies the priority set
    /// last, wherever their sets and locks interleaved.
    pub(crate) fn reprioritize(&self, priority: impl FnOnce() -> Priority) {
        let state = self.lock();
        let priority = priority();
        for dep in &state.deps {
            dep.reprioritize(priority);
        }
    }

    /// The progress of every dependency's tree, but for the requests in `counted`.
    pub(crate) fn progress_in(&self, counted: &mut Counted) -> ByteProgress {
        let state = self.lock();
        match state.released_total {
            Some(total) => ByteProgress::complete(total),
            None => state.deps.iter().map(|d| d.progress_in(counted)).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_set_is_complete_and_sums_add_up() {
        assert!((ByteProgress::default().fraction() - 1.0).abs() < f64::EPSILON);
        let sum: ByteProgress =
            [ByteProgress { done: 1, total: 4 }, ByteProgress::complete(4)].into_iter().sum();
        assert_eq!(sum, ByteProgress { done: 5, total: 8 });
        assert!((sum.fraction() - 0.625).abs() < f64::EPSILON);
    }

    #[test]
    fn a_dependency_failure_names_the_dependency_and_its_cause_but_shutdown_stays_shutdown() {
        let key = |p: &str| AssetKey::parse(p).unwrap();
        let corrupt = AssetLoadError {
            key: key("texture:a.tex"),
            attempt: 1,
            kind: ErrorKind::Corrupt("crc".into()),
        };
        assert_eq!(
            dependency_error(&key("texture:a.tex"), Some(&corrupt)),
            ErrorKind::DependencyFailed {
                dependency: key("texture:a.tex"),
                cause: ErrorKind::Corrupt("crc".into()).to_string()
            }
        );
        let cancelled = dependency_error(&key("texture:a.tex"), None);
        assert!(
            matches!(cancelled, ErrorKind::DependencyFailed { ref cause, .. } if cause == "cancelled")
        );
        let shutdown = AssetLoadError { kind: ErrorKind::Shutdown, ..corrupt };
        assert_eq!(dependency_error(&key("texture:a.tex"), Some(&shutdown)), ErrorKind::Shutdown);
    }
}
