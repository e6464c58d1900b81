//! `streamctl bench frame`: the engine thread's cost of `begin_frame` + `end_frame` with 0,
//! 100 and 1,000 decoded assets waiting (publish budget 64).
//!
//! Between measured boundaries (untimed) the loop re-requests as many assets as the boundary
//! published and waits until they decoded and reached the frame coordinator, so every measured
//! boundary sees the same backlog. The baseline is the empty frame, measured in the same run.
//! The levels run in `--rounds` interleaved rounds of an equal share of `--frames` boundaries
//! each, and each level's percentiles are of all its rounds' boundaries together: a busy spell
//! of the machine falls on every level, not on whichever ran then.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use streamrt::messages::AssetKey;
use streamrt::{wait_loaded, Handle, MemorySource, Priority, Runtime, RuntimeConfig};

use super::outcome::{Outcome, Target};
use super::{bench_config, interleaved, BenchArgs};
use crate::formats::{encode_blob, Blob, BlobDecoder};
use streamrt::report::quantile;

/// The publish budget of every level.
const BUDGET: u32 = 64;
const PATIENCE: Duration = Duration::from_secs(60);
/// Assets ready at the measured level by default.
const READY: usize = 1_000;
/// The target for the p99 boundary with `READY` assets ready, in microseconds.
const P99_US_MAX: u32 = 50;

/// Figures of one backlog level, in nanoseconds.
struct Level {
    ready: usize,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    published_per_frame: f64,
}

/// One round's boundaries at one level.
struct Round {
    /// Each boundary's time, in nanoseconds.
    samples: Vec<u64>,
    /// Requests the boundaries published.
    published: u64,
}

impl Round {
    /// The boundaries' time in all.
    fn wall(&self) -> Duration {
        Duration::from_nanos(self.samples.iter().sum())
    }
}

impl Level {
    /// The level's figures over every round's boundaries.
    fn of(ready: usize, rounds: Vec<Round>) -> Self {
        let published: u64 = rounds.iter().map(|r| r.published).sum();
        let mut samples: Vec<u64> = rounds.into_iter().flat_map(|r| r.samples).collect();
        samples.sort_unstable();
        Self {
            ready,
            p50_ns: quantile(&samples, 0.50),
            p99_ns: quantile(&samples, 0.99),
            max_ns: samples.last().copied().unwrap_or(0),
            published_per_frame: published as f64 / samples.len().max(1) as f64,
        }
    }
}

/// Measures `frames` boundaries with `ready` assets waiting at each.
fn measure(ready: usize, frames: usize, args: &BenchArgs) -> anyhow::Result<Round> {
    let source = MemorySource::new();
    // Each boundary publishes fresh loads, not cache hits: at most the budget, and at most
    // what is ready, so the requests still held are the last `ready` and a frame's top-up.
    // A key is used again only once its request was published and let go, and nothing is
    // kept resident: as many keys as every frame's would take memory in proportion to
    // `--frames` (64 million for a million frames).
    let per_frame = ready.min(BUDGET as usize);
    let keys = (ready + (frames + 1) * per_frame).min(ready + 2 * per_frame + 1);
    for i in 0..keys {
        source.insert(AssetKey::parse(&format!("blob:f{i}"))?, encode_blob(&i.to_le_bytes()));
    }
    let config = RuntimeConfig { bytes_resident_max: 0, ..bench_config(args, keys) };
    let rt = Runtime::builder()
        .config(config)
        .source(source)
        .register(BlobDecoder)
        .frame_budget(BUDGET)
        .build()?;
    let mut next = 0;
    let mut top_up = |n: usize| -> anyhow::Result<Vec<Handle<Blob>>> {
        let handles = (next..next + n)
            .map(|i| rt.request::<Blob>(&format!("f{}", i % keys.max(1)), Priority::Normal))
            .collect::<Result<Vec<_>, _>>()?;
        next += n;
        if !wait_loaded(&handles, PATIENCE) || !rt.sync(PATIENCE) {
            bail!("the backlog did not decode within {PATIENCE:?}");
        }
        Ok(handles)
    };
    let mut held = top_up(ready)?;
    // One boundary untimed: each round builds a runtime, whose first boundary is a cold one.
    let warm = rt.begin_frame();
    rt.end_frame();
    held.retain(|h| !h.is_terminal());
    held.extend(top_up(warm.published as usize)?);
    let (mut samples, mut published) = (Vec::with_capacity(frames), 0u64);
    for _ in 0..frames {
        let started = Instant::now();
        let report = rt.begin_frame();
        rt.end_frame();
        samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        ensure!(report.waiting + report.published as usize == ready, "backlog drifted");
        published += u64::from(report.published);
        held.retain(|h| !h.is_terminal());
        held.extend(top_up(report.published as usize)?);
    }
    rt.shutdown();
    Ok(Round { samples, published })
}

/// Runs the scenario.
pub(super) fn frame(args: &BenchArgs) -> anyhow::Result<Outcome> {
    // A p99 of fewer than 100 frames would be their maximum.
    let frames = args.frames.max(100);
    let rounds = args.rounds.max(1);
    let ready = [0, 100, args.count.unwrap_or(READY)];
    let run = |level: usize| measure(ready[level], frames.div_ceil(rounds), args);
    let names = ["ready=0", "ready=100", "full"];
    let per_level = interleaved(args, names, run, Round::wall)?;
    let levels: Vec<Level> =
        ready.into_iter().zip(per_level).map(|(n, rounds)| Level::of(n, rounds)).collect();
    let frames = frames.div_ceil(rounds) * rounds;
    let us = |ns: u64| ns as f64 / 1e3;
    let (empty, full) = (&levels[0], &levels[2]);
    let mut lines = vec![format!(
        "frame: begin_frame+end_frame on the engine thread, budget {BUDGET}, {frames} frames"
    )];
    lines.extend(levels.iter().map(|l| {
        format!(
            "ready={:>5}: p50={:.1} us p99={:.1} us max={:.1} us published/frame={:.1}",
            l.ready,
            us(l.p50_ns),
            us(l.p99_ns),
            us(l.max_ns),
            l.published_per_frame
        )
    }));
    let rows: Vec<_> = levels
        .iter()
        .map(|l| {
            serde_json::json!({
                "ready": l.ready, "p50_us": us(l.p50_ns), "p99_us": us(l.p99_ns),
                "max_us": us(l.max_ns), "published_per_frame": l.published_per_frame,
            })
        })
        .collect();
    Ok(Outcome {
        scenario: "frame",
        lines,
        unit: format!(
            "us, p99 of begin_frame+end_frame with {} ready; baseline: an empty frame",
            full.ready
        ),
        ours: us(full.p99_ns),
        baseline: us(empty.p99_ns),
        ratio: empty.p99_ns.max(1) as f64 / full.p99_ns.max(1) as f64,
        target: Some(Target::new(
            format!("p99 <= {P99_US_MAX} us"),
            us(full.p99_ns) <= f64::from(P99_US_MAX),
        )),
        extra: serde_json::json!({ "frames": frames, "budget": BUDGET, "levels": rows }),
        charts: vec![],
    })
}
