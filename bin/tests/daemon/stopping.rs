//! Stopping the daemon: `shutdown` with the socket file gone, signals (one, then a second while
//! it stops), a `shutdown` asked during a stop, and a recording that could not be written.

use super::*;

#[test]
fn shutdown_completes_when_the_socket_file_was_removed() {
    let mut daemon = Daemon::start(&[]);
    let mut s = greeted(&daemon.socket);
    std::fs::remove_file(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stop_through(&mut s, &mut daemon);
}

#[test]
fn sigterm_sigint_and_sighup_stop_the_daemon_as_shutdown_does_and_its_recorded_session_replays() {
    use rustix::process::Signal;
    // A daemon started with SIGHUP ignored (these tests run under `nohup`, say) keeps it
    // ignored, as the next test checks: it is sent only where the daemon can catch it.
    let hup = (!sighup_ignored_here()).then_some(Signal::HUP);
    for signal in [Signal::TERM, Signal::INT].into_iter().chain(hup) {
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("session.log");
        let mut daemon = Daemon::start(&["--record", log.to_str().unwrap()]);
        daemon.ok(&["load", "blob:b1", "blob:b2", "--wait"]);
        let pid = i32::try_from(daemon.child.id()).unwrap();
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
        assert!(daemon.child.wait().unwrap().success(), "{signal:?}: a clean stop exits 0");
        let mut rest = String::new();
        daemon._stdout.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("streamctl serve: stopped"), "{signal:?}: {rest:?}");
        assert!(!daemon.socket.exists(), "{signal:?}: the socket file is removed");
        let replayed = Command::new(BIN).arg("replay").arg(&log).output().unwrap();
        let told = String::from_utf8_lossy(&replayed.stderr);
        assert!(replayed.status.success(), "{signal:?}: the session is written whole: {told}");
        let transcript = String::from_utf8_lossy(&replayed.stdout);
        assert!(transcript.contains("blob:b2"), "{signal:?}: {transcript}");
    }
}

/// Whether this process ignores `SIGHUP`, which the daemons it starts then inherit.
fn sighup_ignored_here() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap();
    u64::from_str_radix(mask.trim(), 16).unwrap() & 1 != 0
}

#[test]
fn a_daemon_started_with_sighup_ignored_as_nohup_starts_it_keeps_ignoring_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pack, socket) = (pack(dir.path()), dir.path().join("run").join("ctl.sock"));
    let child = Command::new("nohup")
        .arg(BIN)
        .args(["serve", "--pack"])
        .arg(&pack)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon::listening(child, dir, socket);
    // Both pending at once, the lower-numbered SIGHUP would be taken first, were it caught.
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let told = BufReader::new(daemon.child.stderr.take().unwrap()).lines();
    let stop = told.map_while(Result::ok).find(|l| l.contains("received, stopping"));
    assert_eq!(stop.as_deref(), Some("streamctl serve: SIGTERM received, stopping"));
    assert!(daemon.child.wait().unwrap().success(), "a clean stop, by SIGTERM");
}

#[test]
fn sigterm_stops_the_daemon_whose_stderr_no_one_reads_any_more() {
    let mut daemon = Daemon::start_with(&[], Stdio::piped());
    // Whoever started it stopped reading (a `| tee` that ended): telling of the signal fails.
    drop(daemon.child.stderr.take());
    daemon.ok(&["load", "blob:b1", "--wait"]);
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = exited_within(&mut daemon.child, Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "the stop is not lost: {status:?}");
    assert!(!daemon.socket.exists(), "the socket file is removed");
}

#[test]
fn a_daemon_whose_recording_could_not_be_written_says_so_and_fails_and_so_does_its_stop() {
    // `/dev/full` takes the log's opening, buffered, and fails its flush at the stop.
    let mut daemon = Daemon::start_with(&["--record", "/dev/full"], Stdio::piped());
    daemon.ok(&["load", "blob:b1", "--wait"]);
    let asker = daemon.ctl(&["shutdown"]);
    let asker_told = String::from_utf8_lossy(&asker.stderr);
    assert!(!asker.status.success(), "the stop's asker fails as the daemon does: {asker_told}");
    assert!(asker_told.contains("the replay log is incomplete"), "{asker_told:?}");
    let mut told = String::new();
    daemon.child.stderr.take().unwrap().read_to_string(&mut told).unwrap();
    assert!(told.contains("the replay log is incomplete"), "{told:?}");
    assert!(!daemon.child.wait().unwrap().success(), "a failed recording is a failed run");
    let mut rest = String::new();
    daemon._stdout.read_to_string(&mut rest).unwrap();
    assert!(!rest.contains("streamctl serve: stopped"), "{rest:?}");
}

/// A client waiting on more ends than its socket's buffer holds, reading none: a stop of
/// `daemon` waits for its connection (up to the drain's 5 s) while the client is kept.
fn holding_the_stop(daemon: &Daemon) -> UnixStream {
    let mut s = greeted(&daemon.socket);
    let keys = vec![AssetKey::parse("blob:big").unwrap(); 5_000];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Loaded(_))));
    s
}

/// Sends `daemon` a `SIGTERM` and waits until it says (on its stderr, `told`) that it stops.
fn terminate_and_wait_stopping(daemon: &Daemon, told: &mut std::io::Lines<impl BufRead>) {
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let stopping = told.map_while(Result::ok).any(|l| l.contains("received, stopping"));
    assert!(stopping, "the daemon says it stops");
}

#[test]
fn a_second_signal_while_the_daemon_stops_exits_at_once_and_removes_the_socket_file() {
    let mut daemon = Daemon::start_with(&["--io-bytes-per-sec-max", "1000"], Stdio::piped());
    let mut told = BufReader::new(daemon.child.stderr.take().unwrap()).lines();
    let _holding = holding_the_stop(&daemon);
    // Two signals pending at once are one: the second is sent once the first was taken.
    terminate_and_wait_stopping(&daemon, &mut told);
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = exited_within(&mut daemon.child, Duration::from_secs(60));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "the second signal ends it at once");
    assert!(!daemon.socket.exists(), "the socket file is removed");
}

#[test]
fn a_shutdown_asked_while_the_daemon_stops_is_answered_once_the_stop_is_done() {
    let mut daemon = Daemon::start_with(&["--io-bytes-per-sec-max", "1000"], Stdio::piped());
    let mut told = BufReader::new(daemon.child.stderr.take().unwrap()).lines();
    // The asker's connection waits on a load that only the stop ends, so the daemon reads the
    // `Shutdown` queued behind it once the stop has begun, and before it closes connections.
    let mut asker = greeted(&daemon.socket);
    let load = ClientMsg::Load {
        keys: vec![AssetKey::parse("blob:big").unwrap()],
        priority: Priority::Normal,
        wait: true,
    };
    asker.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Loaded(_))));
    asker.write_all(&encode_frame(&ClientMsg::Shutdown).unwrap()).unwrap();
    terminate_and_wait_stopping(&daemon, &mut told);
    assert!(matches!(read_answer(&mut asker), Some(ServerMsg::Ended { .. })), "the stop ends it");
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Done)));
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::ShuttingDown)));
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Done)), "told once it is over");
    assert!(daemon.child.wait().unwrap().success());
    assert!(!daemon.socket.exists());
}
