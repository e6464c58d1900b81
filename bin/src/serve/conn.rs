//! One client connection: the handshake, then one answer per request, until the client goes,
//! stays silent past the idle timeout (or takes longer to send one frame), sends a bad frame,
//! or the daemon stops.
//!
//! # Errors
//!
//! A bad frame (over the limit, malformed) or a bad handshake gets a typed `Error` and the
//! connection is closed: the stream cannot be trusted to resynchronise. A request that cannot
//! be served (an unknown id, a refused key) or an answer too large for one frame gets a typed
//! `Error` and the connection stays.
//! Whatever happens here ends this connection only.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;
use streamrt::messages::protocol::{
    encode_frame, in_flight_page, widest_loaded_bytes, ClientMsg, FrameDecoder, FrameError,
    ProtocolError, RequestInfo, ServerMsg, TypeStats, FRAME_BYTES_MAX, PROTOCOL_VERSION,
    WAITING_INTERVAL_MS,
};
use streamrt::messages::{AssetKey, Priority, RequestId};
use streamrt::RequestError;

use super::Daemon;
use crate::tracked::{is_known_type, request_any, Tracked};

/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 64 << 10;

/// How often a watcher gets a status line, and how often it checks that the daemon runs.
const WATCH_STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// Events a watcher's subscription holds for it; past that, events are dropped and counted
/// in the statuses its watch sends.
const WATCH_EVENTS_BUFFERED_MAX: usize = 4_096;

/// How long a `stats` waits for each cache's figures.
const STATS_WAIT_PER_CACHE: Duration = Duration::from_secs(5);

/// Why a connection ends.
enum End {
    /// The client closed it, vanished, or a write failed.
    Gone,
    /// The client stayed silent (or left a frame half sent) past the idle timeout.
    Idle,
    /// A frame could not be decoded.
    Frame(FrameError),
    /// The client asked the daemon to stop: its connection waits to be told `Done`.
    AwaitsStop,
}

struct Conn {
    stream: UnixStream,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
    /// How long the client may stay silent, or take to send one frame.
    idle: Duration,
    /// When the first byte of the frame being received came: a client sending a byte now and
    /// then still has `idle` for the whole frame.
    frame_started: Option<Instant>,
}

impl Conn {
    /// Sends `msg`. An answer too large for one frame is sent as `Error(ReplyTooLarge)`
    /// instead, and the connection stays: the client asked for too much, its frame was fine.
    fn send(&mut self, msg: &ServerMsg) -> Result<(), End> {
        let frame = match encode_frame(msg) {
            Err(FrameError::TooLarge { len, max }) => {
                let refusal = ProtocolError::ReplyTooLarge { bytes: len, max };
                encode_frame(&ServerMsg::Error(refusal)).map_err(End::Frame)?
            }
            encoded => encoded.map_err(End::Frame)?,
        };
        self.stream.write_all(&frame).map_err(|_| End::Gone)
    }

    fn receive(&mut self) -> Result<ClientMsg, End> {
        loop {
            if let Some(msg) = self.decoder.next_msg::<ClientMsg>().map_err(End::Frame)? {
                self.frame_started = None;
                return Ok(msg);
            }
            // Bytes of the next frame that came with the last one start its time now that the
            // daemon reads it: the daemon's own work does not count against the client.
            if self.frame_started.is_none() && self.decoder.buffered() > 0 {
                self.frame_started = Some(Instant::now());
            }
            // Silent: `idle` from now. Part of a frame in: what is left of `idle` since its
            // first byte.
            let left = match self.frame_started {
                Some(started) => self.idle.saturating_sub(started.elapsed()),
                None => self.idle,
            };
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(End::Idle);
            }
            let want = self.chunk.len().min(self.decoder.room());
            match self.stream.read(&mut self.chunk[..want]) {
                Ok(0) => return Err(End::Gone),
                Ok(n) => {
                    // The loop's next turn starts the frame's clock, if this began one.
                    self.decoder.push(&self.chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return Err(End::Idle)
                }
                Err(_) => return Err(End::Gone),
            }
        }
    }

    /// Whether the client closed its end, found without blocking and without taking a byte
    /// (a peek): while the daemon waits on its loads it writes nothing, so a client that
    /// vanished would hold its connection's place until the first load ended. A client that
    /// sent more before it closed is noticed only once it is answered: by the next `Waiting`,
    /// within `WAITING_INTERVAL_MS`, as its write fails.
    fn client_gone(&self) -> bool {
        let mut byte = [0u8; 1];
        let flags = RecvFlags::PEEK | RecvFlags::DONTWAIT;
        match rustix::net::recv(&self.stream, &mut byte[..], flags) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e != Errno::AGAIN && e != Errno::INTR,
        }
    }
}

