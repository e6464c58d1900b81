//! The adaptive publish budget: watches frame times against a target and moves the per-frame
//! publish count between a floor and a ceiling.
//!
//! Pure logic, fed one frame time per boundary, so convergence is tested on scripted series.
//!
//! The controller learns only from *loaded* frames, those that published at least half the
//! budget: publishing was a real part of their cost, so the budget is what moves it. A frame
//! that published little says nothing either way (a hitch elsewhere is not the budget's fault,
//! and an idle frame's spare time does not prove a bigger budget would fit), so it is skipped.
//!
//! # Invariants
//!
//! - The budget stays within `[budget_min, budget_max]`.
//! - Hysteresis: decisions use the mean of a full window of `window_frames` frames with its
//!   longest and shortest frame left out (so one hitch, a loading stall or a GC pause, does not
//!   count), all measured under the current budget (the window restarts after every change),
//!   and nothing
//!   changes while the mean lies in the dead band between `target_frame_us * (100 -
//!   band_pct) / 100` and `target_frame_us`. A single long frame moves nothing, and a budget
//!   whose frames land in the band stays put.
//! - Over target the budget drops by `decrease_pct` percent (at least 1); with room to spare it
//!   rises by `increase_step`: fast to back off from hitches, slow to take on more.
//! - A budget whose frames went over target is remembered as the overshoot, and the budget
//!   rises only to below it. Where one more publish costs more than the dead band is wide, no
//!   budget lands in the band: without the memory the budget cycled (4, 8, 6, 5, 4...) with
//!   three windows in four over target; with it, it holds at the largest budget under target.
//!   The memory ends when a window's mean, scaled up to the overshoot's budget, fits under
//!   target (publishing got cheaper: a budget held down by a slow spell recovers at once), or
//!   after [`OVERSHOOT_KEPT_WINDOWS_MAX`] windows, when the next rise is a probe of one
//!   request: one window over target a period while nothing changed.

/// How many decisions an overshoot is remembered for before the budget probes past it.
const OVERSHOOT_KEPT_WINDOWS_MAX: u32 = 16;

/// How the publish budget adapts to frame time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptivePolicy {
    /// The frame time to stay under, in microseconds (16,667 for 60 Hz).
    pub target_frame_us: u64,
    /// Frames averaged before each decision; at least 1 (a runtime is not built with 0).
    pub window_frames: u32,
    /// Width of the dead band below the target, in percent of the target; at most 99 (a band
    /// as wide as the target leaves no frame time under it, so the budget would never rise).
    pub band_pct: u32,
    /// The lowest budget, in requests per frame; at least 1 (a runtime is not built with 0,
    /// from which a frame time in the dead band would never lift the budget).
    pub budget_min: u32,
    /// The highest budget, in requests per frame.
    pub budget_max: u32,
    /// Requests added per decision when there is room; at least 1.
    pub increase_step: u32,
    /// Percent removed per decision when over target.
    pub decrease_pct: u32,
}

impl AdaptivePolicy {
    /// Adapts towards `target_frame_us` between 1 and `budget_max`: windows of 8 frames, a 15%
    /// dead band, +4 per step up, -25% per step down.
    pub fn target(target_frame_us: u64, budget_max: u32) -> Self {
        Self {
            target_frame_us,
            window_frames: 8,
            band_pct: 15,
            budget_min: 1,
            budget_max,
            increase_step: 4,
            decrease_pct: 25,
        }
    }
}

/// The controller's state; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct AdaptiveBudget {
    policy: AdaptivePolicy,
    budget: u32,
    window: Window,
    /// The lowest budget whose window went over target, while remembered.
    overshoot: Option<u32>,
    /// Decisions since `overshoot` was last set.
    overshoot_windows: u32,
    /// Whether the next rise is a probe of one request (an overshoot was just forgotten).
    probe: bool,
}

impl AdaptiveBudget {
    /// Starts at `initial`, clamped to the policy's range.
    pub(crate) fn new(policy: AdaptivePolicy, initial: u32) -> Self {
        let budget = initial.clamp(policy.budget_min, policy.budget_max.max(policy.budget_min));
        Self {
            policy,
            budget,
            window: Window::default(),
            overshoot: None,
            overshoot_windows: 0,
            probe: false,
        }
    }

    pub(crate) fn budget(&self) -> u32 {
        self.budget
    }

