//! The dashboard end to end in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core from `tests/browser/dashboard.mjs`.
//!
//! The test starts a server with a ward of 500 patients, each with a device
//! that publishes over MQTT, a nurse of the ward's care team and a patient
//! account; then runs the script, which signs in and asks (one line on
//! stdout) for readings to be published while the page is open. What the
//! page showed comes back as `RESULT` lines, asserted on here, and the
//! acknowledgement made in the page is checked on the API. The same page is
//! then used by the patient, a carer, an administrator and an operations
//! user (devices and their credentials only, no patient data). Screenshots go
//! to `target/tmp/dashboard/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/browser/`:
//! `scripts/test.sh` installs them.

mod common;

use common::*;
use medmesh_access::Role;
use reqwest::Method;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

const WARD_SIZE: usize = 500;
/// The patient seeded without a temperature.
const PARTIAL: usize = 2;
/// The patient seeded with SpO2 95 (NEWS2 1, no alarm).
const SPO2_95: usize = 3;
/// Patients monitored at home (no bed).
const HOME: [usize; 4] = [1, PARTIAL, SPO2_95, WARD_SIZE];
const NURSE: &str = "nurse.ward";
const PATIENT_USER: &str = "pat.0001";
const ADMIN: &str = "admin.ward";
const CARER: &str = "carer.0001";
const OPS: &str = "ops.ward";
const PASSWORD: &str = "a long test password";

fn patient(i: usize) -> String {
    format!("p-{i:04}")
}

fn device(i: usize) -> String {
    format!("bed-{i:04}")
}

/// A SenML pack of one reading, timestamped now by the server, or at `t_s`.
fn pack(name: &str, unit: &str, value: f64, t_s: Option<f64>) -> Vec<u8> {
    let mut record = json!({"n": name, "u": unit, "v": value});
    if let Some(t) = t_s {
        record["bt"] = json!(t);
    }
    serde_json::to_vec(&json!([record])).unwrap()
}

struct Publisher {
    client: rumqttc::AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<u16>,
}

