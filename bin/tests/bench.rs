//! A smoke run of `streamctl bench`: every scenario at a tiny size completes and prints its
//! closing line. No figure is asserted; benchmarks measure, tests do not. And the bounds of
//! `streamctl`'s counts: out of range is a usage error.

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
    let cases: [(&[&str], &str); 7] = [
        (&["demo", "--assets", huge], "--assets"),
        (&["demo", "--requests-per-frame", "0"], "--requests-per-frame"),
        (&["simulate", "--entities", huge], "--entities"),
        (&["bench", "tiny", "--count", "0"], "--count"),
        (&["bench", "tiny", "--workers", "1000000"], "--workers"),
        (&["chaos", "--requests", huge], "--requests"),
        (&["watch", "--events", "0", "--socket", "/nonexistent"], "--events"),
    ];
    for (args, flag) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value") && stderr.contains(flag), "{args:?}: {stderr}");
    }
}
