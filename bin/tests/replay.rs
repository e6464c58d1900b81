//! `streamctl demo --record` and `streamctl replay`, as a user runs them, and `streamctl report`
//! of a demo's telemetry.

use std::process::Command;

use streamrt::messages::replay_log::{DecodeOutcome, LogReader, LogRecord, LogWriter};

fn streamctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).output().expect("runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Records a demo of `assets` assets into `demo.log` in `dir`; the log's path.
fn recorded_demo(dir: &tempfile::TempDir, assets: &str) -> String {
    let path = dir.path().join("demo.log");
    let log = path.to_str().unwrap().to_owned();
    let (ok, _, err) = streamctl(&["demo", "--assets", assets, "--record", &log]);
    assert!(ok, "demo failed: {err}");
    log
}

#[test]
fn a_recorded_demo_replays_with_every_terminal_state_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = recorded_demo(&dir, "240");
    let log = log.as_str();
    let (ok, out, err) = streamctl(&["replay", log, "--quiet"]);
    assert!(ok, "replay failed: {out}{err}");
    let checked: usize = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("replay: ")?.split(" requests end as recorded").next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no match line in {out}"));
    assert!(checked > 240, "only {checked} requests checked");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("replay: events="), "{out}");
    let hash = last.rsplit("hash=").next().unwrap();
    // The transcript is the same every time: --check accepts its hash and refuses another.
    assert!(streamctl(&["replay", log, "--quiet", "--check", hash]).0);
    let (ok, _, err) = streamctl(&["replay", log, "--quiet", "--check", "0000000000000000"]);
    assert!(!ok && err.contains("differs"), "{err}");
}

#[test]
fn a_demos_telemetry_reports_and_writes_a_chrome_trace_of_json_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.jsonl");
    let trace = dir.path().join("demo.trace.json");
    let (log, trace) = (log.to_str().unwrap(), trace.to_str().unwrap());
    let (ok, _, err) = streamctl(&["demo", "--assets", "120", "--telemetry", log]);
    assert!(ok, "demo failed: {err}");
    let (ok, out, err) = streamctl(&["report", log, "--chrome", trace]);
    assert!(ok, "report failed: {err}");
    assert!(out.contains("worker_count="), "{out}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().expect("traceEvents");
    assert!(events.iter().any(|e| e["ph"] == "X"), "a read or decode span at least");
    // Cut in its last line, as a demo killed mid-write leaves it: reported all the same.
    let len = std::fs::metadata(log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(log).unwrap().set_len(len - 10).unwrap();
    let (ok, out, err) = streamctl(&["report", log]);
    assert!(ok, "report failed: {err}");
    assert!(out.contains("worker_count=") && err.contains("is cut short"), "{out}{err}");
    // A malformed line, whole, after the first: the log is refused, naming the line, and the
    // earlier trace is left as it was, not replaced by one of the lines before it.
    let earlier = std::fs::read(trace).unwrap();
    let mut bytes = b"{\"v\":1,\"t_us\":0,\"frame\":0,\"event\":\"x\"}\nnot a record\n".to_vec();
    bytes.extend(std::fs::read(log).unwrap());
    std::fs::write(log, bytes).unwrap();
    let (ok, _, err) = streamctl(&["report", log, "--chrome", trace]);
    assert!(!ok && err.contains("line 2"), "{err}");
    assert_eq!(std::fs::read(trace).unwrap(), earlier, "no trace of a log that could not be read");
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "the log and the earlier trace, no temporary file: {left:?}");
}

