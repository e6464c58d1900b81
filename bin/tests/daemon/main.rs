//! `streamctl serve` as a real process on a temporary socket, driven by the real clients and by
//! hand-made bad clients. Each test waits on the daemon's own output or on a socket read, never
//! on a sleep.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use streamrt::messages::protocol::{
    encode_frame, ClientMsg, FrameDecoder, ProtocolError, ServerMsg, FRAME_BYTES_MAX,
    KEYS_PER_LOAD_MAX, PROTOCOL_VERSION,
};
use streamrt::messages::{AssetKey, EventKind, Priority};
use streamrt::pack::{Codec, PackWriter};

const BIN: &str = env!("CARGO_BIN_EXE_streamctl");

fn blob(payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out
}

/// A pack of small blobs `blob:b0..b9`, one large `blob:big` (1 MiB) and a corrupt `blob:bad`.
fn pack(dir: &Path) -> PathBuf {
    let path = dir.join("assets.pack");
    let mut writer = PackWriter::create(&path).unwrap();
    for i in 0..10 {
        writer
            .add(
                &format!("blob:b{i}"),
                &blob(format!("payload {i}").as_bytes()),
                Codec::Lz4,
                vec![],
            )
            .unwrap();
    }
    writer.add("blob:big", &blob(&vec![7u8; 1 << 20]), Codec::None, vec![]).unwrap();
    let mut bad = blob(b"soon corrupt");
    let last = bad.len() - 1;
    bad[last] ^= 1;
    writer.add("blob:bad", &bad, Codec::None, vec![]).unwrap();
    writer.finish().unwrap();
    path
}

struct Daemon {
    child: Child,
    /// The daemon's output, kept open while it runs.
    _stdout: BufReader<std::process::ChildStdout>,
    dir: tempfile::TempDir,
    socket: PathBuf,
}

/// A test that fails before it stops its daemon must not leave it running: it would hold the
/// test binary's output open.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test daemon's idle timeout, unless a test sets its own: long enough that a busy machine
/// never closes a connection the test is still reading or writing (the daemon's writes time
/// out after as long).
const IDLE_TIMEOUT_MS: &str = "10000";

impl Daemon {
    fn start(extra: &[&str]) -> Self {
        Self::start_with(extra, Stdio::inherit())
    }

    /// A daemon whose stderr goes to `stderr`.
    fn start_with(extra: &[&str], stderr: Stdio) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pack = pack(dir.path());
        let socket = dir.path().join("run").join("ctl.sock");
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--pack")
            .arg(&pack)
            .args(["--workers", "2", "--queue-capacity", "64"])
            .args(extra)
            .args(if extra.contains(&"--idle-timeout-ms") {
                &[][..]
            } else {
                &["--idle-timeout-ms", IDLE_TIMEOUT_MS][..]
            })
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "daemon did not start: {line:?}");
        Self { child, _stdout: stdout, dir, socket }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).arg("--socket").arg(&self.socket).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn status_works(&self) {
        assert!(self.ok(&["status"]).contains("worker_count=2"));
    }

    fn stop(mut self) {
        self.ok(&["shutdown"]);
        assert!(self.child.wait().unwrap().success());
        assert!(!self.socket.exists(), "the socket file is removed");
    }
}

/// A connection to the daemon at `socket` whose reads give up after 30 s: a daemon that stops
/// answering fails the test rather than hanging it.
fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// A raw connection that has said hello.
fn greeted(socket: &Path) -> UnixStream {
    let mut stream = connect(socket);
    stream
        .write_all(&encode_frame(&ClientMsg::Hello { version: PROTOCOL_VERSION }).unwrap())
        .unwrap();
    assert!(matches!(read_msg(&mut stream), Some(ServerMsg::Welcome { .. })));
    stream
}

/// The next message, or `None` once the daemon closed the connection (or a read timed out).
/// Reads exactly one frame, so the frames after it stay in the socket for the next call.
fn read_msg(stream: &mut UnixStream) -> Option<ServerMsg> {
    let mut frame = vec![0u8; 4];
    stream.read_exact(&mut frame).ok()?;
    let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert!(len <= FRAME_BYTES_MAX, "a frame of {len} bytes");
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    let mut decoder = FrameDecoder::new();
    decoder.push(&frame);
    Some(decoder.next_msg::<ServerMsg>().unwrap().expect("one whole frame"))
}

