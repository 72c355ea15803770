//! CoAP over DTLS 1.2 with pre-shared keys (coaps), driven by libcoap's
//! coap-client built on OpenSSL (Debian libcoap3-bin; `scripts/test.sh`
//! installs it) in PSK mode: `-u` the device id, `-k` the key the API issued.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Output};

const COAPS_CLIENT: &str = "coap-client-openssl";

/// A server with coaps on an ephemeral port, anonymous devices off (the
/// product's default), and handshakes that give up after 3 s so that a
/// refused client does not hold a session for long.
async fn start_coaps() -> TestServer {
    start_with(|c| {
        c.devices.allow_anonymous = Some(false);
        c.coap.dtls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.coap.dtls_handshake_timeout = "3s".into();
    })
    .await
}

fn coaps_uri(s: &TestServer, device: &str) -> String {
    let addr = s.running.coaps_addr.expect("coaps is configured");
    format!("coaps://{addr}/medmesh/v1/devices/{device}/senml")
}

/// A SenML pack of one reading of `name`, dated now.
fn pack(name: &str, unit: &str, value: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(r#"[{{"n":"{name}","u":"{unit}","v":{value},"bt":{now}}}]"#)
}

/// POSTs `payload` as `identity` with `key`; returns what coap-client said
/// (stdout and stderr) and how it ended. `-B 8` bounds its wait for an
/// answer, so a refused handshake ends the client instead of its retrying.
fn coaps_post(identity: &str, key: &str, uri: &str, payload: &str) -> (Output, String) {
    coaps_client(&[
        "-u", identity, "-k", key, "-B", "8", "-m", "post", "-t", "110", "-e", payload, uri,
    ])
}

fn coaps_client(args: &[&str]) -> (Output, String) {
    let out = Command::new(COAPS_CLIENT).args(args).output().expect(
        "coap-client-openssl is installed (Debian libcoap3-bin; scripts/test.sh installs it)",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, said)
}

/// Issues `device` a pre-shared key through the API.
async fn issue_psk(s: &TestServer, device: &str) -> String {
    let (status, body) = s
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/devices/{device}/psk"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["identity"], device);
    let key = body["key"].as_str().unwrap().to_string();
    assert_eq!(body["key_hex"], hex(key.as_bytes()));
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn handshakes(m: &str, outcome: &str) -> f64 {
    metric(
        m,
        &format!("medmesh_dtls_handshakes_total{{listener=\"coaps\",outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_posts_over_dtls_with_its_pre_shared_key() {
    let s = start_coaps().await;
    s.admit("p1", "patch-1").await;
    let key = issue_psk(&s, "patch-1").await;
    let (out, said) = coaps_post(
        "patch-1",
        &key,
        &coaps_uri(&s, "patch-1"),
        &pack("heart_rate", "/min", 81.0),
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 stored"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 81.0, "{p}");
    // A larger pack block-wise (RFC 7959 Block1, 64-byte blocks) on the
    // same kind of session: the handshake authenticated it before any block.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let records: Vec<_> = (0..40)
        .map(|i| serde_json::json!({"n": "respiratory_rate", "u": "/min", "v": 12 + i % 5, "t": now - 40 + i}))
        .collect();
    let file = s.data_dir.path().join("pack.json");
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();
    let (_, said) = coaps_client(&[
        "-u",
        "patch-1",
        "-k",
        &key,
        "-B",
        "8",
        "-m",
        "post",
        "-t",
        "110",
        "-b",
        "64",
        "-f",
        file.to_str().unwrap(),
        &coaps_uri(&s, "patch-1"),
    ]);
    assert!(said.contains("40 stored"), "{said}");
    let m = s.metrics().await;
    assert_eq!(handshakes(&m, "established"), 2.0, "{m}");
    assert_eq!(
        metric(&m, "medmesh_ingest_samples_stored_total{source=\"coaps\"}"),
        41.0,
        "{m}"
    );
}

/// `openssl s_client` holding a DTLS 1.2 PSK session open (until dropped),
/// with the key in hex as the API gives it; returns once the handshake is
/// done, with the line naming the cipher suite.
fn openssl_session(s: &TestServer, identity: &str, key_hex: &str) -> (Child, String) {
    let addr = s.running.coaps_addr.unwrap();
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-dtls1_2",
            "-connect",
            &addr.to_string(),
            "-psk_identity",
            identity,
            "-psk",
            key_hex,
            "-cipher",
            "PSK-AES128-CCM8",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl (Debian openssl) is installed");
    let stdout = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let cipher = wait_for_line(&mut { stdout }, "Cipher is");
    (Child(child), cipher)
}

async fn wait_for_metric(s: &TestServer, name: &str, want: f64) {
    let mut polls = 0;
    while metric(&s.metrics().await, name) != want {
        polls += 1;
        assert!(polls < 300, "{name} never reached {want}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_address_and_expire_when_idle() {
    let s = start_with(|c| {
        c.devices.allow_anonymous = Some(false);
        c.coap.dtls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.coap.dtls_max_sessions_per_address = 1;
        c.coap.dtls_idle_timeout = "6s".into();
    })
    .await;
    s.admit("p1", "patch-1").await;
    let (_, body) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/devices/patch-1/psk",
            Value::Null,
        )
        .await;
    let (key, key_hex) = (
        body["key"].as_str().unwrap().to_string(),
        body["key_hex"].as_str().unwrap().to_string(),
    );
    let (holder, cipher) = openssl_session(&s, "patch-1", &key_hex);
    // RFC 7925's mandatory cipher suite, TLS_PSK_WITH_AES_128_CCM_8.
    assert!(cipher.contains("PSK-AES128-CCM8"), "{cipher}");
    let open = "medmesh_connections_open{listener=\"coaps\"}";
    assert_eq!(metric(&s.metrics().await, open), 1.0);
    // The address's one session is taken: another client from it is not
    // answered and stores nothing.
    let (_, said) = coaps_client(&[
        "-u",
        "patch-1",
        "-k",
        &key,
        "-B",
        "2",
        "-m",
        "post",
        "-t",
        "110",
        "-e",
        &pack("heart_rate", "/min", 99.0),
        &coaps_uri(&s, "patch-1"),
    ]);
    assert!(!said.contains("stored"), "{said}");
    let m = s.metrics().await;
    assert!(
        metric(
            &m,
            "medmesh_connections_refused_total{listener=\"coaps\",reason=\"address_full\"}"
        ) >= 1.0,
        "{m}"
    );
    // Idle past dtls_idle_timeout: the server closes the session.
    wait_for_metric(
        &s,
        "medmesh_connections_timed_out_total{listener=\"coaps\"}",
        1.0,
    )
    .await;
    wait_for_metric(&s, open, 0.0).await;
    drop(holder);
    let (_, said) = coaps_post(
        "patch-1",
        &key,
        &coaps_uri(&s, "patch-1"),
        &pack("heart_rate", "/min", 64.0),
    );
    assert!(said.contains("1 stored"), "{said}");
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 64.0, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_an_unknown_identity_fails_the_handshake_and_stores_nothing() {
    let s = start_coaps().await;
    s.admit("p1", "patch-1").await;
    let key = issue_psk(&s, "patch-1").await;
    let uri = coaps_uri(&s, "patch-1");
    let wrong = format!("{}x", &key[..key.len() - 1]);
    let (_, said) = coaps_post("patch-1", &wrong, &uri, &pack("heart_rate", "/min", 150.0));
    // Told at once with a fatal alert, not left to retransmit.
    assert!(
        !said.contains("stored") && said.to_lowercase().contains("bad record mac"),
        "{said}"
    );
    let (_, said) = coaps_post("ghost", &key, &uri, &pack("heart_rate", "/min", 151.0));
    assert!(
        !said.contains("stored") && said.to_lowercase().contains("unknown psk identity"),
        "{said}"
    );
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert!(p["latest"]["heart_rate"].is_null(), "{p}");
    let m = s.metrics().await;
    assert_eq!(handshakes(&m, "established"), 0.0, "{m}");
    assert_eq!(handshakes(&m, "unknown_identity"), 1.0, "{m}");
    assert_eq!(handshakes(&m, "failed"), 1.0, "the wrong key: {m}");
    assert_eq!(handshakes(&m, "timed_out"), 0.0, "{m}");
    // The right key still works after both.
    let (_, said) = coaps_post("patch-1", &key, &uri, &pack("heart_rate", "/min", 72.0));
    assert!(said.contains("1 stored"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_key_cannot_post_as_another_device_and_revoking_it_ends_its_use() {
    let s = start_coaps().await;
    s.admit("p1", "patch-1").await;
    s.admit("p2", "patch-2").await;
    let key1 = issue_psk(&s, "patch-1").await;
    issue_psk(&s, "patch-2").await;
    let (_, said) = coaps_post(
        "patch-1",
        &key1,
        &coaps_uri(&s, "patch-2"),
        &pack("heart_rate", "/min", 160.0),
    );
    assert!(
        said.contains("4.01") && said.contains("may not send as device patch-2"),
        "{said}"
    );
    let (_, p2) = s.get("/api/v1/patients/p2").await;
    assert!(p2["latest"]["heart_rate"].is_null(), "{p2}");
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_ingest_refused_messages_total{source=\"coaps\"}"
        ),
        1.0,
        "{m}"
    );

    // Revoked: the device's open sessions close at once, and its identity
    // is no longer known to the handshake.
    let (_holder, cipher) = openssl_session(&s, "patch-1", &hex(key1.as_bytes()));
    assert!(cipher.contains("PSK-AES128-CCM8"), "{cipher}");
    let open = "medmesh_connections_open{listener=\"coaps\"}";
    assert!(metric(&s.metrics().await, open) >= 1.0);
    let (status, _) = s
        .send(
            reqwest::Method::DELETE,
            "/api/v1/devices/patch-1/credentials",
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    // Every session here was patch-1's (coap-client's too, which the
    // client leaves open when it exits).
    wait_for_metric(&s, open, 0.0).await;
    let (_, said) = coaps_post(
        "patch-1",
        &key1,
        &coaps_uri(&s, "patch-1"),
        &pack("heart_rate", "/min", 90.0),
    );
    assert!(!said.contains("stored"), "{said}");
    let (_, p1) = s.get("/api/v1/patients/p1").await;
    assert!(p1["latest"]["heart_rate"].is_null(), "{p1}");
    assert_eq!(handshakes(&s.metrics().await, "unknown_identity"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_listener_keeps_working_beside_coaps() {
    let s = start_coaps().await;
    s.admit("p1", "cuff-1").await;
    s.admit("p2", "patch-2").await;
    let (status, body) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/devices/cuff-1/credentials",
            Value::Null,
        )
        .await;
    assert_eq!(status, 201);
    let token = body["password"].as_str().unwrap();
    let plain = format!(
        "coap://{}/medmesh/v1/devices/cuff-1/senml?token={token}",
        s.running.coap_addr
    );
    let out = Command::new("coap-client-notls")
        .args([
            "-m",
            "post",
            "-t",
            "110",
            "-e",
            &pack("body_temperature", "Cel", 37.2),
            &plain,
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("1 stored"), "{said}");
    let key = issue_psk(&s, "patch-2").await;
    let (_, said) = coaps_post(
        "patch-2",
        &key,
        &coaps_uri(&s, "patch-2"),
        &pack("respiratory_rate", "/min", 16.0),
    );
    assert!(said.contains("1 stored"), "{said}");
    let (_, p1) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p1["latest"]["body_temperature"]["value"], 37.2, "{p1}");
    let (_, p2) = s.get("/api/v1/patients/p2").await;
    assert_eq!(p2["latest"]["respiratory_rate"]["value"], 16.0, "{p2}");
    // A device's pre-shared key is no token on the plain listener.
    let as_token = format!(
        "coap://{}/medmesh/v1/devices/patch-2/senml?token={key}",
        s.running.coap_addr
    );
    let out = Command::new("coap-client-notls")
        .args([
            "-m",
            "post",
            "-t",
            "110",
            "-e",
            &pack("heart_rate", "/min", 90.0),
            &as_token,
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("4.01"), "{said}");
}
