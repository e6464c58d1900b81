//! `streamctl status`: the status line of a runtime.
//!
//! With `--socket`, asks a running daemon (`streamctl serve`). Without it, starts a runtime
//! in-process with the given sizes (and no assets), prints its status and shuts it down.

use streamrt::{MemorySource, Runtime};

/// Options of `streamctl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// IO worker threads (of the runtime started here, not with `--socket`).
    #[arg(long, default_value_t = 2, value_parser = crate::args::threads(), conflicts_with = "socket")]
    workers: usize,
    /// The scheduler's queue limit (of the runtime started here, not with `--socket`).
    #[arg(long, default_value_t = 64, value_parser = crate::args::count::<usize>(crate::args::COUNT_MAX), conflicts_with = "socket")]
    queue_capacity: usize,
    /// Print the whole status as JSON.
    #[arg(long)]
    json: bool,
    /// Write the runtime's telemetry log (JSON lines) to this file (not with `--socket`: the
    /// daemon's log is its own).
    #[arg(long, conflicts_with = "socket")]
    telemetry: Option<std::path::PathBuf>,
    /// Ask the daemon on this control socket instead of starting a runtime.
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// With `--socket`: how long to wait for the daemon's answer, in milliseconds.
    #[arg(long, default_value_t = crate::client::ANSWER_TIMEOUT_MS, value_parser = crate::args::count::<u64>(u64::MAX), requires = "socket")]
    answer_timeout_ms: u64,
}

/// Prints the status.
///
/// # Errors
///
/// The runtime could not start, or the telemetry log asked for could not be written whole.
pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    if let Some(socket) = &args.socket {
        return crate::client::status(&crate::client::Target {
            socket: socket.clone(),
            json: args.json,
            answer_timeout_ms: args.answer_timeout_ms,
        });
    }
    let mut builder = Runtime::builder();
    if let Some(path) = &args.telemetry {
        builder = builder.telemetry_path(path);
    }
    let rt = builder
        .workers(args.workers)
        .queue_capacity(args.queue_capacity)
        .source(MemorySource::new())
        .build()?;
    let status = rt.status();
    rt.shutdown();
    // The log was asked for: one cut short by a failed write is a failed run.
    if let Some(error) = rt.telemetry_error() {
        anyhow::bail!("the telemetry log is incomplete: {error}");
    }
    if args.json {
        println!("{}", crate::shown::json_line(&status)?);
    } else {
        println!("{status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Status {
        #[command(flatten)]
        args: StatusArgs,
    }

    fn parse(args: &[&str]) -> Result<StatusArgs, clap::Error> {
        Status::try_parse_from(std::iter::once("status").chain(args.iter().copied()))
            .map(|s| s.args)
    }

    #[test]
    fn a_flag_of_the_other_kind_of_status_is_refused_not_ignored() {
        for runtime_only in
            [["--workers", "3"], ["--queue-capacity", "8"], ["--telemetry", "t.jsonl"]]
        {
            let with_socket = [&["--socket", "ctl.sock"][..], &runtime_only[..]].concat();
            assert!(parse(&with_socket).is_err(), "{runtime_only:?} with --socket");
            assert!(parse(&runtime_only).is_ok(), "{runtime_only:?} alone");
        }
        assert!(parse(&["--answer-timeout-ms", "5"]).is_err(), "a daemon's timeout, no daemon");
        assert!(parse(&["--socket", "ctl.sock", "--answer-timeout-ms", "5"]).is_ok());
        assert!(parse(&[]).is_ok() && parse(&["--socket", "ctl.sock", "--json"]).is_ok());
    }
}
