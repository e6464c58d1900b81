//! `streamctl bench scale`: throughput with 1,000,000 requests pending against 1,000, and the
//! memory a pending request costs.
//!
//! At each queue depth a fresh runtime (64-byte assets from memory) is filled with `depth`
//! requests while its source is gated shut, so every one of them is pending; the process's
//! peak RSS over the fill (its high-water mark, reset first) less its RSS before gives the
//! bytes per pending request; the largest depth is measured first, before the process has
//! freed memory the fill could take back. Then the gate opens and the caller keeps `depth`
//! requests pending, replacing each that ends with a new one, and times a fixed number of
//! completions.
//! Depths from 1 to 1,000,000 give the throughput-against-depth curve; the closing line
//! compares the largest depth with 1,000, each the median of `--rounds` measurements made in
//! turn (one sample of each swung the ratio from 0.45 to 1.73 between runs).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::ensure;
use streamrt::messages::AssetKey;
use streamrt::{Handle, MemorySource, Priority, ReadHook, Runtime, SourceError, Wrapped};

use super::outcome::{Outcome, Target};
use super::plot::{Chart, Series};
use super::{bench_config, is_numbered, numbered_payload, turn_order, BenchArgs};
use crate::formats::{encode_blob, Blob, BlobDecoder};

/// The largest depth by default.
const DEPTH_MAX: usize = 1_000_000;
/// The depth the largest is compared with.
const DEPTH_BASE: usize = 1_000;
/// Completions timed at the compared depths.
const COMPLETIONS: usize = 100_000;
const ASSET_BYTES: usize = 64;
const PATIENCE: Duration = Duration::from_secs(600);
const RATE_SHARE_MIN: f64 = 0.90;
const BYTES_PER_PENDING_MAX: f64 = 256.0;

/// Reads wait until the gate opens.
#[derive(Clone, Default)]
struct Gate {
    open: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    fn open(&self) {
        *self.open.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.open.1.notify_all();
    }
}

impl ReadHook for Gate {
    fn around(
        &self,
        _key: &AssetKey,
        read: impl FnOnce() -> Result<Vec<u8>, SourceError>,
    ) -> Result<Vec<u8>, SourceError> {
        let (lock, cv) = &*self.open;
        let mut open = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = cv.wait(open).unwrap_or_else(PoisonError::into_inner);
        }
        drop(open);
        read()
    }

    fn describe(&self, inner: &str) -> String {
        format!("gated {inner}")
    }
}

/// One depth's figures.
#[derive(Clone)]
struct Depth {
    depth: usize,
    completions: usize,
    rate: f64,
    /// Measured for the largest depth only, which runs first (see the module docs).
    bytes_per_pending: Option<f64>,
}

/// A line of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); 0 where there is none.
fn vm_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn measure(
    source: &MemorySource,
    depth: usize,
    completions: usize,
    args: &BenchArgs,
) -> anyhow::Result<Depth> {
    let gate = Gate::default();
    let config = bench_config(args, depth + completions);
    let rt = Runtime::builder()
        .config(config)
        .source(Wrapped::new(source.clone(), gate.clone()))
        .register(BlobDecoder)
        .build()?;
    let path = |i: usize| format!("s/{i}");
    // Resetting the high-water mark needs Linux's clear_refs; without it the peak is the
    // process's own, which only overstates the cost, and the figure says so.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    if !reset {
        eprintln!("scale: the RSS peak could not be reset: bytes per pending request overstated");
    }
    let before = vm_bytes("VmRSS");
    let mut pending: VecDeque<Handle<Blob>> = (0..depth)
        .map(|i| rt.request::<Blob>(&path(i), Priority::Normal))
        .collect::<Result<_, _>>()?;
    ensure!(rt.sync(PATIENCE), "the runtime did not take the requests");
    let peak = vm_bytes("VmHWM").max(vm_bytes("VmRSS"));
    let bytes_per_pending = peak.saturating_sub(before) as f64 / depth.max(1) as f64;
    gate.open();
    let started = Instant::now();
    for (number, next) in (depth..depth + completions).enumerate() {
        let done = pending.pop_front().expect("the window holds depth requests");
        let outcome = done.wait_timeout(PATIENCE);
        // A load bound to another key's bytes would pass as ready otherwise.
        let own = outcome.is_some_and(|o| o.is_ok_and(|blob| is_numbered(&blob, number as u64)));
        ensure!(own, "{} failed or came with another asset's bytes", done.key());
        pending.push_back(rt.request::<Blob>(&path(next), Priority::Normal)?);
    }
    let elapsed = started.elapsed();
    drop(pending);
    rt.shutdown();
    Ok(Depth {
        depth,
        completions,
        rate: completions as f64 / elapsed.as_secs_f64(),
        bytes_per_pending: Some(bytes_per_pending),
    })
}

