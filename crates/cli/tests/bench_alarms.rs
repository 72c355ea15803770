//! `medmesh bench alarms` at a tiny scale: every provoked alarm is matched to
//! the publish that caused it, on medmesh's live stream and on the Mosquitto
//! side, and none is missed. Figures are not checked: timing belongs to the
//! full benchmark on a quiet machine.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_provoked_alarm_is_matched_to_its_publish_and_none_is_missed() {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["bench", "alarms", "--devices", "20", "--warmup", "1s"])
        .args(["--measure", "3s", "--alarms-per-second", "3"])
        .args(["--compare", "mosquitto", "--json", "--work-dir"])
        .arg(work.path())
        .env("MEDMESH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Generous, only so a hang fails instead of blocking the suite.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench alarms did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "bench alarms failed: {:?}",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    let systems = report["systems"].as_array().unwrap();
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
        let name = &s["system"];
        assert_eq!(s["connected"], 20, "{name}: every device connected");
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
    // The stream carried the readings too, as the dashboard's does: 20
    // devices at 1 Hz for at least the 3 s measured.
    let events = systems[0]["stream_events"].as_u64().unwrap();
    assert!(events >= 60, "{events} stream events");
    assert_eq!(systems[0]["stream_resyncs"], 0);
}
