//! Least privilege end to end (issue 12, items 2, 7 and 11), through the
//! real HTTP API, the live stream and real MQTT publishes:
//! - operations manages devices but sees no readings (device list, stream)
//!   and cannot send readings; nor can any other user's token or session;
//! - taking a device off a patient raises "monitoring stopped" for the care
//!   team and is audited with the patient;
//! - whoever an escalation step names may see and acknowledge that alarm
//!   once it reached the step, and not before; naming an account that may
//!   not see clinical alarms is refused at start;
//! - a list read is one audit entry, found by each patient it returned, and
//!   the audit filters answer "who looked", "what did they do", "refusals".

mod common;

use common::*;
use medmesh_access::Role;
use reqwest::Method;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};
use std::time::Duration;

const PW: &str = "a long test password";

fn now_s() -> f64 {
    medmesh_model::now_ms() as f64 / 1000.0
}

/// An MQTT client for `device` proving itself with `password` (its token),
/// or anonymous; PUBACKs arrive on the channel.
fn device_mqtt(
    s: &TestServer,
    device: &str,
    password: Option<&str>,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    let addr = s.running.mqtt_addr;
    let mut opts = MqttOptions::new(device, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    if let Some(p) = password {
        opts.set_credentials(device, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => {
                    let _ = tx.send(a.pkid);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("device MQTT client: {e}");
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// A device's MQTT connection.
struct Device {
    id: String,
    client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<u16>,
}

impl Device {
    fn connect(s: &TestServer, id: &str, password: Option<&str>) -> Device {
        let (client, acks) = device_mqtt(s, id, password);
        Device {
            id: id.to_string(),
            client,
            acks,
        }
    }

    /// Publishes `pack` (QoS 1) and waits for its PUBACK: stored and judged.
    async fn publish(&mut self, pack: Value) {
        self.client
            .publish(
                topic(&self.id),
                QoS::AtLeastOnce,
                false,
                pack.to_string().into_bytes(),
            )
            .await
            .unwrap();
        recv_ack(&mut self.acks).await;
    }
}

/// A live stream's events as (type, data), read as they come.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(client: &reqwest::Client, s: &TestServer) -> Stream {
        let response = client.get(s.url("/api/v1/stream")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut kind = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(k) = line.strip_prefix("event:") {
                        kind = k.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim());
                    }
                }
                if !kind.is_empty() {
                    return (kind, serde_json::from_str(&data).unwrap_or(Value::Null));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .expect("the stream is open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until (and with) the first that `stop` accepts.
    async fn until(&mut self, stop: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (kind, data) = self.next().await;
            let done = stop(&kind, &data);
            seen.push((kind, data));
            if done {
                return seen;
            }
        }
    }
}

/// A user of `role` with an API token; returns their client.
fn user(s: &TestServer, name: &str, role: Role) -> reqwest::Client {
    let d = &s.running.access.directory;
    d.add_user(name, role, None, PW).unwrap();
    http_client(&d.create_token(name, "tests").unwrap().0)
}

/// Issues `device` its credentials (as the administrator); returns the token.
async fn credentials(s: &TestServer, device: &str) -> String {
    let (st, c) = s
        .send(
            Method::POST,
            &format!("/api/v1/devices/{device}/credentials"),
            Value::Null,
        )
        .await;
    assert_eq!(st, 201, "{c}");
    c["password"].as_str().unwrap().to_string()
}

async fn get(client: &reqwest::Client, s: &TestServer, path: &str) -> (u16, Value) {
    send_as(client, Method::GET, s.url(path), Value::Null).await
}

fn audit_has(entries: &Value, actor: &str, action: &str, outcome: &str) -> bool {
    entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_manages_devices_without_seeing_or_sending_readings() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(false)).await;
    s.admit("p1", "mon-1").await;
    let ops = user(&s, "ops", Role::Operations);
    let nurse = clinician(&s, "nurse", Role::Nurse);
    let token = credentials(&s, "mon-1").await;
    let mut mon = Device::connect(&s, "mon-1", Some(&token));
    let mut ops_stream = Stream::open(&ops, &s).await;
    let mut nurse_stream = Stream::open(&nurse, &s).await;

    // While on p1: the nurse sees the reading live, operations only the
    // battery report.
    let t = now_s();
    mon.publish(json!([{"bt": t, "n": "heart_rate", "u": "/min", "v": 88}]))
        .await;
    mon.publish(json!([{"bt": t, "n": "battery", "u": "%EL", "v": 55}]))
        .await;
    let nurse_saw = nurse_stream
        .until(|k, d| k == "device_battery" && d["percent"] == 55.0)
        .await;
    assert!(
        nurse_saw
            .iter()
            .any(|(k, d)| k == "observations" && d["observations"][0]["value"] == 88.0),
        "{nurse_saw:?}"
    );

    // Operations takes the monitor off p1 (to send it for repair).
    let (st, d) = send_as(
        &ops,
        Method::PUT,
        s.url("/api/v1/devices/mon-1"),
        json!({"patient_id": null}),
    )
    .await;
    assert_eq!(st, 200, "{d}");
    // The unassigned monitor keeps sending: 160/min, then a battery report.
    mon.publish(json!([{"bt": t + 1.0, "n": "heart_rate", "u": "/min", "v": 160}]))
        .await;
    mon.publish(json!([{"bt": t + 1.0, "n": "battery", "u": "%EL", "v": 54}]))
        .await;
    let ops_saw = ops_stream
        .until(|k, d| k == "device_battery" && d["percent"] == 54.0)
        .await;
    assert!(
        ops_saw
            .iter()
            .all(|(k, _)| k == "device_battery" || k == "device_status"),
        "operations' stream carries no readings or alarms: {ops_saw:?}"
    );
    assert!(
        ops_saw
            .iter()
            .any(|(k, d)| k == "device_battery" && d["percent"] == 55.0),
        "{ops_saw:?}"
    );

    // The device list: status and battery for operations, no values.
    let (st, devices) = get(&ops, &s, "/api/v1/devices").await;
    assert_eq!(st, 200);
    let mon_1 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap();
    assert_eq!(mon_1["battery_percent"], 54.0, "{mon_1}");
    assert_eq!(mon_1["unassigned_latest"], json!({}), "{mon_1}");
    assert!(!devices.to_string().contains("160"), "{devices}");
    // An administrator does see what the unassigned monitor measured.
    let (_, devices) = s.get("/api/v1/devices").await;
    let mon_1 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "mon-1")
        .unwrap();
    assert_eq!(
        mon_1["unassigned_latest"]["heart_rate"]["value"], 160.0,
        "{mon_1}"
    );

    // No user sends readings as a device: operations' token, its browser
    // session, a nurse's token all get 403, and nothing is stored.
    let http = reqwest::Client::new();
    let r = http
        .post(s.url("/api/v1/login"))
        .json(&json!({"username": "ops", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let forged = json!([{"bt": t + 2.0, "n": "heart_rate", "u": "/min", "v": 30}]);
    for (client, path) in [
        (&ops, "/api/v1/devices/mon-1/senml"),
        (&nurse, "/api/v1/devices/mon-1/senml"),
        (&s.http, "/api/v1/devices/mon-1/senml"),
    ] {
        let (st, e) = send_as(client, Method::POST, s.url(path), forged.clone()).await;
        assert_eq!(st, 403, "{e}");
    }
    let (st, e) = send_as(
        &ops,
        Method::POST,
        s.url("/api/v1/devices/mon-1/gatt"),
        json!({"characteristic": "2a37", "hex": "001e"}),
    )
    .await;
    assert_eq!(st, 403, "{e}");
    let r = http
        .post(s.url("/api/v1/devices/mon-1/senml"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(forged.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, devices) = s.get("/api/v1/devices").await;
    assert!(!devices.to_string().contains("30.0"), "{devices}");
    // FHIR names its patient: operations may not record for anyone.
    let fhir = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-12-11T08:00:00Z",
        "valueQuantity": {"value": 30, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let (st, e) = send_as(&ops, Method::POST, s.url("/api/v1/fhir/Observation"), fhir).await;
    assert_eq!(st, 403, "{e}");
    let (_, entries) = s.get("/api/v1/audit?actor=ops&outcome=denied").await;
    assert!(
        audit_has(&entries, "ops", "send readings as device mon-1", "denied"),
        "{entries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_a_monitor_off_a_patient_tells_the_care_team_and_is_audited() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    s.admit("p2", "mon-9").await;
    let ops = user(&s, "ops", Role::Operations);
    let nurse = clinician(&s, "nurse", Role::Nurse);
    let mut nurse_stream = Stream::open(&nurse, &s).await;

    let (st, _) = send_as(
        &ops,
        Method::PUT,
        s.url("/api/v1/devices/mon-1"),
        json!({"patient_id": null}),
    )
    .await;
    assert_eq!(st, 200);
    // The care team hears of it at once, on the stream...
    let seen = nurse_stream.until(|k, _| k == "alarm").await;
    let (_, raised) = seen.last().unwrap();
    assert_eq!(raised["change"], "raised", "{raised}");
    let alarm = &raised["alarm"];
    assert_eq!(alarm["rule"], "monitoring-stopped");
    assert_eq!(alarm["patient_id"], "p1");
    assert_eq!(alarm["priority"], "low");
    assert_eq!(alarm["device_id"], "mon-1");
    let message = alarm["message"].as_str().unwrap();
    assert!(
        message.contains("mon-1") && message.contains("ops"),
        "{message}"
    );
    // ...and in the alarm list.
    let (_, active) = get(&nurse, &s, "/api/v1/alarms?patient=p1").await;
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    // A heart rate of 160 from the monitor no longer reaches p1, so the
    // notice is what stands between the patient and silence.
    let mut mon = Device::connect(&s, "mon-1", None);
    mon.publish(json!([{"bt": now_s(), "n": "heart_rate", "u": "/min", "v": 160}]))
        .await;
    let (_, active) = get(&nurse, &s, "/api/v1/alarms?patient=p1").await;
    assert_eq!(active[0]["rule"], "monitoring-stopped", "{active}");
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");

    // The audit names the patient.
    let (_, entries) = s.get("/api/v1/audit?patient=p1&actor=ops").await;
    assert!(
        audit_has(
            &entries,
            "ops",
            "unassign device mon-1 (monitoring stopped)",
            "allowed"
        ),
        "{entries}"
    );

    // A device assigned to p1 again resolves the notice.
    let (st, _) = send_as(
        &ops,
        Method::PUT,
        s.url("/api/v1/devices/mon-2"),
        json!({"patient_id": "p1"}),
    )
    .await;
    assert_eq!(st, 200);
    let seen = nurse_stream
        .until(|k, d| k == "alarm" && d["change"] == "resolved")
        .await;
    assert_eq!(seen.last().unwrap().1["alarm"]["id"], alarm["id"]);
    let (_, active) = get(&nurse, &s, "/api/v1/alarms?patient=p1").await;
    assert_eq!(active, json!([]));

    // Moving that device to another patient stops p1's monitoring again.
    let (st, _) = send_as(
        &ops,
        Method::PUT,
        s.url("/api/v1/devices/mon-2"),
        json!({"patient_id": "p2"}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, active) = get(&nurse, &s, "/api/v1/alarms").await;
    let notices: Vec<(&str, &str)> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["patient_id"].as_str().unwrap(),
                a["device_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(notices, [("p1", "mon-2")], "{active}");
    let (_, entries) = s.get("/api/v1/audit?patient=p1&actor=ops").await;
    assert!(
        audit_has(
            &entries,
            "ops",
            "unassign device mon-2 (monitoring stopped)",
            "allowed"
        ),
        "{entries}"
    );
    let (_, entries) = s.get("/api/v1/audit?patient=p2&actor=ops").await;
    assert!(
        audit_has(&entries, "ops", "assign device mon-2", "allowed"),
        "{entries}"
    );
    // The notice survives a restart like any alarm.
    let s = s.restart().await;
    let (_, active) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(active[0]["rule"], "monitoring-stopped", "{active}");
}

/// A server config like the tests' (ephemeral ports, anonymous devices)
/// with `escalation` as its `[alarms.escalation]` table.
fn escalation_config(dir: &std::path::Path, escalation: &str) -> medmesh_server::Config {
    let mut c = medmesh_server::Config::from_toml(&format!("[alarms.escalation]\n{escalation}"))
        .expect("test config parses");
    c.data_dir = dir.to_path_buf();
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    c.coap.listen = "127.0.0.1:0".parse().unwrap();
    c.hl7.listen = "127.0.0.1:0".parse().unwrap();
    c.devices.allow_anonymous = Some(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_step_naming_an_account_that_may_not_see_alarms_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let access = medmesh_access::Access::open(dir.path()).unwrap();
        let d = &access.directory;
        d.add_user("charge.kim", Role::Nurse, None, PW).unwrap();
        d.add_user("ops", Role::Operations, None, PW).unwrap();
    }
    let err = match medmesh_server::Server::start(&escalation_config(
        dir.path(),
        r#"medium = [{ roles = ["nurse"] }, { after = "2m", users = ["ops"] }]"#,
    ))
    .await
    {
        Ok(_) => panic!("started naming an operations account"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("alarms.escalation.medium[1].users: \"ops\" is a operations account"),
        "{err}"
    );
    // A misspelled name starts (a typo must not stop monitoring; the
    // recipient check warns and counts it), and grants nobody anything.
    let running = medmesh_server::Server::start(&escalation_config(
        dir.path(),
        r#"high = [{ roles = ["nurse"] }, { after = "2m", users = ["chrage.kim"] }]"#,
    ))
    .await
    .unwrap();
    let m = reqwest::get(format!("http://{}/healthz", running.http_addr))
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    running.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_nurse_named_in_a_step_may_acknowledge_once_the_alarm_reached_it() {
    let dir = tempfile::tempdir().unwrap();
    // Kim exists before the server starts, as the configuration needs.
    let token = provision_admin(dir.path());
    {
        let access = medmesh_access::Access::open(dir.path()).unwrap();
        access
            .directory
            .add_user("charge.kim", Role::Nurse, None, PW)
            .unwrap();
    }
    // Level 1 after 5 s: long enough that the checks "before" happen at
    // level 0 (each is confirmed below by the alarm's level afterwards).
    let running = medmesh_server::Server::start(&escalation_config(
        dir.path(),
        r#"medium = [{ roles = ["nurse"] }, { after = "5s", users = ["charge.kim"] }]"#,
    ))
    .await
    .unwrap();
    let s = TestServer {
        http: http_client(&token),
        running,
        data_dir: dir,
        token,
    };
    s.admit("p1", "mon-1").await;
    clinician(&s, "nurse", Role::Nurse);
    // Kim is in no care team: she reaches no patient by herself.
    let kim = http_client(
        &s.running
            .access
            .directory
            .create_token("charge.kim", "pager")
            .unwrap()
            .0,
    );
    let mut kim_stream = Stream::open(&kim, &s).await;

    // Pulse 135 scores 3 (RCP NEWS2 Chart 1): a medium alarm.
    let mut mon = Device::connect(&s, "mon-1", None);
    mon.publish(json!([{"bt": now_s(), "n": "heart_rate", "u": "/min", "v": 135}]))
        .await;
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    let id = alarms[0]["id"].as_u64().unwrap();
    assert_eq!(alarms[0]["priority"], "medium");

    // Before the alarm reaches Kim's step: she can neither see nor act.
    let (st, _) = get(&kim, &s, &format!("/api/v1/alarms/{id}")).await;
    assert_eq!(st, 403);
    let (_, listed) = get(&kim, &s, "/api/v1/alarms").await;
    assert_eq!(listed, json!([]));
    let (st, _) = send_as(
        &kim,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/acknowledge")),
        json!({}),
    )
    .await;
    assert_eq!(st, 403);
    let (_, now) = s.get(&format!("/api/v1/alarms/{id}")).await;
    assert_eq!(
        now["alarm"]["escalation_level"], 0,
        "Kim's refusals were at level 0"
    );

    // Nobody acknowledges: the alarm climbs to level 1, and Kim's stream
    // shows it (the first alarm event she may see).
    let seen = kim_stream.until(|k, _| k == "alarm").await;
    let (_, escalated) = seen.last().unwrap();
    assert_eq!(escalated["change"], "escalated", "{escalated}");
    assert_eq!(escalated["alarm"]["id"], id);
    assert_eq!(escalated["alarm"]["escalation_level"], 1);

    // Now she sees the alarm, with what she needs to go there...
    let (st, record) = get(&kim, &s, &format!("/api/v1/alarms/{id}")).await;
    assert_eq!(st, 200, "{record}");
    assert_eq!(record["patient"]["name"], "Patient p1");
    assert_eq!(record["patient"]["ward"], "Test");
    assert_eq!(record["patient"]["bed"], "1");
    let (_, listed) = get(&kim, &s, "/api/v1/alarms").await;
    assert_eq!(listed[0]["id"], id, "{listed}");
    // ...and nothing more of the patient: no record, no readings, no
    // snoozing or resolving (those stay with the care team).
    for path in ["/api/v1/patients/p1", "/api/v1/patients/p1/observations"] {
        let (st, _) = get(&kim, &s, path).await;
        assert_eq!(st, 403, "{path}");
    }
    let (_, patients) = get(&kim, &s, "/api/v1/patients").await;
    assert_eq!(patients, json!([]));
    for (action, body) in [("snooze", json!({"minutes": 5})), ("resolve", json!({}))] {
        let (st, _) = send_as(
            &kim,
            Method::POST,
            s.url(&format!("/api/v1/alarms/{id}/{action}")),
            body,
        )
        .await;
        assert_eq!(st, 403, "{action}");
    }
    // She acknowledges it.
    let (st, acked) = send_as(
        &kim,
        Method::POST,
        s.url(&format!("/api/v1/alarms/{id}/acknowledge")),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged"]["by"], "charge.kim");

    // The audit says who, on which patient, and why she was allowed.
    let (_, entries) = s.get("/api/v1/audit?patient=p1&actor=charge.kim").await;
    assert!(
        audit_has(
            &entries,
            "charge.kim",
            &format!("acknowledge alarm {id} (named by its escalation step)"),
            "allowed"
        ),
        "{entries}"
    );
    assert!(
        audit_has(
            &entries,
            "charge.kim",
            &format!("acknowledge alarm {id}"),
            "denied"
        ),
        "{entries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_read_is_one_audit_entry_found_by_each_patient_it_returned() {
    let s = start().await;
    let started = medmesh_model::now_ms();
    let ids: Vec<String> = (1..=6).map(|i| format!("p{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        s.admit(id, &format!("mon-{}", i + 1)).await;
    }
    // p9 is on a ward the nurse's team does not cover.
    let (st, _) = s
        .send(
            Method::POST,
            "/api/v1/patients",
            json!({"id": "p9", "name": "Other", "ward": "Elsewhere"}),
        )
        .await;
    assert_eq!(st, 201);
    let nurse = clinician(&s, "nurse", Role::Nurse);
    // Two alarms, over MQTT.
    for device in ["mon-2", "mon-5"] {
        let mut d = Device::connect(&s, device, None);
        d.publish(json!([{"bt": now_s(), "n": "heart_rate", "u": "/min", "v": 135}]))
            .await;
    }

    // One dashboard load: the patient list and the alarm list.
    let (_, patients) = get(&nurse, &s, "/api/v1/patients").await;
    assert_eq!(patients.as_array().unwrap().len(), 6);
    let (_, alarms) = get(&nurse, &s, "/api/v1/alarms").await;
    assert_eq!(alarms.as_array().unwrap().len(), 2);
    let (st, _) = get(&nurse, &s, "/api/v1/patients/p9").await;
    assert_eq!(st, 403);

    // Everything the nurse did in that time: one entry per list read.
    let (_, did) = s
        .get(&format!(
            "/api/v1/audit?actor=nurse&since_ms={started}&until_ms={}",
            medmesh_model::now_ms()
        ))
        .await;
    let actions: Vec<&str> = did
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["read patient", "read alarms", "list patients"],
        "{did}"
    );
    let list = &did[2];
    assert_eq!(list["patients"], json!(ids), "{list}");
    assert_eq!(did[1]["patients"], json!(["p2", "p5"]), "{did}");
    // Nothing before the test started.
    let (_, none) = s
        .get(&format!(
            "/api/v1/audit?actor=nurse&until_ms={}",
            started - 1
        ))
        .await;
    assert_eq!(none, json!([]));

    // Who looked at p4: the list read that returned them.
    let (_, p4) = s.get("/api/v1/audit?patient=p4").await;
    assert!(
        p4.as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "nurse" && e["action"] == "list patients"),
        "{p4}"
    );
    // ...and at p5, whose alarm the nurse also read.
    let (_, p5) = s.get("/api/v1/audit?patient=p5&actor=nurse").await;
    assert_eq!(p5.as_array().unwrap().len(), 2, "{p5}");
    // Every refusal, and only refusals.
    let (_, refused) = s.get("/api/v1/audit?outcome=denied").await;
    let refused = refused.as_array().unwrap();
    assert!(refused.iter().all(|e| e["outcome"] == "denied"));
    assert!(
        refused
            .iter()
            .any(|e| e["actor"] == "nurse" && e["patient"] == "p9"),
        "{refused:?}"
    );
}