/// The depths measured, smallest first, up to `largest`, with `DEPTH_BASE` among them.
fn depths(largest: usize) -> Vec<usize> {
    let mut d: Vec<usize> = std::iter::successors(Some(1usize), |d| Some(d * 10))
        .take_while(|d| *d < largest)
        .collect();
    d.push(largest);
    if !d.contains(&DEPTH_BASE) && DEPTH_BASE < largest {
        d.push(DEPTH_BASE);
        d.sort_unstable();
    }
    d
}

/// Completions timed at `depth`: fewer where the depth is small and each waits its turn.
fn completions(depth: usize, largest: usize) -> usize {
    if depth >= DEPTH_BASE.min(largest) {
        COMPLETIONS.min(largest.max(1_000))
    } else {
        (depth * 100).clamp(2_000, COMPLETIONS)
    }
}

/// The compared depths' figures, each rate the median of `rounds` measurements (the first
/// round is the curve's; in the later ones the two depths take turns to run first, as every
/// scenario's systems do), so the closing ratio rests on more than one sample of each. Bytes
/// per pending request stay the first round's: later rounds fill memory the process already
/// holds from the earlier ones, so their peak RSS says less.
fn compared(
    source: &MemorySource,
    rows: &[Depth],
    largest: usize,
    args: &BenchArgs,
) -> anyhow::Result<(Depth, Depth)> {
    let base_depth = base_depth(rows, largest);
    let first = |depth: usize| rows.iter().find(|r| r.depth == depth).expect("measured");
    let (mut base, mut top) = (vec![first(base_depth).clone()], vec![first(largest).clone()]);
    for round in 1..args.rounds.max(1) {
        for system in turn_order(round, 2) {
            let (depth, runs) =
                if system == 0 { (base_depth, &mut base) } else { (largest, &mut top) };
            runs.push(measure(source, depth, completions(depth, largest), args)?);
        }
    }
    Ok((median_depth(base), median_depth(top)))
}

/// The depth the largest is compared with: `DEPTH_BASE`, or for a run no deeper than that (a
/// smoke run's `--count`), the next depth measured below the largest (itself for depth 1).
fn base_depth(rows: &[Depth], largest: usize) -> usize {
    if largest > DEPTH_BASE {
        return DEPTH_BASE;
    }
    rows.iter().map(|r| r.depth).filter(|&d| d < largest).max().unwrap_or(largest)
}

/// One depth's measurements as one: the median rate (the mean of the two middles for an
/// even count), the first run's bytes per pending.
fn median_depth(mut runs: Vec<Depth>) -> Depth {
    let bytes_per_pending = runs[0].bytes_per_pending;
    let mid = runs.len() / 2;
    runs.sort_unstable_by(|a, b| a.rate.total_cmp(&b.rate));
    let lower_rate = (runs.len() % 2 == 0).then(|| runs[mid - 1].rate);
    let middle = runs.swap_remove(mid);
    let rate = lower_rate.map_or(middle.rate, |lower| (lower + middle.rate) / 2.0);
    Depth { bytes_per_pending, rate, ..middle }
}