/// Releases a connection's place (taken by the accept loop) when it ends, however it ends.
struct Slot<'a> {
    daemon: &'a Daemon,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.daemon.ended(self.id);
    }
}

/// Serves one client; see the module docs.
pub(super) fn serve(daemon: &Arc<Daemon>, stream: UnixStream, id: u64) {
    let _slot = Slot { daemon, id };
    // A connection shutdown cannot close would hold the stop until its client went: one
    // that cannot be cloned (no file descriptor left) is not served.
    let Ok(clone) = stream.try_clone() else {
        return super::tell(format_args!("connection {id} dropped: no descriptor left for it"));
    };
    daemon.opened(id, clone);
    // Opened after shutdown shut the others for reading: it takes no request either, and
    // learns why.
    if daemon.is_stopping() {
        return super::turn_away(stream, ProtocolError::ShuttingDown, daemon.idle_timeout);
    }
    let _ = stream.set_write_timeout(Some(daemon.idle_timeout));
    let mut conn = Conn {
        stream,
        decoder: FrameDecoder::new(),
        chunk: vec![0; READ_CHUNK_BYTES],
        idle: daemon.idle_timeout,
        frame_started: None,
    };
    let end = match handshake(daemon, &mut conn) {
        Ok(()) => requests(daemon, &mut conn, id),
        Err(end) => end,
    };
    match end {
        End::Frame(e) => {
            let _ = conn.send(&ServerMsg::Error(ProtocolError::Frame(e)));
        }
        // Kept open (not closed with the others) to be told `Done` when it is over: the
        // stream itself, as a clone could fail.
        End::AwaitsStop => {
            daemon.stop_waiters.lock().unwrap_or_else(PoisonError::into_inner).push(conn.stream);
        }
        End::Gone | End::Idle => {}
    }
}

fn handshake(daemon: &Daemon, conn: &mut Conn) -> Result<(), End> {
    let refusal = match conn.receive()? {
        ClientMsg::Hello { version } if version == PROTOCOL_VERSION => {
            let source = daemon.source.clone();
            return conn.send(&ServerMsg::Welcome { version: PROTOCOL_VERSION, source });
        }
        ClientMsg::Hello { version } => {
            ProtocolError::Version { client: version, daemon: PROTOCOL_VERSION }
        }
        _ => ProtocolError::HandshakeRequired,
    };
    conn.send(&ServerMsg::Error(refusal))?;
    Err(End::Gone)
}

fn requests(daemon: &Daemon, conn: &mut Conn, id: u64) -> End {
    loop {
        let msg = match conn.receive() {
            Ok(msg) => msg,
            Err(end) => return end,
        };
        // A stop asked for again waits for it with the first asker (a script stopping the
        // daemon after a service manager's signal); anything else is refused.
        if daemon.is_stopping() && !matches!(msg, ClientMsg::Shutdown) {
            let _ = conn.send(&ServerMsg::Error(ProtocolError::ShuttingDown));
            return End::Gone;
        }
        let answered = match msg {
            // Said twice: a client out of step with the protocol, whose connection closes
            // as at any handshake error.
            ClientMsg::Hello { .. } => {
                let _ = conn.send(&ServerMsg::Error(ProtocolError::HandshakeRequired));
                return End::Gone;
            }
            ClientMsg::Status => {
                // Sweeps the table, as the commands that read or change it do: ended requests
                // let go of their assets, which go to the memory budget's pool.
                drop(daemon.requests());
                conn.send(&ServerMsg::Status(daemon.rt.status()))
            }
            ClientMsg::Load { keys, priority, wait } => load(daemon, conn, keys, priority, wait),
            ClientMsg::Cancel { requests } => each(daemon, conn, &requests, |r| {
                r.cancel();
            }),
            ClientMsg::Reprioritize { requests, priority } => {
                each(daemon, conn, &requests, |r| r.reprioritize(priority))
            }
            ClientMsg::InFlight => in_flight(daemon, conn),
            ClientMsg::Stats => {
                drop(daemon.requests());
                conn.send(&stats(daemon))
            }
            ClientMsg::Watch => watch(daemon, conn),
            ClientMsg::Shutdown => {
                let _ = conn.send(&ServerMsg::ShuttingDown);
                daemon.forget(id);
                daemon.stop();
                return End::AwaitsStop;
            }
        };
        if let Err(end) = answered {
            return end;
        }
    }
}

