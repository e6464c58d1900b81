//! Small SVG line charts for `streamctl bench --plot DIR`: throughput against queue depth
//! (`scale`) and the request→ready latency distribution (`priority`).
//!
//! Written by hand rather than through a plotting crate: two chart shapes, a log or linear
//! x axis, a linear y axis from 0, one polyline per series and a legend.

use std::fmt::Write as _;

/// One line of a chart.
pub(super) struct Series {
    pub(super) name: String,
    /// (x, y) points, in x order.
    pub(super) points: Vec<(f64, f64)>,
}

/// A chart and the file it is written to.
pub(super) struct Chart {
    pub(super) file: &'static str,
    pub(super) title: String,
    pub(super) x_label: String,
    pub(super) y_label: String,
    /// A base-10 logarithmic x axis.
    pub(super) x_log: bool,
    pub(super) series: Vec<Series>,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
/// Room for the legend, whose longest name ("streamrt, 10000 low queued") is about 170 px.
const RIGHT: f64 = 240.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"];

/// The x range of a chart as (low, high), already on the log scale when it is one.
fn x_range(chart: &Chart) -> (f64, f64) {
    let xs = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) =
        xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if chart.x_log {
        (
            lo.max(1e-9).log10().floor(),
            hi.max(1e-9).log10().ceil().max(lo.max(1e-9).log10().floor() + 1.0),
        )
    } else {
        (lo.min(0.0), if hi > lo { hi } else { lo + 1.0 })
    }
}

/// A round step for about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw)
}

fn label(v: f64) -> String {
    if v >= 1e6 && v % 1e6 == 0.0 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 && v % 1e3 == 0.0 {
        format!("{}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

impl Chart {
    /// The chart as an SVG document.
    pub(super) fn render(&self) -> String {
        let (x0, x1) = x_range(self);
        let y_max =
            self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
        let y_step = nice_step(y_max);
        let y1 = (y_max / y_step).ceil().max(1.0) * y_step;
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| {
            let v = if self.x_log { x.max(1e-9).log10() } else { x };
            LEFT + (v - x0) / (x1 - x0) * pw
        };
        let sy = |y: f64| TOP + ph - y / y1 * ph;
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"##,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        self.axes(&mut svg, (x0, x1), (y1, y_step), &sx, &sy);
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<String> =
                s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for &(x, y) in s.points.iter().filter(|_| s.points.len() <= 20) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    sx(x),
                    sy(y)
                );
            }
            let ly = TOP + 20.0 * i as f64;
            let _ = write!(
                svg,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                WIDTH - RIGHT + 40.0,
                WIDTH - RIGHT + 46.0,
                ly + 4.0,
                escape(&s.name),
                lx = WIDTH - RIGHT + 16.0,
            );
        }
        svg.push_str("</svg>\n");
        svg
    }

    fn axes(
        &self,
        svg: &mut String,
        (x0, x1): (f64, f64),
        (y1, y_step): (f64, f64),
        sx: &dyn Fn(f64) -> f64,
        sy: &dyn Fn(f64) -> f64,
    ) {
        let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="black"/>"#
        );
        let x_ticks: Vec<f64> = if self.x_log {
            (x0 as i32..=x1 as i32).map(|e| 10f64.powi(e)).collect()
        } else {
            let step = nice_step(x1);
            (0..=((x1 / step).floor() as usize)).map(|i| i as f64 * step).collect()
        };
        for x in x_ticks {
            let px = sx(x);
            let _ = write!(
                svg,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
                bottom + 16.0,
                label(x)
            );
        }
        let mut y = 0.0;
        while y <= y1 + y_step / 2.0 {
            let py = sy(y);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{right}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                py + 4.0,
                label(y)
            );
            y += y_step;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            LEFT + (right - LEFT) / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label),
            TOP + (bottom - TOP) / 2.0,
            escape(&self.y_label)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_renders_one_polyline_per_series_and_its_legend() {
        let chart = Chart {
            file: "t.svg",
            title: "depth <test>".into(),
            x_label: "depth".into(),
            y_label: "requests/s".into(),
            x_log: true,
            series: vec![
                Series { name: "a".into(), points: vec![(1.0, 10.0), (1000.0, 200.0)] },
                Series { name: "b".into(), points: vec![(10.0, 5.0)] },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("depth &lt;test&gt;"));
        assert!(svg.contains(">1k<"), "log ticks at powers of ten");
        assert_eq!(nice_step(230.0), 50.0);
    }
}
