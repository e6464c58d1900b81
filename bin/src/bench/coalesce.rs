//! `streamctl bench coalesce`: small pack entries requested in pack order, with reads of
//! adjacent entries coalesced (ours) and with every entry read on its own (baseline), in one
//! run, interleaved round by round.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use streamrt::pack::{Codec, PackLimits, PackWriter};
use streamrt::{Coalescing, PackSource, Runtime};

use super::{bench_config, median, stream_all, BenchArgs};
use crate::formats::{encode_blob, BlobDecoder};

/// Writes `count` checksummed blobs of 1–16 KiB, lz4, into a pack; returns their paths.
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

pub(super) fn coalesce(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the bench folder")?;
    let pack = dir.path().join("small.pack");
    let paths = build(&pack, args.files, args.seed)?;
    // One untimed pass warms the page cache for both.
    run(&pack, &paths, Coalescing::off(), args)?;
    let (mut base, mut ours, mut reads) = (Vec::new(), Vec::new(), (0, 0));
    for round in 1..=args.rounds.max(1) {
        let (b, b_reads) = run(&pack, &paths, Coalescing::off(), args)?;
        let (o, o_reads) = run(&pack, &paths, Coalescing::default(), args)?;
        reads = (b_reads, o_reads);
        if !args.json {
            println!(
                "  round {round}: separate reads {:.3} s  coalesced {:.3} s",
                b.as_secs_f64(),
                o.as_secs_f64()
            );
        }
        base.push(b);
        ours.push(o);
    }
    let rate = |d: Duration| paths.len() as f64 / d.as_secs_f64();
    let (b, o) = (median(base), median(ours));
    let ratio = rate(o) / rate(b);
    if args.json {
        let out = serde_json::json!({
            "scenario": "coalesce", "unit": "files/s", "files": paths.len(),
            "ours": rate(o), "baseline": rate(b), "ratio": ratio,
            "ours_reads": reads.1, "baseline_reads": reads.0,
        });
        println!("{out}");
        return Ok(());
    }
    let size = std::fs::metadata(&pack)?.len();
    println!(
        "coalesce: {} lz4 entries of 1-16 KiB in pack order, {:.1} MiB pack, page cache warm",
        paths.len(),
        size as f64 / f64::from(1 << 20)
    );
    println!("baseline one read per entry: {:.0} files/s, {} reads", rate(b), reads.0);
    println!("streamrt coalesced 256 KiB windows: {:.0} files/s, {} reads", rate(o), reads.1);
    println!("unit: files/s");
    println!("bench coalesce: ours={:.0} baseline={:.0} ratio={ratio:.2}", rate(o), rate(b));
    Ok(())
}
