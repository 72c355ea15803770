//! Alarm fatigue, end to end over MQTT and the live stream: a pulse that
//! dips in and out of range is one alarm, not a flapping series; it shows
//! the worst reading; a profile limit and a NEWS2 red on the same vital
//! sign are one alarm naming both; and the live stream hears of an alarm
//! only when something a viewer sees changed.

mod common;

use common::*;
use medmesh_model::now_ms;
use reqwest::Method;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;

/// A SenML heart rate taken at `t_ms`.
fn hr(t_ms: i64, bpm: f64) -> Vec<u8> {
    serde_json::to_vec(&json!([
        {"bt": t_ms as f64 / 1000.0, "n": "heart_rate", "u": "/min", "v": bpm}
    ]))
    .unwrap()
}

/// Publishes `readings` (time, pulse) one by one, each acknowledged before
/// the next.
async fn publish(s: &TestServer, device: &str, readings: &[(i64, f64)]) {
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, device).await;
    for (t, bpm) in readings {
        client
            .publish(topic(device), QoS::AtLeastOnce, false, hr(*t, *bpm))
            .await
            .unwrap();
        recv_ack(&mut acks).await;
    }
    client.disconnect().await.unwrap();
}

fn alarm_events(events: &[(String, Value)]) -> Vec<(String, f64)> {
    events
        .iter()
        .filter(|(kind, _)| kind == "alarm")
        .map(|(_, v)| {
            (
                v["change"].as_str().unwrap().to_string(),
                v["alarm"]["worst"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// RCP NEWS2 Chart 1, pulse row >=131 scores 3 (a single red parameter).
/// At 1 Hz: 80 for 5 s, 135 and 138, 80 for 3 s, 140, then 80 for 40 s.
/// With the product's clear delay (30 s), that is one alarm, raised once,
/// shown at its worst (140), resolved 30 s after the last red reading's
/// successor; the live stream carries raised, two worse readings and the
/// resolution, and nothing for the 40-odd readings that changed nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulse_dipping_in_and_out_is_one_alarm_resolved_after_the_clear_delay() {
    let s = start_with(|c| c.rules.clear_after_s = 30).await;
    s.admit("p1", "mon-1").await;
    let mut live = Live::open(&s).await;
    let t0 = now_ms() - 120_000;
    let mut pulse = vec![80.0; 5];
    pulse.extend([135.0, 138.0, 80.0, 80.0, 80.0, 140.0]);
    pulse.extend([80.0; 40]);
    let readings: Vec<(i64, f64)> = pulse
        .iter()
        .enumerate()
        .map(|(i, bpm)| (t0 + i as i64 * 1000, *bpm))
        .collect();
    publish(&s, "mon-1", &readings).await;

    let resolved = live.alarm("resolved", "news2-single-parameter-3").await;
    // The last red reading was at 10 s; clear from 11 s; resolved by the
    // reading at 41 s.
    assert_eq!(resolved["resolved"]["at_ms"], t0 + 41_000, "{resolved}");
    assert_eq!(resolved["worst"], 140.0);
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .starts_with("Heart rate 140 /min scores 3 on NEWS2"),
        "{resolved}"
    );
    let id = resolved["id"].as_u64().unwrap();

    let (_, history) = s.get("/api/v1/alarms?state=resolved&patient=p1").await;
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "one episode: {history}"
    );
    // Its record names each kind of change.
    let (_, record) = s.get(&format!("/api/v1/alarms/{id}")).await;
    let kinds: Vec<_> = record["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["raised", "updated", "updated", "resolved"],
        "{record}"
    );

    // On the stream, the raise is claimed by nobody yet: exactly these.
    let events = alarm_events(&live.drain(Duration::from_millis(500)).await);
    assert_eq!(
        events,
        [
            ("raised".to_string(), 135.0),
            ("updated".to_string(), 138.0),
            ("updated".to_string(), 140.0),
        ],
        "no alarm event for readings that changed nothing"
    );
}

/// A patient's limit (set to high priority) and a NEWS2 red parameter on
/// the same vital sign are one alarm: the higher priority shows, and the
/// message names both reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_and_a_news2_red_on_one_vital_sign_are_one_alarm() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let (status, v) = s
        .send(
            Method::PUT,
            "/api/v1/patients/p1/alarm-settings",
            json!({"thresholds": {"heart_rate": {"high": 120, "priority": "high"}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let t = now_ms() - 10_000;
    // 125: above the limit only (NEWS2 pulse row 111-130 scores 2).
    publish(&s, "mon-1", &[(t, 125.0)]).await;
    // 135: the limit and NEWS2 (row >=131 scores 3).
    publish(&s, "mon-1", &[(t + 1_000, 135.0)]).await;
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    let alarms = alarms.as_array().unwrap();
    assert_eq!(alarms.len(), 1, "one alarm per vital sign: {alarms:?}");
    let a = &alarms[0];
    assert_eq!(
        (a["priority"].as_str(), a["rule"].as_str()),
        (Some("high"), Some("threshold"))
    );
    let message = a["message"].as_str().unwrap();
    assert!(
        message.contains("135") && message.contains("scores 3 on NEWS2"),
        "{message}"
    );
    assert!(message.contains("limit"), "{message}");
    assert_eq!(a["worst"], 135.0);
    // Back to 80: both reasons clear; resolved (no clear delay here).
    publish(&s, "mon-1", &[(t + 2_000, 80.0)]).await;
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(alarms, json!([]));
}

/// A monitor that reconnects before the server noticed its old connection
/// died (a Wi-Fi roam: the new connection takes the session over) is on
/// line: no device-offline alarm, which would otherwise stay raised until
/// its next reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_taking_its_session_over_raises_no_offline_alarm() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let t = now_ms() - 10_000;
    let (old, mut old_acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    old.publish(topic("mon-1"), QoS::AtLeastOnce, false, hr(t, 80.0))
        .await
        .unwrap();
    recv_ack(&mut old_acks).await;
    // The same device again, on a new connection; the old one is not closed.
    let (new, mut new_acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    new.publish(topic("mon-1"), QoS::AtLeastOnce, false, hr(t + 1_000, 81.0))
        .await
        .unwrap();
    recv_ack(&mut new_acks).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(alarms, json!([]), "the device is on line");
    let (_, devices) = s.get("/api/v1/devices").await;
    let mon = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap()
        .clone();
    assert_eq!(mon["online"], true, "{mon}");
}

/// A gateway forwards its buffer after newer readings arrived: a pulse of
/// 130 (above the patient's limit of 120; NEWS2 row 111-130 scores 2, so
/// only the limit) dated before a normal one that came first is still
/// recorded as the episode it was: raised at its time, resolved by the
/// newer reading, both on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reading_beyond_a_patients_limit_is_recorded_as_its_episode() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let (status, v) = s
        .send(
            Method::PUT,
            "/api/v1/patients/p1/alarm-settings",
            json!({"thresholds": {"heart_rate": {"high": 120}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let t = now_ms() - 60_000;
    publish(
        &s,
        "mon-1",
        &[(t, 80.0), (t + 2_000, 82.0), (t + 1_000, 130.0)],
    )
    .await;
    let (_, active) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(active, json!([]), "the present is normal");
    let (_, resolved) = s.get("/api/v1/alarms?state=resolved&patient=p1").await;
    let resolved = resolved.as_array().unwrap();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    let a = &resolved[0];
    assert_eq!(a["rule"], "threshold");
    assert_eq!(
        (a["raised_ms"].as_i64(), a["resolved"]["at_ms"].as_i64()),
        (Some(t + 1_000), Some(t + 2_000))
    );
    assert!(
        a["message"].as_str().unwrap().contains("arrived late"),
        "{a}"
    );
}