/// Answers `InFlight`: the held requests by id, in pages, then `Done`. Each page is taken
/// under the table's lock and written after it is let go, so a slow reader holds up no other
/// client, and a connection holds one page at a time, however many requests are held. A
/// request made while the pages go out is listed if its id comes after the last page's; one
/// that ends meanwhile is left out of the pages still to come.
fn in_flight(daemon: &Daemon, conn: &mut Conn) -> Result<(), End> {
    drop(daemon.requests());
    let mut after = None;
    loop {
        let (page, more) = {
            let table = daemon.unswept_requests();
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            let held = table.range((from, Bound::Unbounded)).map(|(_, r)| r);
            let mut infos =
                held.filter(|r| !r.state().is_terminal()).map(|r| info(&**r)).peekable();
            let page = in_flight_page(&mut infos);
            (page, infos.peek().is_some())
        };
        if let ServerMsg::InFlight(listed) = &page {
            after = listed.last().map(|r| r.request).or(after);
        }
        conn.send(&page)?;
        if !more {
            return conn.send(&ServerMsg::Done);
        }
    }
}

fn info(r: &dyn Tracked) -> RequestInfo {
    RequestInfo { request: r.id(), key: r.key(), state: r.state(), priority: r.priority() }
}

/// Why a load is refused before any of its requests is made: a key of a type the daemon has no
/// decoder for, or too many keys for the answer to fit one frame.
fn refusal(keys: &[AssetKey], priority: Priority) -> Option<ProtocolError> {
    if let Some(key) = keys.iter().find(|key| !is_known_type(key.asset_type())) {
        let unknown = RequestError::UnknownType(key.asset_type().to_string());
        return Some(ProtocolError::Refused(unknown.to_string()));
    }
    let (bytes, max) = (widest_loaded_bytes(keys, priority), FRAME_BYTES_MAX as u64);
    (bytes > max).then_some(ProtocolError::ReplyTooLarge { bytes, max })
}

fn load(
    daemon: &Daemon,
    conn: &mut Conn,
    keys: Vec<AssetKey>,
    priority: Priority,
    wait: bool,
) -> Result<(), End> {
    if let Some(refused) = refusal(&keys, priority) {
        return conn.send(&ServerMsg::Error(refused));
    }
    let mut made: Vec<Arc<dyn Tracked>> = Vec::with_capacity(keys.len());
    // Made without the table's lock: a load of many keys walks each one's dependency tree
    // (and writes a recorded session's log), and every other client's command takes the lock.
    let mut refused = None;
    for key in keys {
        match request_any(&daemon.rt, key, priority) {
            Ok(handle) => made.push(Arc::from(handle)),
            // Past the checks above only a runtime shutting down refuses.
            Err(e) => {
                refused = Some(ProtocolError::Refused(e.to_string()));
                break;
            }
        }
    }
    if let Some(refused) = refused {
        // Refused as a whole: the requests made so far are cancelled as their handles go,
        // not held under ids the client is never told.
        for r in made {
            r.cancel();
        }
        return conn.send(&ServerMsg::Error(refused));
    }
    // One lock for them all: `requests()` sweeps the table of ended requests each time.
    let mut table = daemon.requests();
    table.extend(made.iter().map(|r| (r.id(), Arc::clone(r))));
    drop(table);
    conn.send(&ServerMsg::Loaded(made.iter().map(|r| info(&**r)).collect()))?;
    if !wait {
        return Ok(());
    }
    wait_for_ends(conn, made)?;
    conn.send(&ServerMsg::Done)
}