    /// Takes the time of the frame that just ended and how many requests it published;
    /// returns the budget for the next one.
    pub(crate) fn observe(&mut self, frame_us: u64, published: u32) -> u32 {
        if published.saturating_mul(2) < self.budget {
            return self.budget;
        }
        self.window.add(frame_us);
        if self.window.len < self.policy.window_frames.max(1) {
            return self.budget;
        }
        let mean = self.window.trimmed_mean_us();
        let p = self.policy;
        let floor = p.target_frame_us.saturating_mul(u64::from(100 - p.band_pct.min(100))) / 100;
        let next = if mean > p.target_frame_us {
            self.overshoot = Some(self.overshoot.map_or(self.budget, |o| o.min(self.budget)));
            (self.overshoot_windows, self.probe) = (0, false);
            let cut = (u64::from(self.budget) * u64::from(p.decrease_pct.min(100)) / 100).max(1);
            self.budget.saturating_sub(u32::try_from(cut).unwrap_or(u32::MAX))
        } else {
            self.forget_overshoot_if_stale(mean);
            if mean < floor {
                self.rise()
            } else {
                self.budget
            }
        };
        self.budget = next.clamp(p.budget_min, p.budget_max.max(p.budget_min));
        self.window = Window::default();
        self.budget
    }

    /// Counts a decision not over target, whose window's mean was `mean_us`. The overshoot is
    /// forgotten at once when that mean says it would now fit: scaled to the overshoot as if
    /// every microsecond were the publishes' (which overstates it), it is under target.
    /// Otherwise it is forgotten past the limit, and the next rise probes by one.
    fn forget_overshoot_if_stale(&mut self, mean_us: u64) {
        let Some(overshoot) = self.overshoot else { return };
        let scaled = u128::from(mean_us) * u128::from(overshoot) / u128::from(self.budget.max(1));
        if scaled <= u128::from(self.policy.target_frame_us) {
            self.overshoot = None;
            return;
        }
        self.overshoot_windows += 1;
        if self.overshoot_windows >= OVERSHOOT_KEPT_WINDOWS_MAX {
            self.overshoot = None;
            self.probe = true;
        }
    }

    /// The budget with room to spare: up a step, to below the overshoot while it is
    /// remembered, or by one as a probe once it is forgotten.
    fn rise(&mut self) -> u32 {
        let step = if std::mem::take(&mut self.probe) { 1 } else { self.policy.increase_step };
        let up = self.budget.saturating_add(step);
        match self.overshoot {
            Some(o) => up.min(o.saturating_sub(1)).max(self.budget),
            None => up,
        }
    }
}

/// The frame times of the window being measured.
#[derive(Debug, Clone)]
struct Window {
    sum_us: u64,
    len: u32,
    max_us: u64,
    min_us: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self { sum_us: 0, len: 0, max_us: 0, min_us: u64::MAX }
    }
}

impl Window {
    fn add(&mut self, frame_us: u64) {
        self.sum_us = self.sum_us.saturating_add(frame_us);
        self.len += 1;
        self.max_us = self.max_us.max(frame_us);
        self.min_us = self.min_us.min(frame_us);
    }

    /// The mean without its extremes (the plain mean for windows under 3 frames).
    fn trimmed_mean_us(&self) -> u64 {
        if self.len < 3 {
            return self.sum_us / u64::from(self.len.max(1));
        }
        // Saturating: a sum that saturated (a clock jumping ahead) must not underflow here.
        let extremes = self.max_us.saturating_add(self.min_us);
        let trimmed = self.sum_us.saturating_sub(extremes);
        trimmed / u64::from(self.len - 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose time is a fixed cost plus a cost per publish, with a deterministic
    /// +-`jitter_us` wobble: the scripted frame-time series the controller is tested on.
    fn run(
        controller: &mut AdaptiveBudget,
        frames: u32,
        base_us: u64,
        per_publish_us: u64,
        jitter_us: u64,
    ) -> Vec<u32> {
        let mut rng = fastrand::Rng::with_seed(11);
        (0..frames)
            .map(|_| {
                let wobble = rng.u64(0..=2 * jitter_us);
                let frame_us = base_us + per_publish_us * u64::from(controller.budget()) + wobble;
                controller.observe(frame_us.saturating_sub(jitter_us), controller.budget())
            })
            .collect()
    }

    fn direction_changes(budgets: &[u32]) -> usize {
        let steps: Vec<i64> = budgets
            .windows(2)
            .map(|w| i64::from(w[1]) - i64::from(w[0]))
            .filter(|d| *d != 0)
            .collect();
        steps.windows(2).filter(|w| w[0].signum() != w[1].signum()).count()
    }

    #[test]
    fn converges_from_above_and_then_holds_without_oscillating() {
        // 10 ms fixed + 100 us per publish against 16 ms: budgets 34..=60 land in the band.
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 256), 256);
        let budgets = run(&mut c, 600, 10_000, 100, 500);
        let settled = &budgets[300..];
        assert!(settled.iter().all(|b| *b == settled[0]), "held after settling: {settled:?}");
        assert!((34..=60).contains(&settled[0]), "settled in the band: {}", settled[0]);
        assert!(direction_changes(&budgets) <= 1, "at most one turn: {budgets:?}");
    }

