//! The requests a replay's recording published that the replay has not published yet: what a
//! replay imposes on its ready set in place of the publish policy (`ReadySet::publish_these`).
//!
//! # Ordering
//!
//! The requests a publish takes from the list go in the order they were listed.
//!
//! # Invariants
//!
//! - A request is listed once in a list's life: one listed before, published or not, is not
//!   listed again.
//! - A publish looks only at what may have changed since the one before: the requests listed
//!   since, and those the ready set staged since. A listed request neither can be published
//!   now only if it could not be then, so a log listing many requests that are never staged
//!   costs each publish what changed, not the length of the list.

use std::collections::BTreeMap;

use streamrt_messages::RequestId;

use crate::id_hash::IdMap;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RecordedPublishes {
    /// The listed requests not published yet, by their place in the list.
    pending: BTreeMap<u64, RequestId>,
    /// The place of every request ever listed, published ones included.
    places: IdMap<RequestId, u64>,
    /// Requests listed since the last publish looked.
    listed_since: Vec<RequestId>,
    /// The place the next request listed takes.
    next_place: u64,
}

impl RecordedPublishes {
    /// Lists `request` after those listed before, unless it was listed before.
    pub(crate) fn list(&mut self, request: RequestId) {
        if self.places.contains_key(&request) {
            return;
        }
        let place = self.next_place;
        self.next_place += 1;
        self.places.insert(request, place);
        self.pending.insert(place, request);
        self.listed_since.push(request);
    }

    /// The requests listed and not published yet, in their order.
    pub(crate) fn pending(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.pending.values().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending requests a publish looks at, in their order: given the requests the ready
    /// set staged since the last publish, those of them pending and those listed since; given
    /// none (the set was not keeping count before this first publish), every pending one.
    pub(super) fn changed_since(&mut self, staged_since: Option<Vec<RequestId>>) -> Vec<RequestId> {
        let Some(staged) = staged_since else {
            self.listed_since.clear();
            return self.pending().collect();
        };
        let mut places: Vec<u64> = staged
            .into_iter()
            .chain(self.listed_since.drain(..))
            .filter_map(|request| self.places.get(&request).copied())
            .filter(|place| self.pending.contains_key(place))
            .collect();
        places.sort_unstable();
        places.dedup();
        places.into_iter().map(|place| self.pending[&place]).collect()
    }

    /// Takes `request`, just published, off the list.
    pub(super) fn published(&mut self, request: RequestId) {
        if let Some(place) = self.places.get(&request) {
            self.pending.remove(place);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(requests: &[u64]) -> Vec<RequestId> {
        requests.iter().copied().map(RequestId).collect()
    }

    fn listed(requests: &[u64]) -> RecordedPublishes {
        let mut list = RecordedPublishes::default();
        requests.iter().for_each(|&r| list.list(RequestId(r)));
        list
    }

    #[test]
    fn a_request_is_listed_once_even_after_it_was_published() {
        let mut list = listed(&[3, 1, 3]);
        assert_eq!(list.pending().collect::<Vec<_>>(), ids(&[3, 1]));
        list.published(RequestId(3));
        list.list(RequestId(3));
        assert_eq!(list.pending().collect::<Vec<_>>(), ids(&[1]));
    }

    #[test]
    fn the_first_look_takes_every_pending_request_in_list_order() {
        let mut list = listed(&[5, 2, 9]);
        assert_eq!(list.changed_since(None), ids(&[5, 2, 9]));
        assert!(list.changed_since(Some(Vec::new())).is_empty(), "nothing changed since");
    }

    #[test]
    fn a_later_look_takes_what_was_staged_or_listed_since_in_list_order() {
        let mut list = listed(&[5, 2, 9]);
        list.changed_since(None);
        list.list(RequestId(7));
        // 4 was never listed, 2 comes twice: the look holds each pending one once, in order.
        assert_eq!(list.changed_since(Some(ids(&[9, 4, 2, 2]))), ids(&[2, 9, 7]));
        list.published(RequestId(2));
        assert_eq!(list.changed_since(Some(ids(&[2]))), ids(&[]), "published: no longer pending");
    }

    #[test]
    fn a_look_after_one_staged_among_many_listed_takes_only_that_one() {
        let mut list = RecordedPublishes::default();
        (1..=10_000).for_each(|r| list.list(RequestId(r)));
        list.changed_since(None);
        assert_eq!(list.changed_since(Some(ids(&[4_321]))), ids(&[4_321]));
        assert_eq!(list.len(), 10_000);
    }
}
