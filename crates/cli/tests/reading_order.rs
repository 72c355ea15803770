//! Readings judged in their order and time, whatever the transport does:
//! pipelined MQTT publishes, readings that arrive late, and clocks that lie.
//! Pulse 140 scores 3 on NEWS2 (RCP NEWS2 2017 Chart 1, row >= 131) and so
//! raises the single-parameter alarm; 80 scores 0 (row 51-90).

mod common;

use common::*;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;

/// One heart-rate record at `t_s` (epoch seconds).
fn hr(t_s: i64, bpm: f64) -> Vec<u8> {
    json!([{"n": "heart_rate", "u": "/min", "v": bpm, "t": t_s}])
        .to_string()
        .into_bytes()
}

fn now_s() -> i64 {
    medmesh_model::now_ms() / 1000
}

/// Every alarm of patient `p1` resolved so far, from the alarm history.
async fn resolved_alarms(s: &TestServer) -> Vec<Value> {
    let (status, body) = s
        .get("/api/v1/alarms?state=resolved&patient=p1&limit=10000")
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

/// Issue "Alarms a ward can trust", deliverable 1: with 64 publishes in
/// flight on one connection, every short abnormal episode raises its alarm
/// (and the following normal reading resolves it). Before, the rules saw the
/// readings in the order their appends finished, and most dips were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dip_raises_its_alarm_with_64_publishes_in_flight() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(true)).await;
    s.admit("p1", "mon-1").await;
    let (client, mut acks) = mqtt_client_with_inflight(s.running.mqtt_addr, "mon-1", 64);
    const EPISODES: i64 = 1_000;
    // Three readings a second per episode, all in the past hour.
    let start = now_s() - 3 * EPISODES - 60;
    let mut sent = 0;
    for i in 0..EPISODES {
        let t = start + 3 * i;
        for (dt, bpm) in [(0, 80.0), (1, 140.0), (2, 80.0)] {
            client
                .publish(topic("mon-1"), QoS::AtLeastOnce, false, hr(t + dt, bpm))
                .await
                .unwrap();
            sent += 1;
        }
    }
    for _ in 0..sent {
        tokio::time::timeout(Duration::from_secs(60), acks.recv())
            .await
            .expect("every publish acknowledged")
            .expect("connection alive");
    }
    let alarms = resolved_alarms(&s).await;
    let red: Vec<&Value> = alarms
        .iter()
        .filter(|a| a["rule"] == "news2-single-parameter-3")
        .collect();
    assert_eq!(red.len() as i64, EPISODES, "one alarm per dip, none missed");
    // Each was raised by its own dip and resolved by the reading after it.
    let mut raised: Vec<i64> = red
        .iter()
        .map(|a| a["raised_ms"].as_i64().unwrap())
        .collect();
    raised.sort();
    let want: Vec<i64> = (0..EPISODES).map(|i| (start + 3 * i + 1) * 1000).collect();
    assert_eq!(raised, want);
    let (_, active) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(active, json!([]), "the last reading was normal");
}

/// A gateway forwarding what it buffered sends a recovery before the dip
/// that preceded it: the dip is still alarmed, raised at its own time and
/// resolved by the newer reading, both in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dip_that_arrives_after_its_recovery_is_still_alarmed() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(true)).await;
    s.admit("p1", "gw-1").await;
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "gw-1").await;
    let t = now_s() - 120;
    for (dt, bpm) in [(0, 80.0), (2, 82.0), (1, 145.0)] {
        client
            .publish(topic("gw-1"), QoS::AtLeastOnce, false, hr(t + dt, bpm))
            .await
            .unwrap();
        recv_ack(&mut acks).await;
    }
    let alarms = resolved_alarms(&s).await;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["raised_ms"], (t + 1) * 1000);
    assert_eq!(alarms[0]["value"], 145.0);
    assert!(
        alarms[0]["message"]
            .as_str()
            .unwrap()
            .contains("arrived late"),
        "{}",
        alarms[0]["message"]
    );
    // The latest value is still the newest reading, not the late one.
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 82.0);
}

