//! Connecting to a Unix stream socket within a time limit.
//!
//! A plain `UnixStream::connect` to a listener whose queue of unaccepted connections is full
//! (a daemon stopped with `SIGSTOP`, or whose accept loop is stuck) waits for ever: the
//! timeouts of a `UnixStream` can only be set once it is connected. Here the socket is made
//! first, its send timeout set, which on Linux bounds a Unix stream's connect too, and cleared
//! once connected.

use std::io::{Error, ErrorKind};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// The longest time limit a connect is given: past it, a socket timeout cannot be set.
const CONNECT_TIMEOUT_S_MAX: u64 = i32::MAX as u64;

/// Connects to the socket at `path`, giving up after `timeout` (at least 1 ms) when the
/// listener's queue stays full.
///
/// # Errors
///
/// As `UnixStream::connect`, and `TimedOut` when the queue stayed full for `timeout`.
pub fn connect_within(path: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let timeout =
        timeout.clamp(Duration::from_millis(1), Duration::from_secs(CONNECT_TIMEOUT_S_MAX));
    set_socket_timeout(&fd, Timeout::Send, Some(timeout))?;
    match rustix::net::connect(&fd, &SocketAddrUnix::new(path)?) {
        Ok(()) => {}
        Err(Errno::AGAIN) => {
            let why = format!("its queue of connections stayed full for {timeout:?}");
            return Err(Error::new(ErrorKind::TimedOut, why));
        }
        Err(e) => return Err(e.into()),
    }
    // The stream's users set the timeouts of their own writes.
    set_socket_timeout(&fd, Timeout::Send, None)?;
    Ok(UnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_connect_to_a_listener_whose_queue_is_full_gives_up_at_its_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&listener, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        // A backlog of 0 queues one connection, which is never accepted.
        rustix::net::listen(&listener, 0).unwrap();
        let queued = connect_within(&path, Duration::from_secs(10)).unwrap();
        let (done, result) = mpsc::channel();
        let probe = path.clone();
        std::thread::spawn(move || {
            let _ = done.send(connect_within(&probe, Duration::from_millis(50)).map(drop));
        });
        // Bounded here too, so that a connect waiting for ever fails the test.
        let outcome = result.recv_timeout(Duration::from_secs(30)).expect("the connect returned");
        let e = outcome.expect_err("the queue is full");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        drop((queued, listener));
    }
}
