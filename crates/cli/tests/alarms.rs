//! The alarm lifecycle over the API: raised by the rules, acknowledged,
//! snoozed and resolved by clinicians, recorded durably.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

/// Posts one SenML pack for `device` at time `t_s` (seconds).
async fn vitals(s: &TestServer, device: &str, t_s: f64, records: serde_json::Value) {
    let mut pack = records.as_array().unwrap().clone();
    pack[0]["bt"] = json!(t_s);
    let (status, report) = s
        .device_post(&format!("/api/v1/devices/{device}/senml"), json!(pack))
        .await;
    assert_eq!(status, 200, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_snooze_resolve_and_the_record_survives_a_restart() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    // Pulse 135 scores 3 (RCP NEWS2 Chart 1, pulse row >=131): a single red
    // parameter, a medium alarm (Chart 2: low-medium risk).
    vitals(
        &s,
        "mon-1",
        1.76544e9,
        json!([{"n": "heart_rate", "u": "/min", "v": 135}]),
    )
    .await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let id = alarms[0]["id"].as_u64().unwrap();
    assert_eq!(
        (alarms[0]["state"].as_str(), alarms[0]["priority"].as_str()),
        (Some("active"), Some("medium"))
    );

    // Who acts is whoever is signed in, not what the request claims.
    let nurse = clinician(&s, "nurse.jones", medmesh_access::Role::Nurse);
    let doctor = clinician(&s, "dr.okafor", medmesh_access::Role::Physician);
    let (status, a) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/acknowledge")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["state"], "acknowledged");
    assert_eq!(a["acknowledged"]["by"], "nurse.jones");
    let (status, a) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/snooze")),
        json!({"minutes": 10}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert!(a["snoozed_until_ms"].as_i64().unwrap() > a["acknowledged"]["at_ms"].as_i64().unwrap());

    // Restart: the acknowledgement is still there.
    let s = s.restart().await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms[0]["id"], id);
    assert_eq!(alarms[0]["state"], "acknowledged");

    let (status, a) = send_as(
        &doctor,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/resolve")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let (_, active) = s.get("/api/v1/alarms").await;
    assert_eq!(active, json!([]));
    let (_, resolved) = s.get("/api/v1/alarms?state=resolved").await;
    assert_eq!(resolved[0]["id"], id);
    assert_eq!(resolved[0]["resolved"]["by"], "dr.okafor");

    // The whole record of the alarm, across the restart: every change in
    // order, each with who and when.
    let (status, record) = s.get(&format!("/api/v1/alarms/{id}")).await;
    assert_eq!(status, 200, "{record}");
    let states: Vec<_> = record["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"active"), "{record}");
    assert_eq!(states.last(), Some(&"resolved"), "{record}");
    assert!(states.contains(&"acknowledged"), "{record}");
    assert!(
        record["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["snoozed_until_ms"].is_i64()),
        "the snooze is on record: {record}"
    );
    assert_eq!(record["alarm"]["resolved"]["by"], "dr.okafor");
    let (status, _) = s.get("/api/v1/alarms/424242").await;
    assert_eq!(status, 404);

    // History by patient and time of resolution, from the alarm log.
    let at = record["alarm"]["resolved"]["at_ms"].as_i64().unwrap();
    let (_, mine) = s
        .get(&format!(
            "/api/v1/alarms?state=resolved&patient=p1&since_ms={at}&until_ms={at}"
        ))
        .await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let (_, later) = s
        .get(&format!(
            "/api/v1/alarms?state=resolved&patient=p1&since_ms={}",
            at + 1
        ))
        .await;
    assert_eq!(later, json!([]));
    s.admit("p2", "mon-2").await;
    let (_, other) = s.get("/api/v1/alarms?state=resolved&patient=p2").await;
    assert_eq!(other, json!([]));
    let (status, e) = s.get("/api/v1/alarms?state=resolved&limit=0").await;
    assert_eq!(status, 400, "{e}");

    // A clinician's history holds only their care team's patients, and the
    // limit counts those: p3, on a ward outside the nurse's team and
    // resolved later, is neither shown nor crowds out p1.
    let (status, _) = s
        .send(
            Method::POST,
            "/api/v1/patients",
            json!({"id": "p3", "name": "Other Ward", "ward": "Other", "bed": "9"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .send(
            Method::PUT,
            "/api/v1/devices/mon-3",
            json!({"patient_id": "p3"}),
        )
        .await;
    assert_eq!(status, 200);
    vitals(
        &s,
        "mon-3",
        1.76544e9,
        json!([{"n": "heart_rate", "u": "/min", "v": 135}]),
    )
    .await;
    let (_, p3_alarms) = s.get("/api/v1/alarms?patient=p3").await;
    let p3_alarm = p3_alarms[0]["id"].as_u64().unwrap();
    let (status, _) = s
        .send(
            Method::POST,
            &format!("/api/v1/alarms/{p3_alarm}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, everyone) = s.get("/api/v1/alarms?state=resolved&limit=1").await;
    assert_eq!(everyone[0]["patient_id"], "p3", "{everyone}");
    let (status, seen) = send_as(
        &nurse,
        Method::GET,
        s.url("/api/v1/alarms?state=resolved&limit=1"),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    let ids: Vec<_> = seen.as_array().unwrap().iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(id)], "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news2_aggregate_of_7_or_more_raises_a_high_alarm() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    // RR 26 (3) + SpO2 92 (2) + SBP 95 (2) + pulse 120 (2) + temp 37.0 (0) = 9:
    // Chart 2, emergency response.
    vitals(
        &s,
        "mon-1",
        // A minute ago: NEWS2 counts only fresh readings.
        (medmesh_model::now_ms() / 1000 - 60) as f64,
        json!([
            {"n": "respiratory_rate", "u": "/min", "v": 26},
            {"n": "spo2", "u": "%", "v": 92},
            {"n": "systolic_bp", "u": "mm[Hg]", "v": 95},
            {"n": "heart_rate", "u": "/min", "v": 120},
            {"n": "body_temperature", "u": "Cel", "v": 37.0}
        ]),
    )
    .await;
    let (_, p) = s.get("/api/v1/patients/p1").await;
    let news2 = &p["news2"];
    assert_eq!(
        (&news2["score"], &news2["risk"], &news2["complete"]),
        (&json!(9), &json!("high"), &json!(true)),
        "{news2}"
    );
    // Each component with its value, score and age.
    let rr = news2["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["vital"] == "respiratory_rate")
        .unwrap();
    assert_eq!((&rr["value"], &rr["score"]), (&json!(26.0), &json!(3)));
    assert!(rr["age_s"].is_u64(), "{rr}");
    let alarms = p["alarms"].as_array().unwrap();
    let aggregate = alarms
        .iter()
        .find(|a| a["rule"] == "news2-aggregate")
        .expect("aggregate alarm");
    assert_eq!(aggregate["priority"], "high");
    assert_eq!(aggregate["vital"], serde_json::Value::Null);
    // The respiration rate of 26 is also a single red parameter.
    assert!(
        alarms
            .iter()
            .any(|a| a["rule"] == "news2-single-parameter-3" && a["vital"] == "respiratory_rate")
    );
}

/// RCP NEWS2 2017 Chart 1 rows "systolic <=90" and "temperature 36.1-38.0"
/// reached through unit conversions over SenML: 12.0 kPa is 90 mmHg (3),
/// 100.4 degF is 38.0 Cel (0); SpO2 91.4 % is charted 91 (row <=91, 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_1_rows_between_values_and_converted_units() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    vitals(
        &s,
        "mon-1",
        // A minute ago: NEWS2 counts only fresh readings.
        (medmesh_model::now_ms() / 1000 - 60) as f64,
        json!([
            {"n": "systolic_bp", "u": "kPa", "v": 12.0},
            {"n": "body_temperature", "u": "[degF]", "v": 100.4},
            {"n": "spo2", "u": "%", "v": 91.4}
        ]),
    )
    .await;
    let (_, p) = s.get("/api/v1/patients/p1").await;
    let red: Vec<_> = p["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "news2-single-parameter-3")
        .map(|a| a["vital"].as_str().unwrap())
        .collect();
    assert_eq!(red.len(), 2, "{p}");
    assert!(red.contains(&"systolic_bp") && red.contains(&"spo2"), "{p}");
    let news2 = &p["news2"];
    let score = |vital: &str| {
        news2["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["vital"] == vital)
            .map(|c| c["score"].clone())
    };
    assert_eq!(score("body_temperature"), Some(json!(0)), "{news2}");
    // Respiration and pulse not measured: at least 6.
    assert_eq!(
        (&news2["score"], &news2["complete"]),
        (&json!(6), &json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_alarm_actions_get_json_reasons() {
    let s = start().await;
    for (path, body, want_status, want) in [
        (
            "/api/v1/alarms/99/acknowledge",
            json!({}),
            404,
            "no active alarm with id 99",
        ),
        (
            "/api/v1/alarms/99/acknowledge",
            json!({"by": "someone else"}),
            400,
            "unknown field",
        ),
        ("/api/v1/alarms/99/snooze", json!({}), 400, "minutes"),
        (
            "/api/v1/alarms/99/snooze",
            json!({"minutes": 5000}),
            400,
            "minutes",
        ),
        (
            "/api/v1/alarms/99/silence",
            json!({}),
            404,
            "no alarm action",
        ),
        (
            "/api/v1/alarms/x/acknowledge",
            json!({}),
            400,
            "not a number",
        ),
    ] {
        let (status, err) = s.send(Method::POST, path, body.clone()).await;
        assert_eq!(status, want_status, "{path} {body}: {err}");
        assert_eq!(err["error"]["status"], want_status, "{path}: a JSON error");
        assert!(
            err["error"]["reason"].as_str().unwrap().contains(want),
            "{path}: {err}"
        );
    }
    let (status, err) = s.get("/api/v1/alarms?state=maybe").await;
    assert_eq!(status, 400, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_published_over_mqtt() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let addr = s.running.mqtt_addr;
    // The nurse-call system signs in with an alarm-feed token (the
    // administrator's: every patient; tests/alarm_feed.rs has care teams).
    let (feed, _) = s
        .running
        .access
        .directory
        .create_token_with(
            "admin",
            "nurse call",
            &[medmesh_access::TokenScope::AlarmFeed],
        )
        .unwrap();
    // Two messages: the subscription may come in between a raise and its
    // resolution, so the first one heard can be either.
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-q",
            "1",
            "-C",
            "2",
        ])
        .args(["-u", "admin", "-P", &feed])
        .args(["-t", "medmesh/v1/alarms/+"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    // Until the subscription is in place, alarms go unheard: keep raising
    // (SpO2 90 scores 3) and resolving (98 scores 0) with fresh readings.
    let mut t = 1.76544e9;
    let got = loop {
        vitals(&s, "mon-1", t, json!([{"n": "spo2", "u": "%", "v": 90}])).await;
        vitals(
            &s,
            "mon-1",
            t + 1.0,
            json!([{"n": "spo2", "u": "%", "v": 98}]),
        )
        .await;
        t += 2.0;
        if let Ok(status) =
            tokio::time::timeout(std::time::Duration::from_millis(200), sub.wait()).await
        {
            assert!(status.unwrap().success());
            break sub.wait_with_output().await.unwrap();
        }
        assert!(t < 1.76544e9 + 100.0, "no alarm over MQTT");
    };
    let messages: Vec<serde_json::Value> = String::from_utf8_lossy(&got.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages.len(), 2);
    let raised = messages
        .iter()
        .find(|m| m["change"] == "raised")
        .expect("a raise among two messages");
    assert_eq!(raised["alarm"]["patient_id"], "p1");
    assert_eq!(raised["alarm"]["vital"], "spo2");
    // SpO2 90 scores 3 (Chart 1 row <=91): a single red parameter, medium.
    assert_eq!(raised["alarm"]["priority"], "medium");
}
