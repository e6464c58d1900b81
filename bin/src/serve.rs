//! `streamctl serve`: the runtime as a daemon, driven over a local control socket
//! (`docs/PROTOCOL.md`).
//!
//! One thread accepts; each client gets a thread of its own (blocking reads with an idle
//! timeout, so a client that stops mid-frame is dropped). Requests made by any client are held
//! by the daemon in one table, so another client can cancel or reprioritise them by id; a
//! request leaves the table once it ended: at the next command that reads or changes the
//! table, or at the sweep every `SWEEP_INTERVAL` (an idle daemon would otherwise hold every
//! asset it loaded, past the memory budget, until a client came).
//!
//! # Shutdown
//!
//! `shutdown`, `SIGTERM`, `SIGINT` or `SIGHUP` (what a service manager, Ctrl-C and a closed
//! terminal send) stops the accept
//! loop (the listening socket is shut for reading, which wakes it even if its file was
//! removed); the runtime then shuts down, which ends every request the
//! daemon held (`Ready`, or `Failed` with `Shutdown`). Each connection is shut for reading, so
//! no new request is taken, and has `SHUTDOWN_DRAIN_MAX` to finish what it is sending (a
//! client waiting on its loads gets every `Ended` and its `Done`); what is still open then is
//! closed, and every connection thread is joined. The socket file is removed (also when the
//! daemon fails to start or panics), a session being recorded is written whole, and the
//! process exits 0. A second signal while it stops ends the process at once (exit 1).
//!
//! When the runtime gives up (a supervisor's restarts past its policy) it shuts itself down;
//! the daemon then stops the same way and exits non-zero, so a service manager can restart
//! it, instead of refusing every load for ever.
//!
//! # Backpressure
//!
//! At most `connections_max` clients at once: one past it is answered `Busy` and closed by
//! the accept loop, without a thread of its own. Each connection buffers at most one frame
//! (1 MiB) and its reads; a watcher's events pass through a bounded subscription that drops
//! (and counts) what a slow client cannot take. When accepting fails (out of file
//! descriptors, say) the loop says so and waits `ACCEPT_RETRY_PAUSE` before it tries again,
//! rather than spinning on a connection it cannot take.

mod config;
mod conn;
mod socket;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use streamrt::messages::protocol::{encode_frame, ProtocolError, ServerMsg};
use streamrt::messages::RequestId;
use streamrt::pack::PackLimits;
use streamrt::{PackSource, Runtime};

use crate::tracked::{register_all, Tracked};
pub use config::Overrides as ServeArgs;
use config::Settings;
pub(crate) use socket::{own_uid, peer_is};
use socket::{ControlSocket, SocketFile};

/// How long the connections get to finish what they are sending once the runtime has shut
/// down, before they are closed outright.
const SHUTDOWN_DRAIN_MAX: Duration = Duration::from_secs(5);

/// How often the daemon's own sweep lets go of the requests that ended (see the module docs).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How long the accept loop waits after accepting failed, before it tries again.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Stops the accept loop; shared with the runtime's escalation listener, which is made before
/// the daemon.
struct StopSignal {
    stopping: AtomicBool,
    /// The listening socket: shut for reading, it wakes a blocked `accept` with an error,
    /// whatever became of its file, and refuses the connections tried after.
    listener: UnixListener,
}

impl StopSignal {
    fn stop(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            if let Err(e) = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read) {
                tell(format_args!("cannot wake the accept loop: {e}"));
            }
        }
    }
}

/// The daemon's table of requests; see [`Daemon::requests`].
pub(crate) type Requests = BTreeMap<RequestId, Arc<dyn Tracked>>;

