//! A load's priority as its requests' change: a queued or waiting load settles at its live
//! holders' most urgent, a dispatched one is only ever raised (in its type's raise table and
//! the staging queue it waits in), and a resident one's change orders its publish.

use streamrt_messages::{AssetPath, Priority, RequestId};

use super::slots::Phase;
use super::{live_priorities, load_ref, Cache};
use crate::frame::FrameMsg;
use crate::scheduler::SchedulerMsg;

impl<T: Send + Sync + 'static> Cache<T> {
    /// A request's priority changed: its load's follows, wherever the load is.
    pub(super) fn reprioritize(
        &mut self,
        request: RequestId,
        path: &AssetPath,
        priority: Priority,
    ) {
        let Some(at) = self.table.lookup_holder(path, request) else { return };
        let phase = self.table.get(at).expect("indexed slot exists").phase;
        match phase {
            Phase::Backoff | Phase::Queued => self.settle_priority(at, Some(priority), true),
            Phase::Resident => {
                let _ = self.links.frame.post(FrameMsg::Reprioritize(request));
            }
            // In flight: raised, it goes ahead of the loads staged before it, and the new
            // priority orders the publish, read from the request at staging. Lowered, it keeps
            // its place.
            Phase::Loading => self.raise_in_flight(at, priority),
        }
    }

    /// Raises `at`'s dispatched load to `priority` if that is more urgent than it goes at:
    /// in its type's raise table, read by the workers, then in the queue it waits in, if it
    /// waits in one (in that order: see `Staging::raise`).
    pub(super) fn raise_in_flight(&mut self, at: usize, priority: Priority) {
        let slot = self.table.get_mut(at).expect("indexed slot exists");
        if priority >= slot.priority {
            return;
        }
        // The slot's priority while it loads is the one its job goes at.
        slot.priority = priority;
        self.route.raises().raise(at, slot.generation, priority);
        self.links.io.raise(slot.generation, priority);
    }

    /// Sets a queued or waiting load's priority to the most urgent of its live holders'
    /// (`fallback`, or the load's own, when none is live), and tells the scheduler when it
    /// changed. A load already dispatched is only ever raised (`raise_in_flight`): a holder
    /// letting go leaves it where it goes.
    ///
    /// `settled` says that the load's priority was its holders' most urgent before the
    /// changes since its last settle (holders that let go, or one moved to `fallback`), so
    /// that none is more urgent than the lesser of the two: the holders are read only up to
    /// the first live one at it. A level's shared dependency has a holder per dependent, and
    /// reading all of them at each one's release made the level's unload quadratic. A load
    /// back from flight was not kept settled (holders came and went meanwhile), so it reads
    /// them all.
    pub(super) fn settle_priority(&mut self, at: usize, fallback: Option<Priority>, settled: bool) {
        let Some(slot) = self.table.get_mut(at) else { return };
        if !matches!(slot.phase, Phase::Backoff | Phase::Queued) {
            return;
        }
        let bound = settled.then(|| fallback.map_or(slot.priority, |p| p.min(slot.priority)));
        let live = live_priorities(slot);
        // None is more urgent than the bound: the first at it is the most urgent.
        let mut most_urgent = None;
        for p in live {
            most_urgent = Some(most_urgent.map_or(p, |u: Priority| u.min(p)));
            if Some(p) == bound {
                break;
            }
        }
        let most_urgent = most_urgent.unwrap_or(fallback.unwrap_or(slot.priority));
        if most_urgent != slot.priority {
            slot.priority = most_urgent;
            if slot.phase == Phase::Queued {
                let load = load_ref(self.type_index, at, slot.generation);
                self.to_scheduler.push(SchedulerMsg::Reprioritize(load, most_urgent));
            }
        }
    }
}
