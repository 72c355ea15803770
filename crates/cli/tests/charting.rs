//! Observations charted by hand (`POST /api/v1/patients/{id}/observation-sets`),
//! ACVPU by FHIR and HL7 v2 (built by fhir.resources and hl7apy), and the
//! observations-due timer (RCP NEWS2 Chart 4), all through the real server.

mod common;

use common::*;
use medmesh_access::Role;
use medmesh_model::now_ms;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

fn url(s: &TestServer, patient: &str) -> String {
    s.url(&format!("/api/v1/patients/{patient}/observation-sets"))
}

/// Audit entries of `action` by `actor`, newest first.
async fn audit(s: &TestServer, actor: &str, action: &str) -> Vec<Value> {
    let (status, entries) = s
        .get(&format!(
            "/api/v1/audit?actor={actor}&action={}",
            action.replace(' ', "%20")
        ))
        .await;
    assert_eq!(status, 200);
    entries.as_array().unwrap().clone()
}

/// A full set (RCP NEWS2 Chart 1): respiration 22 (2), SpO2 95 (1) on 2
/// L/min of oxygen (2), systolic 105 (1), pulse 95 (1), temperature 38.5
/// (1), alert (0): NEWS2 8, an aggregate of 7 or more (high).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nurse_charts_a_full_set_stored_scored_alarmed_and_audited() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let nurse = clinician(&s, "nurse.ana", Role::Nurse);
    let mut live = Live::open(&s).await;
    let taken = now_ms() - 60_000;
    let (status, set) = send_as(
        &nurse,
        Method::POST,
        url(&s, "p1"),
        json!({
            "taken": taken,
            "respiratory_rate": 22, "spo2": 95, "oxygen_flow": 2,
            "systolic_bp": 105, "diastolic_bp": 70, "heart_rate": 95,
            "body_temperature": {"value": 101.3, "unit": "[degF]"},
            "consciousness": "A"
        }),
    )
    .await;
    assert_eq!(status, 201, "{set}");
    assert_eq!(set["charted_by"], "nurse.ana");
    assert_eq!(set["taken_ms"], taken);
    assert_eq!(set["accepted"], 8);
    let news2 = &set["news2"];
    assert_eq!(
        (news2["score"].as_u64(), news2["complete"].as_bool()),
        (Some(8), Some(true)),
        "{news2}"
    );
    assert_eq!(news2["risk"], "high");
    assert_eq!(news2["assumed_alert"], false);
    assert_eq!(news2["assumed_air"], false);
    // 101.3 degF is 38.5 Cel, stored in the catalogue's unit.
    let temp = set["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "body_temperature")
        .unwrap();
    assert_eq!(temp["unit"], "Cel");
    assert!(
        (temp["value"].as_f64().unwrap() - 38.5).abs() < 1e-9,
        "{temp}"
    );

    // Stored like a device's readings, at the time they were taken.
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["respiratory_rate"]["value"], 22.0);
    assert_eq!(p["latest"]["respiratory_rate"]["time_ms"], taken);
    assert_eq!(p["latest"]["consciousness"]["value"], 0.0);
    assert_eq!(p["latest"]["oxygen_flow"]["value"], 2.0);
    assert_eq!(p["news2"]["score"], 8);
    // On the live stream, named as charted by the nurse, not a device.
    let ev = live
        .event("observations", |v| v["patient_id"] == "p1")
        .await;
    assert_eq!(ev["charted_by"], "nurse.ana");
    assert!(ev.get("device_id").is_none(), "{ev}");
    // Scored and alarmed like a device's readings: aggregate 8 is high.
    let alarm = live.alarm("raised", "news2-aggregate").await;
    assert_eq!(alarm["priority"], "high");
    // Audited: who, the patient, when taken, what.
    let entries = audit(&s, "nurse.ana", "chart observations").await;
    let e = &entries[0];
    assert_eq!(
        (e["patient"].as_str(), e["outcome"].as_str()),
        (Some("p1"), Some("allowed")),
        "{e}"
    );
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("POST /api/v1/patients/p1/observation-sets: "),
        "{detail}"
    );
    assert!(detail.contains(&format!("taken_ms {taken}")), "{detail}");
    assert!(detail.contains("respiratory_rate 22 /min"), "{detail}");
    assert!(detail.contains("consciousness 0 {ACVPU}"), "{detail}");
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "medmesh_ingest_samples_stored_total{source=\"chart\"}"),
        8.0
    );
    // Device list untouched: a chart is nobody's device.
    let (_, devices) = s.get("/api/v1/devices").await;
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_future_and_unpermitted_sets_are_refused_and_audited() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let nurse = clinician(&s, "nurse.ben", Role::Nurse);
    let refused = |status: u16, body: &Value| {
        (
            status,
            body["error"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    // Dated an hour ahead, like a device's reading: refused, nothing stored.
    let (status, body) = send_as(
        &nurse,
        Method::POST,
        url(&s, "p1"),
        json!({"taken": now_ms() + 3_600_000, "heart_rate": 80, "spo2": 97}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["accepted"], 0);
    let reason = body["rejected"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("ahead of the server clock"), "{reason}");
    // One bad value refuses the whole set, each problem named.
    let (status, body) = send_as(
        &nurse,
        Method::POST,
        url(&s, "p1"),
        json!({"spo2": 0, "heart_rate": 80, "body_temperature": 98.6, "consciousness": "Q"}),
    )
    .await;
    let (status, reason) = refused(status, &body);
    assert_eq!(status, 422);
    assert!(reason.contains("not measured"), "{reason}");
    assert!(reason.contains("body_temperature: "), "{reason}");
    assert!(reason.contains("plausible range 10..50 Cel"), "{reason}");
    assert!(reason.contains("not an ACVPU level"), "{reason}");
    let (status, body) = send_as(&nurse, Method::POST, url(&s, "p1"), json!({})).await;
    assert_eq!(refused(status, &body).0, 422);
    let (status, body) = send_as(&nurse, Method::POST, url(&s, "p1"), json!({"pulse": 80})).await;
    let (status, reason) = refused(status, &body);
    assert_eq!(status, 400);
    assert!(reason.contains("pulse"), "{reason}");
    let (status, body) = send_as(
        &nurse,
        Method::POST,
        url(&s, "p1"),
        json!({"taken": "yesterday", "heart_rate": 80}),
    )
    .await;
    assert_eq!(refused(status, &body).0, 400);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"], json!({}), "nothing stored: {p}");
    let failed = audit(&s, "nurse.ben", "chart observations").await;
    assert_eq!(failed.len(), 5);
    assert!(
        failed.iter().all(|e| e["outcome"] == "failed"),
        "{failed:?}"
    );

    // Not the care team's clinicians: refused (403), audited as denied.
    let d = &s.running.access.directory;
    d.add_user("ops", Role::Operations, None, "a long test password")
        .unwrap();
    d.add_user("dr.other", Role::Physician, None, "a long test password")
        .unwrap();
    let ops = http_client(&d.create_token("ops", "t").unwrap().0);
    let other = http_client(&d.create_token("dr.other", "t").unwrap().0);
    for (who, client) in [("ops", &ops), ("dr.other", &other), ("admin", &s.http)] {
        let (status, body) = send_as(
            client,
            Method::POST,
            url(&s, "p1"),
            json!({"heart_rate": 80}),
        )
        .await;
        assert_eq!(status, 403, "{who}: {body}");
        let e = &audit(&s, who, "chart observations").await[0];
        assert_eq!(
            (e["patient"].as_str(), e["outcome"].as_str()),
            (Some("p1"), Some("denied"))
        );
    }
    // An unknown patient looks like a refused one to those who cannot chart.
    let (status, _) = send_as(
        &other,
        Method::POST,
        url(&s, "nobody"),
        json!({"heart_rate": 80}),
    )
    .await;
    assert_eq!(status, 403);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"], json!({}));
}

/// ACVPU sent the standards' ways: FHIR R4 Observations built by
/// fhir.resources (valueCodeableConcept with the LOINC answer code) and an
/// HL7 v2 ORU^R01 built by hl7apy (a CWE OBX); "V" scores 3 on NEWS2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acvpu_by_fhir_and_hl7_v2() {
    let s = start().await;
    s.admit("f1", "mon-f1").await;
    let effective =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(60))
            .to_string();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/fhir_acvpu.py"
        ))
        .args([
            s.url("/api/v1/fhir/Observation"),
            "f1".into(),
            effective,
            "A".into(),
            "C".into(),
            "V".into(),
        ])
        .env("MEDMESH_TOKEN", &s.token)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "fhir.resources (pip install fhir.resources): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let (status, body) = said.trim().split_once(' ').unwrap();
    assert_eq!(status, "200", "{said}");
    let report: Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["accepted"], 3, "{report}");
    assert_eq!(report["rejected"][0]["index"], 3);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("LA17108-4 (V)"),
        "{report}"
    );
    // Same time: the last of the bundle (V, level 2) stands.
    let (_, p) = s.get("/api/v1/patients/f1").await;
    assert_eq!(p["latest"]["consciousness"]["value"], 2.0, "{p}");
    let alarms = p["alarms"].as_array().unwrap();
    let red = alarms
        .iter()
        .find(|a| a["rule"] == "news2-single-parameter-3")
        .unwrap_or_else(|| panic!("V scores 3: {alarms:?}"));
    assert_eq!(red["vital"], "consciousness");

    // HL7 v2: a CWE OBX with the LOINC answer code, beside a numeric one.
    let addr = s.running.hl7_addr;
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/hl7_send.py"
        ))
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            "ACVPU-1".into(),
            "H1".into(),
            "67775-7^Level of responsiveness^LN=LA17107-6^Painful^LN==CWE".into(),
            "8867-4^Heart rate^LN=72=/min^^UCUM".into(),
            "67775-7^Level of responsiveness^LN=248234008^Alert^SCT==CWE".into(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hl7apy (pip install hl7apy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ack = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        ack.starts_with("AE|ACVPU-1|2 stored, 1 rejected; OBX 3: "),
        "{ack}"
    );
    assert!(
        ack.contains("\"248234008\" (coding system \"SCT\") is not an ACVPU answer"),
        "{ack}"
    );
    let (_, p) = s.get("/api/v1/patients/H1").await;
    assert_eq!(
        p["latest"]["consciousness"]["value"], 3.0,
        "P is level 3: {p}"
    );
    assert_eq!(p["latest"]["heart_rate"]["value"], 72.0);
}

