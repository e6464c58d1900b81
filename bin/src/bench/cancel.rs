//! `streamctl bench cancel`: 10,000 requests queued at once, every other one cancelled right
//! after, against the same requests uncancelled (1–64 KiB lz4 pack entries, or `--pack`).
//!
//! Ours counts the bytes read from the pack file (`PackSource::bytes_read`: as stored, and
//! coalescing windows whole, so a cancelled entry read in its neighbour's window counts) and
//! the cancelled requests that were bound anyway: a cancelled handle must end `Cancelled`,
//! never `Ready`, and no `published` event may name it (the state alone could not show a bind:
//! a cancelled request's state moves nowhere else, so it is the events that are counted). The closing line compares the bytes read (ratio = baseline / cancelled; the
//! target, at most 55 % of the baseline, is a ratio of at least 1.82). The baseline is the
//! uncancelled run's bytes, or the entries' own stored bytes if fewer: the uncancelled run
//! reads some entries twice (one inside a window another IO worker is still reading is read
//! alone), which measured against it flattered the ratio (until the twenty-fourth session).
//! It counted the runtime's `Status::bytes_read` until the twelfth session: the entries
//! delivered, which left out what windows read for cancelled neighbours (about half of what
//! cancelling saved went back to them).

use std::collections::HashSet;
use std::time::Duration;

use anyhow::ensure;
use streamrt::messages::{EventKind, RequestId};
use streamrt::pack::PackLimits;
use streamrt::{LoadState, PackSource, Runtime};

use super::outcome::{Outcome, Target};
use super::workload::{generate_pack, open_pack, Sizes, Store, Workload};
use super::{bench_config, BenchArgs};
use crate::tracked::{register_all, Tracked};

/// Requests of the scenario by default.
const ASSETS: usize = 10_000;
const READ_SHARE_MAX: f64 = 0.55;
const PATIENCE: Duration = Duration::from_secs(600);

/// What one run read and bound.
struct Run {
    bytes_read: u64,
    /// Cancelled requests published anyway (an event says so, or the handle ended `Ready`).
    bound_after_cancel: usize,
    cancelled: usize,
    /// Requests chosen for cancelling (some had already ended).
    chosen: usize,
}

/// Requests every asset, cancels every other one at once when `cancel`, waits for all.
fn run(workload: &Workload, cancel: bool, args: &BenchArgs) -> anyhow::Result<Run> {
    let Store::Pack { path, .. } = &workload.store else {
        anyhow::bail!("the cancel scenario reads a pack");
    };
    let source = PackSource::open(path, PackLimits::default())?;
    let rt: Runtime = register_all(Runtime::builder().source(source.clone()))
        .config(bench_config(args, workload.keys.len()))
        .build()?;
    // Every event, so that a publish of a cancelled request is seen.
    let events = rt.subscribe(usize::MAX);
    let handles = workload.request_all(&rt)?;
    let chosen: Vec<&Box<dyn Tracked>> =
        if cancel { handles.iter().step_by(2).collect() } else { Vec::new() };
    // A request that had already ended (ready) when cancelled is not cancelled: only those
    // this call ended count, and none of them may bind.
    let cancelled: Vec<&Box<dyn Tracked>> = chosen.iter().copied().filter(|h| h.cancel()).collect();
    for h in &handles {
        ensure!(h.wait(PATIENCE), "{} did not finish", h.key());
    }
    ensure!(rt.sync(PATIENCE) && rt.flush_telemetry(), "the runtime did not settle");
    // Neither the feed nor the runtime's own buffer may have lost one: a lost `published`
    // would hide a bind.
    let lost = events.dropped() + rt.status().events_dropped;
    ensure!(!events.is_ended() && lost == 0, "the event feed missed {lost} events");
    let ids: HashSet<RequestId> = cancelled.iter().map(|h| h.id()).collect();
    let published = std::iter::from_fn(|| events.try_next())
        .filter(|e| e.kind == EventKind::Published && e.request.is_some_and(|r| ids.contains(&r)))
        .filter_map(|e| e.request)
        .collect::<HashSet<_>>();
    let unpublished = cancelled.iter().filter(|h| !published.contains(&h.id()));
    let bound_after_cancel =
        published.len() + unpublished.filter(|h| h.state() != LoadState::Cancelled).count();
    let kept_failed = handles
        .iter()
        .skip(usize::from(cancel))
        .step_by(if cancel { 2 } else { 1 })
        .find(|h| h.state() != LoadState::Ready);
    if let Some(h) = kept_failed {
        anyhow::bail!("{} ended {:?}", h.key(), h.state());
    }
    // After the shutdown, which joins the IO workers: a cancelled load's read may still be
    // under way when the runtime has settled.
    rt.shutdown();
    let bytes_read = source.bytes_read();
    Ok(Run { bytes_read, bound_after_cancel, cancelled: cancelled.len(), chosen: chosen.len() })
}

/// Runs the scenario.
pub(super) fn cancel(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let dir = crate::interrupt::temp_dir("bench")?;
    let workload = match &args.pack {
        Some(pack) => open_pack(pack, None)?,
        None => generate_pack(
            &dir.path().join("cancel.pack"),
            &Sizes::SMALL,
            args.count.unwrap_or(ASSETS),
            args.seed,
        )?,
    };
    let full = run(&workload, false, args)?;
    let half = run(&workload, true, args)?;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    // The uncancelled run reads some entries twice (one inside a window another IO worker is
    // reading is read alone): measured against it, the cancelled run would look better than
    // it is, so the baseline is the lesser of its bytes and the entries' own.
    let baseline = full.bytes_read.min(workload.stored_bytes);
    let share = half.bytes_read as f64 / baseline.max(1) as f64;
    let of_uncancelled = half.bytes_read as f64 / full.bytes_read.max(1) as f64;
    Ok(Outcome {
        scenario: "cancel",
        lines: vec![
            format!("cancel: {}, all requested at once, every other one cancelled at once", workload.describe()),
            format!(
                "uncancelled (baseline): {:.1} MiB read from the pack, for {:.1} MiB of entries",
                mib(full.bytes_read),
                mib(workload.stored_bytes)
            ),
            format!(
                "streamrt, {} of {} cancelled (the rest had ended): {:.1} MiB read ({:.1} % of the baseline, the lesser; {:.1} % of the uncancelled run's), bound after cancel: {}",
                half.cancelled,
                half.chosen,
                mib(half.bytes_read),
                share * 100.0,
                of_uncancelled * 100.0,
                half.bound_after_cancel
            ),
        ],
        unit: "MiB read; baseline: the uncancelled run's, or the entries' own if fewer".into(),
        ours: mib(half.bytes_read),
        baseline: mib(baseline),
        ratio: 1.0 / share.max(1e-9),
        target: Some(Target::new(
            format!("bytes read <= {:.0} % and bound after cancel = 0", READ_SHARE_MAX * 100.0),
            share <= READ_SHARE_MAX && half.bound_after_cancel == 0,
        )),
        extra: serde_json::json!({
            "requests": workload.keys.len(), "cancelled": half.cancelled,
            "bytes_read": half.bytes_read, "baseline_bytes_read": full.bytes_read,
            "entries_stored_bytes": workload.stored_bytes,
            "bound_after_cancel": half.bound_after_cancel,
        }),
        charts: vec![],
    })
}
