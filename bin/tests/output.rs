//! What `streamctl` prints, as a user reads it: every command's help, `pack ls` and
//! `pack verify`, an in-process `status` and the fixture log's `report --json`,
//! snapshot-tested (`snapshots/cli_*.snap`); the JSON lines of `simulate` and `chaos`, whose
//! figures vary with timing, checked for their shape; and a demo's progress lines off a
//! terminal.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_streamctl");

#[path = "common/snapshot.rs"]
mod common;

/// Checks `text` against `snapshots/cli_{name}.snap`.
fn snapshot(name: &str, text: &str) {
    common::snapshot(&format!("cli_{name}"), text);
}

/// Runs `streamctl args` in `dir`, which must succeed, and returns its stdout.
fn stdout_of(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).current_dir(dir).args(args).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The subcommands a help text lists under `Commands:`, but `help`.
fn commands_listed(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The help of `path` (a command and its subcommands) and of every command below it, each
/// under a `$ streamctl ... --help` line.
fn helps_below(path: &[String], out: &mut String) {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let help = stdout_of(Path::new("."), &args);
    out.push_str(&format!("$ streamctl {}\n{help}\n", args.join(" ")));
    for command in commands_listed(&help) {
        let mut below = path.to_vec();
        below.push(command);
        helps_below(&below, out);
    }
}

#[test]
fn the_help_of_every_command_and_subcommand_is_as_snapshotted() {
    let mut text = String::new();
    helps_below(&[], &mut text);
    // Every command the top-level help lists was walked, pack's own subcommands too.
    for command in ["demo", "serve", "load", "watch", "replay", "simulate", "pack ls"] {
        assert!(text.contains(&format!("$ streamctl {command} --help\n")), "{command}");
    }
    snapshot("help", &text);
}

#[test]
fn pack_ls_and_verify_print_each_entry_and_the_totals_as_snapshotted() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("assets");
    for (path, bytes) in [
        ("blob/a.bin", b"hello".to_vec()),
        ("blob/deep/b.bin", b"compressible ".repeat(64)),
        ("texture/odd name.tex", b"not really a texture".to_vec()),
    ] {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    stdout_of(dir.path(), &["pack", "build", "assets", "-o", "assets.pack"]);
    let mut text = String::new();
    for args in [
        &["pack", "ls", "assets.pack"][..],
        &["pack", "ls", "assets.pack", "--json"],
        &["pack", "verify", "assets.pack"],
        &["pack", "verify", "assets.pack", "--json"],
    ] {
        let out = stdout_of(dir.path(), args);
        text.push_str(&format!("$ streamctl {}\n{out}\n", args.join(" ")));
    }
    assert!(text.contains("\"texture:texture/odd name.tex\""), "a key with a space is quoted");
    snapshot("pack_ls_and_verify", &text);
}

#[test]
fn status_without_a_socket_reports_an_in_process_runtime_as_snapshotted() {
    let mut text = String::new();
    for args in [
        &["status", "--workers", "2", "--queue-capacity", "64"][..],
        &["status", "--workers", "2", "--queue-capacity", "64", "--json"],
    ] {
        let out = stdout_of(Path::new("."), args);
        text.push_str(&format!("$ streamctl {}\n{out}\n", args.join(" ")));
    }
    assert!(text.contains("worker_count=2 queue_capacity=64 in_flight=0"), "{text}");
    snapshot("status_in_process", &text);
}

#[test]
fn report_json_of_the_fixture_log_is_one_line_as_snapshotted() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/telemetry-v1.jsonl");
    let out = stdout_of(Path::new("."), &["report", fixture, "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert!(report.is_object(), "{report}");
    snapshot("report_json_of_telemetry_v1_fixture", &out);
}

/// Each line of `out` as JSON, which must be an object with one field, named `kind`, holding
/// an object: that object.
fn json_lines<'a>(out: &'a str, kind: &str) -> impl Iterator<Item = serde_json::Value> + 'a {
    let kind = kind.to_owned();
    out.lines().map(move |line| {
        let value: serde_json::Value = serde_json::from_str(line).expect(line);
        let object = value.as_object().expect(line);
        assert!(object.len() == 1 && object[&kind].is_object(), "{line}");
        object[&kind].clone()
    })
}

