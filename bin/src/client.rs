//! The client side of the control protocol: `streamctl status|load|cancel|reprioritize|
//! inflight|stats|watch|shutdown --socket PATH [--json]`.
//!
//! Each command connects, says hello, sends one request and prints the answer: text lines of
//! `name=value` pairs, or one JSON object per line with `--json`. A refusal from the daemon is
//! an error (non-zero exit with its message).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{anyhow, bail, ensure, Context};
use indicatif::{ProgressBar, ProgressStyle};
use streamrt::messages::protocol::{
    encode_frame, ClientMsg, FrameDecoder, RequestInfo, ServerMsg, IDS_PER_MSG_MAX,
    KEYS_PER_LOAD_MAX, PROTOCOL_VERSION, WAITING_INTERVAL_MS,
};
use streamrt::messages::{AssetKey, LoadState, Priority, RequestId, Status};

use crate::shown::{json_line, shown};

/// A connected, greeted client.
pub struct Client {
    stream: UnixStream,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
    /// How long [`Client::ask`] waits for an answer.
    answer_timeout: std::time::Duration,
}

/// How long a client waits for the daemon's answer to one request, by default.
pub const ANSWER_TIMEOUT_MS: u64 = 30_000;

/// The fewest intervals of the daemon's `Waiting` a waited load goes without a word from it
/// before it gives up, whatever the answer timeout.
const WAITING_SILENCE_INTERVALS: u64 = 4;

/// How long `streamctl shutdown` waits for the daemon's `Done`, which comes once the daemon
/// drained its connections and stopped its runtime: each actor and worker pool may take
/// `shutdown_ack_ms_max` (10 s by default), so a daemon with many stalled caches can take
/// minutes, and only a daemon stuck for good takes longer than this.
const SHUTDOWN_DONE_MS_MAX: u64 = 600_000;

/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 64 << 10;

impl Client {
    /// Connects to the daemon at `target`'s socket and performs the handshake.
    ///
    /// # Errors
    ///
    /// The socket cannot be reached, or the daemon refuses the handshake or does not answer.
    pub fn connect(target: &Target) -> anyhow::Result<Self> {
        let socket = &target.socket;
        let answer_timeout = std::time::Duration::from_millis(target.answer_timeout_ms);
        // Within the answer's time too: a daemon that accepts no connection answers nothing.
        let stream = crate::connect::connect_within(socket, answer_timeout)
            .with_context(|| format!("connecting to {}", socket.display()))?;
        // The daemon talks only to its own user; its client likewise, so that a socket put in
        // its place by someone else is told neither the keys asked for nor a shutdown.
        let uid = crate::serve::own_uid();
        ensure!(
            crate::serve::peer_is(&stream, uid),
            "{}: the process listening there is not of this user (uid {uid}); refusing to talk to it",
            socket.display()
        );
        Self::greet(stream, answer_timeout)
    }

    /// Performs the handshake on `stream`, each step within `answer_timeout`.
    fn greet(stream: UnixStream, answer_timeout: std::time::Duration) -> anyhow::Result<Self> {
        // A daemon that stops reading must not hold a write for ever either.
        stream.set_write_timeout(Some(answer_timeout)).context("setting a write timeout")?;
        let mut client = Self {
            stream,
            decoder: FrameDecoder::new(),
            chunk: vec![0; READ_CHUNK_BYTES],
            answer_timeout,
        };
        let answer = match client.send(&ClientMsg::Hello { version: PROTOCOL_VERSION }) {
            Ok(()) => client.receive_within(answer_timeout)?,
            // A daemon that turns a client away (busy, shutting down) may close before it reads
            // the `Hello`: its answer, sent first, is still there to read.
            Err(refused) => client.receive_within(answer_timeout).map_err(|_| refused)?,
        };
        match answer {
            ServerMsg::Welcome { .. } => Ok(client),
            other => Err(refusal(other)),
        }
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// The connection broke.
    pub fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.stream.write_all(&encode_frame(msg)?).context("writing to the daemon")
    }

    /// Waits for the next message.
    ///
    /// # Errors
    ///
    /// The connection closed or a frame is bad.
    pub fn receive(&mut self) -> anyhow::Result<ServerMsg> {
        loop {
            if let Some(msg) = self.decoder.next_msg::<ServerMsg>()? {
                return Ok(msg);
            }
            let want = self.chunk.len().min(self.decoder.room());
            let n = self.stream.read(&mut self.chunk[..want]).context("reading from the daemon")?;
            if n == 0 {
                bail!("the daemon closed the connection");
            }
            self.decoder.push(&self.chunk[..n]);
        }
    }