/// The observations-due timer end to end, on a profile whose every row of
/// RCP NEWS2 Chart 4 is one minute: a set charted 50 s ago falls due on
/// the timer; a device's partial set leaves it, a complete one resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observations_fall_due_on_the_timer_and_a_complete_set_resolves_them() {
    let s = start_with(|c| {
        c.rules.timer_interval_s = 1;
        c.rules.profiles.insert(
            "minute-ward".into(),
            serde_json::from_value(json!({"observations_due": {
                "score_0_s": 60, "score_1_to_4_s": 60, "red_or_5_to_6_s": 60, "score_7_or_more_s": 60
            }}))
            .unwrap(),
        );
    })
    .await;
    s.admit("p1", "mon-1").await;
    let (status, body) = s
        .send(
            Method::PUT,
            "/api/v1/patients/p1/alarm-settings",
            json!({"profile": "minute-ward"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let nurse = clinician(&s, "nurse.cy", Role::Nurse);
    let mut live = Live::open(&s).await;
    let (status, set) = send_as(
        &nurse,
        Method::POST,
        url(&s, "p1"),
        json!({"taken": now_ms() - 50_000, "respiratory_rate": 16, "spo2": 97,
               "systolic_bp": 120, "heart_rate": 70, "body_temperature": 37.0}),
    )
    .await;
    assert_eq!(status, 201, "{set}");
    let due = |p: &Value| {
        p["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "observations-due")
    };
    let raised = live.alarm("raised", "observations-due").await;
    assert_eq!(raised["priority"], "low");
    let message = raised["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Observations overdue: NEWS2 0 (RCP NEWS2 Chart 4: a complete set at least every 1 min)"
        ),
        "{message}"
    );
    // Raised by the timer, after the set fell due, not when it came.
    assert!(raised["raised_ms"].as_i64().unwrap() >= set["taken_ms"].as_i64().unwrap() + 60_000);
    // A monitor's SpO2 and pulse are no complete set.
    let pack = json!([{"n": "spo2", "u": "%", "v": 96}, {"n": "heart_rate", "u": "/min", "v": 72}]);
    let (status, _) = s.device_post("/api/v1/devices/mon-1/senml", pack).await;
    assert_eq!(status, 200);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert!(due(&p), "{p}");
    // All five parameters: resolved as the set is stored.
    let pack = json!([
        {"n": "respiratory_rate", "u": "/min", "v": 15}, {"n": "spo2", "u": "%", "v": 97},
        {"n": "systolic_bp", "u": "mm[Hg]", "v": 118}, {"n": "heart_rate", "u": "/min", "v": 71},
        {"n": "body_temperature", "u": "Cel", "v": 36.9}
    ]);
    let (status, _) = s.device_post("/api/v1/devices/mon-1/senml", pack).await;
    assert_eq!(status, 200);
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert!(!due(&p), "{p}");
    let resolved = live.alarm("resolved", "observations-due").await;
    assert_eq!(resolved["id"], raised["id"]);
    assert_eq!(resolved["resolved"]["by"], "medmesh");
}
