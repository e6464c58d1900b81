//! `streamctl chaos`: a mixed workload under injected faults, checked for the runtime's
//! promises. Prints one line and exits non-zero if any promise broke.

use std::time::Duration;

use anyhow::bail;
use streamrt::chaos::{self, ChaosOptions};

use crate::shown::json_line;

/// The most requests a chaos run makes: its runtime's event buffer, allocated whole when the
/// run starts, has room for about 16 events a request (up to 2M events, about 300 MB), and
/// its count of them keeps each request's id.
const REQUESTS_MAX: u64 = 250_000;

/// The most poison keys a chaos run makes: each is an asset of up to 2 KiB held in memory
/// from the start, as are its ordinary keys.
const POISON_KEYS_MAX: u64 = 100_000;

/// Options of `streamctl chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Seed of the workload and of the faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests to make.
    #[arg(long, default_value_t = 20_000, value_parser = crate::args::count::<usize>(REQUESTS_MAX))]
    requests: usize,
    /// Share of reads that fail with an IO error (0 to 1); a tenth of it, of short reads and
    /// of decodes that fail with an error.
    #[arg(long, default_value_t = 0.05, value_parser = crate::args::share)]
    io_error_rate: f64,
    /// Share of decodes that panic (0 to 1).
    #[arg(long, default_value_t = 0.01, value_parser = crate::args::share)]
    panic_rate: f64,
    /// Chance, after each request, that the workload cancels one of the requests made so far,
    /// chosen at random (0 to 1): one already ended is not cancelled, so fewer are.
    #[arg(long, default_value_t = 0.20, value_parser = crate::args::share)]
    cancel_rate: f64,
    /// Requests between two injected actor or worker crashes (0: none).
    #[arg(long, default_value_t = 2_000)]
    crash_every: usize,
    /// Keys whose decoder always panics (none may end ready; most end quarantined).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=POISON_KEYS_MAX))]
    poison_keys: usize,
    /// IO worker threads.
    #[arg(long, default_value_t = 2, value_parser = crate::args::threads())]
    workers: usize,
    /// Print the closing figures as one JSON object, `{"chaos": {..}, "holds": true}`.
    #[arg(long)]
    json: bool,
}

/// Keeps the panics the run injects on purpose out of the terminal; any other panic is
/// reported as usual.
fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = chaos::panic_message(info.payload());
        if !text.contains("injected") && !text.contains("poison asset") {
            default(info);
        }
    }));
}

/// Runs the chaos workload and prints its line.
///
/// # Errors
///
/// The runtime could not start, or a promise broke (lost, duplicated, bound after cancel,
/// hung, a load leaked, held bytes left once every handle was dropped, a poison key ready,
/// the pools changed size, telemetry events dropped, or the runtime gave up).
pub fn run(args: &ChaosArgs) -> anyhow::Result<()> {
    let options = ChaosOptions {
        seed: args.seed,
        requests: args.requests,
        io_error_rate: args.io_error_rate,
        panic_rate: args.panic_rate,
        cancel_rate: args.cancel_rate,
        crash_every: args.crash_every,
        poison_keys: args.poison_keys,
        workers: args.workers,
        patience: Duration::from_secs(120),
        ..ChaosOptions::default()
    };
    quiet_injected_panics();
    let report = chaos::run(&options)?;
    if args.json {
        let line = serde_json::json!({ "chaos": &report, "holds": report.holds() });
        println!("{}", json_line(&line)?);
    } else {
        println!("{report}");
    }
    if let Some(escalated) = &report.escalated {
        // The rest follows from it: the shutdown refused the requests still to make, ended
        // the pools and failed what was outstanding.
        bail!("the runtime gave up ({escalated}) after {} requests: {report:?}", report.requests);
    }
    if !report.holds() {
        bail!("a promise broke: {report:?}");
    }
    Ok(())
}
