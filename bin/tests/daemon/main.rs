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

#[path = "../common/snapshot.rs"]
mod common;
mod setup;
mod stopping;

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
        let child = Command::new(BIN)
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
        Self::listening(child, dir, socket)
    }

    /// The daemon `child` (its stdout piped), once it says it listens: killed as it is dropped.
    fn listening(mut child: Child, dir: tempfile::TempDir, socket: PathBuf) -> Self {
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

/// Asserts that the daemon closed the connection: the next read finds its end, where a
/// connection left open would time out.
fn assert_closed(stream: &mut UnixStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{what}: the connection is still open ({other:?})"),
    }
}

/// The next message but a waited load's `Waiting`s, which come as the load takes its time.
fn read_answer(stream: &mut UnixStream) -> Option<ServerMsg> {
    std::iter::from_fn(|| read_msg(stream)).find(|m| !matches!(m, ServerMsg::Waiting { .. }))
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

/// A process's exit status once it exited, or `None` if it still runs after `patience`: a
/// process that never stops fails the test instead of hanging it (its pidfd is waited on).
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
fn a_waited_load_hears_the_daemon_still_waits_and_gives_up_once_it_stops_answering() {
    // 1 MiB at 1,000 bytes/s: the load stays in flight for the test.
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000"]);
    let mut s = greeted(&daemon.socket);
    let keys = vec![AssetKey::parse("blob:big").unwrap()];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    let Some(ServerMsg::Loaded(made)) = read_msg(&mut s) else { panic!("no Loaded") };
    let waiting = read_msg(&mut s);
    let told =
        matches!(waiting, Some(ServerMsg::Waiting { request, .. }) if request == made[0].request);
    assert!(told, "{waiting:?}");
    drop(s);
    // A client waiting on the load while the daemon stops answering (stopped, not gone).
    let mut client = Command::new(BIN)
        .args(["load", "blob:big", "--wait", "--answer-timeout-ms", "1000", "--socket"])
        .arg(&daemon.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut loaded = String::new();
    BufReader::new(client.stdout.take().unwrap()).read_line(&mut loaded).unwrap();
    assert!(loaded.contains("key=blob:big"), "{loaded}");
    let pid = rustix::process::Pid::from_child(&daemon.child);
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let status = exited_within(&mut client, Duration::from_secs(30));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "the client gave up: {status:?}");
    let mut stderr = String::new();
    client.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("no answer from the daemon within 2000 ms"), "{stderr}");
    daemon.stop();
}

#[test]
fn a_waited_load_that_outlasts_the_answer_timeout_still_ends_as_it_should() {
    // 1 MiB at 300,000 bytes/s: about 3.5 s, past the 2 s a waited load goes without a word.
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "300000"]);
    let loaded = daemon.ok(&["load", "blob:big", "--wait", "--answer-timeout-ms", "1000"]);
    assert!(loaded.contains("state=ready"), "{loaded}");
    daemon.stop();
}

#[test]
fn status_load_stats_inflight_cancel_reprioritise_and_shutdown() {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000", "--worker-nice", "3"]);
    assert!(daemon.ok(&["status"]).contains("worker_count=2 queue_capacity=64 in_flight=0"));
    let status: serde_json::Value =
        serde_json::from_str(&daemon.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["worker_nice"], 3, "the status says how the workers run: {status}");
    let loaded = daemon.ok(&["load", "blob:b1", "blob:b2", "--wait"]);
    assert_eq!(loaded.matches("state=ready").count(), 2, "{loaded}");
    let failed = daemon.ctl(&["load", "blob:bad", "--wait"]);
    assert!(!failed.status.success(), "a failed load exits non-zero");
    assert!(String::from_utf8_lossy(&failed.stdout).contains("state=failed"));
    // 1 MiB at 1,000 bytes/s stays in flight for the rest of the test: never urgent, whose
    // read would go on at once.
    let big = daemon.ok(&["load", "blob:big", "--priority", "background", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(big.lines().next().unwrap()).unwrap()
        ["request"]["id"]
        .to_string();
    assert!(daemon.ok(&["inflight"]).contains("key=blob:big"));
    daemon.ok(&["reprioritize", "low", &id]);
    assert!(daemon.ok(&["inflight"]).contains("priority=low"));
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
fn waited_loads_print_json_lines_each_one_field_named_for_its_kind_as_snapshotted() {
    let daemon = Daemon::start(&[]);
    let mut text = String::new();
    // One load at a time, so that the lines' order is the daemon's, not a race's.
    for key in ["blob:b1", "blob:bad"] {
        let out = daemon.ctl(&["load", key, "--wait", "--json"]);
        assert_eq!(out.status.success(), key == "blob:b1", "{key}: {out:?}");
        text.push_str(&format!("$ streamctl load {key} --wait --json\n"));
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect(line);
            if let Some(state) = value["request"]["state"].as_str() {
                // Read as the request was made: the daemon's actors may have queued it by then.
                let masked = line.replace(&format!(r#""state":"{state}""#), r#""state":"[made]""#);
                text.push_str(&format!("{masked}\n"));
            } else {
                assert!(value["ended"]["state"].is_string(), "{line}");
                text.push_str(&format!("{line}\n"));
            }
        }
        text.push('\n');
    }
    assert!(text.contains(r#""error":null"#), "a ready load's error is null: {text}");
    common::snapshot("cli_load_wait_json", &text);
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
    assert_closed(&mut s, "a malformed payload");
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
    assert_closed(&mut s, "a load of too many keys");
    daemon.status_works();
    // A length prefix over the limit: refused before any payload.
    let mut s = connect(&daemon.socket);
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(_))));
    assert_closed(&mut s, "a length over the limit");
    daemon.status_works();
    // Half a frame, left hanging: closed at the idle timeout.
    let mut s = greeted(&daemon.socket);
    s.write_all(&[10, 0]).unwrap();
    assert_closed(&mut s, "half a frame past the idle timeout");
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
    daemon.stop();
}

#[test]
fn sixty_four_clients_at_once_are_each_served() {
    // The default idle timeout: a client this busy machine leaves waiting between its greeting
    // and its request is not closed for it.
    let daemon = Daemon::start(&[]);
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
fn a_bad_handshake_is_answered_then_closed_and_the_next_client_is_served() {
    let daemon = Daemon::start(&[]);
    // A wrong version.
    let mut s = connect(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Hello { version: 99 }).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(e)) if e.to_string().contains("99")));
    assert_closed(&mut s, "a wrong version");
    daemon.status_works();
    // A request before the handshake.
    let mut s = connect(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Status).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Error(_))));
    assert_closed(&mut s, "a request before the handshake");
    daemon.status_works();
    // A second hello: a client out of step with the protocol.
    let mut s = greeted(&daemon.socket);
    s.write_all(&encode_frame(&ClientMsg::Hello { version: PROTOCOL_VERSION }).unwrap()).unwrap();
    let answer = read_msg(&mut s);
    let refused = matches!(answer, Some(ServerMsg::Error(ProtocolError::HandshakeRequired)));
    assert!(refused, "{answer:?}");
    assert_closed(&mut s, "a second hello");
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
    let (daemon, s) = waiting_on_big();
    drop(s);
    wait_for_the_one_place(daemon);
}