#[test]
fn simulate_json_prints_a_line_per_frame_and_the_same_figures_as_its_text() {
    let args = ["simulate", "--frames", "6", "--zones", "4", "--entities", "50"];
    let text = stdout_of(Path::new("."), &args);
    let json = stdout_of(Path::new("."), &[&args[..], &["--json"]].concat());
    let (frames, last) = json.trim_end().rsplit_once('\n').expect("frames, then the summary");
    let numbers: Vec<u64> =
        json_lines(frames, "frame").map(|f| f["frame"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    let summary = json_lines(last, "simulate").next().unwrap();
    let hash = summary["order_hash"].as_str().expect("the hash is a hex string");
    assert!(text.ends_with(&format!("order_hash={hash}\n")), "{text}");
    for field in ["frames", "requested", "published", "budget_min", "budget_max"] {
        let figure = format!(" {field}={}", summary[field].as_u64().expect(field));
        assert!(text.contains(&figure), "{figure} in {text}");
    }
    // Said beside what the telemetry thread saw, which it would otherwise overstate as all.
    assert!(summary["telemetry_dropped"].is_u64() && text.contains(" telemetry_dropped="));
}

#[test]
fn chaos_json_is_one_object_with_its_figures_and_whether_every_promise_held() {
    let out = stdout_of(Path::new("."), &["chaos", "--requests", "200", "--json"]);
    let value: serde_json::Value = serde_json::from_str(out.trim_end()).expect(&out);
    assert_eq!(value["holds"], true, "{value}");
    let chaos = &value["chaos"];
    assert_eq!(chaos["requests"], 200, "{value}");
    assert_eq!(chaos["terminal"], 200, "{value}");
    assert!(chaos["escalated"].is_null() && chaos["restarts_by_actor"].is_object(), "{value}");
}

#[test]
fn a_demo_off_a_terminal_shows_its_progress_as_lines_on_stderr() {
    // 300 assets, of which more than 200 are requested directly, at 5 requests a frame: 40
    // frames of requests at least.
    let out = Command::new(BIN)
        .args(["demo", "--assets", "300", "--requests-per-frame", "5"])
        // Its own log lines would come after the last progress line.
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("demo: frame 15: ")), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("demo: frame 30: ")), "{stderr}");
    let frames = stdout.split(" over ").nth(1).and_then(|rest| rest.split(' ').next());
    let frames = frames.unwrap_or_else(|| panic!("the summary names its frames: {stdout}"));
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with(&format!("demo: frame {frames}: all ")), "{last} ({stdout})");
    assert!(last.ends_with(" requests terminal"), "{last}");
}

/// Checks a simulation's Chrome trace of `frames` frames: the engine thread's phases, in the
/// same order each frame, on one track; tasks and surfaces; every track named once.
fn assert_trace_of_frames(trace: &serde_json::Value, frames: usize) {
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let of = |ph: &str, cat: Option<&str>| -> Vec<&serde_json::Value> {
        let cat_is = |e: &&serde_json::Value| cat.is_none_or(|c| e["cat"] == c);
        events.iter().filter(|e| e["ph"] == ph).filter(cat_is).collect()
    };
    let phases = of("X", Some("phase"));
    let engine = phases[0]["tid"].as_u64();
    assert!(phases.iter().all(|p| p["tid"].as_u64() == engine), "phases run on one thread");
    let starts: Vec<u64> = phases.iter().map(|p| p["ts"].as_u64().unwrap()).collect();
    assert!(starts.is_sorted(), "phases are written in the order they ran: {starts:?}");
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.len() % frames, 0, "{names:?}");
    let per_frame = names.chunks(names.len() / frames).collect::<Vec<_>>();
    assert!(per_frame.windows(2).all(|w| w[0] == w[1]), "each frame's phases: {per_frame:?}");
    for phase in ["frame_start", "gameplay", "tasks_barrier", "present", "frame_end"] {
        assert_eq!(per_frame[0].iter().filter(|n| **n == phase).count(), 1, "{phase}");
    }
    // A task runs on the runtime's task threads, or on the engine thread that waits for it.
    assert!(!of("X", Some("task")).is_empty() && !of("X", Some("surface")).is_empty());
    let named: Vec<Option<u64>> = of("M", None).iter().map(|m| m["tid"].as_u64()).collect();
    assert!(of("X", None).iter().all(|e| named.contains(&e["tid"].as_u64())), "{named:?}");
    assert_eq!(named.len(), named.iter().collect::<std::collections::BTreeSet<_>>().len());
}

#[test]
fn a_trace_goes_to_its_file_whole_and_to_a_device_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.json");
    std::fs::write(&trace, "an earlier trace").unwrap();
    let args = ["simulate", "--frames", "3", "--zones", "4", "--entities", "50", "--quiet"];
    stdout_of(dir.path(), &[&args[..], &["--trace", "trace.json"]].concat());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert_trace_of_frames(&written, 3);
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["trace.json"], "no temporary file is left beside it");
    // The mode a file made in place would have (a temporary file's own is 0600).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    assert_eq!(mode(&trace), mode(&plain));
    std::fs::remove_file(&plain).unwrap();
    // A device is written to, never replaced.
    stdout_of(dir.path(), &[&args[..], &["--trace", "/dev/null"]].concat());
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&null.file_type()));
}