#[test]
fn status_load_stats_inflight_cancel_reprioritise_and_shutdown() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000"]);
    assert!(daemon.ok(&["status"]).contains("worker_count=2 queue_capacity=64 in_flight=0"));
    let loaded = daemon.ok(&["load", "blob:b1", "blob:b2", "--wait"]);
    assert_eq!(loaded.matches("state=ready").count(), 2, "{loaded}");
    let failed = daemon.ctl(&["load", "blob:bad", "--wait"]);
    assert!(!failed.status.success(), "a failed load exits non-zero");
    assert!(String::from_utf8_lossy(&failed.stdout).contains("state=failed"));
    // 1 MiB at 1,000 bytes/s stays in flight for the rest of the test.
    let big = daemon.ok(&["load", "blob:big", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(big.lines().next().unwrap()).unwrap()
        ["request"]
        .to_string();
    assert!(daemon.ok(&["inflight"]).contains("key=blob:big"));
    daemon.ok(&["reprioritize", "critical", &id]);
    assert!(daemon.ok(&["inflight"]).contains("priority=critical"));
    daemon.ok(&["cancel", &id]);
    assert!(daemon.ok(&["inflight"]).contains("inflight: 0"));
    assert!(!daemon.ctl(&["cancel", "999999"]).status.success(), "an unknown id is an error");
    let stats: serde_json::Value = serde_json::from_str(&daemon.ok(&["stats", "--json"])).unwrap();
    let blob = &stats["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["asset_type"] == "blob")
        .unwrap()
        .clone();
    assert!(blob["misses"].as_u64().unwrap() >= 3, "{stats}");
    daemon.stop();
}

#[test]
fn watch_streams_events_and_shutdown_ends_every_held_request_first() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000"]);
    let mut watch = Command::new(BIN)
        .args(["watch", "--json", "--events", "2", "--socket"])
        .arg(&daemon.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status_line = String::new();
    let mut watch_out = BufReader::new(watch.stdout.take().unwrap());
    watch_out.read_line(&mut status_line).unwrap();
    assert!(status_line.contains("\"status\""), "{status_line}");
    daemon.ok(&["load", "blob:b3"]);
    let rest: Vec<String> = watch_out.lines().map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.contains("\"event\"")), "{rest:?}");
    assert!(watch.wait().unwrap().success());
    // As text, off a terminal: each new summary on a line of its own, then a closing line.
    let mut text = Command::new(BIN);
    text.args(["watch", "--events", "1", "--socket"]).arg(&daemon.socket);
    let mut text = text.stdout(Stdio::piped()).spawn().unwrap();
    let mut shown = BufReader::new(text.stdout.take().unwrap()).lines().map(Result::unwrap);
    // Its first summary says it watches: the load's events come after.
    assert!(shown.next().unwrap().starts_with("watch: in_flight="));
    daemon.ok(&["load", "blob:b3"]);
    assert!(shown.any(|l| l.starts_with("watch: ended after 1 events")));
    assert!(text.wait().unwrap().success());
    let mut held = Command::new(BIN)
        .args(["load", "blob:big", "--wait", "--socket"])
        .arg(&daemon.socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut held_out = BufReader::new(held.stdout.take().unwrap());
    let mut made = String::new();
    held_out.read_line(&mut made).unwrap();
    assert!(made.contains("key=blob:big"));
    daemon.stop();
    let mut ended = String::new();
    held_out.read_line(&mut ended).unwrap();
    assert!(ended.contains("state=failed") && ended.contains("shut"), "{ended}");
    assert!(!held.wait().unwrap().success(), "a load that failed exits non-zero");
}

#[test]
fn each_bad_client_is_answered_or_dropped_and_the_next_client_is_served() {
    let daemon = Daemon::start(&["--idle-timeout-ms", "300"]);
    // A malformed payload after the handshake.
    let mut s = greeted(&daemon.socket);
    s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(_))));
    daemon.status_works();
    // A load of more keys than any answer could list: refused as it is decoded, naming the
    // limit, before its keys take memory.
    let mut s = greeted(&daemon.socket);
    let keys = vec![AssetKey::parse("a:b").unwrap(); KEYS_PER_LOAD_MAX + 1];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: false };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    let answer = read_msg(&mut s);
    let limit = format!("{} keys, over the limit of {KEYS_PER_LOAD_MAX}", KEYS_PER_LOAD_MAX + 1);
    assert!(
        matches!(&answer, Some(ServerMsg::Error(e)) if e.to_string().contains(&limit)),
        "{answer:?}"
    );
    assert!(read_msg(&mut s).is_none(), "then closed");
    daemon.status_works();
    // A length prefix over the limit: refused before any payload.
    let mut s = connect(&daemon.socket);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(_))));
    assert!(read_msg(&mut s).is_none(), "then closed");
    daemon.status_works();
    // A wrong version.
    let mut s = connect(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Hello { version: 99 }).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(e)) if e.to_string().contains("99")));
    daemon.status_works();
    // A request before the handshake.
    let mut s = connect(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Status).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(_))));
    daemon.status_works();
    // Half a frame, left hanging: closed at the idle timeout.
    let mut s = greeted(&daemon.socket);
    s.write_all(&[10, 0]).unwrap();
    assert!(read_msg(&mut s).is_none(), "closed after the idle timeout");
    daemon.status_works();
    // Vanishing mid-request and mid-watch.
    let mut s = greeted(&daemon.socket);
    let keys = vec![AssetKey::parse("blob:b4").unwrap()];
    s.write_all(
        &encode_frame(&ClientMsg::Load { keys, priority: Priority::Normal, wait: true }).unwrap(),
    )
    .unwrap();
    drop(s);
    let mut s = greeted(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Watch).unwrap()).unwrap();
    assert!(read_msg(&mut s).is_some());
    drop(s);
    daemon.status_works();
    // 64 clients at once.
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let socket = daemon.socket.clone();
            std::thread::spawn(move || {
                let mut s = greeted(&socket);
                s.write_all(&encode_frame(&ClientMsg::Status).unwrap()).unwrap();
                matches!(read_msg(&mut s), Some(ServerMsg::Status(_)))
            })
        })
        .collect();
    assert!(clients.into_iter().all(|c| c.join().unwrap()), "every client is served");
    daemon.status_works();
    daemon.stop();
}

