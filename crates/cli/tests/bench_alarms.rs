//! `medmesh bench alarms` at a tiny scale: every provoked alarm is matched to
//! the publish that caused it, on medmesh's live stream and on the Mosquitto
//! side, and none is missed, run after run and with pipelining gateways.
//! Figures are not checked: timing belongs to the full benchmark on a quiet
//! machine.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `medmesh bench alarms ARGS --json` in a fresh work directory;
/// returns its report.
fn bench(args: &[&str]) -> Value {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["bench", "alarms", "--warmup", "1s", "--measure", "3s"])
        .args(["--alarms-per-second", "3", "--json", "--work-dir"])
        .arg(work.path())
        .args(args)
        .env("MEDMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Generous, only so a hang fails instead of blocking the suite.
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench alarms did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bench alarms failed: {:?}",
        out.status
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every alarm of a system's run matched to its own publish, none missed.
fn every_alarm_matched(s: &Value, connections: u64) {
    let name = &s["system"];
    assert_eq!(s["connected"], connections, "{name}: every connection up");
    // About 3 a second for 3 s; each one a device's own publish.
    let alarms = s["alarms"].as_u64().unwrap();
    assert!(alarms >= 5, "{name}: only {alarms} alarms provoked");
    assert_eq!(s["matched"], alarms, "{name}: every alarm matched: {s}");
    assert_eq!(s["missed"], 0, "{name}: {s}");
    assert_eq!(
        s["unexpected"], 0,
        "{name}: no alarm without its publish: {s}"
    );
    assert!(s["p99_ms"].as_f64().unwrap() >= s["p50_ms"].as_f64().unwrap());
    assert!(s["published_per_s"].as_f64().unwrap() > 0.0, "{name}: {s}");
}

#[test]
fn every_provoked_alarm_is_matched_to_its_publish_in_every_run() {
    let report = bench(&["--devices", "20", "--runs", "2", "--compare", "mosquitto"]);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for systems in runs {
        let systems = systems.as_array().unwrap();
        let names: Vec<&str> = systems
            .iter()
            .map(|s| s["system"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "medmesh -> live stream (SSE)",
                "Mosquitto + SQLite alerter",
                "Mosquitto fan-out (floor)"
            ]
        );
        for s in systems {
            every_alarm_matched(s, 20);
        }
        // The stream carried the readings too, as the dashboard's does: 20
        // devices at 1 Hz for at least the 3 s measured.
        let events = systems[0]["stream_events"].as_u64().unwrap();
        assert!(events >= 60, "{events} stream events");
    }
    // The summary: each system's p99 per run, median and worst among them.
    let summary = &report["summary"][0];
    assert_eq!(summary["system"], "medmesh -> live stream (SSE)");
    let p99s: Vec<f64> = summary["p99_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(p99s.len(), 2);
    let worst = p99s.iter().copied().fold(0.0, f64::max);
    assert_eq!(summary["p99_worst_ms"].as_f64().unwrap(), worst);
    assert_eq!(
        summary["p99_median_ms"].as_f64().unwrap(),
        p99s.iter().copied().fold(f64::INFINITY, f64::min),
        "the lower middle of two"
    );
    assert_eq!(summary["missed"], 0);
}

/// Gateways forwarding many monitors' packs at once, 64 in flight: medmesh
/// still judges each monitor's readings in order and misses no alarm.
#[test]
fn gateways_with_publishes_in_flight_miss_no_alarm() {
    let report = bench(&[
        "--devices",
        "40",
        "--gateways",
        "2",
        "--runs",
        "1",
        "--compare",
        "none",
    ]);
    assert_eq!(report["gateways"], 2);
    let medmesh = &report["runs"][0][0];
    every_alarm_matched(medmesh, 2);
    assert_eq!(report["summary"][0]["missed"], 0);
}