    #[test]
    fn converges_from_below_and_then_holds() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 256), 1);
        let budgets = run(&mut c, 600, 10_000, 100, 500);
        let settled = &budgets[300..];
        assert!(settled.iter().all(|b| *b == settled[0]), "held after settling");
        assert!((34..=60).contains(&settled[0]), "settled in the band: {}", settled[0]);
        assert!(direction_changes(&budgets) <= 1, "at most one turn: {budgets:?}");
    }

    #[test]
    fn a_publish_costlier_than_the_band_is_wide_holds_below_target_instead_of_cycling() {
        // 1.5 ms fixed + 3 ms per publish against 16 ms: 4 fits (13.5 ms, under the band),
        // 5 does not (16.5 ms), so no budget lands in the band.
        for initial in [1, 64] {
            let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 64), initial);
            let budgets = run(&mut c, 2_400, 1_500, 3_000, 200);
            let settled = &budgets[400..];
            let over = settled.iter().filter(|b| **b > 4).count();
            // One probing window of 8 frames in every 17 windows (one more where the frames
            // taken cut a period); cycling put three windows in four over.
            assert!(over * 16 <= settled.len(), "{over} of {} frames over", settled.len());
            assert!(settled.iter().all(|b| *b >= 4), "never below the largest that fits");
        }
    }

    #[test]
    fn a_budget_held_down_by_a_slow_spell_recovers_once_it_ends() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 64), 64);
        run(&mut c, 800, 1_500, 3_000, 200);
        assert_eq!(c.budget(), 4);
        // 10 ms fixed + 800 us per publish: 5 now fits (14 ms), which only a probe finds (4's
        // 13.2 ms, scaled to 5 publishes, would not fit).
        let budgets = run(&mut c, 400, 10_000, 800, 100);
        assert_eq!(budgets.last(), Some(&5), "probed past the old overshoot: {budgets:?}");
        // Publishing got cheap: 10 ms fixed + 100 us per publish, as in the tests above.
        let budgets = run(&mut c, 2_400, 10_000, 100, 500);
        assert!((34..=60).contains(budgets.last().unwrap()), "recovered: {budgets:?}");
    }

    #[test]
    fn a_window_showing_the_overshoot_would_now_fit_forgets_it_at_once() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 64), 64);
        run(&mut c, 800, 1_500, 3_000, 200);
        assert_eq!(c.budget(), 4);
        // 4 publishes now take 10.4 ms: 5 would take 13 ms even were it all publishing.
        let budgets = run(&mut c, 64, 10_000, 100, 0);
        assert!(*budgets.last().unwrap() > 5, "rose within 8 windows: {budgets:?}");
    }

    #[test]
    fn a_single_long_frame_changes_nothing() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 256), 40);
        let mut budgets = Vec::new();
        for frame in 0..64 {
            let frame_us = if frame == 20 { 40_000 } else { 14_500 };
            budgets.push(c.observe(frame_us, 40));
        }
        assert!(budgets.iter().all(|b| *b == 40), "{budgets:?}");
    }

    #[test]
    fn frames_that_published_little_teach_nothing() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 256), 64);
        for _ in 0..100 {
            assert_eq!(c.observe(2_000, 3), 64, "idle frames do not raise the budget");
            assert_eq!(c.observe(40_000, 10), 64, "a hitch elsewhere does not lower it");
        }
    }

    #[test]
    fn sustained_overrun_backs_off_to_the_floor_and_no_further() {
        let policy = AdaptivePolicy { budget_min: 4, ..AdaptivePolicy::target(16_000, 128) };
        let mut c = AdaptiveBudget::new(policy, 128);
        let budgets: Vec<u32> = (0..200).map(|_| c.observe(30_000, c.budget())).collect();
        assert!(budgets.windows(2).all(|w| w[1] <= w[0]), "never rises while over target");
        assert_eq!(*budgets.last().unwrap(), 4);
    }

    #[test]
    fn plenty_of_room_rises_to_the_ceiling_and_no_further() {
        let mut c = AdaptiveBudget::new(AdaptivePolicy::target(16_000, 64), 8);
        let budgets: Vec<u32> = (0..400).map(|_| c.observe(2_000, c.budget())).collect();
        assert_eq!(*budgets.last().unwrap(), 64);
        assert!(budgets.iter().all(|b| *b <= 64));
    }
}