#[test]
fn a_load_refused_as_a_whole_makes_no_request_and_the_connection_is_still_served() {
    let daemon = Daemon::start(&[]);
    let mut s = greeted(&daemon.socket);
    let mut ask = |msg: &ClientMsg| {
        s.write_all(&encode_frame(msg).unwrap()).unwrap();
        read_msg(&mut s)
    };
    let load =
        |keys: Vec<AssetKey>| ClientMsg::Load { keys, priority: Priority::Normal, wait: false };
    // The request fits a frame, but the answer (an id for every key) would not.
    let many = vec![AssetKey::parse("blob:b1").unwrap(); 60_000];
    let answer = ask(&load(many));
    assert!(
        matches!(answer, Some(ServerMsg::Error(ProtocolError::ReplyTooLarge { .. }))),
        "{answer:?}"
    );
    // A key of a type the daemon has no decoder for, after a good one.
    let mixed = ["blob:b2", "sound:x"].map(|k| AssetKey::parse(k).unwrap()).to_vec();
    let answer = ask(&load(mixed));
    assert!(
        matches!(&answer, Some(ServerMsg::Error(ProtocolError::Refused(why))) if why.contains("sound")),
        "{answer:?}"
    );
    let Some(ServerMsg::Status(status)) = ask(&ClientMsg::Status) else {
        panic!("the connection is no longer served");
    };
    assert_eq!(status.requested, 0, "a refused load makes no request");
    daemon.stop();
}

#[test]
fn a_client_that_vanishes_while_its_load_is_waited_on_frees_its_place() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000", "--connections-max", "1"]);
    let mut s = greeted(&daemon.socket);
    // 1 MiB at 1,000 bytes/s: the load outlasts the test by far.
    let keys = vec![AssetKey::parse("blob:big").unwrap()];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Loaded(_))), "waiting on blob:big");
    drop(s);
    wait_for_the_one_place(daemon);
}

#[test]
fn a_watcher_that_vanishes_frees_its_place() {
    let daemon = Daemon::start(&["--connections-max", "1"]);
    let mut s = greeted(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Watch).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Status(_))), "watching");
    drop(s);
    wait_for_the_one_place(daemon);
}

