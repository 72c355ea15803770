//! Device to API, end to end: real MQTT clients publish SenML to the embedded
//! listener; values are read back over the REST API and the live stream.

mod common;

use common::*;
use rumqttc::QoS;
use serde_json::json;
use std::time::Duration;

fn hr_pack(t_s: f64, v: f64) -> Vec<u8> {
    json!([{"bn": "urn:dev:test:", "bt": t_s, "n": "heart_rate", "u": "beat/min", "v": v},
           {"n": "spo2", "u": "%", "v": 97}])
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_qos1_publish_is_readable_as_soon_as_it_is_acknowledged() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    client
        .publish(
            topic("mon-1"),
            QoS::AtLeastOnce,
            false,
            hr_pack(1.76544e9, 72.0),
        )
        .await
        .unwrap();
    recv_ack(&mut acks).await;
    // The PUBACK promises durability and visibility: no polling needed.
    let (status, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(status, 200);
    assert_eq!(p["latest"]["heart_rate"]["value"], 72.0);
    assert_eq!(p["latest"]["heart_rate"]["code"], "8867-4");
    assert_eq!(p["latest"]["heart_rate"]["unit"], "/min");
    assert_eq!(p["latest"]["spo2"]["code"], "59408-5");
    assert_eq!(p["latest"]["heart_rate"]["time_ms"], 1_765_440_000_000i64);
    let (_, list) = s.get("/api/v1/patients").await;
    assert_eq!(list[0]["id"], "p1");
    assert_eq!(list[0]["devices"], json!(["mon-1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_publish_is_stored_and_malformed_payload_gets_a_reason_code() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let s = start().await;
    s.admit("p5", "mon-5").await;
    let addr = s.running.mqtt_addr;
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("mon-5", addr.ip().to_string(), addr.port()),
        10,
    );
    // rumqttc reports a PUBACK with a failure reason code as an event-loop
    // error, so both outcomes travel on this channel as text.
    let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let _ = tx.send(format!("{:?}", ack.reason));
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(e.to_string());
                    return;
                }
            }
        }
    });
    client
        .publish(
            topic("mon-5"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            hr_pack(1.76544e9, 88.0),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "Success");
    client
        .publish(
            topic("mon-5"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            b"not senml".to_vec(),
        )
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), acks.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(second.contains("PayloadFormatInvalid"), "{second}");
    let (_, p) = s.get("/api/v1/patients/p5").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 88.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_never_cost_the_valid_ones() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe\x00garbage".to_vec(),
        b"{\"n\":\"heart_rate\"}".to_vec(),
        b"[{\"n\":\"heart_rate\",\"u\":\"/min\",\"v\":".to_vec(),
        vec![b'['; 100_000],
    ];
    let mut published = 0;
    for i in 0..10 {
        client
            .publish(
                topic("mon-1"),
                QoS::AtLeastOnce,
                false,
                hr_pack(1.76544e9 + f64::from(i), 60.0 + f64::from(i)),
            )
            .await
            .unwrap();
        published += 1;
        if let Some(b) = bad.get(i as usize) {
            client
                .publish(topic("mon-1"), QoS::AtLeastOnce, false, b.clone())
                .await
                .unwrap();
            published += 1;
        }
    }
    // One record bad among good ones: the good one is stored.
    client
        .publish(
            topic("mon-1"),
            QoS::AtLeastOnce,
            false,
            json!([{"n":"heart_rate","u":"/min","v":"fast","bt":1.76545e9},{"n":"spo2","u":"%","v":91,"bt":1.76545e9}])
                .to_string(),
        )
        .await
        .unwrap();
    published += 1;
    // A publish to a topic outside the scheme.
    client
        .publish(
            "medmesh/v1/elsewhere",
            QoS::AtLeastOnce,
            false,
            hr_pack(1.76544e9, 1.0),
        )
        .await
        .unwrap();
    published += 1;
    for _ in 0..published {
        recv_ack(&mut acks).await;
    }

    let (_, series) = s
        .get("/api/v1/patients/p1/observations?code=8867-4&from=1765439999000&to=1765440100000")
        .await;
    let points = series["series"][0]["points"].as_array().unwrap();
    let values: Vec<f64> = points.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert_eq!(values, (60..70).map(f64::from).collect::<Vec<_>>());
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["spo2"]["value"], 91.0);

    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_malformed_messages_total{source=\"mqtt\"}"
        ),
        6.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "medmesh_ingest_rejected_records_total{source=\"mqtt\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "medmesh_ingest_samples_stored_total{source=\"mqtt\"}"),
        21.0,
        "{m}"
    );
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_reaches_the_api() {
    let s = start().await;
    s.admit("p7", "bedside-7").await;
    let addr = s.running.mqtt_addr;
    for version in ["mqttv311", "mqttv5"] {
        let value = if version == "mqttv5" { 101 } else { 99 };
        let out = tokio::process::Command::new("mosquitto_pub")
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string(), "-V", version, "-q", "1"])
            .args(["-i", "bedside-7", "-t", &topic("bedside-7")])
            .args(["-m", &format!(r#"[{{"n":"heart_rate","u":"/min","v":{value}}}]"#)])
            .output()
            .await
            .expect("mosquitto_pub is installed (Debian package mosquitto-clients; .ci/run installs it)");
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // mosquitto_pub exits after the PUBACK, so the value is already readable.
        let (_, p) = s.get("/api/v1/patients/p7").await;
        assert_eq!(
            p["latest"]["heart_rate"]["value"],
            f64::from(value),
            "{version}"
        );
    }
    // mosquitto_pub says goodbye (DISCONNECT): that is not a lost device.
    assert!(eventually_online(&s, "bedside-7", Some(false)).await);
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert!(!alarms.to_string().contains("device-offline"), "{alarms}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_carries_observations_and_alarms() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let mut stream = s.http.get(s.url("/api/v1/stream")).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    // Pulse 135 scores 3 on NEWS2 (Chart 1 row >=131): an alarm.
    client
        .publish(
            topic("mon-1"),
            QoS::AtLeastOnce,
            false,
            hr_pack(1.76544e9, 135.0),
        )
        .await
        .unwrap();
    recv_ack(&mut acks).await;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(text.contains("event: observations") && text.contains("event: alarm")) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("events within 10 s");
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    assert!(text.contains(r#""patient_id":"p1""#), "{text}");
    assert!(text.contains(r#""value":135.0"#), "{text}");
    // A single red parameter: medium (RCP NEWS2 Chart 2, low-medium risk).
    assert!(text.contains(r#""priority":"medium""#), "{text}");
    let (_, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(alarms[0]["patient_id"], "p1");
    assert_eq!(alarms[0]["rule"], "news2-single-parameter-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_data_survives_a_restart() {
    let s = start().await;
    s.admit("p1", "mon-1").await;
    let (client, mut acks) = mqtt_client(s.running.mqtt_addr, "mon-1").await;
    for i in 0..5 {
        client
            .publish(
                topic("mon-1"),
                QoS::AtLeastOnce,
                false,
                hr_pack(1.76544e9 + f64::from(i), 70.0 + f64::from(i)),
            )
            .await
            .unwrap();
    }
    for _ in 0..5 {
        recv_ack(&mut acks).await;
    }
    let TestServer {
        running, data_dir, ..
    } = s;
    running.stop();
    drop(client);
    let running = start_in(data_dir.path()).await;
    let url = format!(
        "http://{}/api/v1/patients/p1/observations?code=heart_rate&from=2025-12-11T08:00:00Z&to=1765440010000",
        running.http_addr
    );
    let body: serde_json::Value = http_client(&admin_token(&running))
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["series"][0]["points"].as_array().unwrap().len(),
        5,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatt_values_over_mqtt_from_mosquitto_pub() {
    let s = start().await;
    s.admit("p8", "oximeter-8").await;
    // PLX Spot-Check Measurement, flags 0x00: SpO2 95 %, pulse 88/min (SFLOATs).
    let file = s.data_dir.path().join("plx.bin");
    std::fs::write(&file, [0x00, 95, 0x00, 88, 0x00]).unwrap();
    let addr = s.running.mqtt_addr;
    let out = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-q",
            "1",
        ])
        .args([
            "-t",
            &medmesh_sources::mqtt::gatt_topic("oximeter-8", "2a5e"),
            "-f",
        ])
        .arg(&file)
        .output()
        .await
        .expect("mosquitto_pub runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, p) = s.get("/api/v1/patients/p8").await;
    assert_eq!(p["latest"]["spo2"]["value"], 95.0);
    assert_eq!(p["latest"]["heart_rate"]["value"], 88.0);
}

/// Sends a command until a subscriber has it (subscribing races with us).
async fn send_command(s: &TestServer, device: &str, body: serde_json::Value) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, delivery) = s
            .send(
                reqwest::Method::POST,
                &format!("/api/v1/devices/{device}/commands"),
                body.clone(),
            )
            .await;
        assert_eq!(status, 202, "{delivery}");
        if delivery["delivered"] != 0
            || delivery["queued"] != 0
            || tokio::time::Instant::now() > deadline
        {
            return delivery;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_receives_a_command_sent_through_the_api() {
    let s = start().await;
    let addr = s.running.mqtt_addr;
    let sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-q",
            "1",
            "-C",
            "1",
        ])
        .args([
            "-i",
            "pillbox-3",
            "-t",
            &medmesh_sources::mqtt::command_topic("pillbox-3"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    let delivery = send_command(&s, "pillbox-3", json!({"remind": "metformin 500 mg"})).await;
    assert_eq!(delivery, json!({"delivered": 1, "queued": 0}));
    let out = tokio::time::timeout(Duration::from_secs(10), sub.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"remind":"metformin 500 mg"}"#
    );
    // The client ID named the device: it showed as on line, then off line
    // once mosquitto_sub left (which the server learns a moment later).
    assert!(
        eventually_online(&s, "monitor-never", None).await,
        "unknown devices have no status"
    );
    assert!(eventually_online(&s, "pillbox-3", Some(false)).await);
}

/// Polls the device list until `device` has `online == want` (10 s at most).
async fn eventually_online(s: &TestServer, device: &str, want: Option<bool>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, devices) = s.get("/api/v1/devices").await;
        let online = devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device)
            .and_then(|d| d["online"].as_bool());
        if online == want {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn paho(s: &TestServer, mode: &str, client: &str) -> tokio::process::Child {
    let addr = s.running.mqtt_addr;
    tokio::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/paho_session.py"
        ))
        .args([
            mode,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            client,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (paho-mqtt from PyPI)")
}

async fn read_line(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    tokio::time::timeout(Duration::from_secs(15), reader.read_line(&mut line))
        .await
        .expect("a line in time")
        .unwrap();
    line.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_commands_sent_while_it_was_away() {
    use tokio::io::AsyncWriteExt;
    let s = start().await;
    let mut device = paho(&s, "persistent", "cuff-12");
    assert_eq!(read_line(&mut device).await, "subscribed");
    // Off line now, with a persistent session: the command waits for it.
    let delivery = send_command(&s, "cuff-12", json!({"measure": "blood_pressure"})).await;
    assert_eq!(delivery, json!({"delivered": 0, "queued": 1}));
    device
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .await
        .unwrap();
    assert_eq!(
        read_line(&mut device).await,
        r#"session_present=True {"measure":"blood_pressure"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_vanishes_has_its_last_will_published_and_shows_off_line() {
    use tokio::io::AsyncWriteExt;
    let s = start().await;
    let addr = s.running.mqtt_addr;
    let watcher = tokio::process::Command::new("mosquitto_sub")
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
        // A client without credentials may not reach other devices'
        // topics: the will goes to a topic outside medmesh's, and the
        // watcher's client ID is the device whose commands it hears.
        .args([
            "-i",
            "watcher",
            "-t",
            "lab/+/status",
            "-t",
            "medmesh/v1/devices/watcher/commands",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    s.admit("p5", "monitor-5").await;
    let mut device = paho(&s, "will", "monitor-5");
    assert_eq!(read_line(&mut device).await, "connected");
    assert!(eventually_online(&s, "monitor-5", Some(true)).await);
    // A command the watcher receives proves it is subscribed; then the device dies.
    let delivery = send_command(&s, "watcher", json!("ready")).await;
    assert_eq!(delivery["delivered"], 1, "{delivery}");
    device
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"die\n")
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), watcher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, ["\"ready\"", "offline"]);
    assert!(eventually_online(&s, "monitor-5", Some(false)).await);
    // The patient's monitor vanished: a medium device-offline alarm.
    let (_, alarms) = s.get("/api/v1/alarms").await;
    let a = alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "device-offline")
        .unwrap_or_else(|| panic!("{alarms}"));
    assert_eq!(
        (a["patient_id"].as_str(), a["device_id"].as_str()),
        (Some("p5"), Some("monitor-5"))
    );
    assert_eq!(a["priority"], "medium");
}

/// Runs mosquitto_pub with `args` after the connection options; returns
/// (success, what it printed).
async fn mosquitto_pub(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-q",
            "1",
        ])
        .args(args)
        .output()
        .await
        .expect("mosquitto_pub runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_with_credentials_must_use_them_and_publish_only_for_themselves() {
    let s = start().await;
    s.admit("p1", "cuff-1").await;
    s.admit("p2", "cuff-2").await;
    let (status, issued) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/devices/cuff-1/credentials",
            json!(null),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["username"], "cuff-1");
    let token = issued["password"].as_str().unwrap().to_string();
    let addr = s.running.mqtt_addr;
    let pack = r#"[{"n":"heart_rate","u":"/min","v":91}]"#;

    // The right token: stored.
    let (ok, said) = mosquitto_pub(
        addr,
        &[
            "-i",
            "cuff-1",
            "-u",
            "cuff-1",
            "-P",
            &token,
            "-t",
            &topic("cuff-1"),
            "-m",
            pack,
        ],
    )
    .await;
    assert!(ok, "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 91.0);

    // A wrong token, or none at all for a device that has one: refused.
    let (ok, said) = mosquitto_pub(
        addr,
        &[
            "-u",
            "cuff-1",
            "-P",
            "guess",
            "-t",
            &topic("cuff-1"),
            "-m",
            pack,
        ],
    )
    .await;
    assert!(
        !ok && said.to_lowercase().contains("bad user name or password"),
        "{said}"
    );
    let (ok, said) =
        mosquitto_pub(addr, &["-i", "cuff-1", "-t", &topic("cuff-1"), "-m", pack]).await;
    assert!(!ok && said.to_lowercase().contains("not authori"), "{said}");

    // Authenticated as cuff-1 but under cuff-2's client ID (its session): refused.
    let (ok, said) = mosquitto_pub(
        addr,
        &[
            "-i",
            "cuff-2",
            "-u",
            "cuff-1",
            "-P",
            &token,
            "-t",
            &topic("cuff-1"),
            "-m",
            pack,
        ],
    )
    .await;
    assert!(!ok && said.to_lowercase().contains("not authori"), "{said}");

    // Authenticated as cuff-1, publishing for cuff-2: refused (MQTT 5 says why), not stored.
    let (_, said) = mosquitto_pub(
        addr,
        &[
            "-V",
            "mqttv5",
            "-u",
            "cuff-1",
            "-P",
            &token,
            "-t",
            &topic("cuff-2"),
            "-m",
            pack,
        ],
    )
    .await;
    assert!(said.contains("may not send as device cuff-2"), "{said}");
    let (_, p2) = s.get("/api/v1/patients/p2").await;
    assert!(p2["latest"].get("heart_rate").is_none(), "{p2}");

    // Revoked: the token no longer works.
    let r = s
        .http
        .delete(s.url("/api/v1/devices/cuff-1/credentials"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (ok, _) = mosquitto_pub(
        addr,
        &[
            "-u",
            "cuff-1",
            "-P",
            &token,
            "-t",
            &topic("cuff-1"),
            "-m",
            pack,
        ],
    )
    .await;
    assert!(!ok);
    // The hash never leaves the server.
    let (_, devices) = s.get("/api/v1/devices").await;
    assert!(!devices.to_string().contains("argon2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_can_be_turned_away() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(false)).await;
    let (ok, said) = mosquitto_pub(s.running.mqtt_addr, &["-t", &topic("x"), "-m", "[]"]).await;
    assert!(!ok && said.to_lowercase().contains("not authori"), "{said}");
}
