//! What an interrupted command leaves behind: nothing of its own making.
//!
//! A command makes files for its own use: the demo's and the benchmarks' temporary folders
//! (`bench throughput`'s holds gigabytes) and the temporary file `pack build` writes before
//! it renames it into place. A signal that ends the process (Ctrl-C's `SIGINT`, `SIGTERM`,
//! `SIGHUP`) runs no destructor, so each such path is registered here ([`temp_dir`],
//! [`Registered::new`]). The first registration starts a thread that waits for those
//! signals; on one it removes every path still registered, says so in one line and ends the
//! process by the signal itself, as it would have ended without the catch (a shell sees it
//! killed by `SIGINT` for Ctrl-C, and stops a loop running it). A path is unregistered when its owner is dropped, after the owner removed it.
//!
//! Commands that register nothing (the daemon, which handles its signals itself) keep the
//! signals' default actions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use anyhow::Context;

/// The paths to remove on a signal, each with the number its registration was given.
static TEMPORARIES: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());

fn temporaries() -> MutexGuard<'static, Vec<(u64, PathBuf)>> {
    TEMPORARIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A path removed should the process be interrupted; unregistered on drop.
#[derive(Debug)]
pub struct Registered(u64);

impl Registered {
    /// Registers `path` (a file or a folder) for removal on a signal.
    pub fn new(path: &Path) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        static WATCH: Once = Once::new();
        WATCH.call_once(watch);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        temporaries().push((id, path.to_owned()));
        Self(id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        temporaries().retain(|(id, _)| *id != self.0);
    }
}

/// A temporary folder, removed when dropped or should the process be interrupted.
#[derive(Debug)]
pub struct TempFolder {
    // Declared first, so dropped first: the folder is gone before it is unregistered, and a
    // signal in between removes nothing more.
    dir: tempfile::TempDir,
    _registered: Registered,
}

impl TempFolder {
    /// The folder's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A new temporary folder for `what` (named in the error).
///
/// # Errors
///
/// The folder cannot be created.
pub fn temp_dir(what: &str) -> anyhow::Result<TempFolder> {
    let dir = tempfile::tempdir().with_context(|| format!("creating the {what} folder"))?;
    let registered = Registered::new(dir.path());
    Ok(TempFolder { dir, _registered: registered })
}

/// Starts the thread that waits for the signals, and returns once they are caught. Should
/// the thread or the catch fail, the signals keep their default actions: the process ends as
/// it would have, its temporaries left.
fn watch() {
    let (caught, wait_caught) = std::sync::mpsc::channel();
    let wanted = caught_signals();
    let spawned = std::thread::Builder::new().name("streamctl-signals".into()).spawn(move || {
        // Caught on this thread, so that none is caught with no thread to act on it.
        let signals = signal_hook::iterator::Signals::new(wanted);
        let _ = caught.send(());
        if let Some(signal) = signals.ok().and_then(|mut s| s.forever().next()) {
            interrupted(signal);
        }
    });
    if spawned.is_ok() {
        let _ = wait_caught.recv();
    }
}

/// The signals to catch: `SIGINT` and `SIGTERM`, and `SIGHUP` unless the process was started
/// with it ignored. A process started to outlive its terminal (`nohup`) must go on when the
/// terminal closes; catching `SIGHUP` would end it. An inherited ignored `SIGINT` (a script's
/// background job) is caught all the same: whoever sends it to the process by its id means it
/// to stop, and clean up. Read from `/proc/self/status` (`SigIgn`) before anything is caught
/// here; where it cannot be read, `SIGHUP` is caught.
pub fn caught_signals() -> Vec<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let ignored = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (SIGHUP - 1)) != 0);
    let mut caught = vec![SIGINT, SIGTERM];
    caught.extend((!ignored).then_some(SIGHUP));
    caught
}

/// Removes the registered paths and ends the process as `signal` would have.
fn interrupted(signal: i32) -> ! {
    // Held to the end: a path registered from now on is made after this removal, so the
    // registering thread waits here until the process ends.
    let paths = temporaries();
    // Written so that a closed stderr (a `tee` the same Ctrl-C ended) cannot stop the process
    // from ending: `eprintln!` panics there, which would end this thread and not the process.
    let mut stderr = std::io::stderr();
    for (_, path) in paths.iter() {
        if let Err(e) = remove(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let _ = writeln!(stderr, "streamctl: could not remove {}: {e}", path.display());
            }
        }
    }
    let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
    let _ = writeln!(stderr, "streamctl: interrupted by {name}");
    // Ended by the signal itself, so that a shell running streamctl in a loop sees Ctrl-C
    // and stops the loop; by the status the signal would give only should that fail.
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal);
}

/// Removes the file or folder at `path`. A folder the command's threads, still running, put
/// a file in while it was removed is removed once more.
fn remove(path: &Path) -> std::io::Result<()> {
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return std::fs::remove_file(path);
    }
    std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_dir_all(path))
}