/// Waits until a client is welcomed by a daemon of one place, whose last client vanished (the
/// place is taken until the daemon notices, and a client turned away retries), then stops the
/// daemon through that client: it holds the one place, and another client (`Daemon::stop`'s)
/// would be turned away until the daemon noticed it gone too.
fn wait_for_the_one_place(mut daemon: Daemon) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut welcomed = loop {
        let mut next = connect(&daemon.socket);
        let hello = encode_frame(&ClientMsg::Hello { version: PROTOCOL_VERSION }).unwrap();
        // A client turned away may be closed on before its hello is written.
        let answer = next.write_all(&hello).ok().and_then(|()| read_msg(&mut next));
        match answer {
            Some(ServerMsg::Welcome { .. }) => break next,
            busy => assert!(Instant::now() < deadline, "still turned away: {busy:?}"),
        }
    };
    welcomed.write_all(&encode_frame(&ClientMsg::Shutdown).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut welcomed), Some(ServerMsg::ShuttingDown)));
    assert!(matches!(read_msg(&mut welcomed), Some(ServerMsg::Done)), "the daemon stopped");
    assert!(daemon.child.wait().unwrap().success());
}

#[test]
fn a_client_waiting_on_its_loads_gets_every_end_and_done_across_shutdown() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000"]);
    let mut s = greeted(&daemon.socket);
    // More answers than the socket's buffer holds: the daemon is still writing them as it
    // shuts down.
    const HELD: usize = 5_000;
    let keys = vec![AssetKey::parse("blob:big").unwrap(); HELD];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Loaded(made)) if made.len() == HELD));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let reader = std::thread::spawn(move || {
        let mut answers = Vec::new();
        while let Some(msg) = read_msg(&mut s) {
            answers.push(msg);
        }
        answers
    });
    daemon.stop();
    let answers = reader.join().unwrap();
    let ended = answers.iter().filter(|m| matches!(m, ServerMsg::Ended { .. })).count();
    assert_eq!(ended, HELD, "every held request's end reaches its client");
    assert!(matches!(answers.last(), Some(ServerMsg::Done)), "then Done");
}

#[test]
fn shutdown_completes_when_the_socket_file_was_removed() {
    let mut daemon = Daemon::start(&[]);
    let mut s = greeted(&daemon.socket);
    std::fs::remove_file(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&encode_frame(&ClientMsg::Shutdown).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::ShuttingDown)));
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Done)), "the daemon stopped");
    assert!(daemon.child.wait().unwrap().success());
}

#[test]
fn sigterm_and_sigint_stop_the_daemon_as_shutdown_does_and_its_recorded_session_replays() {
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
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

/// The daemon's exit status once it exited, or `None` if it still runs after `patience`: a
/// daemon that never stops fails the test instead of hanging it (its pidfd is waited on).
fn exited_within(child: &mut Child, patience: Duration) -> Option<std::process::ExitStatus> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let pid = rustix::process::Pid::from_child(child);
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let patience = Timespec::try_from(patience).unwrap();
    poll(&mut fds, Some(&patience)).unwrap();
    child.try_wait().unwrap()
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
fn a_daemon_whose_recording_could_not_be_written_says_so_and_fails() {
    // `/dev/full` takes the log's opening, buffered, and fails its flush at the stop.
    let mut daemon = Daemon::start_with(&["--record", "/dev/full"], Stdio::piped());
    daemon.ok(&["load", "blob:b1", "--wait"]);
    daemon.ok(&["shutdown"]);
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
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Ended { .. })), "the stop ends it");
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Done)));
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::ShuttingDown)));
    assert!(matches!(read_msg(&mut asker), Some(ServerMsg::Done)), "told once it is over");
    assert!(daemon.child.wait().unwrap().success());
    assert!(!daemon.socket.exists());
}

#[test]
fn an_idle_daemon_lets_go_of_the_requests_that_ended() {
    // Nothing is kept once let go of: b1's asset is evicted as soon as the daemon drops it.
    let daemon = Daemon::start(&["--bytes-resident-max", "1"]);
    let mut watch = greeted(&daemon.socket);
    watch.write_all(&encode_frame(&ClientMsg::Watch).unwrap()).unwrap();
    daemon.ok(&["load", "blob:b1", "--wait"]);
    // No command follows (a watch reads no table): only the daemon's own sweep lets go of b1.
    // A watch sends a status every 250 ms: 240 of them is a minute's patience.
    let mut statuses = 0;
    loop {
        match read_msg(&mut watch) {
            Some(ServerMsg::Event(e)) if e.kind == EventKind::Evicted => break,
            Some(ServerMsg::Status(_)) => statuses += 1,
            Some(_) => {}
            None => panic!("the watch ended before b1 was let go of"),
        }
        assert!(statuses < 240, "b1 is still held a minute after it ended");
    }
    drop(watch);
    daemon.stop();
}

