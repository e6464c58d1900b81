//! What a scenario measured, and how it is printed: one line per system measured, the unit
//! (and the target, when the scenario has one), then the closing line
//! `bench SCENARIO: ours=X baseline=Y ratio=R`, or all of it as one JSON object.

/// A scenario's result; see the module docs.
pub(super) struct Outcome {
    pub(super) scenario: &'static str,
    /// What was run, then one line per system measured.
    pub(super) lines: Vec<String>,
    /// What `ours` and `baseline` count, named in the line above the closing line.
    pub(super) unit: String,
    pub(super) ours: f64,
    pub(super) baseline: f64,
    /// Above 1 means streamrt is better.
    pub(super) ratio: f64,
    /// The target and whether it held.
    pub(super) target: Option<Target>,
    /// Further figures, for `--json`.
    pub(super) extra: serde_json::Value,
    /// Charts for `--plot`.
    pub(super) charts: Vec<super::plot::Chart>,
}

/// A scenario's target, checked against its figures.
pub(super) struct Target {
    pub(super) text: String,
    pub(super) met: bool,
}

impl Target {
    pub(super) fn new(text: impl Into<String>, met: bool) -> Self {
        Self { text: text.into(), met }
    }
}

impl Outcome {
    /// The closing line. The ratio is cut, not rounded, to two decimals: a ratio above 1 is
    /// better, so the line never shows one better than measured (0.798 rounded read 0.80 beside
    /// a target of 0.8 "NOT met").
    pub(super) fn closing(&self) -> String {
        format!(
            "bench {}: ours={} baseline={} ratio={:.2}",
            self.scenario,
            figure(self.ours),
            figure(self.baseline),
            floor_hundredths(self.ratio)
        )
    }

    /// The line above the closing line: the unit, and the target when there is one.
    pub(super) fn unit_line(&self) -> String {
        match &self.target {
            Some(t) => format!(
                "unit: {}; target: {} ({})",
                self.unit,
                t.text,
                if t.met { "met" } else { "NOT met" }
            ),
            None => format!("unit: {}", self.unit),
        }
    }

    /// Prints the outcome as text or as one JSON object.
    #[allow(clippy::print_stdout)]
    pub(super) fn print(&self, json: bool) {
        if json {
            let mut out = serde_json::json!({
                "scenario": self.scenario, "unit": self.unit, "ours": self.ours,
                "baseline": self.baseline, "ratio": self.ratio,
                "target": self.target.as_ref().map(|t| &t.text),
                "target_met": self.target.as_ref().map(|t| t.met),
            });
            if let (Some(out), Some(extra)) = (out.as_object_mut(), self.extra.as_object()) {
                out.extend(extra.clone());
            }
            // Its figures carry the user's pack or folder path (`--pack`).
            match crate::shown::json_line(&out) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("bench: cannot write the outcome as JSON: {e}"),
            }
            return;
        }
        for line in &self.lines {
            println!("{line}");
        }
        println!("{}", self.unit_line());
        println!("{}", self.closing());
    }
}

/// `x` cut down to two decimals. A ratio that is a whole number of hundredths stays one
/// (`0.29 * 100.0` is 28.999999999999996 in floating point).
fn floor_hundredths(x: f64) -> f64 {
    ((x * 100.0) + 1e-9).floor() / 100.0
}

/// A figure with as many decimals as its size deserves.
pub(super) fn figure(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_line_names_the_scenario_and_the_unit_line_the_target() {
        let outcome = Outcome {
            scenario: "tiny",
            lines: vec![],
            unit: "requests/s".into(),
            ours: 612_345.4,
            baseline: 401_000.0,
            ratio: 1.527,
            target: Some(Target::new(">= 500000 requests/s", true)),
            extra: serde_json::json!({}),
            charts: vec![],
        };
        assert_eq!(outcome.closing(), "bench tiny: ours=612345 baseline=401000 ratio=1.52");
        assert_eq!(outcome.unit_line(), "unit: requests/s; target: >= 500000 requests/s (met)");
        assert_eq!(figure(41.25), "41.2");
        assert_eq!(figure(0.5), "0.50");
    }

    #[test]
    fn a_ratio_just_under_its_target_never_prints_as_the_target() {
        assert_eq!(format!("{:.2}", floor_hundredths(0.798)), "0.79");
        assert_eq!(format!("{:.2}", floor_hundredths(0.8)), "0.80");
        assert_eq!(format!("{:.2}", floor_hundredths(2.999)), "2.99");
        for hundredths in [29, 57, 58, 113, 116] {
            let x = f64::from(hundredths) / 100.0;
            assert_eq!(floor_hundredths(x), x, "{x} stays itself");
        }
    }
}
