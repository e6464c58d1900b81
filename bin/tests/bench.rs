//! A smoke run of `streamctl bench`: every scenario at a tiny size completes and prints its
//! closing line. No figure is asserted; benchmarks measure, tests do not. And how `streamctl`
//! meets bad arguments, a reader that goes away and a socket that never answers.

use std::process::Command;

#[test]
fn every_bench_scenario_completes_at_a_tiny_size_and_prints_its_closing_line() {
    let plots = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["bench", "all", "--count", "200", "--rounds", "1", "--frames", "20", "--plot"])
        .arg(plots.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let scenarios = [
        "throughput",
        "slow-storage",
        "tiny",
        "priority",
        "cancel",
        "scale",
        "frame",
        "telemetry",
        "coalesce",
    ];
    for scenario in scenarios {
        let prefix = format!("bench {scenario}: ours=");
        let line = stdout.lines().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("no closing line for {scenario} in {stdout}"));
        assert!(line.contains(" baseline=") && line.contains(" ratio="), "{line}");
    }
    for chart in ["throughput-vs-depth.svg", "latency-distribution.svg"] {
        let svg = std::fs::read_to_string(plots.path().join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{chart}");
    }
}

#[test]
fn json_output_is_one_object_with_the_closing_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["bench", "cancel", "--count", "100", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["scenario"], "cancel");
    for field in ["ours", "baseline", "ratio"] {
        assert!(value[field].is_number(), "{field} in {value}");
    }
}

