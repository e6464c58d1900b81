//! The requests attached to one slot, kept inline while there is only one.
//!
//! Nearly every slot has a single holder (one request per asset; a second request for the same
//! key is the exception), so a slot keeps that one inline and moves to a vector only for the
//! second. A pending request then costs its slot no allocation of its own: at a million pending
//! requests that is a million fewer small allocations and frees on the core thread (`streamctl
//! bench scale` and `tiny`).
//!
//! # Invariants
//!
//! - The holders read as one slice, in the order they were attached (a removal keeps the
//!   others' order): the first is the oldest, which names its slot's load in events.

use std::ops::Deref;

/// See the module docs.
pub(crate) enum Holders<H> {
    /// None or one holder, inline.
    Few(Option<H>),
    /// Two or more (or fewer, after removals), boxed so that the enum is two words, not four:
    /// every slot carries one, and few ever need the vector.
    #[expect(clippy::box_collection, reason = "the box keeps the common one-holder case small")]
    Many(Box<Vec<H>>),
}

impl<H> Default for Holders<H> {
    fn default() -> Self {
        Self::Few(None)
    }
}

impl<H> Holders<H> {
    pub(crate) fn push(&mut self, holder: H) {
        match self {
            Self::Few(slot @ None) => *slot = Some(holder),
            Self::Few(Some(_)) => {
                let Self::Few(Some(first)) = std::mem::take(self) else { unreachable!() };
                *self = Self::Many(Box::new(vec![first, holder]));
            }
            Self::Many(holders) => holders.push(holder),
        }
    }

    /// Removes the holder at `index`; the ones after it move up.
    ///
    /// # Panics
    ///
    /// If `index` is out of bounds.
    pub(crate) fn remove(&mut self, index: usize) -> H {
        match self {
            Self::Few(slot) => {
                assert_eq!(index, 0, "holder index out of bounds");
                slot.take().expect("holder index out of bounds")
            }
            Self::Many(holders) => holders.remove(index),
        }
    }
}

impl<H> Deref for Holders<H> {
    type Target = [H];

    fn deref(&self) -> &[H] {
        match self {
            Self::Few(slot) => slot.as_slice(),
            Self::Many(holders) => holders,
        }
    }
}

impl<'a, H> IntoIterator for &'a Holders<H> {
    type Item = &'a H;
    type IntoIter = std::slice::Iter<'a, H>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<H> IntoIterator for Holders<H> {
    type Item = H;
    type IntoIter = std::iter::Chain<std::option::IntoIter<H>, std::vec::IntoIter<H>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Self::Few(slot) => slot.into_iter().chain(Vec::new()),
            Self::Many(holders) => None.into_iter().chain(*holders),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_read_as_a_vector_would_through_pushes_and_removals() {
        let mut holders = Holders::default();
        let mut model = Vec::new();
        assert!(holders.is_empty());
        for n in 0..4 {
            holders.push(n);
            model.push(n);
            assert_eq!(&*holders, &model[..]);
        }
        assert_eq!(holders.remove(1), model.remove(1));
        assert_eq!(&*holders, &model[..]);
        assert_eq!(holders.into_iter().collect::<Vec<_>>(), model);
    }

    #[test]
    fn one_holder_is_kept_inline_and_removed_back_to_none() {
        let mut holders = Holders::default();
        holders.push("a");
        assert!(matches!(holders, Holders::Few(Some("a"))));
        assert_eq!(holders.remove(0), "a");
        assert!(holders.is_empty());
        holders.push("b");
        assert_eq!(holders.len(), 1, "an emptied slot takes a holder inline again");
    }
}