/// What every connection thread shares.
pub(crate) struct Daemon {
    rt: Runtime,
    source: String,
    /// Requests clients made that have not ended yet, by id: in order, so that `InFlight`
    /// lists them a page at a time, taking the lock for each.
    requests: Mutex<Requests>,
    signal: Arc<StopSignal>,
    idle_timeout: Duration,
    /// Open connections, counted by the accept loop before their thread starts.
    connections: AtomicUsize,
    connections_max: usize,
    /// A clone of each open connection, so shutdown can close them.
    open: Mutex<HashMap<u64, UnixStream>>,
    /// Notified as each connection ends (leaves `open`).
    closed: Condvar,
    /// Clients that asked for shutdown, told `Done` once it is complete.
    stop_waiters: Mutex<Vec<UnixStream>>,
}

impl Daemon {
    /// The table of requests, swept first: ended requests are dropped here, and their assets
    /// go to the memory budget's pool.
    pub(crate) fn requests(&self) -> MutexGuard<'_, Requests> {
        let mut requests = self.unswept_requests();
        requests.retain(|_, r| !r.state().is_terminal());
        requests
    }

    /// The table of requests as it is, ended ones included.
    pub(crate) fn unswept_requests(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.signal.stopping.load(Ordering::Acquire)
    }

    /// Asks the daemon to stop (see the module docs).
    pub(crate) fn stop(&self) {
        self.signal.stop();
    }

    fn open(&self) -> MutexGuard<'_, HashMap<u64, UnixStream>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `stream` (a clone of connection `id`'s) so that shutdown can close it.
    pub(crate) fn opened(&self, id: u64, stream: UnixStream) {
        self.open().insert(id, stream);
    }

    /// Connection `id` ended, or is no longer to be closed by shutdown.
    pub(crate) fn forget(&self, id: u64) {
        self.open().remove(&id);
        self.closed.notify_all();
    }

    /// Connection `id` ended: its place is free.
    pub(crate) fn ended(&self, id: u64) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        self.forget(id);
    }

    /// Lets the connections finish what they are sending, then closes what is left (see the
    /// module docs): a client that stopped reading would otherwise hold shutdown up for its
    /// write timeout.
    fn close_connections(&self) {
        let open = self.open();
        for stream in open.values() {
            let _ = stream.shutdown(std::net::Shutdown::Read);
        }
        let (open, _) = self
            .closed
            .wait_timeout_while(open, SHUTDOWN_DRAIN_MAX, |open| !open.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        for stream in open.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Runs the daemon until a client asks it to stop.
///
/// # Errors
///
/// The settings, the socket path or the pack are refused, the runtime cannot start, or the
/// runtime gave up while the daemon ran.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let source = PackSource::open(&settings.pack, PackLimits::default())
        .with_context(|| format!("opening the pack {}", settings.pack.display()))?;
    // Caught from before the socket exists: one while the runtime starts is kept for the
    // watch below, not the default action that would leave the socket file behind.
    let caught = SignalWatch::catch()?;
    // Removed when dropped, also when the runtime below fails to start.
    let socket = ControlSocket::bind(&settings.socket)?;
    let signal = Arc::new(StopSignal {
        stopping: AtomicBool::new(false),
        listener: socket.listener().try_clone().context("cloning the listening socket")?,
    });
    let described = streamrt::Source::describe(&source);
    let mut builder = Runtime::builder().config(settings.runtime.clone()).source(source);
    if let Some(path) = &args.record {
        builder = builder.record(path, "streamctl serve");
    }
    let told = Arc::clone(&signal);
    // The runtime keeps why it gave up (`Runtime::escalation`); the daemon only stops.
    builder = builder.on_escalation(move |_| told.stop());
    let rt = register_all(builder).immediate().build().context("starting the runtime")?;
    let daemon = Arc::new(Daemon {
        rt,
        source: described,
        requests: Mutex::default(),
        signal,
        idle_timeout: settings.idle_timeout,
        connections: AtomicUsize::new(0),
        connections_max: settings.connections_max,
        open: Mutex::default(),
        closed: Condvar::new(),
        stop_waiters: Mutex::default(),
    });
    // Whoever started the daemon may have stopped reading its output: never fail on it.
    let mut out = std::io::stdout();
    let pid = std::process::id();
    let _ = writeln!(out, "streamctl serve: listening on {} (pid {pid})", socket.path().display());
    let _ = out.flush();
    let signals = SignalWatch::start(caught, &daemon.signal, socket.file())?;
    let sweeper = start_sweeper(&daemon)?;
    let threads = accept_loop(&daemon, &socket);
    sweeper.thread().unpark();
    let _ = sweeper.join();
    daemon.rt.shutdown();
    daemon.close_connections();
    for thread in threads {
        let _ = thread.join();
    }
    drop(socket);
    signals.stop();
    let stopped = daemon.stopped_cleanly();
    daemon.tell_stop_waiters(stopped.as_ref().err().map(String::as_str));
    stopped.map_err(|why| anyhow::anyhow!("{why}; stopped"))?;
    let _ = writeln!(out, "streamctl serve: stopped");
    Ok(())
}

impl Daemon {
    /// Tells each client that asked for the stop that it is over: `Done`, or what went wrong
    /// (`failed`), so that a `streamctl shutdown` fails as the daemon does.
    fn tell_stop_waiters(&self, failed: Option<&str>) {
        let told = match failed {
            None => ServerMsg::Done,
            Some(why) => ServerMsg::Error(ProtocolError::StoppedBadly(why.to_owned())),
        };
        let Ok(done) = encode_frame(&told) else { return };
        for mut waiter in self.stop_waiters.lock().unwrap_or_else(PoisonError::into_inner).drain(..)
        {
            let _ = waiter.write_all(&done);
        }
    }

    /// Whether the run ended well: the runtime did not give up, and the logs asked for are
    /// whole (one cut short by a failed write, or a recording past its record limit, is a
    /// failed run, as it is for the demo).
    ///
    /// # Errors
    ///
    /// What went wrong, the first of these, for the operator and the client that asked for
    /// the stop.
    fn stopped_cleanly(&self) -> Result<(), String> {
        if let Some(e) = self.rt.escalation() {
            let why = format!("{} gave up after {} ended: {:?}", e.supervisor, e.child, e.reason);
            return Err(format!("the runtime gave up ({why})"));
        }
        if let Some(error) = self.rt.telemetry_error() {
            return Err(format!("the telemetry log is incomplete: {error}"));
        }
        if let Some(error) = self.rt.record_error() {
            return Err(format!("the replay log is incomplete: {error}"));
        }
        Ok(())
    }
}

/// Lets go of the requests that ended every `SWEEP_INTERVAL` until the daemon stops (unparked
/// then, to stop at once).
fn start_sweeper(daemon: &Arc<Daemon>) -> anyhow::Result<JoinHandle<()>> {
    let daemon = Arc::clone(daemon);
    let sweep = move || {
        while !daemon.is_stopping() {
            std::thread::park_timeout(SWEEP_INTERVAL);
            drop(daemon.requests());
        }
    };
    let thread = std::thread::Builder::new().name("streamctl-sweep".into()).spawn(sweep);
    thread.context("starting the sweeping thread")
}

/// Tells the daemon's operator `what` on stderr, if it can. Whoever started the daemon may
/// have stopped reading (a `| tee` that ended): `eprintln!` panics on the broken pipe, which in
/// the signal thread lost the stop and in the accept loop the runtime's shutdown.
fn tell(what: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "streamctl serve: {what}");
}