/// Tells the client each request's end as it ends and lets go of each once told: a request
/// held until the slowest of its load ended would keep its asset out of the memory budget's
/// reach. The runtime ends every request on shutdown, so this always finishes; meanwhile the
/// client is told every interval that the daemon still waits.
///
/// # Ordering
///
/// The first request still loading is waited on, and those after it that ended meanwhile are
/// looked for each time its wait runs out (ends usually come in the order the requests were
/// made: a load of 65,536 keys is not scanned whole at each end). So ends come in key order
/// within a wait's interval, and as they finish across intervals.
fn wait_for_ends(conn: &mut Conn, made: Vec<Arc<dyn Tracked>>) -> Result<(), End> {
    let interval = Duration::from_millis(WAITING_INTERVAL_MS);
    let mut left = VecDeque::from(made);
    let mut told = Instant::now();
    let mut sweep = true;
    loop {
        if std::mem::take(&mut sweep) {
            let mut sent = Ok(());
            left.retain(|r| {
                if sent.is_err() || !r.state().is_terminal() {
                    return true;
                }
                sent = tell_end(conn, &**r);
                told = Instant::now();
                false
            });
            sent?;
        }
        while left.front().is_some_and(|r| r.state().is_terminal()) {
            let r = left.pop_front().expect("a front, just looked at");
            tell_end(conn, &*r)?;
            told = Instant::now();
        }
        let Some(first) = left.front() else { return Ok(()) };
        if first.wait(WATCH_STATUS_INTERVAL) {
            continue;
        }
        sweep = true;
        // A shutdown ends every request before it shuts the connections for reading, which
        // looks like a client gone: those that ended since are still told.
        if conn.client_gone() && !left.iter().any(|r| r.state().is_terminal()) {
            return Err(End::Gone);
        }
        let state = first.state();
        // One that ended meanwhile is told its end next instead.
        if told.elapsed() >= interval && !state.is_terminal() {
            conn.send(&ServerMsg::Waiting { request: first.id(), state })?;
            told = Instant::now();
        }
    }
}

/// Sends the `Ended` of request `r`.
fn tell_end(conn: &mut Conn, r: &dyn Tracked) -> Result<(), End> {
    let (request, key, state, error) = (r.id(), r.key(), r.state(), r.error_text());
    conn.send(&ServerMsg::Ended { request, key, state, error })
}

/// Applies `act` to each request; answers `Done`, or names the first unknown id.
fn each(
    daemon: &Daemon,
    conn: &mut Conn,
    ids: &[RequestId],
    act: impl Fn(&dyn Tracked),
) -> Result<(), End> {
    let requests = daemon.requests();
    let mut unknown = None;
    for id in ids {
        match requests.get(id) {
            Some(r) => act(&**r),
            None => unknown = unknown.or(Some(*id)),
        }
    }
    drop(requests);
    match unknown {
        Some(id) => conn.send(&ServerMsg::Error(ProtocolError::UnknownRequest(id))),
        None => conn.send(&ServerMsg::Done),
    }
}

fn stats(daemon: &Daemon) -> ServerMsg {
    let types = daemon
        .rt
        .cache_stats(STATS_WAIT_PER_CACHE)
        .into_iter()
        .map(|s| TypeStats {
            asset_type: s.asset_type,
            entries: s.entries as u64,
            resident: s.resident as u64,
            parked: s.parked as u64,
            resident_bytes: s.resident_bytes,
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            quarantined: s.quarantined as u64,
        })
        .collect();
    let memory = daemon.rt.memory_stats();
    ServerMsg::Stats {
        types,
        resident_bytes: memory.resident_bytes,
        bytes_resident_max: memory.bytes_resident_max,
    }
}

/// Streams events and a status every interval until the client goes or the daemon stops.
fn watch(daemon: &Daemon, conn: &mut Conn) -> Result<(), End> {
    let events = daemon.rt.subscribe(WATCH_EVENTS_BUFFERED_MAX);
    let mut next_status = Instant::now();
    loop {
        if daemon.is_stopping() {
            conn.send(&ServerMsg::ShuttingDown)?;
            return Err(End::Gone);
        }
        if Instant::now() >= next_status {
            // Also how a vanished watcher is noticed when no event flows. Its drops are the
            // runtime's and its own subscription's: both are events it never saw.
            let mut status = daemon.rt.status();
            status.events_dropped = status.events_dropped.saturating_add(events.dropped());
            conn.send(&ServerMsg::Status(status))?;
            next_status = Instant::now() + WATCH_STATUS_INTERVAL;
        }
        let left = next_status.saturating_duration_since(Instant::now());
        if let Some(event) = events.next_timeout(left) {
            conn.send(&ServerMsg::Event(event))?;
        } else if events.is_ended() {
            // The feed answers at once from now on, so waiting on it would spin. The runtime
            // stopped under the watch (it gave up, and the daemon is about to stop: the top of
            // the loop says so once it does), or its telemetry sink did not take the
            // subscription in time: the watch goes on with its statuses alone.
            std::thread::sleep(next_status.saturating_duration_since(Instant::now()));
        }
    }
}
