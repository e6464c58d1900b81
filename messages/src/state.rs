//! The load lifecycle of one request.
//!
//! ```text
//! Pending ──► Loading ──► Decoded ──► Ready
//!    │  ▲        │           │
//!    │  └────────┘(requeued) │
//!    └──► Decoded (cache hit)│
//!  any non-terminal ──► Failed | Cancelled
//! ```
//!
//! `Ready`, `Failed` and `Cancelled` are terminal: a request reaches exactly one of them, once.

use serde::{Deserialize, Serialize};

/// Where a request is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum LoadState {
    /// Queued, waiting for an IO worker.
    Pending,
    /// Dispatched: being read or decoded.
    Loading,
    /// Decoded and waiting to be published at a frame boundary.
    Decoded,
    /// Published: the value is visible. Terminal.
    Ready,
    /// Failed with an `AssetLoadError`. Terminal.
    Failed,
    /// Cancelled by its holder. Terminal.
    Cancelled,
}

impl LoadState {
    /// Every state, in lifecycle order.
    pub const ALL: [LoadState; 6] =
        [Self::Pending, Self::Loading, Self::Decoded, Self::Ready, Self::Failed, Self::Cancelled];

    /// Whether the state is one of the three terminal states.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Cancelled)
    }

    /// The transition check: whether a request in `self` may move to `next`.
    pub fn can_become(self, next: LoadState) -> bool {
        use LoadState::*;
        match (self, next) {
            (Pending, Loading) | (Loading, Pending) | (Pending, Decoded) => true,
            (Loading, Decoded) | (Decoded, Ready) => true,
            (from, Failed | Cancelled) => !from.is_terminal(),
            _ => false,
        }
    }

    /// A compact code, for storing the state in an atomic.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state for a code made by [`LoadState::code`].
    ///
    /// # Panics
    ///
    /// On a code no state has: that would be memory corruption, not input.
    pub fn from_code(code: u8) -> Self {
        Self::ALL[usize::from(code)]
    }

    /// The lower-case name used in transcripts and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Loading => "loading",
            Self::Decoded => "decoded",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LoadState::{self, *};

    #[test]
    fn terminal_states_never_move() {
        for from in [Ready, Failed, Cancelled] {
            for to in LoadState::ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn forward_path_and_exits_are_allowed() {
        assert!(Pending.can_become(Loading));
        assert!(Loading.can_become(Decoded));
        assert!(Decoded.can_become(Ready));
        assert!(Pending.can_become(Decoded));
        assert!(Loading.can_become(Pending));
        for from in [Pending, Loading, Decoded] {
            assert!(from.can_become(Failed) && from.can_become(Cancelled));
        }
        assert!(!Pending.can_become(Ready));
        assert!(!Decoded.can_become(Loading));
    }

    #[test]
    fn codes_round_trip() {
        for s in LoadState::ALL {
            assert_eq!(LoadState::from_code(s.code()), s);
        }
    }
}
