//! `streamctl bench coalesce`: small pack entries requested in pack order, with reads of
//! adjacent entries coalesced (ours) and with every entry read on its own (baseline), in one
//! run, interleaved round by round.

use std::path::Path;
use std::time::Duration;

use streamrt::pack::{Codec, PackLimits, PackWriter};
use streamrt::{Coalescing, PackSource, Runtime};

use super::outcome::Outcome;
use super::{bench_config, interleaved, median, stream_all, BenchArgs};
use crate::formats::{encode_blob, BlobDecoder};

/// Entries of the scenario by default.
const ASSETS: usize = 20_000;

/// Writes `count` checksummed blobs of 1–16 KiB into a pack, lz4 asked for; returns their
/// paths. Their bytes (16 values at random) do not compress, so the writer stores them as is:
/// the scenario measures reads, and decompression would only dilute the difference.
fn build(path: &Path, count: usize, seed: u64) -> anyhow::Result<Vec<String>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let pool: Vec<u8> = (0..(64 << 10)).map(|_| rng.u8(..) % 16).collect();
    let mut writer = PackWriter::create(path)?;
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        let len = rng.usize(1_024..16 << 10);
        let start = rng.usize(..pool.len() - len);
        let p = format!("c/e{i:06}.bin");
        writer.add(
            &format!("blob:{p}"),
            &encode_blob(&pool[start..start + len]),
            Codec::Lz4,
            vec![],
        )?;
        paths.push(p);
    }
    writer.finish()?;
    Ok(paths)
}

/// One run: every entry requested in pack order; returns the time and the reads made.
fn run(
    pack: &Path,
    paths: &[String],
    policy: Coalescing,
    args: &BenchArgs,
) -> anyhow::Result<(Duration, u64)> {
    let source = PackSource::open(pack, PackLimits::default())?.with_coalescing(policy);
    let config = bench_config(args, paths.len());
    let rt =
        Runtime::builder().config(config).source(source.clone()).register(BlobDecoder).build()?;
    let elapsed = stream_all(&rt, paths)?;
    rt.shutdown();
    Ok((elapsed, source.reads()))
}

pub(super) fn coalesce(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let dir = crate::interrupt::temp_dir("bench")?;
    let pack = dir.path().join("small.pack");
    let paths = build(&pack, args.count.unwrap_or(ASSETS), args.seed)?;
    // One untimed pass warms the page cache for both.
    run(&pack, &paths, Coalescing::off(), args)?;
    let policies = [Coalescing::off(), Coalescing::default()];
    let system = |s: usize| run(&pack, &paths, policies[s], args);
    let names = ["separate reads", "coalesced"];
    let [base, ours] = interleaved(args, names, system, |r: &(Duration, u64)| r.0)?;
    let reads = (base.last().map_or(0, |r| r.1), ours.last().map_or(0, |r| r.1));
    let (base, ours): (Vec<Duration>, Vec<Duration>) =
        (base.iter().map(|r| r.0).collect(), ours.iter().map(|r| r.0).collect());
    let rate = |d: Duration| paths.len() as f64 / d.as_secs_f64();
    let (b, o) = (rate(median(base)), rate(median(ours)));
    let size = std::fs::metadata(&pack)?.len();
    Ok(Outcome {
        scenario: "coalesce",
        lines: vec![
            format!(
                "coalesce: {} entries of 1-16 KiB in pack order (lz4 asked, stored as is), {:.1} MiB pack, page cache warm",
                paths.len(),
                size as f64 / f64::from(1 << 20)
            ),
            format!("baseline one read per entry: {b:.0} files/s, {} reads", reads.0),
            format!(
                "streamrt coalesced {} KiB windows: {o:.0} files/s, {} reads",
                Coalescing::default().window_bytes >> 10,
                reads.1
            ),
        ],
        unit: "files/s".into(),
        ours: o,
        baseline: b,
        ratio: o / b,
        target: None,
        extra: serde_json::json!({
            "files": paths.len(), "ours_reads": reads.1, "baseline_reads": reads.0,
        }),
        charts: vec![],
    })
}
