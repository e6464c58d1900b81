//! `streamctl replay LOG`: runs a recorded session again on a deterministic runtime and prints
//! its transcript, one line per event (frame, event, request, key, state), then
//! `replay: events=N hash=H`.
//!
//! Exit status: non-zero when the log is bad (the error names the byte offset), when a
//! request's terminal state differs from the recording (the first such event is named), or
//! when `--check` is given a hash the transcript does not have or a log cut short (one that
//! ends before its session's shutdown: it is replayed, and says so, but cannot be checked).
//! A reader that stops early (`| head`) ends it with status 141, as for every command.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use streamrt::messages::escape_controls;
use streamrt::replay::{replay, ReplayOptions, ReplayReport};

use crate::OutputClosed;

/// Arguments of `streamctl replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The log, written by `demo --record` or `serve --record`.
    log: PathBuf,
    /// Print the transcript as JSON lines.
    #[arg(long)]
    json: bool,
    /// Exit non-zero unless the transcript's hash is this (16 hex digits).
    #[arg(long)]
    check: Option<String>,
    /// Print only the closing lines, not the transcript.
    #[arg(long)]
    quiet: bool,
}

/// Replays the log and prints the transcript.
///
/// # Errors
///
/// An unreadable or bad log, a divergence from the recording, or a hash other than `--check`.
/// A reader that stops early (`| head`) gives [`OutputClosed`], which `main` turns into the
/// status of a tool `SIGPIPE` ended, as for the other commands.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    match replay_and_print(args) {
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(is_broken_pipe) => {
            Err(OutputClosed.into())
        }
        other => other,
    }
}

/// Of `replay`'s IO only a write meets a closed pipe, and it writes only to standard output.
fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// The largest log `replay` reads, in bytes: it keeps the whole log, and the transcript it
/// makes, in memory.
const LOG_BYTES_MAX: u64 = 1 << 30;

/// The log's bytes; a file over [`LOG_BYTES_MAX`] is refused, by its size when it has one
/// (before reading), else once that many bytes came.
fn read_log_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let too_large =
        || anyhow!("{}: over the {LOG_BYTES_MAX}-byte limit of a replay log", path.display());
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_file() && m.len() > LOG_BYTES_MAX) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(LOG_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > LOG_BYTES_MAX {
        return Err(too_large());
    }
    Ok(bytes)
}

fn replay_and_print(args: &ReplayArgs) -> anyhow::Result<()> {
    let bytes = read_log_file(&args.log)?;
    let report = replay(&bytes, ReplayOptions::default())
        .with_context(|| format!("replaying {}", args.log.display()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if !args.quiet {
        for line in &report.lines {
            if args.json {
                writeln!(out, "{}", crate::shown::json_line(line)?)?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
    }
    let hash = format!("{:016x}", report.hash);
    if args.json {
        // The closing figures as one JSON object too, so every line of `--json` parses.
        let closing = serde_json::json!({ "replay": {
            "recorded_by": report.recorded_by,
            "checked": report.checked,
            "unused_outcomes": report.unused_outcomes,
            "divergence": report.divergence.as_ref().map(ToString::to_string),
            "complete": report.complete,
            "events": report.lines.len(),
            "hash": hash,
        }});
        writeln!(out, "{}", crate::shown::json_line(&closing)?)?;
    } else {
        print_closing(&mut out, &report, &hash)?;
    }
    out.flush()?;
    if let Some(d) = &report.divergence {
        bail!("{d}");
    }
    match &args.check {
        Some(_) if !report.complete => bail!("{CUT_SHORT}: --check needs a whole log"),
        Some(expected) if !expected.eq_ignore_ascii_case(&hash) => {
            bail!("hash {hash} differs from the expected {expected}")
        }
        _ => Ok(()),
    }
}

/// The closing lines of a replay in text.
fn print_closing(out: &mut impl Write, report: &ReplayReport, hash: &str) -> std::io::Result<()> {
    match &report.divergence {
        None => writeln!(
            out,
            "replay: {} requests end as recorded by {}",
            report.checked,
            escape_controls(&report.recorded_by)
        )?,
        Some(d) => writeln!(out, "replay: {d}")?,
    }
    if !report.complete {
        writeln!(out, "replay: {CUT_SHORT}")?;
    }
    if report.unused_outcomes > 0 {
        let n = report.unused_outcomes;
        writeln!(out, "replay: {n} recorded read or decode outcomes were never taken")?;
    }
    writeln!(out, "replay: events={} hash={hash}", report.lines.len())
}

/// Said of a log that ends before its session's shutdown.
const CUT_SHORT: &str = "the log ends before its session's shutdown (cut short: its recorder \
                         stopped without shutting the runtime down); replayed to its last record";
