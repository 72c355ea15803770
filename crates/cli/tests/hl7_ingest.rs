//! HL7 v2 ORU^R01 over MLLP: messages built by hl7apy (PyPI), ACKs checked.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::Command;

/// Sends an ORU^R01 built by hl7apy; returns the ACK's "MSA-1|MSA-2|MSA-3".
fn hl7apy_send(s: &TestServer, control_id: &str, patient: &str, obx: &[&str]) -> String {
    let addr = s.running.hl7_addr;
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/hl7_send.py"
        ))
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            control_id.into(),
            patient.into(),
        ])
        .args(obx)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "hl7apy (pip install hl7apy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oru_from_a_monitor_gateway_is_stored_and_acknowledged() {
    let s = start().await;
    let ack = hl7apy_send(
        &s,
        "MSG-1",
        "P77",
        &[
            "8867-4^Heart rate^LN=72=/min^^UCUM",
            "150456^MDC_PULS_OXIM_SAT_O2^MDC=96=262688^MDC_DIM_PERCENT^MDC",
            "151562^MDC_RESP_RATE^MDC=18=264928^MDC_DIM_RESP_PER_MIN^MDC",
        ],
    );
    assert_eq!(ack, "AA|MSG-1|");
    // The patient named in PID was admitted, with the PID-5 name.
    let (status, p) = s.get("/api/v1/patients/P77").await;
    assert_eq!(status, 200);
    assert_eq!(p["name"], "Jane Doe");
    assert_eq!(p["latest"]["heart_rate"]["value"], 72.0);
    assert_eq!(p["latest"]["spo2"]["value"], 96.0);
    assert_eq!(p["latest"]["respiratory_rate"]["value"], 18.0);
    // OBR-7, 2026-11-25 08:29:55 UTC.
    assert_eq!(p["latest"]["heart_rate"]["time_ms"], 1_795_595_395_000i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_observations_get_ae_and_the_good_ones_are_stored() {
    let s = start().await;
    let ack = hl7apy_send(
        &s,
        "MSG-2",
        "P78",
        &[
            "8867-4^Heart rate^LN=72=/min^^UCUM",
            "8310-5^Body temperature^LN=98.6=Cel^^UCUM",
        ],
    );
    let parts: Vec<&str> = ack.splitn(3, '|').collect();
    assert_eq!(&parts[..2], ["AE", "MSG-2"]);
    assert!(parts[2].contains("plausible range"), "{ack}");
    let (_, p) = s.get("/api/v1/patients/P78").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 72.0);
    assert!(p["latest"].get("body_temperature").is_none());
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "medmesh_ingest_rejected_records_total{source=\"hl7\"}"),
        1.0,
        "{m}"
    );
}

/// Sends raw bytes over MLLP and returns the ACK text.
fn mllp(s: &TestServer, message: &str) -> String {
    let mut sock = std::net::TcpStream::connect(s.running.hl7_addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    sock.write_all(format!("\x0b{message}\x1c\x0d").as_bytes())
        .unwrap();
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    while !data.ends_with(b"\x1c\x0d") {
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the ACK");
        data.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(data[1..data.len() - 2].to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unsupported_messages_get_ar_and_the_connection_goes_on() {
    let s = start().await;
    let ack = mllp(
        &s,
        "MSH|^~\\&|GW|ICU|||20261125||ADT^A01|ADT-1|P|2.5\rPID|||P1",
    );
    // The reason is escaped as HL7 text: "^" travels as "\S\".
    assert!(
        ack.contains("\rMSA|AR|ADT-1|message type ADT\\S\\A01 is not supported"),
        "{ack}"
    );
    let ack = mllp(&s, "this is not HL7");
    assert!(
        ack.contains("\rMSA|AR||message does not start with an MSH segment"),
        "{ack}"
    );
    // Several messages on one connection, answered in order.
    let mut sock = std::net::TcpStream::connect(s.running.hl7_addr).unwrap();
    let ok = "MSH|^~\\&|GW|ICU|||20261125||ORU^R01|OK-1|P|2.5\rPID|||P9\rOBX|1|NM|8867-4^HR^LN||80|/min|||||F";
    let bad = "MSH|^~\\&|GW|ICU|||20261125||ORU^R01|BAD-1|P|2.5\rOBX|1|NM|8867-4^HR^LN||80|/min";
    sock.write_all(format!("\x0b{ok}\x1c\x0d\x0b{bad}\x1c\x0d").as_bytes())
        .unwrap();
    let mut text = String::new();
    let mut chunk = [0u8; 4096];
    while text.matches("\x1c\x0d").count() < 2 {
        let n = sock.read(&mut chunk).unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let first = text.find("MSA|AA|OK-1").expect("AA for the first");
    let second = text
        .find("MSA|AR|BAD-1")
        .expect("AR for the second (no PID)");
    assert!(first < second);
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_malformed_messages_total{source=\"hl7\"}"
        ),
        3.0,
        "{m}"
    );
}

/// A server without anonymous devices (the product default) whose only
/// HL7 sender is MONITOR_GW at ICU (hl7_send.py's MSH-3/MSH-4) from `from`.
async fn with_sender(from: Option<&str>) -> TestServer {
    start_with(|c| {
        c.devices.allow_anonymous = None;
        c.hl7.senders = from
            .map(|a| medmesh_server::Hl7SenderConfig {
                application: "MONITOR_GW".into(),
                facility: "ICU".into(),
                addresses: vec![a.parse().unwrap()],
            })
            .into_iter()
            .collect();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_senders_are_known_by_application_facility_and_address() {
    let tachycardia = ["8867-4^Heart rate^LN=188=/min^^UCUM"];
    // Unknown, and listed but from another address: AR naming the reason,
    // nothing admitted or stored, no alarm, counted and audited.
    for (from, why) in [(None, "unknown sender"), (Some("10.9.9.9"), "127.0.0.1")] {
        let s = with_sender(from).await;
        let ack = hl7apy_send(&s, "MSG-X", "P99", &tachycardia);
        assert!(ack.starts_with("AR|MSG-X|") && ack.contains(why), "{ack}");
        let (status, _) = s.get("/api/v1/patients/P99").await;
        assert_eq!(status, 404, "no patient invented");
        let (_, alarms) = s.get("/api/v1/alarms").await;
        assert_eq!(alarms, serde_json::json!([]));
        assert_eq!(
            metric(
                &s.metrics().await,
                "medmesh_ingest_refused_messages_total{source=\"hl7\"}"
            ),
            1.0
        );
        let (_, audit) = s.get("/api/v1/audit?actor=hl7:MONITOR_GW@ICU").await;
        let entries = audit.as_array().unwrap();
        assert_eq!(entries.len(), 1, "{audit}");
        assert_eq!(entries[0]["outcome"], "denied");
        assert_eq!(entries[0]["patient"], "P99");
        assert!(entries[0]["detail"].as_str().unwrap().contains(why));
    }
    // From its listed address: stored, and the admission is audited.
    let s = with_sender(Some("127.0.0.1")).await;
    assert_eq!(hl7apy_send(&s, "MSG-Y", "P99", &tachycardia), "AA|MSG-Y|");
    let (_, p) = s.get("/api/v1/patients/P99").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 188.0);
    let (_, audit) = s
        .get("/api/v1/audit?actor=hl7:MONITOR_GW@ICU&action=admit patient from HL7")
        .await;
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit[0]["outcome"], "allowed");
}