#[test]
fn a_client_that_sends_more_then_vanishes_while_its_load_is_waited_on_frees_its_place() {
    let (daemon, mut s) = waiting_on_big();
    // Bytes the daemon does not read while it waits: a peek finds them, not the close; the
    // daemon's next `Waiting` meets the closed socket instead.
    s.write_all(&encode_frame(&ClientMsg::Status).unwrap()).unwrap();
    drop(s);
    wait_for_the_one_place(daemon);
}

/// A daemon of one place, and its one client, waiting on a load that outlasts the test by far
/// (1 MiB at 1,000 bytes/s).
fn waiting_on_big() -> (Daemon, UnixStream) {
    let daemon = Daemon::start(&["--io-bytes-per-sec-max", "1000", "--connections-max", "1"]);
    let mut s = greeted(&daemon.socket);
    let keys = vec![AssetKey::parse("blob:big").unwrap()];
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Loaded(_))), "waiting on blob:big");
    (daemon, s)
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
    stop_through(&mut welcomed, &mut daemon);
}

/// Stops `daemon` with a `Shutdown` sent on `stream`, a greeted connection: answered
/// `ShuttingDown`, then `Done` once it stopped, and the daemon exits 0.
fn stop_through(stream: &mut UnixStream, daemon: &mut Daemon) {
    stream.write_all(&encode_frame(&ClientMsg::Shutdown).unwrap()).unwrap();
    assert!(matches!(read_msg(stream), Some(ServerMsg::ShuttingDown)));
    assert!(matches!(read_msg(stream), Some(ServerMsg::Done)), "the daemon stopped");
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
fn a_waited_load_tells_each_end_as_it_comes_and_lets_go_of_it_while_the_rest_still_load() {
    // At 1,000 bytes/s, the worker that charges blob:big's 1 MiB (the one that read it, or
    // one whose read saw it counted first) waits about 17 minutes: either big or the small
    // blobs read in one window with b1 stay loading for the test, and the others end at once.
    let daemon = Daemon::start(&["--bytes-resident-max", "1", "--io-bytes-per-sec-max", "1000"]);
    let mut watch = greeted(&daemon.socket);
    watch.write_all(&encode_frame(&ClientMsg::Watch).unwrap()).unwrap();
    // Watching once its first status comes: no event after it is missed.
    assert!(matches!(read_msg(&mut watch), Some(ServerMsg::Status(_))));
    let mut s = greeted(&daemon.socket);
    let keys = ["b1", "big", "b2", "b3"];
    let keys = keys.map(|k| AssetKey::parse(&format!("blob:{k}")).unwrap()).to_vec();
    let load = ClientMsg::Load { keys, priority: Priority::Normal, wait: true };
    s.write_all(&encode_frame(&load).unwrap()).unwrap();
    assert!(matches!(read_msg(&mut s), Some(ServerMsg::Loaded(_))));
    // The daemon says it waits every 500 ms: 120 of them is a minute's patience.
    let mut waiting = 0;
    let first = loop {
        assert!(waiting < 120, "no end is told a minute after the fast reads ended");
        match read_msg(&mut s) {
            Some(ServerMsg::Waiting { .. }) => waiting += 1,
            Some(ServerMsg::Ended { key, .. }) => break key,
            other => panic!("expected an end while the rest still load, got {other:?}"),
        }
    };
    // Let go of once told, its asset is evicted under the 1-byte budget. A watch sends a
    // status every 250 ms: 240 of them is a minute's patience.
    let mut statuses = 0;
    loop {
        match read_msg(&mut watch) {
            Some(ServerMsg::Event(e))
                if e.kind == EventKind::Evicted && e.key == Some(first.clone()) =>
            {
                break
            }
            Some(ServerMsg::Status(_)) => statuses += 1,
            Some(_) => {}
            None => panic!("the watch ended before {first} was let go of"),
        }
        assert!(statuses < 240, "{first} is still held a minute after its end was told");
    }
    let inflight = daemon.ok(&["inflight"]);
    assert!(inflight.contains("state=loading"), "the rest still load: {inflight}");
    drop((watch, s));
    daemon.stop();
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
            // Closed with the byte just sent unread: the kernel resets the connection.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
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
