//! The requests attached to one slot, kept inline while there is only one.
//!
//! Nearly every slot has a single holder (one request per asset; a second request for the same
//! key is the exception), so a slot keeps that one inline and moves to a vector only for the
//! second. A pending request then costs its slot no allocation of its own: at a million pending
//! requests that is a million fewer small allocations and frees on the core thread (`streamctl
//! bench scale` and `tiny`).
//!
//! Dependencies make the exception common: every dependent requests its dependencies itself,
//! so a material shared by a level's 10,000 meshes has 10,000 holders on one slot. Finding a
//! holder by scanning, and removing it by moving the ones after it up, made letting go of all
//! of them quadratic on the core thread. So a removal leaves a gap that later removals of the
//! ones before it skip (the vector is compacted once gaps are half of it), and past
//! [`SCAN_MAX`] holders each one's place is kept by its request.
//!
//! # Invariants
//!
//! - The holders read in the order they were attached (a removal keeps the others' order):
//!   the first is the oldest, which names its slot's load in events.
//! - In `Many`, `head` is the place of the first holder, the last place holds a holder, gaps
//!   are at most half of the places (or fewer than [`GAPS_MIN`]), and `places`, when kept,
//!   has exactly the holders' places.

use streamrt_messages::RequestId;

use super::slots::Holder;
use crate::id_hash::IdMap;

/// Holders a slot finds by scanning; past this many it keeps each one's place by request.
pub(crate) const SCAN_MAX: usize = 16;
/// Gaps a slot's vector keeps whatever its length, before it is compacted.
const GAPS_MIN: usize = 16;

/// See the module docs.
pub(crate) enum Holders<H> {
    /// None or one holder, inline.
    Few(Option<H>),
    /// Two or more (or fewer, after removals), boxed so that the enum is two words, not four:
    /// every slot carries one, and few ever need the vector.
    Many(Box<Many<H>>),
}

/// Two or more holders; see the module docs.
pub(crate) struct Many<H> {
    /// In the order attached, `None` where one was removed.
    places: Vec<Option<H>>,
    /// The first place that holds a holder.
    head: usize,
    /// Holders in `places`.
    live: usize,
    /// Each holder's place, by its request, once more than [`SCAN_MAX`] were held at once.
    by_request: Option<IdMap<RequestId, usize>>,
}

/// The holders of a slot, in order.
pub(crate) type Iter<'a, H> = std::iter::Flatten<std::slice::Iter<'a, Option<H>>>;

impl<H> Default for Holders<H> {
    fn default() -> Self {
        Self::Few(None)
    }
}

impl<H: Holder> Holders<H> {
    pub(crate) fn push(&mut self, holder: H) {
        match self {
            Self::Few(slot @ None) => *slot = Some(holder),
            Self::Few(Some(_)) => {
                let Self::Few(Some(first)) = std::mem::take(self) else { unreachable!() };
                let places = vec![Some(first), Some(holder)];
                *self = Self::Many(Box::new(Many { places, head: 0, live: 2, by_request: None }));
            }
            Self::Many(many) => many.push(holder),
        }
    }

    /// Removes `request`'s holder, if it holds the slot; the others keep their order.
    pub(crate) fn remove_request(&mut self, request: RequestId) -> Option<H> {
        match self {
            Self::Few(slot) => slot.take_if(|h| h.request() == request),
            Self::Many(many) => many.remove(request),
        }
    }

    /// Whether `request` holds the slot.
    pub(crate) fn holds(&self, request: RequestId) -> bool {
        match self {
            Self::Few(slot) => slot.as_ref().is_some_and(|h| h.request() == request),
            Self::Many(many) => many.place_of(request).is_some(),
        }
    }
}

