//! `streamctl bench telemetry`: 50,000 assets of 1–16 KiB from memory, all requested at once,
//! with telemetry on (every event written as a JSON line to a file) and off (counters only,
//! the baseline), interleaved rounds, median reported.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure};
use streamrt::messages::AssetKey;
use streamrt::{MemorySource, Runtime, RuntimeConfig};

use super::cpu::{Medians, Span, Stopwatch};
use super::outcome::{Outcome, Target};
use super::{bench_config, interleaved, stream_all, BenchArgs};
use crate::formats::{encode_blob, BlobDecoder};

/// Assets of the scenario by default.
const ASSETS: usize = 50_000;
/// Issue 5's target: telemetry on costs at most 5 % of the rate with it off.
const RATIO_MIN: f64 = 0.95;

/// One run: every asset requested at once, timed to the last end.
fn run(
    source: &MemorySource,
    keys: &[String],
    args: &BenchArgs,
    log: Option<&Path>,
) -> anyhow::Result<Span> {
    let config = RuntimeConfig {
        events_enabled: log.is_some(),
        telemetry_path: log.map(Path::to_owned),
        ..bench_config(args, keys.len())
    };
    let rt =
        Runtime::builder().config(config).source(source.clone()).register(BlobDecoder).build()?;
    let watch = Stopwatch::start();
    stream_all(&rt, keys)?;
    // The sink's last lines are part of telemetry's cost (with telemetry off, nothing waits).
    let flushed = rt.flush_telemetry();
    let span = watch.stop();
    // A sink that gave up on its file, or did not answer, would make telemetry look cheap.
    ensure!(flushed, "the telemetry sink did not answer its flush");
    if let Some(error) = rt.telemetry_error() {
        bail!("telemetry failed to write its log: {error}");
    }
    // So would events dropped at a full buffer: the line says every event is written.
    let dropped = rt.status().events_dropped;
    ensure!(
        dropped == 0,
        "telemetry dropped {dropped} events: the rate would count lines never written"
    );
    rt.shutdown();
    Ok(span)
}

/// Runs the scenario.
pub(super) fn telemetry(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let dir = crate::interrupt::temp_dir("bench")?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let source = MemorySource::new();
    let keys: Vec<String> = (0..args.count.unwrap_or(ASSETS)).map(|i| format!("m{i}")).collect();
    for k in &keys {
        let payload: Vec<u8> = (0..rng.usize(1_024..16 << 10)).map(|_| rng.u8(..)).collect();
        source.insert(AssetKey::parse(&format!("blob:{k}"))?, encode_blob(&payload));
    }
    let log = dir.path().join("bench.jsonl");
    let system = |s: usize| run(&source, &keys, args, (s == 1).then_some(log.as_path()));
    let [off, on] = interleaved(args, ["telemetry off", "on"], system, |s: &Span| s.wall)?;
    let rate = |d: Duration| keys.len() as f64 / d.as_secs_f64();
    let (on, off) = (Medians::of(&on, keys.len()), Medians::of(&off, keys.len()));
    let (o, b) = (rate(on.wall), rate(off.wall));
    Ok(Outcome {
        scenario: "telemetry",
        lines: vec![
            format!(
                "telemetry: {} in-memory assets of 1-16 KiB, every event written when on",
                keys.len()
            ),
            format!(
                "telemetry off (baseline): {b:.0} requests/s, {} us CPU/request",
                off.cpu_text()
            ),
            format!("telemetry on: {o:.0} requests/s, {} us CPU/request", on.cpu_text()),
        ],
        unit: "requests/s".into(),
        ours: o,
        baseline: b,
        ratio: o / b,
        target: Some(Target::new(format!("ratio >= {RATIO_MIN:.2} (issue 5)"), o / b >= RATIO_MIN)),
        extra: serde_json::json!({
            "requests": keys.len(),
            "cpu_us_per_request": { "on": on.cpu_us_per_item, "off": off.cpu_us_per_item },
        }),
        charts: vec![],
    })
}