/// Stops the daemon on `SIGTERM`, `SIGINT` or `SIGHUP` (its terminal went away) as `shutdown`
/// does: without it, each killed the process at once, leaving its socket file and the
/// unwritten tail of a recorded session.
struct SignalWatch {
    handle: signal_hook::iterator::Handle,
    thread: JoinHandle<()>,
}

impl SignalWatch {
    /// Catches `SIGTERM`, `SIGINT` and `SIGHUP` from now on, kept for [`SignalWatch::start`]:
    /// `SIGHUP` stays ignored if the daemon was started with it ignored (`nohup`).
    fn catch() -> anyhow::Result<signal_hook::iterator::Signals> {
        let wanted = crate::interrupt::caught_signals();
        signal_hook::iterator::Signals::new(wanted).context("watching signals")
    }

    /// Stops the daemon at the first signal caught (one caught before included); at a second,
    /// removes the socket `file` and exits at once.
    fn start(
        mut signals: signal_hook::iterator::Signals,
        stop: &Arc<StopSignal>,
        file: SocketFile,
    ) -> anyhow::Result<Self> {
        let handle = signals.handle();
        let stop = Arc::clone(stop);
        let thread = std::thread::Builder::new()
            .name("streamctl-signals".into())
            .spawn(move || {
                let mut received = signals.forever();
                let name = |sig| signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
                if let Some(sig) = received.next() {
                    // Stopped before it is told: telling may fail, the stop must not.
                    stop.stop();
                    tell(format_args!("{} received, stopping", name(sig)));
                }
                // Ends once the daemon stopped and closed the watch: a signal before is the
                // user's second ask, not to wait for the stop.
                if let Some(sig) = received.next() {
                    // `exit` runs no destructor: the socket's file goes here.
                    file.remove();
                    tell(format_args!("{} received again, exiting now", name(sig)));
                    std::process::exit(1);
                }
            })
            .context("starting the signal thread")?;
        Ok(Self { handle, thread })
    }

