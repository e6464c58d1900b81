//! `streamctl serve`: the runtime as a daemon, driven over a local control socket
//! (`docs/PROTOCOL.md`).
//!
//! One thread accepts; each client gets a thread of its own (blocking reads with an idle
//! timeout, so a client that stops mid-frame is dropped). Requests made by any client are held
//! by the daemon in one table, so another client can cancel or reprioritise them by id; a
//! request leaves the table once it ended.
//!
//! # Shutdown
//!
//! `shutdown` (or an error) stops the accept loop; the runtime then shuts down, which ends
//! every request the daemon held (`Ready`, or `Failed` with `Shutdown`); every client
//! connection is closed and its thread joined; the socket file is removed; the process exits 0.
//!
//! # Backpressure
//!
//! At most `connections_max` clients at once (one past it gets `Busy` and is closed); each
//! connection buffers at most one frame (1 MiB) and its reads; a watcher's events pass through
//! a bounded subscription that drops (and counts) what a slow client cannot take.

mod config;
mod conn;
mod socket;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use streamrt::messages::protocol::{encode_frame, ServerMsg};
use streamrt::messages::RequestId;
use streamrt::pack::PackLimits;
use streamrt::{PackSource, Runtime};

use crate::tracked::{register_all, Tracked};
pub use config::Overrides as ServeArgs;
use config::Settings;
use socket::{own_uid, peer_is, ControlSocket};

/// What every connection thread shares.
pub(crate) struct Daemon {
    rt: Runtime,
    source: String,
    /// Requests clients made that have not ended yet, by id.
    requests: Mutex<HashMap<RequestId, Arc<dyn Tracked>>>,
    stopping: AtomicBool,
    socket_path: std::path::PathBuf,
    idle_timeout: Duration,
    connections: AtomicUsize,
    connections_max: usize,
    /// A clone of each open connection, so shutdown can close them.
    open: Mutex<HashMap<u64, UnixStream>>,
    /// Clients that asked for shutdown, told `Done` once it is complete.
    stop_waiters: Mutex<Vec<UnixStream>>,
}

impl Daemon {
    pub(crate) fn requests(&self) -> MutexGuard<'_, HashMap<RequestId, Arc<dyn Tracked>>> {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        // Ended requests are dropped here: their assets go to the memory budget's pool.
        requests.retain(|_, r| !r.state().is_terminal());
        requests
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks the daemon to stop: the accept loop is woken by a connection to itself.
    pub(crate) fn stop(&self) {
        if !self.stopping.swap(true, Ordering::AcqRel) {
            let _ = UnixStream::connect(&self.socket_path);
        }
    }
}

/// Runs the daemon until a client asks it to stop.
///
/// # Errors
///
/// The settings, the socket path or the pack are refused, or the runtime cannot start.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    let source = PackSource::open(&settings.pack, PackLimits::default())
        .with_context(|| format!("opening the pack {}", settings.pack.display()))?;
    let socket = ControlSocket::bind(&settings.socket)?;
    let described = streamrt::Source::describe(&source);
    let mut builder = Runtime::builder().config(settings.runtime.clone()).source(source);
    if let Some(path) = &args.record {
        builder = builder.record(path, "streamctl serve");
    }
    let rt = register_all(builder).immediate().build().context("starting the runtime")?;
    let daemon = Arc::new(Daemon {
        rt,
        source: described,
        requests: Mutex::default(),
        stopping: AtomicBool::new(false),
        socket_path: settings.socket.clone(),
        idle_timeout: settings.idle_timeout,
        connections: AtomicUsize::new(0),
        connections_max: settings.connections_max,
        open: Mutex::default(),
        stop_waiters: Mutex::default(),
    });
    // Whoever started the daemon may have stopped reading its output: never fail on it.
    let mut out = std::io::stdout();
    let pid = std::process::id();
    let _ = writeln!(out, "streamctl serve: listening on {} (pid {pid})", socket.path().display());
    let _ = out.flush();
    let threads = accept_loop(&daemon, &socket);
    daemon.rt.shutdown();
    for stream in daemon.open.lock().unwrap_or_else(PoisonError::into_inner).values() {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    for thread in threads {
        let _ = thread.join();
    }
    socket.remove();
    if let Ok(done) = encode_frame(&ServerMsg::Done) {
        for mut waiter in
            daemon.stop_waiters.lock().unwrap_or_else(PoisonError::into_inner).drain(..)
        {
            let _ = waiter.write_all(&done);
        }
    }
    let _ = writeln!(out, "streamctl serve: stopped");
    Ok(())
}

/// Accepts until the daemon stops; returns the connection threads to join.
fn accept_loop(daemon: &Arc<Daemon>, socket: &ControlSocket) -> Vec<JoinHandle<()>> {
    let uid = own_uid();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for stream in socket.listener().incoming() {
        if daemon.is_stopping() {
            break;
        }
        let Ok(stream) = stream else { continue };
        // Another user's connection is closed before a byte is read from it.
        if !peer_is(&stream, uid) {
            continue;
        }
        threads.retain(|t| !t.is_finished());
        next_id += 1;
        let (daemon, id) = (Arc::clone(daemon), next_id);
        let spawned = std::thread::Builder::new()
            .name(format!("streamctl-conn-{id}"))
            .spawn(move || conn::serve(&daemon, stream, id));
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => eprintln!("streamctl serve: cannot start a connection thread: {e}"),
        }
    }
    threads
}
