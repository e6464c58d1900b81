//! Decoding a postcard payload whole, with the reasons this crate's own checks give, and
//! sequences bounded before they are decoded.
//!
//! - [`from_whole`] decodes one value from all of a frame's bytes (the control protocol's and
//!   the replay log's).
//! - [`refuse`] is how this crate's `Deserialize` impls refuse a value (a key with `..` in its
//!   path, a list past its limit). postcard keeps only the fact of a custom serde error, not its
//!   message, so a refused key would otherwise read "Serde Deserialization Error": the reason is
//!   noted on the decoding thread, and [`from_whole`] reports it in place of postcard's text.
//! - [`at_most`] decodes a sequence of at most a given number of items, refused from the length
//!   it announces before any item is decoded (postcard announces a length only when the bytes
//!   left could hold that many items; past them, the item past the limit is refused).
//!
//! # Invariants
//!
//! - A reason noted by a decode is reported by that decode only: [`from_whole`] clears it first,
//!   and a decode's first refusal ends it (postcard tries no alternative after an error).
//! - [`at_most`] never reserves room for more than its limit, whatever the length announced.

use std::cell::RefCell;
use std::fmt::{self, Display};
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

thread_local! {
    /// Why the last value refused on this thread was refused, until `from_whole` takes it.
    static REASON: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The serde error refusing a value for `reason`, which [`from_whole`] reports.
pub(crate) fn refuse<E: serde::de::Error>(reason: impl Display) -> E {
    let reason = reason.to_string();
    let error = E::custom(&reason);
    REASON.with(|noted| *noted.borrow_mut() = Some(reason));
    error
}

fn take_reason() -> Option<String> {
    REASON.with(|noted| noted.borrow_mut().take())
}

/// Decodes a frame's `payload` as one `what`, all of it: bytes after the value mean a wrong
/// length, which would otherwise pass for a good frame (postcard stops at the value's end).
///
/// # Errors
///
/// The reason a check of this crate refused a value with, else postcard's message, or the
/// count of bytes left after the value.
pub(crate) fn from_whole<T: DeserializeOwned>(payload: &[u8], what: &str) -> Result<T, String> {
    take_reason();
    let (value, extra) = postcard::take_from_bytes(payload)
        .map_err(|e| take_reason().unwrap_or_else(|| e.to_string()))?;
    if !extra.is_empty() {
        return Err(format!("{} bytes after the {what} in its frame", extra.len()));
    }
    Ok(value)
}

/// Deserialises a sequence of at most `max` items, called `what` in the refusal. One that
/// announces more is refused before any of its items is decoded; room is reserved for what it
/// announces, up to `max`.
///
/// # Errors
///
/// The sequence is longer than `max`, or an item fails to decode.
pub(crate) fn at_most<'de, D, T>(d: D, max: usize, what: &'static str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(AtMost { max, what, items: PhantomData })
}

struct AtMost<T> {
    max: usize,
    what: &'static str,
    items: PhantomData<T>,
}

impl<T> AtMost<T> {
    fn refusal<E: serde::de::Error>(&self, len: impl Display) -> E {
        refuse(format!("{len} {}, over the limit of {}", self.what, self.max))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtMost<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let announced = seq.size_hint().unwrap_or(0);
        if announced > self.max {
            return Err(self.refusal(announced));
        }
        let mut items = Vec::with_capacity(announced);
        while let Some(item) = seq.next_element()? {
            if items.len() == self.max {
                return Err(self.refusal(format!("more than {}", self.max)));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Few(#[serde(deserialize_with = "three_at_most")] Vec<u8>);

    fn three_at_most<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        at_most(d, 3, "bytes")
    }

    #[test]
    fn a_sequence_up_to_its_limit_decodes_and_one_past_it_is_refused_naming_both() {
        let three = postcard::to_allocvec(&Few(vec![1, 2, 3])).unwrap();
        assert_eq!(from_whole::<Few>(&three, "few"), Ok(Few(vec![1, 2, 3])));
        let four = postcard::to_allocvec(&Few(vec![1, 2, 3, 4])).unwrap();
        assert_eq!(from_whole::<Few>(&four, "few"), Err("4 bytes, over the limit of 3".into()));
    }

    #[test]
    fn a_length_past_the_bytes_left_is_refused_at_the_first_item_past_the_limit() {
        // postcard announces no length it has fewer bytes than items for: five announced,
        // four there, refused as the fourth decodes.
        let short = [5, 1, 2, 3, 4];
        assert_eq!(
            from_whole::<Few>(&short, "few"),
            Err("more than 3 bytes, over the limit of 3".into())
        );
    }

    #[test]
    fn a_reason_is_reported_by_the_decode_that_noted_it_only() {
        let four = postcard::to_allocvec(&Few(vec![1, 2, 3, 4])).unwrap();
        // Decoded without `from_whole`: the reason noted stays on the thread.
        assert!(postcard::from_bytes::<Few>(&four).is_err());
        // A later failure of postcard's own is reported as postcard's.
        let cut = from_whole::<Few>(&[3, 1], "few").unwrap_err();
        assert!(!cut.contains("limit"), "{cut}");
    }
}
