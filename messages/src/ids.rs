//! Identifiers and ordering: request ids, load generations and priorities.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies one call to `request`, unique within a runtime.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Identifies one load of one slot. Each load a cache starts gets a fresh generation, so a reply
/// carrying an older generation is known to be late (its load was cancelled or superseded).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Generation(pub u64);

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// How urgently a request is wanted. `Critical` is served first; inside one level, first come
/// first served.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
pub enum Priority {
    /// Needed for the current frame (the player is looking at it).
    Critical = 0,
    /// Needed within a few frames.
    High = 1,
    /// Ordinary streaming.
    #[default]
    Normal = 2,
    /// Prefetch of what is likely soon.
    Low = 3,
    /// Speculative prefetch; first to wait.
    Background = 4,
}

impl Priority {
    /// The number of levels.
    pub const LEVELS: usize = 5;
    /// Every level, most urgent first.
    pub const ALL: [Priority; Self::LEVELS] =
        [Self::Critical, Self::High, Self::Normal, Self::Low, Self::Background];

    /// The level's index: 0 for `Critical` up to `LEVELS - 1` for `Background`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The level at `index`, if there is one.
    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }

    /// The lower-case name, as `streamctl` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
            Self::Background => "background",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The more urgent of two priorities.
    #[must_use]
    pub fn max_urgency(self, other: Self) -> Self {
        self.min(other)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_round_trip_by_index_and_name() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_index(p.index()), Some(p));
            assert_eq!(Priority::parse(p.name()), Some(p));
        }
        assert_eq!(Priority::from_index(Priority::LEVELS), None);
        assert_eq!(Priority::Low.max_urgency(Priority::High), Priority::High);
    }
}