impl<H> Holders<H> {
    pub(crate) fn iter(&self) -> Iter<'_, H> {
        match self {
            Self::Few(slot) => std::slice::from_ref(slot).iter().flatten(),
            Self::Many(many) => many.places[many.head..].iter().flatten(),
        }
    }

    /// The oldest holder.
    pub(crate) fn first(&self) -> Option<&H> {
        self.iter().next()
    }

    /// The newest holder, and the others in order.
    pub(crate) fn split_last(&self) -> Option<(&H, impl Iterator<Item = &H>)> {
        let (places, head) = match self {
            Self::Few(slot) => (std::slice::from_ref(slot), 0),
            Self::Many(many) => (&many.places[..], many.head),
        };
        let (last, rest) = places.split_last()?;
        let rest = rest.get(head..).unwrap_or_default();
        Some((last.as_ref()?, rest.iter().flatten()))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Few(slot) => usize::from(slot.is_some()),
            Self::Many(many) => many.live,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<H: Holder> Many<H> {
    fn push(&mut self, holder: H) {
        if let Some(by_request) = &mut self.by_request {
            by_request.insert(holder.request(), self.places.len());
        }
        if self.live == 0 {
            self.head = self.places.len();
        }
        self.places.push(Some(holder));
        self.live += 1;
        if self.by_request.is_none() && self.live > SCAN_MAX {
            self.by_request = Some(self.indexed());
        }
    }

    fn indexed(&self) -> IdMap<RequestId, usize> {
        let holders = self.places.iter().enumerate();
        holders.filter_map(|(at, h)| Some((h.as_ref()?.request(), at))).collect()
    }

    fn place_of(&self, request: RequestId) -> Option<usize> {
        match &self.by_request {
            Some(by_request) => by_request.get(&request).copied(),
            None => {
                let mut places = self.places.iter().enumerate().skip(self.head);
                places.find_map(|(at, h)| (h.as_ref()?.request() == request).then_some(at))
            }
        }
    }

    fn remove(&mut self, request: RequestId) -> Option<H> {
        let at = self.place_of(request)?;
        let holder = self.places[at].take()?;
        if let Some(by_request) = &mut self.by_request {
            by_request.remove(&request);
        }
        self.live -= 1;
        // The last place holds a holder, and `head` is the first that does.
        while self.places.last().is_some_and(Option::is_none) {
            self.places.pop();
        }
        self.head = self.head.min(self.places.len());
        while self.places.get(self.head).is_some_and(Option::is_none) {
            self.head += 1;
        }
        let gaps = self.places.len() - self.live;
        if gaps > GAPS_MIN && gaps > self.places.len() / 2 {
            self.compact();
        }
        Some(holder)
    }

    /// Closes the gaps, keeping the holders' order.
    fn compact(&mut self) {
        self.places.retain(Option::is_some);
        self.head = 0;
        if self.by_request.is_some() {
            self.by_request = Some(self.indexed());
        }
    }
}

impl<'a, H> IntoIterator for &'a Holders<H> {
    type Item = &'a H;
    type IntoIter = Iter<'a, H>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<H> IntoIterator for Holders<H> {
    type Item = H;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<H>,
        std::iter::Flatten<std::vec::IntoIter<Option<H>>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Self::Few(slot) => slot.into_iter().chain(Vec::new().into_iter().flatten()),
            Self::Many(many) => None.into_iter().chain(many.places.into_iter().flatten()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use proptest::prelude::*;
    use streamrt_messages::AssetPath;

    use super::*;

    thread_local! {
        /// Calls of `Counted::request` on this thread.
        static ASKED: Cell<usize> = const { Cell::new(0) };
    }

    /// A holder that counts how often its request is asked for.
    #[derive(Debug, Clone, PartialEq)]
    struct Counted(u64);

    impl Holder for Counted {
        fn request(&self) -> RequestId {
            ASKED.with(|n| n.set(n.get() + 1));
            RequestId(self.0)
        }

        fn path(&self) -> &AssetPath {
            unreachable!("holders never ask for the path")
        }
    }

    fn ids(holders: &Holders<Counted>) -> Vec<u64> {
        holders.iter().map(|h| h.0).collect()
    }

    #[test]
    fn one_holder_is_kept_inline_and_removed_back_to_none() {
        let mut holders = Holders::default();
        holders.push(Counted(1));
        assert!(matches!(holders, Holders::Few(Some(Counted(1)))));
        assert_eq!(holders.remove_request(RequestId(2)), None);
        assert_eq!(holders.remove_request(RequestId(1)), Some(Counted(1)));
        assert!(holders.is_empty());
        holders.push(Counted(3));
        assert_eq!(holders.len(), 1, "an emptied slot takes a holder inline again");
    }

    #[test]
    fn letting_go_of_many_holders_in_any_order_asks_each_for_its_request_a_few_times() {
        const N: u64 = 20_000;
        for order in ["oldest first", "newest first", "alternate"] {
            let mut holders = Holders::default();
            (0..N).for_each(|n| holders.push(Counted(n)));
            let removals: Vec<u64> = match order {
                "oldest first" => (0..N).collect(),
                "newest first" => (0..N).rev().collect(),
                _ => (0..N).step_by(2).chain((0..N / 2).rev().map(|n| 2 * n + 1)).collect(),
            };
            ASKED.with(|n| n.set(0));
            for n in removals {
                assert_eq!(holders.remove_request(RequestId(n)), Some(Counted(n)), "{order}");
                assert!(holders.first().is_none_or(|h| h.0 != n));
            }
            assert!(holders.is_empty());
            let asked = ASKED.with(Cell::get);
            assert!(asked < 10 * N as usize, "{order}: {asked} requests asked for");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        Remove(usize),
        Missing,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            3 => (0usize..64).prop_map(Op::Remove),
            1 => Just(Op::Missing),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn holders_read_as_a_vector_would_through_pushes_and_removals(
            ops in proptest::collection::vec(op(), 0..400)
        ) {
            let mut holders = Holders::default();
            let mut model: Vec<u64> = Vec::new();
            let mut next = 0;
            for op in ops {
                match op {
                    Op::Push => {
                        next += 1;
                        holders.push(Counted(next));
                        model.push(next);
                    }
                    Op::Remove(n) if !model.is_empty() => {
                        let id = model.remove(n % model.len());
                        prop_assert_eq!(holders.remove_request(RequestId(id)), Some(Counted(id)));
                    }
                    _ => prop_assert_eq!(holders.remove_request(RequestId(next + 1)), None),
                }
                prop_assert_eq!(ids(&holders), model.clone());
                prop_assert_eq!(holders.len(), model.len());
                prop_assert!(model.iter().all(|&id| holders.holds(RequestId(id))));
                let split = holders.split_last().map(|(l, r)| (l.0, r.map(|h| h.0).collect()));
                let expected = model.split_last().map(|(l, r)| (*l, r.to_vec()));
                prop_assert_eq!(split, expected);
            }
            let owned: Vec<u64> = holders.into_iter().map(|h| h.0).collect();
            prop_assert_eq!(owned, model);
        }
    }
}
