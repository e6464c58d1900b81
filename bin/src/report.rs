//! `streamctl report`: the summary of a telemetry log, and its Chrome trace.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use streamrt::report::{self, ChromeTrace, ReportBuilder};

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
    // never held in memory, and a pipe read as its session runs is read once.
    let mut summary = ReportBuilder::default();
    let mut trace = match &args.chrome {
        Some(out) => {
            let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
            Some(ChromeTrace::new(BufWriter::new(file)))
        }
        None => None,
    };
    let read = report::for_each_record(BufReader::new(file), |r| {
        summary.push(&r);
        if let Some(trace) = &mut trace {
            trace.push(&r);
        }
    });
    let written = trace.map(ChromeTrace::finish);
    let cut_line = match read {
        Ok(cut_line) => cut_line,
        Err(e) => {
            // No trace of a log that could not be read: it would look whole.
            if let Some(out) = &args.chrome {
                let _ = std::fs::remove_file(out);
            }
            return Err(e).with_context(|| format!("reading {}", args.file.display()));
        }
    };
    if let (Some(Err(e)), Some(out)) = (written, &args.chrome) {
        return Err(e).with_context(|| format!("writing {}", out.display()));
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