    /// Sends `msg` and returns the answer, an error if it is a refusal or if none comes
    /// within the answer timeout. A daemon answers at once, and sends what follows an answer
    /// (an inflight page, a watch's status every 250 ms, a waited load's `Waiting`) as
    /// promptly; only a waited load's ends may take longer, and the daemon says so meanwhile.
    fn ask(&mut self, msg: &ClientMsg) -> anyhow::Result<ServerMsg> {
        self.send(msg)?;
        match self.receive_within(self.answer_timeout)? {
            ServerMsg::Error(e) => Err(anyhow!("daemon: {e}")),
            answer => Ok(answer),
        }
    }

    /// As [`Client::receive`], giving up after `limit` with an error that says so.
    fn receive_within(&mut self, limit: std::time::Duration) -> anyhow::Result<ServerMsg> {
        self.stream.set_read_timeout(Some(limit)).context("setting a read timeout")?;
        let answer = self.receive().map_err(|e| {
            let timed_out = e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
            });
            if timed_out {
                e.context(format!("no answer from the daemon within {} ms", limit.as_millis()))
            } else {
                e
            }
        });
        self.stream.set_read_timeout(None).context("clearing the read timeout")?;
        answer
    }
}

fn refusal(msg: ServerMsg) -> anyhow::Error {
    match msg {
        ServerMsg::Error(e) => anyhow!("daemon: {e}"),
        other => anyhow!("unexpected answer from the daemon: {other:?}"),
    }
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::ALL
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("unknown priority {s}: critical, high, normal, low or background"))
}

/// The socket and output options every client command takes.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The daemon's control socket.
    #[arg(long)]
    pub socket: PathBuf,
    /// Print JSON, one object per line.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the daemon's connection, its answer to one request, or what
    /// follows it (an `inflight` page, a `watch` status, a waited load's word that it still
    /// waits, sent every 500 ms: a waited load gives up after 2 s at least), in milliseconds.
    #[arg(long, default_value_t = ANSWER_TIMEOUT_MS, value_parser = crate::args::count::<u64>(u64::MAX))]
    pub answer_timeout_ms: u64,
}

/// The client commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Request assets by key (`type:path`); prints their request ids.
    Load {
        #[command(flatten)]
        target: Target,
        /// The assets.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Their priority.
        #[arg(long, default_value = "normal", value_parser = parse_priority)]
        priority: Priority,
        /// Wait for every request's end; exit non-zero if any failed.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel requests by id.
    Cancel {
        #[command(flatten)]
        target: Target,
        /// The request ids.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// Change requests' priority.
    Reprioritize {
        #[command(flatten)]
        target: Target,
        /// The new priority.
        #[arg(value_parser = parse_priority)]
        priority: Priority,
        /// The request ids.
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// List the requests the daemon holds that have not ended.
    Inflight(Target),
    /// Every cache's figures and the memory budget.
    Stats(Target),
    /// Live progress and a rolling summary; with --json, every event and status as a line.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Stop after this many events.
        #[arg(long, value_parser = crate::args::count::<u64>(u64::MAX))]
        events: Option<u64>,
    },
    /// Stop the daemon; every request it holds ends first.
    Shutdown(Target),
}

/// Runs a client command.
///
/// # Errors
///
/// The daemon cannot be reached or refused the request, or (`load --wait`) a request failed.
pub fn run(command: &ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Load { target, keys, priority, wait } => {
            load(target, keys, *priority, *wait)
        }
        ClientCommand::Cancel { target, ids } => {
            done(target, &ClientMsg::Cancel { requests: request_ids(ids)? })
        }
        ClientCommand::Reprioritize { target, priority, ids } => {
            let requests = request_ids(ids)?;
            done(target, &ClientMsg::Reprioritize { requests, priority: *priority })
        }
        ClientCommand::Inflight(target) => inflight(target),
        ClientCommand::Stats(target) => stats(target),
        ClientCommand::Watch { target, events } => watch(target, *events),
        ClientCommand::Shutdown(target) => shutdown(target),
    }
}

/// `streamctl status --socket PATH`.
///
/// # Errors
///
/// As [`run`].
pub fn status(target: &Target) -> anyhow::Result<()> {
    let mut client = Client::connect(target)?;
    match client.ask(&ClientMsg::Status)? {
        ServerMsg::Status(status) => print_status(&status, target.json),
        other => Err(refusal(other)),
    }
}