#[test]
fn a_panic_message_a_log_holds_is_told_with_its_control_characters_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let log = recorded_demo(&dir, "30");
    // The first decode recorded as a value, now a decoder's panic whose message clears the
    // screen: the replay's decoder panics with it.
    let bytes = std::fs::read(&log).unwrap();
    let mut reader = LogReader::new(&bytes).unwrap();
    let mut writer = LogWriter::new(Vec::new(), &reader.header().clone()).unwrap();
    let mut changed = false;
    while let Some(mut record) = reader.next_record().unwrap() {
        if let LogRecord::Decode { outcome, .. } = &mut record {
            if !changed && matches!(outcome, DecodeOutcome::Value(_)) {
                *outcome = DecodeOutcome::Panicked("\u{1b}[2J cleared".into());
                changed = true;
            }
        }
        writer.append(&record).unwrap();
    }
    assert!(changed, "the demo decoded something");
    std::fs::write(&log, writer.into_inner()).unwrap();
    let (_, _, err) = streamctl(&["replay", &log, "--quiet"]);
    assert!(err.contains("panicked") && err.contains("\\u{1b}[2J cleared"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn a_damaged_log_is_refused_with_its_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.log");
    // A version far past any this build writes.
    std::fs::write(&path, b"STRMRLOG\xff\x00").unwrap();
    let (ok, _, err) = streamctl(&["replay", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("byte 8: version 255 is not supported"), "{err}");
}

#[test]
fn a_log_past_the_size_limit_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.log");
    // Sparse: its size says it is too large, and nothing of it need be read to know.
    std::fs::File::create(&path).unwrap().set_len((1 << 30) + 1).unwrap();
    let (ok, _, err) = streamctl(&["replay", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("over the 1073741824-byte limit"), "{err}");
}

#[test]
fn a_log_cut_short_replays_and_says_so_but_cannot_be_checked() {
    let dir = tempfile::tempdir().unwrap();
    let log = recorded_demo(&dir, "60");
    let (log, path) = (log.as_str(), std::path::Path::new(&log));
    let (ok, whole, _) = streamctl(&["replay", log, "--quiet"]);
    assert!(ok && !whole.contains("cut short"), "{whole}");
    // Cut at the session's shutdown, as a recorder whose process died would leave it.
    let mut bytes = std::fs::read(path).unwrap();
    let mut reader = LogReader::new(&bytes).unwrap();
    let shutdown = loop {
        let at = reader.offset();
        match reader.next_record().unwrap() {
            Some(LogRecord::Shutdown) => break at,
            Some(_) => {}
            None => panic!("a whole log records its shutdown"),
        }
    };
    bytes.truncate(usize::try_from(shutdown).unwrap());
    std::fs::write(path, &bytes).unwrap();
    let (ok, out, err) = streamctl(&["replay", log, "--quiet"]);
    assert!(ok, "a cut-short log still replays: {err}");
    assert!(out.contains("cut short"), "{out}");
    let hash = out.lines().last().unwrap().rsplit("hash=").next().unwrap().to_owned();
    let (ok, _, err) = streamctl(&["replay", log, "--quiet", "--check", &hash]);
    assert!(!ok && err.contains("needs a whole log"), "{err}");
}

#[test]
fn every_line_of_a_json_replay_parses_the_closing_figures_included() {
    let dir = tempfile::tempdir().unwrap();
    let log = recorded_demo(&dir, "60");
    let (ok, out, err) = streamctl(&["replay", &log, "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let closing = &lines.last().expect("lines")["replay"];
    assert_eq!(closing["events"].as_u64(), Some(lines.len() as u64 - 1));
    assert_eq!(closing["complete"], true);
    assert!(closing["hash"].as_str().is_some_and(|h| h.len() == 16), "{closing}");
}

#[test]
fn text_from_the_log_reaches_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.log");
    let hostile = "x\u{1b}]0;pwned\u{7}\nreplay: forged";
    let rt = streamrt::Runtime::builder()
        .source(streamrt::MemorySource::new())
        .record(&path, hostile)
        .build()
        .expect("a runtime");
    rt.shutdown();
    drop(rt);
    let (ok, out, err) = streamctl(&["replay", path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(!out.contains(|c: char| c.is_control() && c != '\n'), "{out:?}");
    assert!(!out.lines().any(|l| l.starts_with("replay: forged")), "{out}");
    assert!(out.contains(r"recorded by x\u{1b}]0;pwned\u{7}\nreplay: forged"), "{out}");
}