    /// Ends the watch once the daemon stopped (a signal after it is ignored: the process is
    /// about to exit).
    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

/// Connections a stopping daemon turns away, at most: a listen backlog's worth (Linux's
/// largest by default, `somaxconn`).
const STOP_TURN_AWAYS_MAX: usize = 4_096;

/// Accepts until the daemon stops; returns the connection threads to join.
fn accept_loop(daemon: &Arc<Daemon>, socket: &ControlSocket) -> Vec<JoinHandle<()>> {
    let uid = own_uid();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    let mut turned_away_at_stop = 0;
    for stream in socket.listener().incoming() {
        if daemon.is_stopping() {
            // The listener is shut: `accept` hands out the connections already in its backlog
            // (no new one joins it), then fails. Each is told why it is not served; a listener
            // that could not be shut would hand out new ones for ever, hence the bound.
            let Ok(stream) = stream else { break };
            turned_away_at_stop += 1;
            if turned_away_at_stop > STOP_TURN_AWAYS_MAX {
                break;
            }
            if peer_is(&stream, uid) {
                turn_away(stream, ProtocolError::ShuttingDown, daemon.idle_timeout);
            }
            continue;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: the connection stays in the backlog and the
                // next accept fails again at once, so pause instead of spinning on it.
                tell(format_args!("accepting a connection failed: {e}"));
                std::thread::sleep(ACCEPT_RETRY_PAUSE);
                continue;
            }
        };
        // Another user's connection is closed before a byte is read from it.
        if !peer_is(&stream, uid) {
            continue;
        }
        let connected = daemon.connections.fetch_add(1, Ordering::AcqRel) + 1;
        if connected > daemon.connections_max {
            daemon.connections.fetch_sub(1, Ordering::AcqRel);
            turn_away(stream, ProtocolError::Busy(connected - 1), daemon.idle_timeout);
            continue;
        }
        threads.retain(|t| !t.is_finished());
        next_id += 1;
        let (conn_daemon, id) = (Arc::clone(daemon), next_id);
        let spawned = std::thread::Builder::new()
            .name(format!("streamctl-conn-{id}"))
            .spawn(move || conn::serve(&conn_daemon, stream, id));
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                daemon.connections.fetch_sub(1, Ordering::AcqRel);
                tell(format_args!("cannot start a connection thread: {e}"));
            }
        }
    }
    threads
}

/// Answers a client the daemon will not serve (past `connections_max`: `Busy`; while it
/// stops: `ShuttingDown`) with `why` and closes it. One small frame fits the socket's buffer,
/// so the write does not wait on the client; `idle` bounds it anyway.
fn turn_away(mut stream: UnixStream, why: ProtocolError, idle: Duration) {
    if let Ok(frame) = encode_frame(&ServerMsg::Error(why)) {
        let _ = stream.set_write_timeout(Some(idle));
        let _ = stream.write_all(&frame);
    }
}