fn print_status(status: &Status, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", json_line(status)?);
    } else {
        println!("{status}");
    }
    Ok(())
}

/// One line of `load --json` or `inflight --json`: an object with one field named for the
/// line's kind, as `watch`, `simulate`, `chaos` and `replay` write theirs, and the fields two
/// kinds share have one name and one meaning.
#[derive(serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum RequestLine<'a> {
    /// A request made, or one in flight.
    Request { id: u64, key: String, state: &'a str, priority: &'a str },
    /// A waited request's end; `error` is null for a request that became ready.
    Ended { id: u64, key: String, state: &'a str, error: Option<&'a str> },
}

fn print_info(r: &RequestInfo, json: bool) -> anyhow::Result<()> {
    if json {
        let line = RequestLine::Request {
            id: r.request.0,
            key: r.key.to_string(),
            state: r.state.name(),
            priority: r.priority.name(),
        };
        println!("{}", json_line(&line)?);
    } else {
        println!(
            "request={} key={} state={} priority={}",
            r.request.0,
            shown(&r.key.to_string()),
            r.state.name(),
            r.priority.name()
        );
    }
    Ok(())
}

/// The ids of one `Cancel` or `Reprioritize`: the daemon takes at most `IDS_PER_MSG_MAX`.
fn request_ids(ids: &[u64]) -> anyhow::Result<Vec<RequestId>> {
    ensure!(ids.len() <= IDS_PER_MSG_MAX, "{} ids: at most {IDS_PER_MSG_MAX} at once", ids.len());
    Ok(ids.iter().map(|&i| RequestId(i)).collect())
}

