//! Restart policies as data, and the intensity check that decides when to escalate.
//!
//! The vocabulary is Erlang/OTP's, which actix lacks:
//!
//! - [`RestartKind`], per child: whether it is restarted always (permanent), only after an
//!   abnormal exit (transient), or never (temporary).
//! - [`RestartPolicy`], per supervisor: strategy, intensity and backoff.
//! - [`Strategy`]: which siblings restart with it.
//! - [`Intensity`]: at most `restarts_max` restarts within `window_ms`; one more escalates.
//! - [`Backoff`]: the delay before a restart, doubling from `min_ms` up to `max_ms`.

use std::collections::VecDeque;

/// Whether a child is restarted when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartKind {
    /// Always restarted.
    Permanent,
    /// Restarted only after a panic or an abnormal stop.
    Transient,
    /// Never restarted.
    Temporary,
}

impl RestartKind {
    /// Whether a child of this kind is restarted after an exit that was (or was not) abnormal.
    pub fn restarts_after(self, abnormal: bool) -> bool {
        match self {
            Self::Permanent => true,
            Self::Transient => abnormal,
            Self::Temporary => false,
        }
    }
}

/// Which children restart when one exits. A sibling the strategy covers is restarted with it
/// if it runs, or if it ended and its kind restarts it after a normal end (a permanent one):
/// a temporary or transient sibling that ended stays ended (a transient one that failed has
/// its own restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// The child that exited and every child started after it.
    ///
    /// The siblings are told to stop and restarted at once, not once they stopped: for a
    /// moment an old incarnation and its successor both live. A child that hands its state to
    /// its successor through storage they share (as streamrt's caches do) is not safe under
    /// this strategy; streamrt's supervisors run [`Strategy::OneForOne`].
    RestForOne,
    /// Every child; as [`Strategy::RestForOne`], the siblings restart at once.
    OneForAll,
}

/// At most `restarts_max` restarts within `window_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within the window.
    pub restarts_max: u32,
    /// The window's length in milliseconds.
    pub window_ms: u64,
}

/// The delay before a restart: `min_ms`, doubling with each restart of the same child within
/// the supervisor's intensity window, up to `max_ms`; a `min_ms` of 0 restarts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay in milliseconds.
    pub min_ms: u64,
    /// The largest delay in milliseconds.
    pub max_ms: u64,
}

impl Backoff {
    /// The delay before restart number `attempt` (from 0), in milliseconds.
    pub fn delay_ms(self, attempt: u32) -> u64 {
        self.min_ms.saturating_mul(1u64 << attempt.min(32)).min(self.max_ms)
    }
}

/// A supervisor's restart policy: which children restart together, how often before giving up,
/// and how long to wait first. Each child's own [`RestartKind`] says whether it restarts at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Which siblings restart with a child.
    pub strategy: Strategy,
    /// When to give up and escalate.
    pub intensity: Intensity,
    /// How long to wait before a restart.
    pub backoff: Backoff,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            intensity: Intensity { restarts_max: 10, window_ms: 10_000 },
            backoff: Backoff { min_ms: 0, max_ms: 1_000 },
        }
    }
}

/// The restarts seen within the current window, to apply an [`Intensity`].
#[derive(Debug, Clone)]
pub struct RestartWindow {
    intensity: Intensity,
    restarts_ms: VecDeque<u64>,
}

impl RestartWindow {
    /// An empty window for `intensity`.
    pub fn new(intensity: Intensity) -> Self {
        Self { intensity, restarts_ms: VecDeque::new() }
    }

    /// Records a restart at `now_ms` (a monotonic or virtual clock). Returns `true` when the
    /// restart is allowed and `false` when it is one too many: the caller escalates.
    pub fn admit(&mut self, now_ms: u64) -> bool {
        let window = self.intensity.window_ms;
        while self.restarts_ms.front().is_some_and(|&t| now_ms.saturating_sub(t) > window) {
            self.restarts_ms.pop_front();
        }
        self.restarts_ms.push_back(now_ms);
        self.restarts_ms.len() <= self.intensity.restarts_max as usize
    }

    /// Restarts counted in the current window.
    pub fn len(&self) -> usize {
        self.restarts_ms.len()
    }

    /// Whether the window holds no restart.
    pub fn is_empty(&self) -> bool {
        self.restarts_ms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_restarts_in_the_window_are_admitted_and_one_more_escalates() {
        let mut w = RestartWindow::new(Intensity { restarts_max: 3, window_ms: 1_000 });
        assert!(w.admit(0) && w.admit(10) && w.admit(20));
        assert!(!w.admit(30));
    }

    #[test]
    fn restarts_older_than_the_window_no_longer_count() {
        let mut w = RestartWindow::new(Intensity { restarts_max: 2, window_ms: 100 });
        assert!(w.admit(0) && w.admit(50));
        assert!(w.admit(150), "the restart at 0 left the window");
        assert!(!w.admit(150), "50, 150 and 150 are within 100 ms");
        assert!(w.admit(400), "every earlier restart left the window");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let b = Backoff { min_ms: 10, max_ms: 75 };
        assert_eq!([0, 1, 2, 3, 40].map(|a| b.delay_ms(a)), [10, 20, 40, 75, 75]);
    }

    #[test]
    fn restart_kinds_follow_otp() {
        assert!(RestartKind::Permanent.restarts_after(false));
        assert!(RestartKind::Transient.restarts_after(true));
        assert!(!RestartKind::Transient.restarts_after(false));
        assert!(!RestartKind::Temporary.restarts_after(true));
    }
}