#[test]
fn a_daemon_whose_runtime_cannot_start_leaves_no_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run").join("ctl.sock");
    let log = dir.path().join("no such folder").join("session.log");
    let err = serve_refused(dir.path(), &socket, &["--record", log.to_str().unwrap()]);
    assert!(err.contains("starting the runtime"), "{err}");
    assert!(!socket.exists(), "the socket file is removed");
}

#[test]
fn an_in_flight_list_longer_than_a_frame_comes_in_pages_that_list_every_request_once() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000"]);
    let mut s = greeted(&daemon.socket);
    // 1 MiB at 1,000 bytes/s: every request for blob:big stays in flight for the test. About
    // 14 bytes each, 100,000 of them do not fit one 1 MiB frame.
    let big = AssetKey::parse("blob:big").unwrap();
    for _ in 0..4 {
        let keys = vec![big.clone(); 25_000];
        let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: false };
        s.write_all(&encode_frame(&load).unwrap()).unwrap();
        let answer = read_msg(&mut s);
        assert!(matches!(&answer, Some(ServerMsg::Loaded(made)) if made.len() == 25_000));
    }
    s.write_all(&encode_frame(&ClientMsg::InFlight).unwrap()).unwrap();
    let (mut decoder, mut buf) = (FrameDecoder::new(), vec![0u8; 64 << 10]);
    let (mut pages, mut listed) = (0, Vec::new());
    loop {
        match decoder.next_msg::<ServerMsg>().unwrap() {
            Some(ServerMsg::InFlight(page)) => {
                pages += 1;
                listed.extend(page.iter().map(|r| r.request));
            }
            Some(ServerMsg::Done) => break,
            Some(other) => panic!("not a page: {other:?}"),
            None => {
                let want = buf.len().min(decoder.room());
                let n = s.read(&mut buf[..want]).unwrap();
                assert!(n > 0, "the daemon closed the connection mid-answer");
                decoder.push(&buf[..n]);
            }
        }
    }
    assert!(pages >= 2, "{pages} page(s)");
    assert_eq!(listed.len(), 100_000);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "by id, each once");
    assert!(daemon.ok(&["inflight"]).ends_with("inflight: 100000\n"));
    daemon.stop();
}

#[test]
fn a_frame_sent_a_byte_at_a_time_gets_the_idle_timeout_for_the_whole_frame() {
    let daemon = Daemon::start(&["--idle-timeout-ms", "300"]);
    let mut s = greeted(&daemon.socket);
    // A frame announced as 64 bytes, then trickled: the client waits for the daemon to close
    // the connection, and each time 50 ms pass without it, sends one byte more. Each byte
    // comes well within the 300 ms idle timeout; the whole frame would take over 3 s.
    s.write_all(&64u32.to_le_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut sent = 0;
    let closed = loop {
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => break true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("the daemon read on instead of cutting the frame off: {other:?}"),
        }
        if sent == 64 || s.write_all(&[0]).is_err() {
            break sent < 64;
        }
        sent += 1;
    };
    assert!(closed, "the trickled frame was read whole ({sent} bytes)");
    daemon.status_works();
    daemon.stop();
}

#[test]
fn the_socket_is_private_and_unsafe_paths_are_refused() {
    let daemon = Daemon::start(&[]);
    let socket_meta = std::fs::metadata(&daemon.socket).unwrap();
    assert!(socket_meta.file_type().is_socket());
    assert_eq!(socket_meta.mode() & 0o777, 0o600);
    let dir_meta = std::fs::metadata(daemon.socket.parent().unwrap()).unwrap();
    assert_eq!(dir_meta.mode() & 0o777, 0o700);
    // A second daemon on a live socket is refused.
    let second = serve_at(daemon.dir.path(), &daemon.socket);
    assert!(second.contains("already listening"), "{second}");
    daemon.stop();

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = dir.path().join("target-file");
    std::fs::write(&target, b"keep me").unwrap();
    let link = run.join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(serve_at(dir.path(), &link).contains("symlink"));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me", "nothing changed through the link");
    let file = run.join("file.sock");
    std::fs::write(&file, b"x").unwrap();
    assert!(serve_at(dir.path(), &file).contains("regular file"));
    assert!(file.exists());
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(serve_at(dir.path(), &open.join("ctl.sock")).contains("mode 0700"));
    if is_root() {
        // A socket of another user (root can make one to test with).
        let foreign = run.join("foreign.sock");
        drop(std::os::unix::net::UnixListener::bind(&foreign).unwrap());
        std::os::unix::fs::chown(&foreign, Some(65_534), Some(65_534)).unwrap();
        assert!(serve_at(dir.path(), &foreign).contains("uid 65534"));
        assert!(foreign.exists());
    }
}

