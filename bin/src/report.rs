//! `streamctl report`: the summary of a telemetry log, and its Chrome trace.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use streamrt::report::{self, ChromeTrace, ReportBuilder};

use crate::trace_file::TraceFile;

/// Options of `streamctl report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A telemetry log (JSON lines, schema v1), as `--telemetry` writes it.
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write a Chrome trace (loads in Perfetto) to this file.
    #[arg(long)]
    chrome: Option<PathBuf>,
}

/// Prints the report.
///
/// # Errors
///
/// The log cannot be read or a line is not a schema v1 record (the error names the line).
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    // One pass, a record at a time, the trace written as it goes: a long session's log is
    // never held in memory, and a pipe read as its session runs is read once. The trace goes
    // to a file beside its path, put there once whole: a log that cannot be read, or a
    // failed write, leaves an earlier trace as it was.
    let mut summary = ReportBuilder::default();
    let out = args.chrome.as_deref().map(TraceFile::create).transpose()?;
    let mut trace = out.as_ref().map(|out| ChromeTrace::new(BufWriter::new(out.as_file())));
    let read = report::for_each_record(BufReader::new(file), |r| {
        summary.push(&r);
        if let Some(trace) = &mut trace {
            trace.push(&r);
        }
    });
    let cut_line = read.with_context(|| format!("reading {}", args.file.display()))?;
    let written = trace.map(|trace| trace.finish().map(drop));
    if let Some(out) = out {
        let path = out.path().to_owned();
        let written = written.unwrap_or(Ok(())).and_then(|()| out.finish());
        written.with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(line) = cut_line {
        let _ = writeln!(
            std::io::stderr(),
            "streamctl report: line {line} of {} is cut short (its writer stopped \
             mid-line); the report leaves it out",
            args.file.display()
        );
    }
    let summary = summary.finish();
    if args.json {
        println!("{}", crate::shown::json_line(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}
