//! The daemon's settings: a TOML file (`docs/CONFIG.md`) with command-line flags over it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use streamrt::{ConfigError, RuntimeConfig};

use crate::capped_read;

/// The largest configuration file read, in bytes: a few hundred are enough, and a path to a
/// device or a huge file must not make the daemon read without end.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

/// The file's contents; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The control socket's path.
    pub socket: Option<PathBuf>,
    /// The pack the runtime reads.
    pub pack: Option<PathBuf>,
    /// Where telemetry is written as JSON lines.
    pub telemetry: Option<PathBuf>,
    /// `RuntimeConfig::workers`.
    pub workers: Option<usize>,
    /// `RuntimeConfig::reads_in_flight`.
    pub reads_in_flight: Option<usize>,
    /// `RuntimeConfig::read_credit_bytes`.
    pub read_credit_bytes: Option<u64>,
    /// `RuntimeConfig::decode_threads`.
    pub decode_threads: Option<usize>,
    /// `RuntimeConfig::worker_nice`.
    pub worker_nice: Option<u8>,
    /// `RuntimeConfig::urgent_decodes_on_io`.
    pub urgent_decodes_on_io: Option<bool>,
    /// `RuntimeConfig::queue_capacity`.
    pub queue_capacity: Option<usize>,
    /// `RuntimeConfig::requests_outstanding_max`.
    pub requests_outstanding_max: Option<usize>,
    /// `RuntimeConfig::bytes_resident_max`.
    pub bytes_resident_max: Option<u64>,
    /// `RuntimeConfig::type_bytes_resident_max`.
    pub type_bytes_resident_max: Option<BTreeMap<String, u64>>,
    /// `RuntimeConfig::io_bytes_per_sec_max`.
    pub io_bytes_per_sec_max: Option<u64>,
    /// Milliseconds a connection may stay silent (or leave a frame half sent) before it is
    /// closed.
    pub idle_timeout_ms: Option<u64>,
    /// Clients connected at once at most.
    pub connections_max: Option<usize>,
}

impl FileConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not a regular file, is over [`CONFIG_BYTES_MAX`], is not
    /// TOML, or has an unknown key or a wrongly typed value.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let reading = || format!("reading the configuration {}", path.display());
        let bytes = capped_read::read_whole(path, CONFIG_BYTES_MAX, "limit of a configuration")
            .with_context(reading)?;
        let text = String::from_utf8(bytes).with_context(reading)?;
        toml::from_str(&text)
            .with_context(|| format!("parsing the configuration {}", path.display()))
    }
}

/// Flags given on the command line, each overriding the file's key of the same name.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// The control socket's path (its directory is made private, mode 0700).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The pack to serve.
    #[arg(long)]
    pub pack: Option<PathBuf>,
    /// A TOML configuration file (see docs/CONFIG.md).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write telemetry as JSON lines to this file.
    #[arg(long)]
    pub telemetry: Option<PathBuf>,
    /// Record the session to this replay log (`streamctl replay` runs it again).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// IO worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Reads in flight at most.
    #[arg(long)]
    pub reads_in_flight: Option<usize>,
    /// Decode threads.
    #[arg(long)]
    pub decode_threads: Option<usize>,
    /// Steps of CPU priority the IO and decode threads run below the daemon's other threads.
    #[arg(long)]
    pub worker_nice: Option<u8>,
    /// Loads queued at most.
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// Bytes of decoded assets kept resident at most.
    #[arg(long)]
    pub bytes_resident_max: Option<u64>,
    /// Bytes read per second at most.
    #[arg(long)]
    pub io_bytes_per_sec_max: Option<u64>,
    /// Milliseconds a silent or half-sent connection is kept.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Clients connected at once at most.
    #[arg(long)]
    pub connections_max: Option<usize>,
}

/// Everything the daemon runs with.
#[derive(Debug)]
pub struct Settings {
    /// The control socket.
    pub socket: PathBuf,
    /// The pack.
    pub pack: PathBuf,
    /// The runtime's configuration.
    pub runtime: RuntimeConfig,
    /// A connection's idle limit.
    pub idle_timeout: Duration,
    /// Clients at once at most.
    pub connections_max: usize,
}