impl Publisher {
    /// Publishes (QoS 1) every `(device, payload)` and waits for all PUBACKs,
    /// so the readings are stored before the browser is told to look.
    async fn publish(&mut self, messages: Vec<(String, Vec<u8>)>) {
        let n = messages.len();
        let acks = &mut self.acks;
        let client = &self.client;
        let send = async {
            for (dev, payload) in messages {
                client
                    .publish(topic(&dev), QoS::AtLeastOnce, false, payload)
                    .await
                    .unwrap();
            }
        };
        let receive = async {
            for _ in 0..n {
                recv_ack(acks).await;
            }
        };
        tokio::join!(send, receive);
    }
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_is_live_acknowledges_charts_and_holds_500_patients() {
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in {}: run scripts/test.sh",
        browser_dir().display()
    );
    let s = start().await;
    for i in 1..=WARD_SIZE {
        // A few are monitored at home (no bed): the home-monitoring view's.
        let bed = if HOME.contains(&i) {
            String::new()
        } else {
            i.to_string()
        };
        let (st, r) = s
            .send(
                Method::POST,
                "/api/v1/patients",
                json!({"id": patient(i), "name": format!("Patient {i:04}"), "ward": "Test", "bed": bed}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        let (st, r) = s
            .send(
                Method::PUT,
                &format!("/api/v1/devices/{}", device(i)),
                json!({"patient_id": patient(i)}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
    }
    // A nurse of the care team covering ward "Test", and the first patient's
    // own account, who shares readings with a carer.
    let _ = clinician(&s, NURSE, Role::Nurse);
    let d = &s.running.access.directory;
    let p1 = medmesh_model::PatientId::new(patient(1)).unwrap();
    d.add_user(PATIENT_USER, Role::Patient, Some(p1.clone()), PASSWORD)
        .unwrap();
    d.add_user(CARER, Role::Caregiver, None, PASSWORD).unwrap();
    d.add_user(ADMIN, Role::Admin, None, PASSWORD).unwrap();
    d.add_user(OPS, Role::Operations, None, PASSWORD).unwrap();
    d.grant_consent(
        p1,
        CARER,
        vec![medmesh_access::Scope::Observations],
        "family care",
        None,
        PATIENT_USER,
    )
    .unwrap();

    // Normal vitals for everyone (NEWS2 0, RCP 2017 Chart 1), and for the
    // first patient a history: a reading a minute over the last half hour
    // and one a day over the last 60 days, for the 1-hour and 90-day charts.
    let (client, acks) = mqtt_client(s.running.mqtt_addr, "ward-gateway").await;
    let mut mqtt = Publisher { client, acks };
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The last patient's readings are three hours old (a home patient who
    // missed their readings), everyone else's are current.
    let when = |i: usize| (i == WARD_SIZE).then_some(now_s - 3.0 * 3600.0);
    let mut seed = Vec::new();
    for i in 1..=WARD_SIZE {
        for (n, u, v) in [
            ("heart_rate", "/min", 72.0),
            ("respiratory_rate", "/min", 15.0),
            ("spo2", "%", 97.0),
            ("body_temperature", "Cel", 36.8),
            ("systolic_bp", "mm[Hg]", 120.0),
            ("diastolic_bp", "mm[Hg]", 80.0),
        ] {
            // The second patient has no thermometer: a partial NEWS2.
            if i == PARTIAL && n == "body_temperature" {
                continue;
            }
            let v = if i == SPO2_95 && n == "spo2" { 95.0 } else { v };
            seed.push((device(i), pack(n, u, v, when(i))));
        }
    }

    for m in 1..=30 {
        let t = now_s - 60.0 * f64::from(m);
        seed.push((
            device(1),
            pack("heart_rate", "/min", 70.0 + f64::from(m % 7), Some(t)),
        ));
    }
    for day in 1..=60 {
        let t = now_s - 86_400.0 * f64::from(day);
        seed.push((
            device(1),
            pack("heart_rate", "/min", 65.0 + f64::from(day % 11), Some(t)),
        ));
    }
    mqtt.publish(seed).await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let mut node = std::process::Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(s.url(""))
        .arg(&shots)
        .env("NURSE_USER", NURSE)
        .env("NURSE_PASSWORD", PASSWORD)
        .env("PATIENT_USER", PATIENT_USER)
        .env("PATIENT_PASSWORD", PASSWORD)
        .env("CARER_USER", CARER)
        .env("CARER_PASSWORD", PASSWORD)
        .env("ADMIN_USER", ADMIN)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("OPS_USER", OPS)
        .env("OPS_PASSWORD", PASSWORD)
        .env("OPS_DEVICE", device(2))
        .env("LIVE_PATIENT", patient(1))
        .env("PARTIAL_PATIENT", patient(PARTIAL))
        .env("WARD_SIZE", WARD_SIZE.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test.sh installs it)");
    let mut to_script = node.stdin.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let node = Child(node);

    let mut results: HashMap<String, Value> = HashMap::new();
    let mut steps = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(180), lines.recv())
            .await
            .expect("the browser script answers within 3 minutes")
            .unwrap_or_else(|| panic!("the browser script ended early; steps so far {steps:?}, results {results:?} (its stderr is above)"));
        eprintln!("browser: {line}");
        let (kind, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match kind {
            "DONE" => break,
            "RESULT" => {
                let (name, data) = rest.split_once(' ').unwrap();
                results.insert(name.to_string(), serde_json::from_str(data).unwrap());
            }
            "WAIT" => {
                let (step, _) = rest.split_once(' ').unwrap();
                steps.push(step.to_string());
                match step {
                    "publish-heart-rate" => {
                        mqtt.publish(vec![(device(1), pack("heart_rate", "/min", 97.0, None))])
                            .await
                    }
                    "publish-whole-ward" => {
                        mqtt.publish(
                            (1..=WARD_SIZE)
                                .map(|i| {
                                    let t = when(i).map(|t| t + 60.0);
                                    (device(i), pack("respiratory_rate", "/min", 17.0, t))
                                })
                                .collect(),
                        )
                        .await
                    }
                    // RCP NEWS2 2017 Chart 1: respiration 22, SpO2 93, systolic
                    // 95 and pulse 115 score 2 each (temperature 36.8: 0), an
                    // aggregate of 8: Chart 2's emergency response, a high alarm.
                    "raise-alarm" => {
                        let set = json!([
                            {"n": "respiratory_rate", "u": "/min", "v": 22},
                            {"n": "spo2", "u": "%", "v": 93},
                            {"n": "systolic_bp", "u": "mm[Hg]", "v": 95},
                            {"n": "heart_rate", "u": "/min", "v": 115}
                        ]);
                        mqtt.publish(vec![(device(1), serde_json::to_vec(&set).unwrap())])
                            .await
                    }
                    "check-acknowledged" => {
                        let (_, alarms) = s.get("/api/v1/alarms").await;
                        let id: u64 =
                            serde_json::from_str::<Value>(rest.split_once(' ').unwrap().1).unwrap()
                                ["alarm"]
                                .as_u64()
                                .unwrap();
                        let alarm = alarms
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|a| a["id"] == id)
                            .unwrap_or_else(|| panic!("alarm {id} active: {alarms}"));
                        assert_eq!(alarm["state"], "acknowledged", "{alarm}");
                        assert_eq!(alarm["acknowledged"]["by"], NURSE, "{alarm}");
                        assert_eq!(alarm["patient_id"], patient(1));
                    }
                    "publish-more" => {
                        for v in [98.0, 99.0] {
                            mqtt.publish(vec![(device(1), pack("heart_rate", "/min", v, None))])
                                .await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    // 15 % (SenML %EL): shown live in the patient's devices table.
                    "publish-battery" => {
                        mqtt.publish(vec![(device(1), pack("battery", "%EL", 15.0, None))])
                            .await
                    }
                    other => panic!("unknown step {other}"),
                }
                writeln!(to_script, "GO").unwrap();
                to_script.flush().unwrap();
            }
            _ => {}
        }
    }
    drop(node);
    assert_eq!(
        steps,
        [
            "publish-heart-rate",
            "publish-whole-ward",
            "raise-alarm",
            "check-acknowledged",
            "publish-more",
            "publish-battery"
        ]
    );

    // The nurse's navigation: the clinical views, no administration.
    assert_eq!(
        results["nurse_nav"],
        json!(["Central station", "Alarms", "Home monitoring", "Alarm load"])
    );
    let ward = &results["ward"];
    assert_eq!(ward["tiles"], WARD_SIZE);
    // Timings are reported, never asserted (they measure the machine as
    // much as the page); the figures are in the README.
    eprintln!("500-patient ward: {ward}");
    assert_eq!(
        results["live_value"],
        json!({"before": "72", "after": "97"})
    );

    // No temperature: at least 0, shown as such, each component's age in
    // the badge's title.
    let partial = &results["news2_partial"];
    assert_eq!(partial["text"], "NEWS2 ≥ 0", "{partial}");
    let title = partial["title"].as_str().unwrap();
    assert!(title.contains("Body temperature: missing"), "{title}");
    assert!(title.contains("Heart rate 72: 0 ("), "{title}");
    assert!(title.contains(" ago)"), "{title}");

    let ack = &results["acknowledged"];
    assert!(
        ack["tile_class"].as_str().unwrap().contains("alarm-high"),
        "{ack}"
    );
    assert!(
        ack["banner"]
            .as_str()
            .unwrap()
            .contains("1 high-priority alarm"),
        "{ack}"
    );
    assert!(
        ack["beeps"].as_u64().unwrap() >= 1,
        "no beep for a high alarm: {ack}"
    );
    assert_eq!(ack["muted"], json!(["true", "1", "Sound: muted"]));
    assert_eq!(ack["unmuted"], "false");
    // Every tile took the whole ward's burst of readings (the longest
    // main-thread task during it is reported).
    let burst = &results["whole_ward"];
    assert_eq!(burst["long_tasks_observed"], true);
    eprintln!("whole-ward burst: {burst}");

    // The console row: priority, patient, message, age, state, escalation.
    let row = results["console"]["row"].as_array().unwrap();
    assert_eq!(row[0], "HIGH");
    assert!(row[1].as_str().unwrap().contains("Patient 0001"), "{row:?}");
    assert!(
        row[4]
            .as_str()
            .unwrap()
            .contains(&format!("acknowledged by {NURSE}")),
        "{row:?}"
    );
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let snoozed = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == ack["alarm"]);
    // The alarm is still open (pulse 98 scores 1: NEWS2 7) or, had it been
    // resolved, in the history; either way the console's snooze is recorded.
    let history = s.get("/api/v1/alarms?state=resolved").await.1;
    let all: Vec<&Value> = alarms
        .as_array()
        .unwrap()
        .iter()
        .chain(history.as_array().unwrap())
        .collect();
    let alarm = snoozed
        .or_else(|| all.iter().copied().find(|a| a["id"] == ack["alarm"]))
        .unwrap();
    assert!(
        alarm["snoozed_until_ms"].as_i64().is_some(),
        "snooze not recorded: {alarm}"
    );

    // Home patients only, by need: first the patient with an alarm, then
    // the one with the higher NEWS2, then (equal NEWS2) the one without a
    // reading for three hours before the one with current readings.
    assert_eq!(
        results["home"]["order"],
        json!([
            patient(1),
            patient(SPO2_95),
            patient(WARD_SIZE),
            patient(PARTIAL)
        ]),
        "the home patients, the one needing attention first"
    );

    let p = &results["patient"];
    // 30 history readings plus the live ones of the last hour.
    assert!(p["points_1h"].as_u64().unwrap() >= 30, "{p}");
    assert!(
        p["points_live"].as_u64().unwrap() > p["points_1h"].as_u64().unwrap(),
        "{p}"
    );
    assert!(p["table_rows"].as_u64().unwrap() >= 30, "{p}");
    assert_eq!(p["devices"], json!([device(1)]));
    assert_eq!(p["battery"], "15 %", "{p}");
    assert!(
        p["care_plan"].as_str().unwrap().contains("No care plan"),
        "{p}"
    );
    // 60 daily readings fall into as many 3-hour buckets (plus today's).
    assert!(p["buckets_90d"].as_u64().unwrap() >= 60, "{p}");

    // Charted by hand from the bedside view: respiration 24 (2), SpO2 93
    // (2), on oxygen (2), systolic 104 (1), pulse 112 (2), temperature 38.4
    // (1), new confusion (3): NEWS2 13 (RCP NEWS2 2017 Chart 1), high.
    let chart = &results["chart"];
    assert_eq!(
        chart["on_patient_page"],
        json!([
            "respiratory_rate",
            "spo2",
            "systolic_bp",
            "diastolic_bp",
            "heart_rate",
            "body_temperature",
            "oxygen_flow",
            "taken"
        ]),
        "{chart}"
    );
    assert!(
        chart["refusal"].as_str().unwrap().contains("not measured"),
        "{chart}"
    );
    assert_eq!(chart["saved"], "8", "{chart}");
    assert_eq!(chart["news2"], "NEWS2 13 (high)", "{chart}");
    let (_, charted) = s.get(&format!("/api/v1/patients/{}", patient(1))).await;
    assert_eq!(
        charted["latest"]["consciousness"]["value"], 1.0,
        "{charted}"
    );
    assert_eq!(charted["latest"]["oxygen_flow"]["value"], 2.0, "{charted}");

    let portal = &results["portal"];
    assert_eq!(portal["nav"], json!(["My health"]));
    assert!(
        portal["consents"][0]
            .as_str()
            .unwrap()
            .contains("carer.0001"),
        "{portal}"
    );
    assert!(
        portal["reminders"]
            .as_str()
            .unwrap()
            .contains("No reminders"),
        "{portal}"
    );
    let (_, consents) = s
        .get(&format!("/api/v1/patients/{}/consents", patient(1)))
        .await;
    let revoked = consents
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == portal["revoked"])
        .unwrap();
    assert!(revoked["revoked_ms"].as_i64().is_some(), "{revoked}");
    let granted = consents
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == "night checks")
        .unwrap_or_else(|| panic!("the consent granted in the page: {consents}"));
    assert_eq!(granted["grantee"], CARER);
    assert_eq!(granted["scopes"], json!(["observations", "alarms"]));
    assert!(granted["revoked_ms"].is_null(), "{granted}");
    // The carer sees the one patient who shares with them, under the new
    // consent's purpose.
    let carer = &results["carer"];
    assert_eq!(carer["nav"], json!(["Shared with me"]));
    assert_eq!(carer["cards"], json!([patient(1)]));
    assert!(
        carer["shared"].as_str().unwrap().contains("night checks"),
        "{carer}"
    );
    // The administrator provisioned a device from the Devices tab: the token
    // the page showed once lets that device send readings, and the audit
    // log viewer listed the provisioning.
    let admin = &results["admin"];
    assert_eq!(
        admin["nav"],
        json!([
            "Central station",
            "Alarms",
            "Home monitoring",
            "Admin",
            "Alarm load"
        ])
    );
    assert_eq!(admin["device"], "spare-9");
    // The battery reported in the patient view, in the admin Devices table.
    assert_eq!(admin["battery"], "15 %", "{admin}");
    let token = admin["password"].as_str().unwrap();
    let sent = reqwest::Client::new()
        .post(s.url("/api/v1/devices/spare-9/senml"))
        .bearer_auth(token)
        .body(pack("heart_rate", "/min", 70.0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "the token shown in the page works");
    let wrong = reqwest::Client::new()
        .post(s.url("/api/v1/devices/spare-9/senml"))
        .bearer_auth("not-the-token")
        .body(pack("heart_rate", "/min", 70.0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        admin["audit_actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "provision device spare-9"),
        "{admin}"
    );
    // The alarm load view showed, for the 7 days it asked for, what the API
    // gives for that period: per ward, each rule's alarms (most first) and
    // the total, and the patients with the most alarms by name.
    let load = &results["admin_load"];
    let (since, until) = (
        load["since"].as_i64().unwrap(),
        load["until"].as_i64().unwrap(),
    );
    assert_eq!(until - since, 7 * 86_400_000, "{load}");
    let (st, api_load) = s
        .get(&format!(
            "/api/v1/reports/alarm-load?since_ms={since}&until_ms={until}"
        ))
        .await;
    assert_eq!(st, 200, "{api_load}");
    let api_wards = api_load["wards"].as_array().unwrap();
    assert_eq!(load["wards"].as_array().unwrap().len(), api_wards.len());
    for (shown, w) in load["wards"].as_array().unwrap().iter().zip(api_wards) {
        assert_eq!(shown["ward"], w["ward"]);
        let mut rules: Vec<Value> = w["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule"].clone())
            .collect();
        let mut alarms: Vec<Value> = w["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["alarms"].clone())
            .collect();
        rules.push(json!(""));
        alarms.push(w["total"]["alarms"].clone());
        assert_eq!(shown["rules"], json!(rules), "{shown}");
        assert_eq!(shown["alarms"], json!(alarms), "{shown}");
        let top = shown["top_patients"].as_array().unwrap();
        assert_eq!(top.len(), w["top_patients"].as_array().unwrap().len());
        for (line, t) in top.iter().zip(w["top_patients"].as_array().unwrap()) {
            let name = t["name"].as_str().unwrap();
            assert_eq!(line.as_str().unwrap(), format!("{name} · {}", t["alarms"]));
        }
    }
    assert!(
        load["wards"][0]["alarms"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_u64()
            .unwrap()
            > 0,
        "the ward's alarms are counted: {load}"
    );
    // Operations saw the same wards, and no patient named.
    let ops_load = &results["ops_load"];
    assert_eq!(ops_load["wards"], json!(["Test"]), "{ops_load}");
    assert_eq!(ops_load["shows_patient_names"], false, "{ops_load}");
    assert_eq!(ops_load["links"], 0, "{ops_load}");
    assert!(
        ops_load["top_patients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l.as_str().unwrap().starts_with("a patient · ")),
        "{ops_load}"
    );

    // Operations: the devices view only, every device listed, no readings,
    // no patient list, and a device token issued from the page that works.
    let ops = &results["operations"];
    assert_eq!(ops["nav"], json!(["Devices", "Alarm load"]), "{ops}");
    assert_eq!(ops["tabs"], json!(["Devices"]), "{ops}");
    assert_eq!(ops["redirects"].as_array().unwrap().len(), 3, "{ops}");
    assert_eq!(ops["patients_given"], 0, "{ops}");
    assert_eq!(ops["vitals"], 0, "{ops}");
    assert_eq!(ops["summary"], "", "{ops}");
    assert_eq!(ops["shows_patient_names"], false, "{ops}");
    assert_eq!(ops["device"], device(2));
    let ops_token = ops["password"].as_str().unwrap();
    let sent = reqwest::Client::new()
        .post(s.url(&format!("/api/v1/devices/{}/senml", device(2))))
        .bearer_auth(ops_token)
        .body(pack("heart_rate", "/min", 71.0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "the token operations issued works");
    // The same on the API with an operations token: devices yes, health data no.
    let ops_api = http_client(&d.create_token(OPS, "tests").unwrap().0);
    let get_as = |path: &str| {
        let (client, url) = (ops_api.clone(), s.url(path));
        async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, devices) = get_as("/api/v1/devices").await;
    assert_eq!(st, 200, "{devices}");
    let mut listed: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    for id in (1..=WARD_SIZE).map(device).chain(["spare-9".to_string()]) {
        assert!(
            listed.contains(&id.as_str()),
            "{id} not listed for operations"
        );
    }
    // The page listed exactly the devices the API gives operations.
    let mut rows: Vec<&str> = ops["device_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    rows.sort_unstable();
    assert_eq!(rows, listed);
    assert_eq!(get_as("/api/v1/patients").await, (200, json!([])));
    for path in [
        format!("/api/v1/patients/{}", patient(1)),
        format!("/api/v1/patients/{}/observations", patient(1)),
        "/api/v1/audit".to_string(),
    ] {
        let (st, body) = get_as(&path).await;
        assert_eq!(st, 403, "{path}: {body}");
    }
    let (_, audit) = s.get(&format!("/api/v1/audit?actor={OPS}")).await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == OPS && e["action"] == format!("provision device {}", device(2))),
        "the token operations issued is in the audit log"
    );
    for shot in [
        "ops-devices",
        "station",
        "alarm",
        "alarms",
        "patient",
        "chart",
        "portal",
        "carer",
        "home",
        "admin-devices",
        "admin-audit",
        "alarm-load",
    ] {
        let png = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
            "{}",
            png.display()
        );
    }
}

/// Full names as a ward has them, one long (the tile shows it whole).
const NAMES: [&str; 24] = [
    "Amara Okafor",
    "Konstantina Papadopoulou",
    "Ben Brennan",
    "Chloe Castillo",
    "Dev Dubois",
    "Elena Eriksen",
    "Farid Fischer",
    "Grace Gallagher",
    "Hugo Haddad",
    "Ines Ivanova",
    "Jonah Jensen",
    "Kiri Kowalski",
    "Liam Lindqvist",
    "Maya Moreau",
    "Nils Nakamura",
    "Olga Okafor",
    "Pablo Petrov",
    "Quinn Quigley",
    "Rosa Rossi",
    "Sami Santos",
    "Tess Tanaka",
    "Umar Abbott",
    "Vera Brennan",
    "Maximilian Castillo-Nakamura",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_station_shows_24_beds_on_a_full_hd_screen_without_scrolling() {
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in {}: run scripts/test.sh",
        browser_dir().display()
    );
    const BEDS: usize = 24;
    // The patient with alarms, oxygen and new confusion.
    const SICK: usize = 24;
    let s = start().await;
    let id = |i: usize| format!("w-{i:02}");
    let monitor = |i: usize| format!("mon-{i:02}");
    for i in 1..=BEDS {
        let (st, r) = s
            .send(
                Method::POST,
                "/api/v1/patients",
                json!({"id": id(i), "name": NAMES[i - 1], "ward": "Test", "bed": i.to_string()}),
            )
            .await;
        assert_eq!(st, 201, "{r}");
        let (st, r) = s
            .send(
                Method::PUT,
                &format!("/api/v1/devices/{}", monitor(i)),
                json!({"patient_id": id(i)}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
    }
    let (st, r) = s
        .send(
            Method::PUT,
            &format!("/api/v1/patients/{}/alarm-settings", id(SICK)),
            json!({"profile": "adult-ward"}),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    let _ = clinician(&s, NURSE, Role::Nurse);
    let (client, acks) = mqtt_client(s.running.mqtt_addr, "ward-gateway").await;
    let mut mqtt = Publisher { client, acks };
    let normal = json!([
        {"n": "heart_rate", "u": "/min", "v": 72},
        {"n": "respiratory_rate", "u": "/min", "v": 15},
        {"n": "spo2", "u": "%", "v": 97},
        {"n": "body_temperature", "u": "Cel", "v": 36.8},
        {"n": "systolic_bp", "u": "mm[Hg]", "v": 120},
        {"n": "diastolic_bp", "u": "mm[Hg]", "v": 80}
    ]);
    // RCP NEWS2 2017 Chart 1: respiration 26 (3), SpO2 90 on scale 1 (3),
    // oxygen (2), pulse 135 (3), new confusion (3), temperature and
    // systolic 0: NEWS2 14, and three red parameters.
    let sick = json!([
        {"n": "heart_rate", "u": "/min", "v": 135},
        {"n": "respiratory_rate", "u": "/min", "v": 26},
        {"n": "spo2", "u": "%", "v": 90},
        {"n": "body_temperature", "u": "Cel", "v": 37.2},
        {"n": "systolic_bp", "u": "mm[Hg]", "v": 118},
        {"n": "diastolic_bp", "u": "mm[Hg]", "v": 76},
        {"n": "oxygen_flow", "u": "L/min", "v": 2},
        {"n": "consciousness", "vs": "C"}
    ]);
    mqtt.publish(
        (1..=BEDS)
            .map(|i| {
                let set = if i == SICK { &sick } else { &normal };
                (monitor(i), serde_json::to_vec(set).unwrap())
            })
            .collect(),
    )
    .await;
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let mine = alarms
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["patient_id"] == id(SICK))
        .count();
    assert!(mine >= 3, "the sick patient's alarms: {alarms}");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let mut node = std::process::Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .arg(s.url(""))
        .arg(&shots)
        .env("SCENARIO", "station")
        .env("NURSE_USER", NURSE)
        .env("NURSE_PASSWORD", PASSWORD)
        .env("LIVE_PATIENT", id(SICK))
        .env("WARD_SIZE", BEDS.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test.sh installs it)");
    let stdout = node.stdout.take().unwrap();
    let _node = Child(node);
    let lines = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(180), lines)
        .await
        .expect("the browser script ends within 3 minutes")
        .unwrap();
    let mut results: HashMap<String, Value> = HashMap::new();
    for line in &lines {
        eprintln!("browser: {line}");
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let (name, data) = rest.split_once(' ').unwrap();
            results.insert(name.to_string(), serde_json::from_str(data).unwrap());
        }
        assert!(!line.starts_with("WAIT"), "no step to wait for: {line}");
    }
    assert_eq!(
        lines.last().map(String::as_str),
        Some("DONE"),
        "the script failed (its stderr is above)"
    );

    // Every tile whole in the window, nothing scrolled, one size for all,
    // nothing spilling out of a tile, no name cut short.
    let fit = &results["station_fit"];
    assert_eq!(fit["viewport"], json!([1920, 1080]), "{fit}");
    assert_eq!(fit["tiles"], BEDS, "{fit}");
    assert_eq!(fit["inside"], BEDS, "every tile fully visible: {fit}");
    assert_eq!(fit["scroll"], json!([0, 0]), "{fit}");
    assert_eq!(fit["sizes"].as_array().unwrap().len(), 1, "{fit}");
    assert_eq!(fit["spilled"], json!([]), "{fit}");
    assert_eq!(fit["names_cut"], json!([]), "{fit}");

    let tile = &results["station_tile"];
    assert_eq!(tile["name"], NAMES[SICK - 1], "{tile}");
    assert_eq!(tile["bed"], format!("Bed {SICK}"), "{tile}");
    assert_eq!(tile["news2"], "NEWS2 14", "{tile}");
    assert_eq!(tile["oxygen"]["value"], "2", "{tile}");
    assert_eq!(tile["oxygen"]["unit"], "L/min", "{tile}");
    assert_eq!(tile["acvpu"]["value"], "C", "{tile}");
    // Each cell: its NEWS2 points and the age of the reading.
    for (cell, points) in [("oxygen", "2"), ("acvpu", "3"), ("rr", "3"), ("bp", "0")] {
        let when = tile[cell]["when"].as_str().unwrap();
        assert!(when.starts_with(&format!("{points} · ")), "{cell}: {tile}");
        assert_eq!(tile[cell]["score"], points, "{cell}: {tile}");
    }
    // The most urgent alarm alone, and the count of all of them.
    assert_eq!(tile["alarm"], "HIGH", "{tile}");
    assert_eq!(tile["alarm_rows"], 1, "{tile}");
    assert_eq!(tile["count"], format!("{mine} alarms"), "{tile}");
    assert_eq!(
        tile["quiet_patient"],
        json!({"oxygen": "air", "acvpu": "A"}),
        "{tile}"
    );

    // The trend charts: fixed clinical ranges; adult-ward's limits drawn.
    let charts = results["trend_limits"]["charts"]
        .as_array()
        .unwrap()
        .clone();
    let chart = |key: &str| {
        charts
            .iter()
            .find(|c| c["key"] == key)
            .unwrap_or_else(|| panic!("{key} chart: {charts:?}"))
            .clone()
    };
    assert_eq!(
        chart("heart_rate"),
        json!({"key": "heart_rate", "range": "30,180", "limits": "41,110"})
    );
    assert_eq!(
        chart("spo2"),
        json!({"key": "spo2", "range": "80,100", "limits": "94"})
    );
    assert_eq!(
        chart("systolic_bp"),
        json!({"key": "systolic_bp", "range": "40,220", "limits": "101,219"})
    );
    for shot in ["station-24", "trends-limits"] {
        let png = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
            "{}",
            png.display()
        );
    }
}