/// Deliverable 2: a reading dated far ahead of the server clock is refused
/// per record on every route, counted, and never silences the present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_dated_in_the_future_are_refused_and_do_not_silence_the_present() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(true)).await;
    s.admit("p1", "mon-1").await;
    let year_ahead = now_s() + 365 * 86_400;

    // MQTT: the future heart rate is refused; a present 150 then alarms.
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    client
        .publish(
            topic("mon-1"),
            QoS::AtLeastOnce,
            false,
            hr(year_ahead, 70.0),
        )
        .await
        .unwrap();
    recv_ack(&mut acks).await;
    client
        .publish(topic("mon-1"), QoS::AtLeastOnce, false, hr(now_s(), 150.0))
        .await
        .unwrap();
    recv_ack(&mut acks).await;
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 150.0);
    let (_, active) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(active[0]["rule"], "news2-single-parameter-3", "{active}");

    // HTTP: every record refused answers 422 with the reason; a pack with
    // one good record stores it (200) and lists the refused one.
    let (status, body) = s
        .device_post(
            "/api/v1/devices/mon-1/senml",
            json!([{"n": "heart_rate", "u": "/min", "v": 60, "t": 1.0e300}]),
        )
        .await;
    // 1e300 s is no time at all: refused, not stored at some clamped date.
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["accepted"], 0);
    let (status, body) = s
        .device_post(
            "/api/v1/devices/mon-1/senml",
            json!([
                {"n": "spo2", "u": "%", "v": 97, "t": year_ahead},
                {"n": "spo2", "u": "%", "v": 95, "t": now_s()}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 0);
    let reason = body["rejected"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("ahead of the server clock"), "{reason}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["spo2"]["value"], 95.0);

    // A few seconds fast is a clock to set, not a reason to lose readings.
    let (status, _) = s
        .device_post(
            "/api/v1/devices/mon-1/senml",
            json!([{"n": "spo2", "u": "%", "v": 96, "t": now_s() + 30}]),
        )
        .await;
    assert_eq!(status, 200);

    // FHIR: effectiveDateTime in 2100 is refused per Observation.
    let (status, body) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/fhir/Observation",
            json!({
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2100-01-01T00:00:00Z",
                "valueQuantity": {"value": 75, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
            }),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Counted, per source, and the device list shows how far ahead it was.
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_future_dated_records_total{source=\"mqtt\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_future_dated_records_total{source=\"http\"}"
        ),
        3.0
    );
    let (_, devices) = s.get("/api/v1/devices").await;
    let mon = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap();
    // The last message (30 s fast) sets the offset shown.
    let offset = mon["clock_offset_ms"].as_i64().unwrap();
    assert!((20_000..=31_000).contains(&offset), "{offset}");
}

/// HL7 v2: an OBX dated in year 9999 is refused (AE naming it); the other
/// rows of the message are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hl7_row_dated_in_9999_is_refused_and_named_in_the_ack() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|c| c.devices.allow_anonymous = Some(true)).await;
    s.admit("p1", "bed-1").await;
    let now = chrono_like_hl7(medmesh_model::now_ms());
    let message = [
        format!("MSH|^~\\&|MON|ICU|MEDMESH|HOSP|{now}||ORU^R01|MSG9|P|2.5"),
        "PID|||p1||Doe^Jane".to_string(),
        format!("OBR|1|||vitals|||{now}"),
        "OBX|1|NM|8867-4^Heart rate^LN||66|/min^^UCUM|||||F|||99991231235959".to_string(),
        format!("OBX|2|NM|59408-5^SpO2^LN||97|%^^UCUM|||||F|||{now}"),
    ]
    .join("\r");
    let mut conn = tokio::net::TcpStream::connect(s.running.hl7_addr)
        .await
        .unwrap();
    let framed = [&[0x0b][..], message.as_bytes(), &[0x1c, 0x0d]].concat();
    conn.write_all(&framed).await.unwrap();
    let mut ack = Vec::new();
    while !ack.ends_with(&[0x1c, 0x0d]) {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the ACK");
        ack.extend_from_slice(&buf[..n]);
    }
    let ack = String::from_utf8_lossy(&ack);
    assert!(ack.contains("MSA|AE|MSG9"), "{ack}");
    assert!(ack.contains("ahead of the server clock"), "{ack}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["spo2"]["value"], 97.0);
    assert!(p["latest"]["heart_rate"].is_null(), "{p}");
}

/// `YYYYMMDDHHMMSS` (UTC) of epoch milliseconds, as HL7 v2 writes times.
fn chrono_like_hl7(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}