impl Settings {
    /// The file (if any) with the flags over it.
    ///
    /// # Errors
    ///
    /// The file is invalid, or no socket or pack is given by either.
    pub fn resolve(flags: &Overrides) -> anyhow::Result<Self> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let Some(socket) = flags.socket.clone().or(file.socket) else {
            bail!("no socket: give --socket or `socket` in the configuration");
        };
        let Some(pack) = flags.pack.clone().or(file.pack) else {
            bail!("no pack: give --pack or `pack` in the configuration");
        };
        let defaults = RuntimeConfig::default();
        let workers = flags.workers.or(file.workers).unwrap_or(defaults.workers);
        let runtime = RuntimeConfig {
            workers,
            reads_in_flight: flags
                .reads_in_flight
                .or(file.reads_in_flight)
                .unwrap_or(workers.saturating_mul(2)),
            read_credit_bytes: file.read_credit_bytes.unwrap_or(defaults.read_credit_bytes),
            // One per core unless set: decoding is CPU work (the library's default is fixed,
            // so that a program's runtime does not change with the machine it runs on).
            decode_threads: flags
                .decode_threads
                .or(file.decode_threads)
                .unwrap_or(defaults.clone().decode_threads_per_core().decode_threads),
            worker_nice: flags.worker_nice.or(file.worker_nice).unwrap_or(defaults.worker_nice),
            urgent_decodes_on_io: file
                .urgent_decodes_on_io
                .unwrap_or(defaults.urgent_decodes_on_io),
            queue_capacity: flags
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(defaults.queue_capacity),
            requests_outstanding_max: file
                .requests_outstanding_max
                .unwrap_or(defaults.requests_outstanding_max),
            bytes_resident_max: flags
                .bytes_resident_max
                .or(file.bytes_resident_max)
                .unwrap_or(defaults.bytes_resident_max),
            type_bytes_resident_max: file.type_bytes_resident_max.unwrap_or_default(),
            io_bytes_per_sec_max: flags.io_bytes_per_sec_max.or(file.io_bytes_per_sec_max),
            telemetry_path: flags.telemetry.clone().or(file.telemetry),
            ..defaults
        };
        runtime.validate()?;
        let idle_ms = flags.idle_timeout_ms.or(file.idle_timeout_ms).unwrap_or(30_000);
        let connections_max = flags.connections_max.or(file.connections_max).unwrap_or(128);
        if idle_ms == 0 {
            return Err(ConfigError::Zero("idle_timeout_ms").into());
        }
        if connections_max == 0 {
            return Err(ConfigError::Zero("connections_max").into());
        }
        Ok(Self {
            socket,
            pack,
            runtime,
            idle_timeout: Duration::from_millis(idle_ms),
            connections_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "socket = \"/tmp/x/ctl.sock\"\npack = \"a.pack\"\nworkers = 3\nqueue_capacity = 10\n\
             [type_bytes_resident_max]\ntexture = 1024\n",
        )
        .unwrap();
        let flags =
            Overrides { config: Some(path.clone()), workers: Some(2), ..Overrides::default() };
        let settings = Settings::resolve(&flags).unwrap();
        assert_eq!((settings.runtime.workers, settings.runtime.queue_capacity), (2, 10));
        assert_eq!(settings.runtime.worker_nice, 0, "the runtime's default");
        assert!(settings.runtime.urgent_decodes_on_io, "the runtime's default");
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(settings.runtime.decode_threads, cores, "one decode thread per core");
        assert_eq!(settings.runtime.type_bytes_resident_max.get("texture"), Some(&1024));
        assert_eq!(settings.pack, PathBuf::from("a.pack"));
        std::fs::write(&path, "socket = \"s\"\npack = \"p\"\nurgent_decodes_on_io = false\n")
            .unwrap();
        assert!(!Settings::resolve(&flags).unwrap().runtime.urgent_decodes_on_io);
        std::fs::write(&path, "socket = \"s\"\npack = \"p\"\nworkerz = 3\n").unwrap();
        let err = Settings::resolve(&flags).unwrap_err();
        assert!(format!("{err:#}").contains("workerz"), "{err:#}");
    }

    #[test]
    fn values_out_of_range_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        let cases = [
            ("idle_timeout_ms = 0", "idle_timeout_ms must be at least 1"),
            ("connections_max = 0", "connections_max must be at least 1"),
            ("io_bytes_per_sec_max = 0", "io_bytes_per_sec_max must be at least 1"),
            ("workers = 9223372036854775808", "workers must be at most"),
            ("reads_in_flight = 1152921504606846976", "reads_in_flight must be at most"),
            ("worker_nice = 20", "worker_nice must be at most 19"),
        ];
        for (line, why) in cases {
            std::fs::write(&path, format!("socket = \"s\"\npack = \"p\"\n{line}\n")).unwrap();
            let flags = Overrides { config: Some(path.clone()), ..Overrides::default() };
            let err = Settings::resolve(&flags).expect_err(line);
            assert!(format!("{err:#}").contains(why), "{line}: {err:#}");
        }
    }
}
