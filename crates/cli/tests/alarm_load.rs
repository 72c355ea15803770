//! The alarm load report end to end: real alarms driven through the HTTP
//! API with known timings (readings dated by the test, acknowledgements by
//! a nurse, an escalation on a short ladder by the server's own timer),
//! then every figure of `GET /api/v1/reports/alarm-load` checked, with who
//! may read it, what each reader sees of patients, and the audit log.

mod common;

use common::*;
use medmesh_access::Role;
use medmesh_model::now_ms;
use medmesh_server::Config;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const DAY_MS: f64 = 86_400_000.0;

/// A SenML heart rate for `device` dated `t_ms` (whole seconds).
async fn pulse(s: &TestServer, device: &str, t_ms: i64, bpm: f64) {
    let (status, report) = s
        .device_post(
            &format!("/api/v1/devices/{device}/senml"),
            json!([{"bt": t_ms / 1000, "n": "heart_rate", "u": "/min", "v": bpm}]),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
}

/// The one alarm of `patient` raised at `raised_ms`, as the API has it now
/// (active, or resolved from the log).
async fn alarm_of(s: &TestServer, patient: &str, raised_ms: i64) -> Value {
    for state in ["active", "resolved"] {
        let (_, alarms) = s
            .get(&format!("/api/v1/alarms?state={state}&patient={patient}"))
            .await;
        if let Some(a) = alarms
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["raised_ms"] == raised_ms)
        {
            return a.clone();
        }
    }
    panic!("no alarm of {patient} raised at {raised_ms}");
}

async fn report(client: &reqwest::Client, s: &TestServer, query: &str) -> (u16, Value) {
    let r = client
        .get(s.url(&format!("/api/v1/reports/alarm-load?{query}")))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ward<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["wards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["ward"] == name)
        .unwrap_or_else(|| panic!("no ward {name} in {report}"))
}

fn rule<'a>(ward: &'a Value, name: &str) -> &'a Value {
    ward["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {ward}"))
}

