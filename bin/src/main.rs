//! `streamctl`: the command-line tool of streamrt.
//!
//! Hosts the demo, the daemon and its clients, the pack tools, the report, the chaos run, the
//! simulator and the benchmarks. Every command has `--help`; exit code 0 on success, non-zero
//! with a one-line error on failure: 2 for a usage error, 141 when the output's reader went
//! away (as `SIGPIPE` would end a tool), 1 otherwise; ended by `SIGINT`, `SIGTERM` or `SIGHUP`
//! once its temporary files are removed (`interrupt`).

#![allow(clippy::print_stdout)]

mod args;
mod bench;
mod capped_read;
mod chaos;
mod client;
mod connect;
mod demo;
mod formats;
mod interrupt;
mod pack;
mod replay;
mod report;
mod serve;
mod shown;
mod simulate;
mod status;
mod trace_file;
mod tracked;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamrt::messages::{error_text, escape_controls};

/// The streamrt command-line tool.
#[derive(Debug, Parser)]
#[command(name = "streamctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate assets, stream them under a simulated 60 fps frame loop, print a summary.
    Demo(demo::DemoArgs),
    /// Print a runtime's status line.
    Status(status::StatusArgs),
    /// Summarise a telemetry log; --chrome writes a Chrome trace.
    Report(report::ReportArgs),
    /// Run a benchmark scenario side by side with its baseline.
    Bench(bench::BenchArgs),
    /// Run a mixed workload under injected faults and check every promise.
    Chaos(chaos::ChaosArgs),
    /// Build, list and verify pack files.
    Pack(pack::PackArgs),
    /// Replay a recorded session deterministically; prints its transcript and hash.
    Replay(replay::ReplayArgs),
    /// Run the runtime inside a synthetic engine frame loop; prints an order hash.
    Simulate(simulate::SimulateArgs),
    /// Run the runtime as a daemon with a control socket (docs/PROTOCOL.md).
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// How a panic's payload says `println!` failed, if it did: Rust ignores `SIGPIPE`, so
/// printing after the output's reader went away (`streamctl watch | head`) panics instead, as
/// printing to a full disk (or `/dev/full`) does.
fn failed_print(payload: &(dyn std::any::Any + Send)) -> Option<FailedPrint> {
    let message = streamrt::panic_message(payload);
    if !message.starts_with("failed printing to stdout") {
        return None;
    }
    Some(if message.contains("Broken pipe") {
        FailedPrint::Closed
    } else {
        FailedPrint::Other(message)
    })
}

/// How printing the output failed.
enum FailedPrint {
    /// Its reader went away.
    Closed,
    /// Otherwise: the panic's message, which names the error.
    Other(String),
}

/// A command's standard output was closed by its reader (`| head`): only that, not a broken
/// pipe elsewhere (a daemon's socket), ends streamctl quietly with status 141.
#[derive(Debug, thiserror::Error)]
#[error("the output's reader went away")]
pub struct OutputClosed;

/// Keeps a failed print's panic quiet (`main` ends the process, once the panic has unwound and
/// dropped what it held, as `SIGPIPE` would on a closed pipe and with a one-line error
/// otherwise). A panic whose message holds control characters is told with them escaped, line
/// by line: a replay's decoder or source panics with a message a log holds, which must not
/// send the terminal escape sequences. Every other panic goes to the default hook.
fn quiet_on_a_failed_print() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if failed_print(info.payload()).is_some() {
            return;
        }
        let Some(message) = streamrt::panic_text(info.payload()) else {
            return default(info);
        };
        let escaped: Vec<_> = message.split('\n').map(escape_controls).collect();
        if escaped.iter().all(|line| matches!(line, std::borrow::Cow::Borrowed(_))) {
            return default(info);
        }
        tell_panic(info.location(), &escaped.join("\n"));
    }));
}

/// Says on stderr what the default panic hook says of a panic (its thread, where, the
/// message), with `message` as given, and a backtrace when `RUST_BACKTRACE` asks for one.
fn tell_panic(at: Option<&std::panic::Location<'_>>, message: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let at = at.map_or_else(String::new, |at| format!(" at {at}"));
    let backtrace = std::backtrace::Backtrace::capture();
    let trace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("stack backtrace:\n{backtrace}"),
        _ => "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace".into(),
    };
    let _ = writeln!(std::io::stderr(), "\nthread '{name}' panicked{at}:\n{message}\n{trace}");
}

/// The command line, or the process's end: `--help` and `--version` print and end it with
/// status 0, a usage error with its first line (clap's own goes on for several) and status 2.
fn parsed() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    let e = match Cli::try_parse() {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return Err(match e.print() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
            Err(e) => {
                eprintln!("streamctl: failed printing to stdout: {e}");
                ExitCode::FAILURE
            }
        });
    }
    let rendered = e.render().to_string();
    let first = match e.kind() {
        // clap's whole help, which would begin with the tool's description.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => "a command or subcommand is missing",
        _ => rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("a usage error"),
    };
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("streamctl: {} (see --help)", escape_controls(first));
    Err(ExitCode::from(2))
}

fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => status::run(args),
        Command::Report(args) => report::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Pack(args) => pack::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Client(command) => client::run(command),
    }
}

fn main() -> ExitCode {
    quiet_on_a_failed_print();
    // `RUST_LOG=streamrt=debug` shows every request's lifecycle on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = match parsed() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let run = std::panic::catch_unwind(|| run(&cli.command));
    let result = match run {
        Ok(result) => result,
        // What the command held (a demo's temporary pack) was dropped as the panic unwound.
        Err(payload) => match failed_print(&*payload) {
            // Status 141, as a tool killed by `SIGPIPE`.
            Some(FailedPrint::Closed) => return ExitCode::from(141),
            Some(FailedPrint::Other(message)) => {
                eprintln!("streamctl: {}", escape_controls(&message));
                return ExitCode::FAILURE;
            }
            None => std::panic::resume_unwind(payload),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A command that writes through its own buffer (`replay`) gets the closed pipe as an
        // error, not a panic: the same status, as quietly.
        Err(e) if e.is::<OutputClosed>() => ExitCode::from(141),
        Err(e) => {
            eprintln!("streamctl: {}", shown_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes as one message (as `{e:#}` shows them), escaped for a terminal.
///
/// Errors name files, keys and the words of packs and logs, so each cause is escaped whole: a
/// line break in a key cannot start a line of its own (a forged `streamctl:` line, say). A
/// configuration file's parse error alone keeps its lines, as it points at the line it means
/// with a caret under it; they are indented, so none of them can pass for a line of ours either.
/// Each cause is cut at `ERROR_TEXT_BYTES_MAX` bytes before it is escaped (a character escaped
/// takes up to six), so a cause prints in 24 KiB at most.
fn shown_error(e: &anyhow::Error) -> String {
    let causes: Vec<String> = e
        .chain()
        .map(|cause| {
            // Cut: a parser may quote the line it stopped at, which may be a whole file.
            let text = error_text(cause.to_string());
            if cause.is::<toml::de::Error>() {
                let lines: Vec<_> = text.trim_end().split('\n').map(escape_controls).collect();
                lines.join("\n  ")
            } else {
                escape_controls(&text).into_owned()
            }
        })
        .collect();
    causes.join(": ")
}