#[test]
fn a_connection_from_another_user_is_closed_before_a_byte_is_read() {
    if !is_root() {
        // Only root can run a client as another user; the check still runs for every
        // connection in every other test.
        return;
    }
    let daemon = Daemon::start(&[]);
    // Opened up on purpose so that another user can reach the socket at all.
    std::fs::set_permissions(
        daemon.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(BIN)
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .uid(65_534)
        .gid(65_534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no answer reaches another user: {out:?}");
    daemon.status_works();
    std::fs::set_permissions(
        daemon.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    daemon.stop();
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Starts a daemon at `socket` expecting a refusal; returns its error output.
fn serve_at(dir: &Path, socket: &Path) -> String {
    serve_refused(dir, socket, &[])
}

/// Starts a daemon at `socket` with `extra` arguments, expecting a refusal; returns its error
/// output.
fn serve_refused(dir: &Path, socket: &Path, extra: &[&str]) -> String {
    let pack = dir.join("refused.pack");
    if !pack.exists() {
        let mut writer = PackWriter::create(&pack).unwrap();
        writer.add("blob:x", &blob(b"x"), Codec::None, vec![]).unwrap();
        writer.finish().unwrap();
    }
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--pack")
        .arg(&pack)
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon refuses {}", socket.display());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_configuration_error_keeps_its_lines_and_escapes_what_else_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "workerz = 3\n").unwrap();
    let socket = dir.path().join("s.sock");
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    let field = lines.iter().position(|l| l.ends_with("workerz = 3"));
    let field = field.unwrap_or_else(|| panic!("the field's line: {err}"));
    assert!(lines[field + 1].ends_with("^^^^^^^"), "the caret under the field: {err}");
    // A key the file holds with an escape sequence reaches the terminal escaped.
    std::fs::write(&config, "\"x\u{1b}[2J\" = 3\n").unwrap();
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn a_configuration_that_is_not_a_regular_file_or_is_too_large_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let refused =
        |config: &Path| serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    // A named pipe with no writer: refused at once, not waited on.
    let fifo = dir.path().join("config.fifo");
    let owner_rw = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, owner_rw).expect("mkfifo");
    let err = refused(&fifo);
    assert!(err.contains("is not a regular file"), "{err}");
    assert!(refused(dir.path()).contains("is not a regular file"));
    // One line over the limit: refused by its size, and no part of it echoed.
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("workers = {}\n", "9".repeat(1 << 20))).unwrap();
    let err = refused(&huge);
    assert!(err.contains("is over 1048576 bytes") && err.len() < 1_000, "{}", err.len());
    // Just under it: parsed, and the parser's quote of the line is cut.
    std::fs::write(&huge, format!("workers = {}\n", "9".repeat(1_000_000))).unwrap();
    let err = refused(&huge);
    assert!(err.contains("parsing the configuration") && err.len() < 10_000, "{}", err.len());
}

#[test]
fn a_line_break_in_a_name_an_error_shows_cannot_forge_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("missing\nstreamctl: all is well");
    let out = Command::new(BIN).args(["pack", "ls"]).arg(&pack).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line, its break escaped: {err:?}");
    assert!(err.starts_with("streamctl: ") && err.contains(r"missing\nstreamctl: all"), "{err:?}");
    // A configuration's parse error keeps its lines, each indented under the first.
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "workerz = 3\n").unwrap();
    let socket = dir.path().join("s.sock");
    let err = serve_refused(dir.path(), &socket, &["--config", config.to_str().unwrap()]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() > 1 && lines[1..].iter().all(|l| l.starts_with("  ")), "{err}");
}