async fn audit(s: &TestServer, query: &str) -> Value {
    let (status, entries) = s.get(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(status, 200, "{entries}");
    entries
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64()
        .is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarm_load_report_counts_real_alarms_with_known_timings() {
    // Low-priority alarms (a device's battery) climb a short ladder: level
    // 1 a second after the raise, level 2 a second later, then no more.
    // The pulse alarms are medium, which has no ladder: they never climb,
    // however slowly the test runs.
    let alarms = Config::from_toml(
        r#"
[alarms.escalation]
low = [
  { roles = ["nurse"] },
  { after = "1s", roles = ["nurse"] },
  { after = "2s", roles = ["physician"] },
]
"#,
    )
    .unwrap()
    .alarms;
    let s = start_with(|c| {
        c.alarms = alarms;
        // A reading below is dated two minutes ahead on purpose (a period's
        // edge), not a clock to set: no device-clock alarm for it.
        c.ingest.clock_skew_alarm = "5min".into();
    })
    .await;
    for (p, device) in [
        ("p1", "mon-1"),
        ("p2", "mon-2"),
        ("p3", "mon-3"),
        ("p4", "mon-4"),
    ] {
        s.admit(p, device).await;
    }
    let (status, _) = s
        .send(
            Method::POST,
            "/api/v1/patients",
            json!({"id": "p5", "name": "Patient p5", "ward": "Other", "bed": "9"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .send(
            Method::PUT,
            "/api/v1/devices/mon-5",
            json!({"patient_id": "p5"}),
        )
        .await;
    assert_eq!(status, 200);
    let nurse = clinician(&s, "nurse.load", Role::Nurse);
    let d = &s.running.access.directory;
    d.add_user("ops", Role::Operations, None, "a long test password")
        .unwrap();
    d.add_user(
        "pat",
        Role::Patient,
        Some(medmesh_model::PatientId::new("p1").unwrap()),
        "a long test password",
    )
    .unwrap();
    let ops = http_client(&d.create_token("ops", "tests").unwrap().0);
    let pat = http_client(&d.create_token("pat", "tests").unwrap().0);

    // The period starts 20 minutes ago (whole seconds, as SenML dates
    // them here); t(x) is x seconds after the period's start plus 20 s.
    // Pulse 135 scores 3 (RCP NEWS2 Chart 1): a medium alarm; 70 clears
    // it, at once (the tests' server has no clear delay).
    let since = (now_ms() / 1000 - 1200) * 1000;
    let t = |secs: i64| since + 20_000 + secs * 1000;

    // Raised before the period, resolved inside it: not counted.
    pulse(&s, "mon-1", since - 30_000, 135.0).await;
    pulse(&s, "mon-1", since + 10_000, 70.0).await;
    // A: cleared by itself exactly 60 s after its raise: counted as cleared.
    pulse(&s, "mon-1", t(0), 135.0).await;
    pulse(&s, "mon-1", t(60), 70.0).await;
    // B: 61 s: not.
    pulse(&s, "mon-1", t(120), 135.0).await;
    pulse(&s, "mon-1", t(181), 70.0).await;
    // C: acknowledged, then cleared by itself (somebody acted: not counted
    // as cleared unattended).
    pulse(&s, "mon-2", t(200), 135.0).await;
    let c = alarm_of(&s, "p2", t(200)).await;
    let (status, acked_c) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{}/acknowledge", c["id"])),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{acked_c}");
    pulse(&s, "mon-2", t(230), 70.0).await;
    // D: acknowledged and still open.
    pulse(&s, "mon-3", t(300), 135.0).await;
    let d_alarm = alarm_of(&s, "p3", t(300)).await;
    let (status, acked_d) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{}/acknowledge", d_alarm["id"])),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{acked_d}");
    // The delays the report must find: raise (the reading's time) to the
    // acknowledgement (the server's clock), as the API recorded them.
    let ack_delay = |acked: &Value| {
        acked["acknowledged"]["at_ms"].as_i64().unwrap() - acked["raised_ms"].as_i64().unwrap()
    };
    let (delay_c, delay_d) = (ack_delay(&acked_c), ack_delay(&acked_d));
    assert!(delay_c > 0 && delay_d > 0 && delay_c != delay_d);
    // F: another ward's alarm.
    pulse(&s, "mon-5", t(100), 135.0).await;

    // E: a battery at 10 %: a low-priority alarm nobody acknowledges,
    // climbing to level 2 by the server's escalation timer.
    let battery_at = now_ms() / 1000 * 1000;
    let (status, r) = s
        .device_post(
            "/api/v1/devices/mon-4/senml",
            json!([{"bt": battery_at / 1000, "n": "battery", "u": "%EL", "v": 10}]),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let e = loop {
        let e = alarm_of(&s, "p4", battery_at).await;
        if e["escalation_level"] == 2 {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no escalation to level 2: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(e["rule"], "battery-low");
    assert_eq!(e["priority"], "low");
    // A nurse closes it (a person resolving is not "cleared by itself").
    let (status, closed) = send_as(
        &nurse,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{}/resolve", e["id"])),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{closed}");

    // The period ends now; an alarm raised after it is the next period's.
    // (Dated two minutes ahead, within what the server accepts, so that it
    // is also after "now" when the default period is asked for below.)
    let until = now_ms();
    pulse(&s, "mon-1", (until / 1000 + 120) * 1000, 135.0).await;

    // Patient-days: each patient's time with a device assigned, from the
    // assignment (the registry's record of it) to the period's end.
    let (_, devices) = s.get("/api/v1/devices").await;
    let assigned_ms = |device: &str| -> i64 {
        let d = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device)
            .unwrap();
        let from = d["assignments"][0]["from_ms"].as_i64().unwrap();
        assert!(from > since && from < until);
        until - from
    };
    let test_days = ["mon-1", "mon-2", "mon-3", "mon-4"]
        .into_iter()
        .map(assigned_ms)
        .sum::<i64>() as f64
        / DAY_MS;
    let other_days = assigned_ms("mon-5") as f64 / DAY_MS;

    let query = format!("since_ms={since}&until_ms={until}");
    let (status, r) = report(&s.http, &s, &query).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["since_ms"].as_i64(), r["until_ms"].as_i64()),
        (Some(since), Some(until))
    );
    assert_eq!(r["quick_clear_s"], 60);
    assert!(r["patient_days_basis"].as_str().unwrap().contains("device"));
    assert_eq!(r["wards"].as_array().unwrap().len(), 2, "{r}");

    let w = ward(&r, "Test");
    assert!(close(&w["patient_days"], test_days), "{w}");
    assert_eq!(w["patients"], 4);
    assert_eq!(w["patients_without_device_time"], 0);
    let total = &w["total"];
    // A, B, C, D and E; not the one before the period, nor the one after.
    assert_eq!(total["alarms"], 5, "{w}");
    assert!(close(&total["per_patient_day"], 5.0 / test_days), "{w}");
    assert_eq!(total["cleared_unattended_60s"], 1);
    assert!(close(&total["cleared_unattended_60s_share"], 0.2));
    assert_eq!(total["acknowledged"], 2);
    assert!(
        close(&total["median_ack_ms"], (delay_c + delay_d) as f64 / 2.0),
        "{w}"
    );
    assert_eq!(
        total["escalations"],
        json!({"count": 2, "alarms": 1, "reached": {"1": 1, "2": 1}})
    );
    assert_eq!(total["still_open"], 1);

    let news2 = rule(w, "news2-single-parameter-3");
    assert_eq!(news2["alarms"], 4);
    assert!(close(&news2["per_patient_day"], 4.0 / test_days));
    assert_eq!(news2["cleared_unattended_60s"], 1);
    assert!(close(&news2["cleared_unattended_60s_share"], 0.25));
    assert_eq!(news2["acknowledged"], 2);
    assert!(close(
        &news2["median_ack_ms"],
        (delay_c + delay_d) as f64 / 2.0
    ));
    assert_eq!(
        news2["escalations"],
        json!({"count": 0, "alarms": 0, "reached": {}})
    );
    assert_eq!(news2["still_open"], 1);

    let battery = rule(w, "battery-low");
    assert_eq!(battery["alarms"], 1);
    assert!(close(&battery["per_patient_day"], 1.0 / test_days));
    assert_eq!(battery["cleared_unattended_60s"], 0);
    assert!(close(&battery["cleared_unattended_60s_share"], 0.0));
    assert_eq!(battery["acknowledged"], 0);
    assert_eq!(battery["median_ack_ms"], Value::Null);
    assert_eq!(
        battery["escalations"],
        json!({"count": 2, "alarms": 1, "reached": {"1": 1, "2": 1}})
    );
    assert_eq!(battery["still_open"], 0);
    assert_eq!(
        w["rules"][0]["rule"], "news2-single-parameter-3",
        "most alarms first"
    );

    // The administrator may see every patient: named.
    assert_eq!(
        w["top_patients"],
        json!([
            {"patient_id": "p1", "name": "Patient p1", "alarms": 2},
            {"patient_id": "p2", "name": "Patient p2", "alarms": 1},
            {"patient_id": "p3", "name": "Patient p3", "alarms": 1},
            {"patient_id": "p4", "name": "Patient p4", "alarms": 1},
        ])
    );
    assert_eq!(
        w["top_conditions"],
        json!([
            {"rule": "news2-single-parameter-3", "vital": "heart_rate", "alarms": 4},
            {"rule": "battery-low", "vital": e["vital"], "alarms": 1},
        ])
    );

    let other = ward(&r, "Other");
    assert!(close(&other["patient_days"], other_days));
    assert_eq!(other["total"]["alarms"], 1);
    assert_eq!(other["total"]["still_open"], 1);
    assert_eq!(other["total"]["cleared_unattended_60s"], 0);

    // One ward asked for: that ward alone, the same figures.
    let (status, only) = report(&s.http, &s, &format!("{query}&ward=Test")).await;
    assert_eq!(status, 200);
    assert_eq!(only["wards"], json!([w]));

    // The nurse of ward Test: her ward only, patients named (she may see
    // them); another ward is refused.
    let (status, mine) = report(&nurse, &s, &query).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["wards"], json!([w]));
    let (status, _) = report(&nurse, &s, &format!("{query}&ward=Other")).await;
    assert_eq!(status, 403);

    // Operations: every ward, the same figures, nobody named.
    let (status, fleet) = report(&ops, &s, &query).await;
    assert_eq!(status, 200, "{fleet}");
    let ops_ward = ward(&fleet, "Test");
    assert_eq!(ops_ward["total"], w["total"]);
    assert_eq!(ops_ward["rules"], w["rules"]);
    assert_eq!(
        ops_ward["top_patients"],
        json!([{"alarms": 2}, {"alarms": 1}, {"alarms": 1}, {"alarms": 1}])
    );
    assert!(!fleet.to_string().contains("Patient p"), "{fleet}");

    // A patient may not read it, even about their own ward.
    let (status, _) = report(&pat, &s, &query).await;
    assert_eq!(status, 403);

    // Bad periods are refused with a reason.
    for bad in [
        format!("since_ms={until}&until_ms={since}"),
        format!("since_ms={since}&until_ms={since}"),
        "since_ms=0&until_ms=40000000000".to_string(),
        "since_ms=yesterday".to_string(),
        "from=0".to_string(),
    ] {
        let (status, answer) = report(&s.http, &s, &bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"]["reason"].as_str().is_some(), "{answer}");
    }
    // Without a period: the 24 hours up to now, which hold the alarm
    // raised before `since` too, but not yet the one dated ahead.
    let (status, day) = report(&s.http, &s, "ward=Test").await;
    assert_eq!(status, 200);
    assert_eq!(ward(&day, "Test")["total"]["alarms"], 6);

    // Audited: each reading of the report, each refusal, and each patient
    // named to the nurse.
    let read = audit(&s, "actor=nurse.load&action=read%20alarm%20load%20report").await;
    let named: Vec<_> = read
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["patient"].as_str())
        .collect();
    assert_eq!(named.len(), 4, "{read}");
    assert!(["p1", "p2", "p3", "p4"].iter().all(|p| named.contains(p)));
    let refused = audit(
        &s,
        "actor=nurse.load&action=read%20alarm%20load%20report%20of%20ward%20%22Other%22",
    )
    .await;
    assert_eq!(refused[0]["outcome"], "denied", "{refused}");
    let refused = audit(&s, "actor=pat&action=read%20alarm%20load%20report").await;
    assert_eq!(refused[0]["outcome"], "denied", "{refused}");
    let ops_read = audit(&s, "actor=ops").await;
    assert!(
        ops_read
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["patient"].is_null()),
        "operations read no patient: {ops_read}"
    );
}