#[test]
fn a_zero_or_huge_count_is_a_usage_error_naming_the_argument_not_a_panic() {
    let huge = "18446744073709551615";
    let cases: [(&[&str], &str); 14] = [
        // Past the counts whose runs would take more memory than a machine has (or never end).
        (&["demo", "--assets", "100001"], "--assets"),
        (&["simulate", "--zones", "501"], "--zones"),
        (&["chaos", "--requests", "250001"], "--requests"),
        (&["demo", "--assets", huge], "--assets"),
        (&["demo", "--requests-per-frame", "0"], "--requests-per-frame"),
        (&["demo", "--frame-budget", "0"], "--frame-budget"),
        (&["simulate", "--entities", huge], "--entities"),
        (&["bench", "tiny", "--count", "0"], "--count"),
        (&["bench", "tiny", "--workers", "1000000"], "--workers"),
        (&["chaos", "--requests", huge], "--requests"),
        (&["chaos", "--poison-keys", "100001"], "--poison-keys"),
        // Shares are from 0 to 1.
        (&["chaos", "--cancel-rate", "1.5"], "--cancel-rate"),
        (&["chaos", "--panic-rate", "NaN"], "--panic-rate"),
        (&["watch", "--events", "0", "--socket", "/nonexistent"], "--events"),
    ];
    for (args, flag) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value") && stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn a_log_that_cannot_be_written_whole_fails_the_command_that_asked_for_it() {
    // Every write to /dev/full fails (no space left), so each log ends at its first write.
    let cases: [&[&str]; 3] = [
        &["status", "--telemetry", "/dev/full"],
        &["demo", "--assets", "200", "--telemetry", "/dev/full"],
        &["demo", "--assets", "200", "--record", "/dev/full"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("log is incomplete"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_trace_too_long_to_keep_or_with_no_file_to_go_to_is_refused_before_the_first_frame() {
    let cases = [
        ("10001", "at most 10000 frames, not 10001"),
        ("3", "cannot create /nonexistent/trace.json"),
    ];
    for (frames, refusal) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
            .args(["simulate", "--frames", frames, "--trace", "/nonexistent/trace.json"])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(refusal), "{stderr}");
        assert!(out.stdout.is_empty(), "no frame ran: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn a_demo_too_long_to_request_at_its_rate_says_so_before_it_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["demo", "--assets", "7000", "--requests-per-frame", "1"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("raise --requests-per-frame or lower --assets"), "{stderr}");
}

/// Runs streamctl with `args`, reads the first line of its output and goes away; how it ended
/// (its status and what it wrote to stderr).
fn ended_by_a_reader_that_stops_after_one_line(args: &[&str]) -> (Option<i32>, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "{args:?} wrote nothing");
    // The reader is dropped: streamctl's next write finds the pipe closed.
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_reader_that_stops_early_ends_streamctl_quietly_as_a_closed_pipe_ends_any_unix_tool() {
    let (status, stderr) =
        ended_by_a_reader_that_stops_after_one_line(&["simulate", "--frames", "2000"]);
    assert_eq!(status, Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_replay_whose_reader_stops_early_ends_as_any_other_command_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let log = log.to_str().unwrap();
    let demo = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["demo", "--assets", "600", "--record", log])
        .output()
        .expect("runs");
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    // Its transcript (thousands of lines) is far past what a pipe holds: the replay is still
    // writing when the reader goes away. It writes through its own buffer, so the closed pipe
    // reaches it as an error, not as `println!`'s panic.
    let (status, stderr) = ended_by_a_reader_that_stops_after_one_line(&["replay", log]);
    assert_eq!(status, Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_usage_error_is_one_line_naming_the_problem_with_status_2() {
    let cases: [(&[&str], &str); 6] = [
        (&[], "a command or subcommand is missing"),
        (&["pack"], "a command or subcommand is missing"),
        (&["bogus"], "unrecognized subcommand 'bogus'"),
        (&["simulate", "--frames", "0"], "'--frames <FRAMES>'"),
        (&["cancel", "xyz"], "invalid value 'xyz'"),
        (&["pack", "ls", "--no-such-flag"], "'--no-such-flag'"),
    ];
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("streamctl: ") && stderr.contains(named), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Asked for, the help and the version are output, not errors.
    for asked in ["--help", "--version"] {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).arg(asked).output().expect("runs");
        assert!(out.status.success() && out.stderr.is_empty(), "{asked}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("streamctl"), "{asked}");
    }
}

#[test]
fn output_that_cannot_be_written_fails_with_one_line_not_a_panic() {
    // `/dev/full` takes no byte: every write fails with `ENOSPC`, as on a full disk.
    for args in [&["simulate", "--frames", "3"][..], &["--help"]] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
            .args(args)
            .stdout(full)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("No space left on device"), "{args:?}: {stderr}");
    }
}

/// A demo interrupted by `SIGINT` once it started: whether it ended, its output (its stderr
/// empty if `stderr_closed`, the test having closed its end of the pipe before the signal),
/// and the paths left in its temporary folder.
fn interrupted_demo(stderr_closed: bool) -> (bool, std::process::Output, Vec<std::path::PathBuf>) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // The demo records into a pipe this test holds open but never reads: its first bytes come
    // once the pack is built and the runtime started.
    let fifo = dir.path().join("record.fifo");
    let owner_rw = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, owner_rw).expect("mkfifo");
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    let reader = rustix::fs::open(&fifo, flags, rustix::fs::Mode::empty()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["demo", "--assets", "600", "--record"])
        .arg(&fifo)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let patience = Timespec::try_from(std::time::Duration::from_secs(60)).unwrap();
    let mut fds = [PollFd::new(&reader, PollFlags::IN)];
    assert_eq!(poll(&mut fds, Some(&patience)).unwrap(), 1, "the demo started recording");
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_some(), "its folder is made");
    if stderr_closed {
        // As a `tee` the same Ctrl-C ended would: the demo's last line meets a closed pipe.
        drop(child.stderr.take());
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let ended = poll(&mut fds, Some(&patience)).unwrap() == 1;
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    drop(reader);
    (ended, out, walk(&tmp))
}

#[test]
fn a_demo_interrupted_by_ctrl_c_leaves_no_temporary_file_and_ends_by_the_signal() {
    let (ended, out, left) = interrupted_demo(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(ended, "the demo did not end: {stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigint()), "ended by the signal: {stderr}");
    assert_eq!(stderr.lines().last(), Some("streamctl: interrupted by SIGINT"), "{stderr}");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_demo_interrupted_with_its_stderr_closed_still_ends_by_the_signal() {
    let (ended, out, left) = interrupted_demo(true);
    assert!(ended, "the demo did not end");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc_sigint()), "ended by the signal");
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `SIGINT`'s number.
fn libc_sigint() -> i32 {
    rustix::process::Signal::INT.as_raw()
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}

/// Runs `streamctl inflight --answer-timeout-ms 200` against a fake daemon that hands the
/// connection to `serve`, then holds it, reading nothing more, until the run is over (or 30 s
/// have passed: a client that waits for ever then sees it closed instead). Whether the client
/// succeeded, and its stderr.
fn inflight_against(
    serve: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (over, wait_over) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        serve(&mut conn);
        let _over_or_timed_out = wait_over.recv_timeout(std::time::Duration::from_secs(30));
    });
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["inflight", "--answer-timeout-ms", "200", "--socket"])
        .arg(&path)
        .output()
        .expect("runs");
    drop(over);
    held.join().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_client_facing_a_socket_that_never_answers_gives_up_and_says_so() {
    let (succeeded, stderr) = inflight_against(|_| ());
    assert!(!succeeded, "{stderr}");
    assert!(stderr.contains("no answer from the daemon"), "{stderr}");
}

#[test]
fn a_client_whose_daemon_goes_silent_after_its_first_answer_gives_up_and_says_so() {
    use std::io::{Read, Write};
    use streamrt::messages::protocol::{encode_frame, ServerMsg, PROTOCOL_VERSION};
    // Greets the client and sends one page of `inflight`, then neither the next page nor
    // `Done`.
    let (succeeded, stderr) = inflight_against(|conn| {
        let mut hello = [0u8; 64];
        let _ = conn.read(&mut hello).unwrap();
        let welcome = ServerMsg::Welcome { version: PROTOCOL_VERSION, source: "stuck".into() };
        conn.write_all(&encode_frame(&welcome).unwrap()).unwrap();
        conn.write_all(&encode_frame(&ServerMsg::InFlight(vec![])).unwrap()).unwrap();
    });
    assert!(!succeeded, "{stderr}");
    assert!(stderr.contains("no answer from the daemon within 200 ms"), "{stderr}");
}

#[test]
fn a_dependency_file_naming_an_asset_the_folder_lacks_is_refused_and_writes_no_pack() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("blob")).unwrap();
    std::fs::write(assets.join("blob").join("a"), b"a").unwrap();
    let deps = dir.path().join("deps.json");
    std::fs::write(&deps, br#"{"blob:missing": ["blob:a"]}"#).unwrap();
    let output = dir.path().join("out.pack");
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["pack", "build"])
        .arg(&assets)
        .arg("-o")
        .arg(&output)
        .arg("--deps")
        .arg(&deps)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("names blob:missing, which is not among the assets"), "{stderr}");
    assert!(!output.exists(), "no pack is left behind");
}

