//! CoAP ingest, driven by real CoAP clients: libcoap's coap-client (Debian
//! libcoap3-bin) and aiocoap (PyPI). `scripts/test.sh` installs both.

mod common;

use common::*;
use std::process::Command;

const COAP_CLIENT: &str = "coap-client-notls";

fn uri(s: &TestServer, path: &str) -> String {
    format!("coap://{}{path}", s.running.coap_addr)
}

/// Runs coap-client; returns what it printed (the response payload, and the
/// response code for errors).
fn coap_client(args: &[&str]) -> String {
    let out = Command::new(COAP_CLIENT).args(args).output().expect(
        "coap-client-notls is installed (Debian libcoap3-bin; scripts/test.sh installs it)",
    );
    assert!(
        out.status.success(),
        "coap-client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_client_posts_senml_json_and_cbor() {
    let s = start().await;
    s.admit("p1", "sensor-1").await;
    let u = uri(&s, "/medmesh/v1/devices/sensor-1/senml");
    let said = coap_client(&[
        "-m",
        "post",
        "-t",
        "110",
        "-e",
        r#"[{"n":"heart_rate","u":"/min","v":77,"bt":1.76544e9}]"#,
        &u,
    ]);
    assert!(said.contains("1 stored"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 77.0);

    // SenML CBOR (Content-Format 112): [{0: "spo2", 1: "%", 2: 96, -3: 1765440000}]
    let cbor = [
        0x81, 0xA4, 0x00, 0x64, b's', b'p', b'o', b'2', 0x01, 0x61, b'%', 0x02, 0x18, 96, 0x22,
        0x1A, 0x69, 0x3A, 0x7A, 0x00,
    ];
    let file = s.data_dir.path().join("pack.cbor");
    std::fs::write(&file, cbor).unwrap();
    let said = coap_client(&["-m", "post", "-t", "112", "-f", file.to_str().unwrap(), &u]);
    assert!(said.contains("1 stored"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["spo2"]["value"], 96.0);
    assert_eq!(p["latest"]["spo2"]["time_ms"], 1_765_440_000_000i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_wise_transfer_of_a_large_pack() {
    let s = start().await;
    s.admit("p1", "sensor-1").await;
    // 80 records, about 4 KiB, sent in 64-byte Block1 blocks.
    let records: Vec<_> = (0..80)
        .map(|i| serde_json::json!({"n": "respiratory_rate", "u": "/min", "v": 10 + i % 10, "t": 1.76544e9 + f64::from(i)}))
        .collect();
    let file = s.data_dir.path().join("big.json");
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();
    let u = uri(&s, "/medmesh/v1/devices/sensor-1/senml");
    let said = coap_client(&[
        "-m",
        "post",
        "-t",
        "110",
        "-b",
        "64",
        "-f",
        file.to_str().unwrap(),
        &u,
    ]);
    assert!(said.contains("80 stored"), "{said}");
    let (_, series) = s
        .get("/api/v1/patients/p1/observations?code=respiratory_rate&from=1765440000000&to=1765440080000")
        .await;
    assert_eq!(series["series"][0]["points"].as_array().unwrap().len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_coap_error_codes_with_reasons() {
    let s = start().await;
    let senml = uri(&s, "/medmesh/v1/devices/sensor-1/senml");
    let said = coap_client(&["-m", "post", "-t", "110", "-e", "garbage", &senml]);
    assert!(
        said.contains("4.00") && said.contains("not a SenML JSON pack"),
        "{said}"
    );
    let said = coap_client(&["-m", "post", "-e", "[]", &uri(&s, "/elsewhere")]);
    assert!(said.contains("4.04"), "{said}");
    let said = coap_client(&["-m", "get", &senml]);
    assert!(said.contains("4.05"), "{said}");
    let said = coap_client(&["-m", "post", "-t", "0", "-e", "hello", &senml]);
    assert!(said.contains("4.15"), "{said}");
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_malformed_messages_total{source=\"coap\"}"
        ),
        1.0,
        "{m}"
    );
    // Garbage datagrams are counted and the server keeps serving.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&[0xFF, 0x00], s.running.coap_addr).unwrap();
    let said = coap_client(&[
        "-m",
        "post",
        "-t",
        "110",
        "-e",
        r#"[{"n":"hr","u":"/min","v":70}]"#,
        &senml,
    ]);
    assert!(said.contains("1 stored"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_confirmable_post_is_acknowledged_after_storage() {
    let s = start().await;
    s.admit("p1", "sensor-1").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/aiocoap_post.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(uri(&s, "/medmesh/v1/devices/sensor-1/senml"))
        .arg("110")
        .arg(r#"[{"n":"body_temperature","u":"Cel","v":37.4,"bt":1.76544e9}]"#)
        .output()
        .expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aiocoap (pip install aiocoap): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("2.04 Changed"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["body_temperature"]["value"], 37.4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_confirmable_request_is_stored_once_and_answered_again() {
    let s = start().await;
    // CON POST, message ID 0x1234, token 0xAB, Uri-Path medmesh/v1/devices/d1/senml,
    // Content-Format 110, payload one SenML record.
    let mut msg = vec![0x41, 0x02, 0x12, 0x34, 0xAB];
    let mut last_option = 0u16;
    let mut option = |msg: &mut Vec<u8>, number: u16, value: &[u8]| {
        let delta = number - last_option;
        last_option = number;
        msg.push(((delta as u8) << 4) | value.len() as u8);
        msg.extend_from_slice(value);
    };
    for seg in ["medmesh", "v1", "devices", "d1", "senml"] {
        option(&mut msg, 11, seg.as_bytes());
    }
    option(&mut msg, 12, &[110]);
    msg.push(0xFF);
    msg.extend_from_slice(br#"[{"n":"hr","u":"/min","v":66,"bt":1.76544e9}]"#);

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        sock.send_to(&msg, s.running.coap_addr).unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        answers.push(buf[..n].to_vec());
    }
    // ACK (type 2), 2.04 (0x44), same message ID and token, same bytes twice.
    assert_eq!(&answers[0][..5], &[0x61, 0x44, 0x12, 0x34, 0xAB]);
    assert_eq!(answers[0], answers[1]);
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "medmesh_ingest_samples_stored_total{source=\"coap\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_devices_prove_who_they_are_with_their_token() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(false)).await;
    s.admit("p1", "sensor-1").await;
    let (_, creds) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/devices/sensor-1/credentials",
            serde_json::json!(null),
        )
        .await;
    let token = creds["password"].as_str().unwrap();
    let pack = r#"[{"n":"heart_rate","u":"/min","v":81,"bt":1.76544e9}]"#;
    let post = |query: &str| {
        coap_client(&[
            "-m",
            "post",
            "-t",
            "110",
            "-e",
            pack,
            &uri(&s, &format!("/medmesh/v1/devices/sensor-1/senml{query}")),
        ])
    };
    let said = post("");
    assert!(
        said.contains("4.01") && said.contains("has credentials but sent none"),
        "{said}"
    );
    let said = post("?token=guess");
    assert!(
        said.contains("4.01") && said.contains("wrong token"),
        "{said}"
    );
    let said = post(&format!("?token={token}"));
    assert!(said.contains("1 stored"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 81.0);
    // Another device with no token, where anonymous devices are not allowed.
    s.admit("p2", "sensor-2").await;
    let said = coap_client(&[
        "-m",
        "post",
        "-t",
        "110",
        "-e",
        pack,
        &uri(&s, "/medmesh/v1/devices/sensor-2/senml"),
    ]);
    assert!(
        said.contains("4.01") && said.contains("anonymous"),
        "{said}"
    );
}

/// A CoAP sensor whose clock runs ahead: 3 minutes ahead its readings are
/// taken and a low technical alarm asks for its clock to be set; 10
/// minutes ahead (past the 5-minute tolerance) its readings are refused
/// with 4.22 naming the reason, never becoming the patient's latest value,
/// and the alarm is medium (the patient is not monitored by it); with its
/// clock set, the alarm resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_clock_ahead_raises_a_clock_alarm_and_future_readings_are_refused() {
    let s = start().await;
    s.admit("p1", "sensor-1").await;
    let u = uri(&s, "/medmesh/v1/devices/sensor-1/senml");
    let post = |ahead_s: i64, bpm: u32| {
        let t = medmesh_model::now_ms() / 1000 + ahead_s;
        coap_client(&[
            "-m",
            "post",
            "-t",
            "110",
            "-e",
            &format!(r#"[{{"n":"heart_rate","u":"/min","v":{bpm},"bt":{t}}}]"#),
            &u,
        ])
    };
    let clock_alarm = |alarms: &serde_json::Value| {
        alarms
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "device-clock")
            .cloned()
    };

    let said = post(180, 71);
    assert!(said.contains("1 stored"), "{said}");
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    let a = clock_alarm(&alarms).expect("a clock alarm");
    assert_eq!(a["priority"], "low", "{a}");
    assert_eq!(a["device_id"], "sensor-1");
    assert!(a["message"].as_str().unwrap().contains("ahead"), "{a}");
    // The offset in seconds (a little under 180: the request took time).
    let ahead = a["value"].as_f64().unwrap();
    assert!((170.0..=180.0).contains(&ahead), "{a}");

    let said = post(600, 150);
    assert!(said.contains("4.22"), "{said}");
    assert!(said.contains("ahead of the server clock"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 71.0, "never the latest");
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    let a = clock_alarm(&alarms).expect("still the clock alarm");
    assert_eq!(a["priority"], "medium", "its readings are refused: {a}");
    assert!(a["message"].as_str().unwrap().contains("refused"), "{a}");
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_future_dated_records_total{source=\"coap\"}"
        ),
        1.0,
        "{m}"
    );

    // Clock set: readings taken, the alarm resolves (no clear delay here).
    let said = post(0, 72);
    assert!(said.contains("1 stored"), "{said}");
    let (_, alarms) = s.get("/api/v1/alarms?patient=p1").await;
    assert_eq!(clock_alarm(&alarms), None, "{alarms}");
    let (_, devices) = s.get("/api/v1/devices").await;
    let d = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "sensor-1")
        .cloned()
        .unwrap();
    assert!(d["clock_offset_ms"].as_i64().unwrap().abs() < 60_000, "{d}");
}
