//! The end of a cache's incarnation: at shutdown every request still waiting fails with
//! `Shutdown`, and the resident bytes its slots held are given back to the memory budget;
//! after a failure, the slots are salvaged for the next incarnation ([`Salvaged`], see the
//! cache's `# Supervision`). Either way every load in the table is cancelled first, each by
//! its own slot and generation.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};

use actix::{ActorContext, Context};

use streamrt_messages::{AssetLoadError, ErrorKind, LoadState};
use streamrt_supervisor::{drop_each_warning_on_panic, run_warning_on_panic};

use super::slots::Phase;
use super::{Cache, Salvage};
use crate::request::Ticket;
use crate::scheduler::Admission;
use crate::source::Locator;

/// What a failed incarnation hands to the next.
///
/// # Invariants
///
/// - The bytes of every `resident` asset are still counted in the memory budget as held: the
///   failed incarnation did not give them back, and the next puts the slot back without
///   counting them again. An incarnation no one restarts (its supervisor gave up) leaves them
///   counted; the runtime is stopping then.
pub(crate) struct Salvaged<T: Send + Sync + 'static> {
    /// Requests whose load had not ended, each with its slot's locator: loaded again.
    unfinished: VecDeque<(Ticket<T>, Option<Locator>)>,
    /// Decoded assets: every holder of the slot, the first first (each staged with the value,
    /// ready or still waiting to publish, unless a panic cut the hand-out short: see
    /// `put_back`), the value's resident size and the slot's locator.
    resident: VecDeque<(Vec<Ticket<T>>, u64, Option<Locator>)>,
    /// Crashes injected into the next incarnations' `readmit` (fault injection), each after
    /// the first asset or request it took back.
    readmit_crashes: usize,
}

impl<T: Send + Sync + 'static> Default for Salvaged<T> {
    fn default() -> Self {
        Self { unfinished: VecDeque::new(), resident: VecDeque::new(), readmit_crashes: 0 }
    }
}

impl<T: Send + Sync + 'static> Salvaged<T> {
    /// Drops every salvaged request one at a time, each under a catch of its own: a ticket's
    /// drop fails its request with `Shutdown`, and the last holder of a decoded asset drops
    /// the embedding program's value, whose `Drop` may panic.
    pub(crate) fn drop_each(self) {
        let unfinished = self.unfinished.into_iter().map(|(ticket, _)| ticket);
        let resident = self.resident.into_iter().flat_map(|(holders, ..)| holders);
        drop_each_warning_on_panic("a salvaged request left at a stop", unfinished.chain(resident));
    }
}

/// The salvage's lock (no code panics while holding it, so a poisoned one is consistent).
pub(crate) fn lock<T: Send + Sync + 'static>(salvage: &Salvage<T>) -> MutexGuard<'_, Salvaged<T>> {
    crate::lock::lock(salvage)
}