fn load(target: &Target, keys: &[String], priority: Priority, wait: bool) -> anyhow::Result<()> {
    ensure!(
        keys.len() <= KEYS_PER_LOAD_MAX,
        "{} keys: one load takes at most {KEYS_PER_LOAD_MAX}",
        keys.len()
    );
    let keys = keys
        .iter()
        .map(|k| AssetKey::parse(k).with_context(|| format!("bad key {k}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client = Client::connect(target)?;
    let ServerMsg::Loaded(made) = client.ask(&ClientMsg::Load { keys, priority, wait })? else {
        bail!("unexpected answer to load");
    };
    for r in &made {
        print_info(r, target.json)?;
    }
    if !wait {
        return Ok(());
    }
    let mut failed = 0;
    // The daemon says it still waits every `WAITING_INTERVAL_MS`: no word from it within the
    // answer timeout (four such intervals at least, for a busy machine's jitter) means it
    // stopped answering.
    let least = std::time::Duration::from_millis(WAITING_SILENCE_INTERVALS * WAITING_INTERVAL_MS);
    let silence = client.answer_timeout.max(least);
    loop {
        match client.receive_within(silence)? {
            ServerMsg::Waiting { .. } => {}
            ServerMsg::Ended { request, key, state, error } => {
                failed += usize::from(state != LoadState::Ready);
                if target.json {
                    let line = RequestLine::Ended {
                        id: request.0,
                        key: key.to_string(),
                        state: state.name(),
                        error: error.as_deref(),
                    };
                    println!("{}", json_line(&line)?);
                } else {
                    println!(
                        "ended request={} key={} state={} {}",
                        request.0,
                        shown(&key.to_string()),
                        state.name(),
                        // Last on the line, so its spaces read as its own; escaped all the same.
                        error.as_deref().unwrap_or_default().escape_debug()
                    );
                }
            }
            ServerMsg::Done => break,
            other => return Err(refusal(other)),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} requests did not become ready", made.len());
    }
    Ok(())
}

fn done(target: &Target, msg: &ClientMsg) -> anyhow::Result<()> {
    let mut client = Client::connect(target)?;
    match client.ask(msg)? {
        ServerMsg::Done => Ok(()),
        other => Err(refusal(other)),
    }
}

fn inflight(target: &Target) -> anyhow::Result<()> {
    let mut client = Client::connect(target)?;
    let mut answer = client.ask(&ClientMsg::InFlight)?;
    let mut count = 0usize;
    // Pages, then `Done`: each page is printed as it comes.
    loop {
        match answer {
            ServerMsg::InFlight(page) => {
                for r in &page {
                    print_info(r, target.json)?;
                }
                count += page.len();
            }
            ServerMsg::Done => break,
            other => return Err(refusal(other)),
        }
        answer = client.receive_within(client.answer_timeout)?;
    }
    if !target.json {
        println!("inflight: {count}");
    }
    Ok(())
}

fn stats(target: &Target) -> anyhow::Result<()> {
    let mut client = Client::connect(target)?;
    let ServerMsg::Stats { types, resident_bytes, bytes_resident_max } =
        client.ask(&ClientMsg::Stats)?
    else {
        bail!("unexpected answer to stats");
    };
    if target.json {
        let line = serde_json::json!({
            "types": types, "resident_bytes": resident_bytes, "bytes_resident_max": bytes_resident_max,
        });
        println!("{}", json_line(&line)?);
        return Ok(());
    }
    for t in &types {
        println!(
            "type={} entries={} resident={} parked={} resident_bytes={} hits={} misses={} evictions={} quarantined={}",
            shown(&t.asset_type), t.entries, t.resident, t.parked, t.resident_bytes, t.hits, t.misses, t.evictions, t.quarantined
        );
    }
    println!("memory: resident_bytes={resident_bytes} bytes_resident_max={bytes_resident_max}");
    Ok(())
}

/// A status's rolling summary, as `watch` shows it.
fn summary(s: &Status) -> String {
    format!(
        "in_flight={} queued={} ready={} failed={} cancelled={} MiB read={:.1}",
        s.in_flight,
        s.queued,
        s.ready,
        s.failed,
        s.cancelled,
        s.bytes_read as f64 / f64::from(1 << 20)
    )
}

fn watch(target: &Target, events_max: Option<u64>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let mut client = Client::connect(target)?;
    client.send(&ClientMsg::Watch)?;
    // The bar draws only on a terminal: elsewhere (a log, a CI job) each new summary is a
    // line of its own on stdout, so that the output is never empty.
    let lines = !target.json && !std::io::stderr().is_terminal();
    let mut last = String::new();
    let bar = (!target.json).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} ended  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut events = 0u64;
    loop {
        // A live daemon sends its status four times a second: silence means it is stuck.
        match client.receive_within(client.answer_timeout)? {
            ServerMsg::Status(s) => {
                if let Some(bar) = &bar {
                    let now = summary(&s);
                    if lines && now != last {
                        println!("watch: {now}");
                    }
                    bar.set_length(s.requested);
                    bar.set_position(s.ended());
                    bar.set_message(now.clone());
                    last = now;
                } else {
                    println!("{}", json_line(&serde_json::json!({ "status": s }))?);
                }
            }
            ServerMsg::Event(e) => {
                if target.json {
                    let record = streamrt::messages::Record::from(&e);
                    println!("{}", json_line(&serde_json::json!({ "event": record }))?);
                }
                events += 1;
                if events_max.is_some_and(|max| events >= max) {
                    break;
                }
            }
            ServerMsg::ShuttingDown => break,
            other => return Err(refusal(other)),
        }
    }
    if let Some(bar) = bar {
        bar.finish();
        println!("watch: ended after {events} events; last status: {last}");
    }
    Ok(())
}

fn shutdown(target: &Target) -> anyhow::Result<()> {
    let mut client = Client::connect(target)?;
    match client.ask(&ClientMsg::Shutdown)? {
        ServerMsg::ShuttingDown => {
            // `Done` comes once every request ended and the socket is gone; a stop that went
            // wrong (a log cut short) is an error instead, which fails this as it fails the
            // daemon.
            match client.receive_within(std::time::Duration::from_millis(SHUTDOWN_DONE_MS_MAX))? {
                ServerMsg::Done => {}
                other => return Err(refusal(other)),
            }
            if !target.json {
                println!("shutdown: requested");
            }
            Ok(())
        }
        other => Err(refusal(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrt::messages::protocol::ProtocolError;

    #[test]
    fn a_daemon_that_answers_busy_and_closes_before_reading_the_hello_is_reported_busy() {
        let (client_end, mut daemon_end) = UnixStream::pair().unwrap();
        let busy = encode_frame(&ServerMsg::Error(ProtocolError::Busy(128))).unwrap();
        daemon_end.write_all(&busy).unwrap();
        drop(daemon_end);
        let err = Client::greet(client_end, std::time::Duration::from_secs(30)).err().unwrap();
        assert!(err.to_string().contains("busy: 128 clients connected"), "{err:#}");
    }
}
