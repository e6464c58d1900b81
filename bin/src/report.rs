//! `streamctl report`: the summary of a telemetry log, and its Chrome trace.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use streamrt::report::{self, Report};

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
    let log = report::read_log(BufReader::new(file))
        .with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(line) = log.cut_line {
        let _ = writeln!(
            std::io::stderr(),
            "streamctl report: line {line} of {} is cut short (its writer stopped \
             mid-line); the report leaves it out",
            args.file.display()
        );
    }
    let records = log.records;
    let summary = Report::from_records(&records);
    if let Some(out) = &args.chrome {
        let trace = report::chrome_trace(&records);
        // Written as it is serialised, not first built whole in memory beside the trace.
        let write = || -> anyhow::Result<()> {
            let mut file = BufWriter::new(File::create(out)?);
            serde_json::to_writer(&mut file, &trace)?;
            Ok(file.flush()?)
        };
        write().with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        println!("{}", crate::shown::json_line(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}
