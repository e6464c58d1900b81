//! A request's place in a dependency tree: its own dependencies' gate, the gate of the
//! dependent that requested it, and those of the other dependents sharing it in the tree; and
//! what the cell does with them: progress over the tree, and telling the tree of its end.
//!
//! # Invariants
//!
//! - Each dependent's gate is told of the request's end exactly once: the first dependent's
//!   through `parent`, the others through `sharers`, which the end empties under the lock a
//!   sharer is added under (see [`RequestCell::add_sharer`]).
//! - A progress walk reaches a shared request once per dependent but counts it, and goes
//!   below it, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use streamrt_messages::LoadState;

use super::RequestCell;
use crate::deps::{ByteProgress, Counted, DepGate};
use crate::lock::lock;

/// Where a request sits in a dependency tree.
#[derive(Default)]
pub(crate) struct Lineage {
    /// Boxed, and only for a request in a tree: most requests have neither link, and each
    /// side box is smaller for it.
    tree: Option<Box<TreeLinks>>,
}

struct TreeLinks {
    /// The gate of this request's own dependencies, if it has any.
    gate: Option<Arc<DepGate>>,
    /// The gate of the request this one is a dependency of.
    parent: Option<Weak<DepGate>>,
    /// The gates of the other dependents in its tree that share this request (see
    /// `TreeLimits::share_dependencies`), told of its end as `parent` is. Emptied by the end:
    /// a gate added once the request is terminal is told at once instead, so each is told
    /// exactly once. At most one per request of the tree: `dependency_nodes_max`.
    sharers: Mutex<Vec<Weak<DepGate>>>,
    /// Whether a second dependent ever shared this request: only such a request is looked
    /// for in a progress walk's `Counted`, so a tree without sharing hashes nothing.
    shared: AtomicBool,
}

impl Lineage {
    /// No place in a tree.
    pub(crate) const NONE: Self = Self { tree: None };

    pub(crate) fn new(gate: Option<Arc<DepGate>>, parent: Option<Weak<DepGate>>) -> Self {
        let in_tree = gate.is_some() || parent.is_some();
        let links = TreeLinks { gate, parent, sharers: Mutex::default(), shared: false.into() };
        Self { tree: in_tree.then(|| Box::new(links)) }
    }

    /// Whether the request sits in a dependency tree.
    pub(super) fn in_tree(&self) -> bool {
        self.tree.is_some()
    }

    pub(super) fn mark_shared(&self) {
        if let Some(links) = &self.tree {
            links.shared.store(true, Ordering::Release);
        }
    }

    pub(super) fn is_shared(&self) -> bool {
        self.tree.as_ref().is_some_and(|t| t.shared.load(Ordering::Acquire))
    }

    pub(super) fn sharers(&self) -> Option<MutexGuard<'_, Vec<Weak<DepGate>>>> {
        let links = self.tree.as_ref()?;
        // Nothing panics while the lock is held: a poisoned lock still guards a whole list.
        Some(lock(&links.sharers))
    }

    pub(super) fn gate(&self) -> Option<&Arc<DepGate>> {
        self.tree.as_ref().and_then(|t| t.gate.as_ref())
    }

    pub(super) fn parent(&self) -> Option<&Weak<DepGate>> {
        self.tree.as_ref().and_then(|t| t.parent.as_ref())
    }
}

impl<T: Send + Sync + 'static> RequestCell<T> {
    /// This request's progress over its dependency tree.
    pub(crate) fn progress(&self) -> ByteProgress {
        self.progress_in(&mut Counted::default())
    }

    /// [`RequestCell::progress`], but nothing for a request `counted` holds: a shared
    /// dependency counts once, at the first of its dependents a walk reaches.
    pub(super) fn progress_in(&self, counted: &mut Counted) -> ByteProgress {
        if self.lineage().is_shared() && !counted.insert(self.id) {
            return ByteProgress::default();
        }
        // An unknown size weighs one byte, so the request still counts.
        let weight = self.declared_bytes().max(1);
        let own = match self.state() {
            LoadState::Pending | LoadState::Loading => 0,
            _ => weight,
        };
        let mine = ByteProgress { done: own, total: weight };
        match self.lineage().gate() {
            Some(gate) => mine + gate.progress_in(counted),
            None => mine,
        }
    }

    /// What the request's end does to its tree: a request that ended without a value lets go
    /// of its own dependencies, and every dependent's gate is told.
    pub(super) fn tell_tree(&self, to: LoadState) {
        if to != LoadState::Ready {
            if let Some(gate) = self.lineage().gate() {
                gate.release();
            }
        }
        let sharers = self.lineage().sharers().map(|mut s| std::mem::take(&mut *s));
        let parents = self.lineage().parent().into_iter().chain(sharers.iter().flatten());
        for parent in parents.filter_map(Weak::upgrade) {
            self.tell_ended(&parent, to);
        }
    }

    /// Tells `gate`, a dependent's, that this request ended in `to`.
    fn tell_ended(&self, gate: &DepGate, to: LoadState) {
        // The cell's error only if it failed (`error`): a failure that lost its race to a
        // cancel left its error set, and the dependent of a cancelled request fails as
        // cancelled.
        let error = self.error();
        gate.dependency_ended(|| self.key(), to, error.as_deref());
    }

    /// Tells `gate` of this request's end too (see `TreeLinks::sharers`): at its end, or now
    /// if it ended already.
    pub(super) fn add_sharer(&self, gate: Weak<DepGate>) {
        self.lineage().mark_shared();
        let Some(mut sharers) = self.lineage().sharers() else {
            debug_assert!(false, "only a dependency request is shared");
            return;
        };
        // Read under the lock its end empties the list under, after its state changed: either
        // the end takes this gate with the list, or this sees the end and tells the gate.
        let state = self.state();
        if !state.is_terminal() {
            sharers.push(gate);
            return;
        }
        drop(sharers);
        if let Some(gate) = gate.upgrade() {
            self.tell_ended(&gate, state);
        }
    }
}