#[test]
fn pack_verify_json_lists_each_bad_entry_and_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir_all(assets.join("blob")).unwrap();
    std::fs::write(assets.join("blob").join("a"), vec![7u8; 5_000]).unwrap();
    std::fs::write(assets.join("blob").join("b"), vec![9u8; 5_000]).unwrap();
    let pack = dir.path().join("a.pack");
    let streamctl = || Command::new(env!("CARGO_BIN_EXE_streamctl"));
    let built = streamctl().args(["pack", "build"]).arg(&assets).arg("-o").arg(&pack).output();
    assert!(built.unwrap().status.success());
    let verified = |pack: &std::path::Path| {
        let out = streamctl().args(["pack", "verify", "--json"]).arg(pack).output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
        (out.status.success(), json)
    };
    let (ok, json) = verified(&pack);
    assert!(ok, "{json}");
    assert_eq!(json, serde_json::json!({ "entries": 2, "bad": [] }));
    // `b`'s last stored byte flipped: its checksum no longer holds.
    let mut bytes = std::fs::read(&pack).unwrap();
    let reader = streamrt::pack::PackReader::open(&pack, Default::default()).unwrap();
    let b = reader.entry("blob:blob/b").unwrap();
    bytes[(b.offset + b.stored_size - 1) as usize] ^= 0x01;
    drop(reader);
    std::fs::write(&pack, &bytes).unwrap();
    let (ok, json) = verified(&pack);
    assert!(!ok, "a bad entry fails the command");
    assert_eq!(json["entries"], 2);
    assert_eq!(json["bad"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["bad"][0]["key"], "blob:blob/b");
}
