//! Alarm rules end to end: per-patient settings over the REST API (saved,
//! audited), profile thresholds with a sustained-for delay, NEWS2 SpO2
//! scale 2 on oxygen, rate of change, stale data on the server's timer,
//! low battery (SenML `%EL` and GATT 0x2A19) and falls, each seen on the
//! live stream (SSE) as the dashboard sees it.

mod common;

use common::*;
use medmesh_access::Role;
use reqwest::Method;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;

/// Posts one SenML pack for `device` over HTTP.
async fn senml(s: &TestServer, device: &str, pack: Value) {
    let (status, report) = s
        .device_post(&format!("/api/v1/devices/{device}/senml"), pack)
        .await;
    assert_eq!(status, 200, "{report}");
}

fn active(alarms: &Value, rule: &str) -> Vec<Value> {
    alarms
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == rule)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_thresholds_sustained_for_and_news2_scale_2_over_http() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let nurse = clinician(&s, "nurse.kim", Role::Nurse);
    let settings_url = s.url("/api/v1/patients/p1/alarm-settings");

    // Before: no settings, no profile rules.
    let (status, v) = s.get("/api/v1/patients/p1/alarm-settings").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["settings"].clone(), v["effective"].clone()),
        (Value::Null, Value::Null)
    );

    // Home COPD, SpO2 below 88 % for a minute, NEWS2 on scale 2.
    let body = json!({"profile": "home-copd", "thresholds": {"spo2": {"low": 88, "sustained_s": 60}}, "spo2_scale": 2});
    let (status, v) = send_as(&nurse, Method::PUT, settings_url.clone(), body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["effective"]["spo2_scale"], 2);
    assert_eq!(v["effective"]["thresholds"]["spo2"]["low"], 88.0);
    assert_eq!(v["effective"]["thresholds"]["spo2"]["sustained_s"], 60);
    assert_eq!(v["effective"]["stale_after_s"], 86_400);
    // Bad settings are refused with the reason, and change nothing.
    for (bad, reason) in [
        (json!({"profile": "icu"}), "adult-ward"),
        (json!({"spo2_scale": 3}), "scales 1 and 2"),
        (
            json!({"thresholds": {"spo2": {"low": 95, "high": 90}}}),
            "below high",
        ),
        (json!({"thresholds": {"pulse_ox": {"low": 1}}}), "pulse_ox"),
    ] {
        let (status, e) = send_as(&nurse, Method::PUT, settings_url.clone(), bad).await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["error"]["reason"].as_str().unwrap().contains(reason),
            "{e}"
        );
    }
    let (_, profiles) = s.get("/api/v1/alarm-profiles").await;
    assert_eq!(profiles["home-copd"]["thresholds"]["spo2"]["low"], 88.0);

    let mut live = Live::open(&s).await;
    // Ten minutes ago: NEWS2 counts only fresh readings (4 h by default).
    let t0 = (medmesh_model::now_ms() / 1000 - 600) as f64;
    // SpO2 86 %: below 88 but not yet for 60 s of sample time. On scale 1 it
    // would score 3 (row <=91); on scale 2 it scores 1 (row 86-87): no alarm.
    senml(
        &s,
        "mon-1",
        json!([{"bt": t0, "n": "spo2", "u": "%", "v": 86}]),
    )
    .await;
    senml(
        &s,
        "mon-1",
        json!([{"bt": t0 + 30.0, "n": "spo2", "u": "%", "v": 86}]),
    )
    .await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms, json!([]), "nothing before 60 s out of range");
    // 60 s after the first low reading: the threshold alarm.
    senml(
        &s,
        "mon-1",
        json!([{"bt": t0 + 60.0, "n": "spo2", "u": "%", "v": 85}]),
    )
    .await;
    let raised = live.alarm("raised", "threshold").await;
    assert_eq!(raised["priority"], "medium");
    assert_eq!(raised["vital"], "spo2");
    let message = raised["message"].as_str().unwrap();
    assert!(message.contains("below the low limit 88 %"), "{message}");
    assert!(message.contains("for 1 min"), "{message}");
    // On 2 L/min of oxygen, SpO2 97 %: the low limit clears, and scale 2
    // scores 97 on oxygen 3 (row >=97 on oxygen): the patient's one SpO2
    // alarm goes on, now for that NEWS2 red parameter alone.
    senml(
        &s,
        "mon-1",
        json!([{"bt": t0 + 90.0, "n": "oxygen_flow", "u": "L/min", "v": 2},
               {"n": "spo2", "u": "%", "v": 97}]),
    )
    .await;
    let red = live
        .event("alarm", |v| {
            v["change"] == "updated"
                && v["alarm"]["rule"] == "news2-single-parameter-3"
                && !v["alarm"]["message"].as_str().unwrap().contains("limit")
        })
        .await["alarm"]
        .clone();
    assert_eq!(red["id"], raised["id"], "one alarm per vital sign");
    assert_eq!(
        (red["vital"].clone(), red["priority"].clone()),
        (json!("spo2"), json!("medium"))
    );
    assert!(
        red["message"]
            .as_str()
            .unwrap()
            .starts_with("Oxygen saturation (SpO2) 97 % scores 3"),
        "{red}"
    );

    // The change is audited under the nurse's name.
    let (_, audit) = s
        .get("/api/v1/audit?actor=nurse.kim&action=change%20alarm%20settings")
        .await;
    assert!(!audit.as_array().unwrap().is_empty(), "{audit}");

    // Restart: settings and the alarm record survive.
    // The alarm log is written in the background: wait until it holds the
    // alarm's last change before stopping (the restart reads it back).
    let log = s.data_dir.path().join("alarms.jsonl");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let a: Value = serde_json::from_str(l).unwrap();
            a["id"] == red["id"] && a["rule"] == "news2-single-parameter-3"
        })
    {
        assert!(
            std::time::Instant::now() < deadline,
            "alarm log not written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.data_dir.path().join("alarm_settings.json").exists());
    let s = s.restart().await;
    let (_, v) = s.get("/api/v1/patients/p1/alarm-settings").await;
    assert_eq!(v["settings"]["profile"], "home-copd");
    assert_eq!(v["effective"]["spo2_scale"], 2);
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let spo2 = active(&alarms, "news2-single-parameter-3");
    assert_eq!(spo2.len(), 1, "{alarms}");
    assert_eq!(spo2[0]["id"], raised["id"]);
    // Back to the default: no profile rules.
    let (status, v) = s
        .send(
            Method::DELETE,
            "/api/v1/patients/p1/alarm-settings",
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["effective"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trend_battery_fall_and_stale_data_over_mqtt() {
    let s = start_with(|c| {
        c.rules.timer_interval_s = 1;
        // A profile from the configuration: pulse rising by more than 30/min
        // within 5 minutes, and no reading for 3 s is stale.
        c.rules.profiles.insert(
            "quick".into(),
            serde_json::from_value(json!({
                "stale_after_s": 3,
                "trends": [{"vital": "heart_rate", "rise": 30, "window_s": 300, "priority": "high"}]
            }))
            .unwrap(),
        );
    })
    .await;
    s.admit("p1", "mon-1").await;
    let (status, v) = s
        .send(
            Method::PUT,
            "/api/v1/patients/p1/alarm-settings",
            json!({"profile": "quick"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut live = Live::open(&s).await;
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    let publish = |topic: String, payload: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    let t0 = 1.76544e9;
    let pack = |v: Value| serde_json::to_vec(&v).unwrap();

    // A reading and a battery at 12 %EL: a low-priority alarm for p1.
    publish(
        topic("mon-1"),
        pack(json!([{"bt": t0, "n": "heart_rate", "u": "/min", "v": 70},
                    {"n": "battery", "u": "%EL", "v": 12}])),
    )
    .await;
    recv_ack(&mut acks).await;
    let battery = live.alarm("raised", "battery-low").await;
    assert_eq!(
        (battery["priority"].clone(), battery["device_id"].clone()),
        (json!("low"), json!("mon-1"))
    );
    assert_eq!(battery["patient_id"], "p1");
    let (_, devices) = s.get("/api/v1/devices").await;
    let mon = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap();
    assert_eq!(mon["battery_percent"], 12.0);

    // Pulse 70 -> 105 within a minute: rate of change.
    publish(
        topic("mon-1"),
        pack(json!([{"bt": t0 + 60.0, "n": "heart_rate", "u": "/min", "v": 105}])),
    )
    .await;
    recv_ack(&mut acks).await;
    let trend = live.alarm("raised", "rate-of-change").await;
    assert_eq!(trend["priority"], "high");
    assert!(
        trend["message"]
            .as_str()
            .unwrap()
            .contains("rose by 35 /min within 5 min"),
        "{trend}"
    );

    // A fall: high priority.
    publish(
        topic("mon-1"),
        pack(json!([{"bt": t0 + 61.0, "n": "fall", "vb": true}])),
    )
    .await;
    recv_ack(&mut acks).await;
    let fall = live.alarm("raised", "fall").await;
    assert_eq!(fall["priority"], "high");

    // The battery recovers, reported as a Bluetooth Battery Level (0x2A19).
    let gatt = medmesh_sources::mqtt::gatt_topic("mon-1", "2a19");
    publish(gatt, vec![90]).await;
    recv_ack(&mut acks).await;
    live.alarm("resolved", "battery-low").await;
    let (_, devices) = s.get("/api/v1/devices").await;
    let mon = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap();
    assert_eq!(mon["battery_percent"], 90.0);

    // Silence: the timer raises stale data; the next reading resolves it,
    // and a calm pulse resolves the trend alarm.
    let stale = live.alarm("raised", "stale-data").await;
    assert_eq!(stale["priority"], "medium");
    assert!(
        stale["message"]
            .as_str()
            .unwrap()
            .starts_with("No reading for"),
        "{stale}"
    );
    publish(
        topic("mon-1"),
        pack(json!([{"bt": t0 + 120.0, "n": "heart_rate", "u": "/min", "v": 72}])),
    )
    .await;
    recv_ack(&mut acks).await;
    live.alarm("resolved", "stale-data").await;
    live.alarm("resolved", "rate-of-change").await;

    // The fall is not resolved by readings: a clinician resolves it.
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let falls = active(&alarms, "fall");
    assert_eq!(falls.len(), 1, "{alarms}");
    let nurse = clinician(&s, "nurse.lee", Role::Nurse);
    let (status, a) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{}/resolve", fall["id"])),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let closed = live.alarm("resolved", "fall").await;
    assert_eq!(closed["resolved"]["by"], "nurse.lee");
}

fn battery_of(devices: &Value, id: &str) -> Value {
    devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {devices}"))["battery_percent"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn battery_levels_are_live_and_survive_a_restart() {
    let s = start().await;
    s.admit("p1", "watch-1").await;
    let mut live = Live::open(&s).await;
    senml(
        &s,
        "watch-1",
        json!([{"n": "battery", "u": "%EL", "v": 64}]),
    )
    .await;
    let ev = live
        .event("device_battery", |v| v["device_id"] == "watch-1")
        .await;
    assert_eq!(ev["percent"], 64.0, "{ev}");
    // Lower levels reach the stream as they come; a device assigned to
    // nobody keeps its level too.
    for v in [63.6, 62.9] {
        senml(&s, "watch-1", json!([{"n": "battery", "u": "%EL", "v": v}])).await;
    }
    senml(
        &s,
        "spare-2",
        json!([{"n": "battery", "u": "%EL", "v": 31}]),
    )
    .await;
    let ev = live.event("device_battery", |v| v["percent"] == 62.9).await;
    assert_eq!(ev["device_id"], "watch-1");
    live.event("device_battery", |v| v["device_id"] == "spare-2")
        .await;
    let s = s.restart().await;
    let (_, devices) = s.get("/api/v1/devices").await;
    assert_eq!(battery_of(&devices, "watch-1"), 62.9, "{devices}");
    assert_eq!(battery_of(&devices, "spare-2"), 31.0, "{devices}");
}