/// Throughput against queue depth.
fn chart(rows: &[Depth]) -> Chart {
    Chart {
        file: "throughput-vs-depth.svg",
        title: format!(
            "streamrt throughput against queue depth ({ASSET_BYTES}-byte assets, memory)"
        ),
        x_label: "requests pending (queue depth)".into(),
        y_label: "requests/s".into(),
        x_log: true,
        series: vec![Series {
            name: "streamrt".into(),
            points: rows.iter().map(|r| (r.depth as f64, r.rate)).collect(),
        }],
    }
}

/// Runs the scenario.
pub(super) fn scale(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let largest = args.count.unwrap_or(DEPTH_MAX).max(1);
    let measured = depths(largest);
    let keys = measured.iter().map(|d| d + completions(*d, largest)).max().unwrap_or(0);
    let source = MemorySource::new();
    for i in 0..keys {
        source.insert(
            AssetKey::parse(&format!("blob:s/{i}"))?,
            encode_blob(&numbered_payload(i as u64, ASSET_BYTES - 4)),
        );
    }
    // The largest depth first: its memory is measured while the process has freed nothing
    // it could reuse. Measured after the smaller depths, it came out 25-50 bytes lower and
    // varied by as much, as the fill took back what the allocator kept of theirs.
    let (&deepest, shallower) = measured.split_last().expect("depths() names the largest");
    let mut rows = Vec::with_capacity(measured.len());
    rows.push(measure(&source, deepest, completions(deepest, largest), args)?);
    for &d in shallower {
        let row = measure(&source, d, completions(d, largest), args)?;
        rows.push(Depth { bytes_per_pending: None, ..row });
    }
    rows.sort_unstable_by_key(|r| r.depth);
    let (base, top) = compared(&source, &rows, largest, args)?;
    let mut lines = vec![format!(
        "scale: {ASSET_BYTES}-byte assets from memory, depth requests kept pending, {} io + {} decode threads",
        args.workers, args.decode_threads
    )];
    lines.extend(rows.iter().map(|r| {
        let memory = r.bytes_per_pending.map_or_else(String::new, |b| {
            format!(", {b:.0} bytes per pending request (peak RSS, measured first)")
        });
        format!(
            "depth {:>9}: {:>8.0} requests/s over {} completions{memory}",
            r.depth, r.rate, r.completions
        )
    }));
    let bytes_per_pending = top.bytes_per_pending.unwrap_or(f64::NAN);
    lines.push(format!(
        "median of {} interleaved rounds: depth {}: {:.0} requests/s; depth {}: {:.0} requests/s ({bytes_per_pending:.0} bytes per pending request, first round)",
        args.rounds.max(1), base.depth, base.rate, top.depth, top.rate
    ));
    let ratio = top.rate / base.rate;
    let met = ratio >= RATE_SHARE_MIN && bytes_per_pending <= BYTES_PER_PENDING_MAX;
    // The target compares a depth past `DEPTH_BASE` with it; a shallower run has none.
    let target_text = format!(
        "throughput within {:.0} % and <= {BYTES_PER_PENDING_MAX:.0} bytes per pending request",
        (1.0 - RATE_SHARE_MIN) * 100.0
    );
    let target = (largest > DEPTH_BASE).then(|| Target::new(target_text, met));
    let chart = chart(&rows);
    Ok(Outcome {
        scenario: "scale",
        lines,
        unit: format!("requests/s at depth {}; baseline: depth {}", top.depth, base.depth),
        ours: top.rate,
        baseline: base.rate,
        ratio,
        target,
        extra: serde_json::json!({
            "depths": rows.iter().map(|r| serde_json::json!({
                "depth": r.depth, "requests_per_s": r.rate, "completions": r.completions,
                "bytes_per_pending": r.bytes_per_pending,
            })).collect::<Vec<_>>(),
        }),
        charts: vec![chart],
    })
}