impl<T: Send + Sync + 'static> Salvaged<T> {
    /// Makes the next incarnation that takes back what a crashed one salvaged panic after the
    /// first asset or request it took back (fault injection); `-1` takes one such crash back.
    pub(crate) fn crash_next_readmit(&mut self, change: isize) {
        self.readmit_crashes = self.readmit_crashes.saturating_add_signed(change);
    }
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Forgets the resident bytes of every slot (the table is about to be emptied).
    pub(super) fn release_resident(&self) {
        let t = self.budget_index();
        self.change_residency(|residency| {
            for slot in self.table.iter().filter(|s| s.phase == Phase::Resident) {
                residency.forget_held(t, slot.bytes);
            }
        });
    }

    /// Cancels the load of every slot (the table is about to be emptied), each by its own slot
    /// and generation: a watermark over the runtime's generations would also catch loads a
    /// next incarnation already started, were it started before this one drains. A queued
    /// load also leaves the scheduler's queue: its ticket would count against the queue's
    /// capacity until popped, which takes a free credit, and the next incarnation's loads
    /// could be refused `QueueFull` meanwhile.
    pub(super) fn cancel_every_load(&mut self) {
        let loads: Vec<_> = self
            .table
            .iter_indexed()
            .map(|(at, slot)| (at, slot.generation, slot.phase, slot.locator))
            .collect();
        for (at, generation, phase, locator) in loads {
            self.cancel_load(at, generation, phase, locator);
        }
    }

    pub(super) fn shutdown(&mut self) {
        // Messages not yet handled are dropped: their tickets fail their requests.
        self.inbox.close();
        self.release_resident();
        self.cancel_every_load();
        let slots = self.table.drain();
        for slot in &slots {
            // Built only for a slot with a request still to end, and shared by its holders: most
            // slots at shutdown are resident assets whose requests ended.
            let mut error = None;
            for ticket in &slot.holders {
                ticket.cell().fail_with(|| {
                    let make =
                        || AssetLoadError::shared(self.key_of(slot.path()), ErrorKind::Shutdown);
                    Arc::clone(error.get_or_insert_with(make))
                });
            }
        }
        // Each under a catch of its own, once every request failed: a slot may hold the last
        // reference to a decoded asset (its handles gone, their releases dropped with the
        // lane), whose `Drop` may panic, and a second panic while one unwinds would abort.
        drop_each_warning_on_panic("a held asset's drop at shutdown", slots);
        self.to_frame.clear();
        self.to_withdraw.clear();
        self.to_scheduler.clear();
        self.to_settle.clear();
        self.retry_later.clear();
        // Last, as a parked asset's `Drop` may panic: by then the table is empty and every
        // request failed, so no salvage is left half counted. Not raised: the runtime is
        // stopping, and a restart would only take the shutdown again.
        let t = self.budget_index();
        run_warning_on_panic("a parked asset's drop at shutdown", || {
            self.change_residency(|r| r.clear_type(t));
        });
    }

    /// Stops this incarnation after a failure its link reported (a panic in a handler, a
    /// timer, or the taking back of a salvage), handing what it held to the next one.
    pub(super) fn fail_over(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
        self.salvage();
    }

    /// Hands every decoded asset and every unfinished request to the next incarnation (after
    /// a failure).
    pub(super) fn salvage(&mut self) {
        self.cancel_every_load();
        let salvage_shared = Arc::clone(&self.salvage);
        let mut salvage = lock(&salvage_shared);
        for slot in self.table.drain() {
            if slot.phase == Phase::Resident {
                let holders = slot.holders.into_iter().collect();
                salvage.resident.push_back((holders, slot.bytes, slot.locator));
                continue;
            }
            let locator = slot.locator;
            let unfinished = slot.holders.into_iter().filter(|t| !t.cell().state().is_terminal());
            salvage.unfinished.extend(unfinished.map(|ticket| (ticket, locator)));
        }
        drop(salvage);
        // The orders the scheduler sent for the loads just cancelled find no slot in any
        // incarnation: their read credits, which every type shares, go back now, not after
        // the restart's backoff (another type's loads would wait for them meanwhile).
        let mut orders = Vec::new();
        self.inbox.dispatches.drain_into(usize::MAX, &mut orders);
        // Taken, as a lane's drain reports (a deterministic runtime's activity counts them).
        self.inbox.dispatches.handled(orders.len());
        for order in orders {
            self.not_dispatched(order.load.generation, order.credit);
        }
        // What the failed batch produced still stands: staged requests must reach the frame
        // queue (their loads are gone) and finished jobs must return their credits. Queued
        // jobs sent now are cancelled, so the scheduler drops them.
        self.retry_later.clear();
        self.flush();
    }

    /// Puts back the decoded assets a failed incarnation salvaged, and admits its unfinished
    /// requests again.
    ///
    /// # Panics
    ///
    /// Only as a bug, or an injected crash, would: each asset and request is taken out of the
    /// salvage as it is taken back, so a panic part-way leaves the rest there, and the caller
    /// (`started`) salvages what was taken back with them for the next incarnation. The one
    /// being taken back when it panicked is lost (its requests fail), as a message whose
    /// handler panics is.
    pub(super) fn readmit(&mut self) {
        let salvage = Arc::clone(&self.salvage);
        let resident = || lock(&salvage).resident.pop_front();
        while let Some((holders, bytes, locator)) = resident() {
            let mut unfinished = Vec::new();
            self.put_back(holders, bytes, locator, &mut unfinished);
            lock(&salvage).unfinished.extend(unfinished);
            self.injected_readmit_crash();
        }
        let unfinished = || lock(&salvage).unfinished.pop_front();
        while let Some((ticket, locator)) = unfinished() {
            ticket.cell().advance(LoadState::Loading, LoadState::Pending);
            self.load(ticket, locator, Admission::Again);
            self.injected_readmit_crash();
        }
        // Nothing was salvaged, or the injected crash is still owed.
        self.injected_readmit_crash();
    }

    fn injected_readmit_crash(&self) {
        let mut salvaged = lock(&self.salvage);
        if salvaged.readmit_crashes > 0 {
            salvaged.readmit_crashes -= 1;
            drop(salvaged);
            panic!("injected crash of the {} cache as it took back what it held", self.asset_type);
        }
    }

    /// Puts back a decoded asset's slot with its `holders` and `locator`, its value's `bytes`
    /// still counted as held. The failure may have cut the slot short of its invariants:
    /// - a panic while the value was handed out (a waiter's waker) left holders without it, or
    ///   staged without their entry queued for publishing: they get it now, or, when none has
    ///   it, the bytes are given back and the holders still waiting are loaded again (into
    ///   `unfinished`);
    /// - a holder whose release was posted and whose handler was the one that failed never
    ///   sees its release handled: holders that let go are dropped here, before any is given
    ///   the value (a release still to come finds nothing, and a cancelled one leaves the
    ///   ready set, as its release would have made it), and with none left the value is
    ///   parked, as a release parks it.
    fn put_back(
        &mut self,
        holders: Vec<Ticket<T>>,
        bytes: u64,
        locator: Option<Locator>,
        unfinished: &mut Vec<(Ticket<T>, Option<Locator>)>,
    ) {
        let Some(value) = holders.iter().find_map(|t| t.cell().staged_value()) else {
            let t = self.budget_index();
            self.change_residency(|r| r.forget_held(t, bytes));
            let waiting = holders.into_iter().filter(|t| !t.cell().state().is_terminal());
            unfinished.extend(waiting.map(|ticket| (ticket, locator)));
            return;
        };
        let path = holders[0].cell().path().clone();
        let (kept, let_go): (Vec<_>, Vec<_>) =
            holders.into_iter().partition(|t| !t.cell().is_released());
        // What the lost release would have done: a cancelled request still in the ready set
        // leaves it, rather than keep its value there until a frame reaches it, and its value
        // is taken from it.
        for ticket in &let_go {
            let cell = ticket.cell();
            if cell.state() == LoadState::Cancelled && cell.is_staged() {
                self.to_withdraw.push(cell.id());
            }
            drop(cell.released_value());
        }
        let mut kept = kept.into_iter();
        let Some(first) = kept.next() else {
            return self.park(&path, value, bytes);
        };
        let generation = self.next_generation();
        let at = self.table.insert_resident(first, generation, bytes, locator);
        kept.for_each(|holder| self.table.attach(at, holder));
        // Handed out once the slot holds them: staging wakes the engine's waiters, and should
        // that panic part-way, the salvage that follows finds the slot with its bytes counted.
        let slot = self.table.get(at).expect("the slot put back just now");
        for ticket in &slot.holders {
            let cell = ticket.cell();
            if !cell.is_staged() {
                super::stage(cell, Arc::clone(&value), bytes, &mut self.to_frame);
            } else if cell.state() == LoadState::Decoded {
                // Its entry may never have left the failed turn; the ready set takes a request
                // already waiting as a no-op, and a publish of one since published fails.
                super::queue_ready(cell, bytes, &mut self.to_frame);
            }
        }
    }
}
