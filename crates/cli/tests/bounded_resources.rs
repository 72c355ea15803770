//! Bounded resources (issue 12): every listener attacked as a client on the
//! hospital network would, over real sockets, with short limits set in the
//! configuration. Each test then checks that a legitimate device is still
//! served: an attacker may be cut off, valid data is never lost.
//!
//! No assertion is on speed: a wait has a generous bound only so that a
//! broken defence fails the test instead of hanging it.

mod common;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use common::*;
use rumqttc::QoS;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Longest wait for something the server should do within a second or two.
const PATIENCE: Duration = Duration::from_secs(30);

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x):
/// another machine on the network, as far as per-address caps go.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes the connection (or resets it); returns
/// what it sent before. Panics if it is still open after [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` one at a time, `pause` apart, until the server closes the
/// connection; returns how many were sent by then (all of them if it never did).
async fn trickle(stream: &mut TcpStream, bytes: &[u8], pause: Duration) -> usize {
    let mut buf = [0u8; 1024];
    for (i, b) in bytes.iter().enumerate() {
        if stream.write_all(&[*b]).await.is_err() {
            return i;
        }
        // The pause doubles as a look for the server's close.
        match tokio::time::timeout(pause, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return i + 1,
            Ok(Ok(n)) => panic!(
                "the server answered a request it never got whole: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
    }
    bytes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_headers_are_cut_off_and_idle_keep_alive_connections_closed() {
    let s = start_with(|c| c.http.header_read_timeout = "1s".into()).await;
    let addr = s.running.http_addr;

    // Slowloris: a request head sent a byte every 200 ms would take 40 s.
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{}\r\n",
        "X-Padding: slowloris\r\n".repeat(8)
    );
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let sent = trickle(&mut slow, head.as_bytes(), Duration::from_millis(200)).await;
    assert!(
        sent < head.len(),
        "a head trickled over {} bytes was read to its end",
        head.len()
    );

    // A client that sends its request and then sits on the connection.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answered = until_closed(&mut idle).await;
    assert!(
        String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"),
        "answered, then closed when idle: {:?}",
        String::from_utf8_lossy(&answered)
    );

    // A client that connects and sends nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());

    let m = s.metrics().await;
    assert!(
        metric(&m, "medmesh_connections_timed_out_total{listener=\"http\"}") >= 3.0,
        "{m}"
    );
    // Ordinary clients are served as before.
    let (status, health) = s.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_http_bodies_are_refused_on_every_route() {
    let s = start_with(|c| {
        c.http.max_body_bytes = 4096;
        // So that a connection kept open after its answer is closed soon.
        c.http.header_read_timeout = "2s".into();
    })
    .await;
    // Declared too large: refused before the body is read.
    let big = vec![b' '; 5000];
    let r = s
        .http
        .post(s.url("/api/v1/patients"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // Chunked, with no length declared, growing past the cap as it comes.
    let addr = s.running.http_addr;
    let mut chunked = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST /api/v1/devices/bed-1/senml HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/senml+json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..10 {
        request.extend_from_slice(b"3e8\r\n");
        request.extend_from_slice(&[b' '; 1000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before all of it is written.
    let _ = chunked.write_all(&request).await;
    let answer = until_closed(&mut chunked).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 413"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // A body within the cap is taken as ever.
    s.admit("p1", "bed-1").await;
    let pack = format!(
        r#"[{{"n":"heart_rate","u":"/min","v":71,"bt":{}}}]"#,
        now_s()
    );
    // As the device (anonymous devices are allowed in tests).
    let r = reqwest::Client::new()
        .post(s.url("/api/v1/devices/bed-1/senml"))
        .header("content-type", "application/senml+json")
        .body(pack)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// An ORU^R01 heart rate for `patient` from gateway GW at ICU, dated now.
fn oru(control_id: &str, patient: &str, heart_rate: u32) -> String {
    let t = jiff_like_hl7_time();
    format!(
        "MSH|^~\\&|GW|ICU|||{t}||ORU^R01|{control_id}|P|2.5\rPID|||{patient}\rOBR|1|||vitals|||{t}\rOBX|1|NM|8867-4^HR^LN||{heart_rate}|/min|||||F"
    )
}

/// The current UTC time as HL7 DTM (YYYYMMDDHHMMSS).
fn jiff_like_hl7_time() -> String {
    let secs = now_s() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Sends one MLLP message on `stream` and returns its ACK's MSA segment.
async fn mllp_send(stream: &mut TcpStream, message: &str) -> String {
    stream
        .write_all(format!("\x0b{message}\x1c\x0d").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\x1c\x0d") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("an ACK")
            .unwrap();
        assert!(n > 0, "closed before the ACK");
        got.extend_from_slice(&buf[..n]);
    }
    let ack = String::from_utf8_lossy(&got).to_string();
    ack.split('\r')
        .find(|seg| seg.starts_with("MSA|"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_stalled_mllp_connections_are_closed_and_the_gateway_still_sends() {
    let s = start_with(|c| {
        c.hl7.idle_timeout = "1s".into();
        c.hl7.message_timeout = "2s".into();
    })
    .await;
    let addr = s.running.hl7_addr;
    // The hospital's interface engine, connected before the attack.
    let mut gateway = TcpStream::connect(addr).await.unwrap();
    assert!(
        mllp_send(&mut gateway, &oru("OK-1", "P1", 72))
            .await
            .starts_with("MSA|AA|OK-1")
    );

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    // Starts a message and stops.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"\x0bMSH|^~\\&|GW|ICU|||").await.unwrap();
    assert!(until_closed(&mut stalled).await.is_empty());
    // Keeps the connection busy with a byte every 500 ms (never idle for a
    // second), which would take 60 s for this message.
    let mut trickler = TcpStream::connect(addr).await.unwrap();
    let message = format!("\x0b{}\x1c\x0d", oru("SLOW-1", "P2", 99));
    let sent = trickle(
        &mut trickler,
        message.as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert!(
        sent < message.len(),
        "a trickled message was read to its end"
    );

    let m = s.metrics().await;
    assert!(
        metric(&m, "medmesh_connections_timed_out_total{listener=\"hl7\"}") >= 3.0,
        "{m}"
    );
    // The trickled reading was never stored; the gateway goes on (on a new
    // connection if it idled out meanwhile, as interface engines do).
    let (status, _) = s.get("/api/v1/patients/P2").await;
    assert_ne!(
        status, 200,
        "P2 was admitted from a message never received whole"
    );
    let mut gateway = TcpStream::connect(addr).await.unwrap();
    assert!(
        mllp_send(&mut gateway, &oru("OK-2", "P1", 75))
            .await
            .starts_with("MSA|AA|OK-2")
    );
    let (_, p) = s.get("/api/v1/patients/P1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 75.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_mllp_message_closes_its_connection_before_it_is_buffered() {
    let s = start_with(|c| c.hl7.max_message_bytes = 4096).await;
    let mut flood = TcpStream::connect(s.running.hl7_addr).await.unwrap();
    flood.write_all(b"\x0bMSH|").await.unwrap();
    let chunk = vec![b'x'; 1024];
    let mut written = 0;
    // Far more than the cap, until the server closes.
    while written < 1 << 20 {
        if flood.write_all(&chunk).await.is_err() {
            break;
        }
        written += chunk.len();
    }
    until_closed(&mut flood).await;
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_payloads_refused_total{source=\"hl7\",reason=\"too_large\"}"
        ),
        1.0,
        "{m}"
    );
    let mut gateway = TcpStream::connect(s.running.hl7_addr).await.unwrap();
    assert!(
        mllp_send(&mut gateway, &oru("OK-1", "P1", 70))
            .await
            .starts_with("MSA|AA|")
    );
}

/// An MQTT 3.1.1 CONNECT (clean session, no credentials) for `client_id`.
fn mqtt_connect(client_id: &str) -> Vec<u8> {
    let mut variable = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    variable.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    variable.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, variable.len() as u8];
    packet.extend(variable);
    packet
}

/// Connects from `from` and sends CONNECT; whether a CONNACK (accepted) came.
async fn mqtt_accepted(from: &str, to: SocketAddr, client_id: &str) -> (bool, TcpStream) {
    let mut stream = connect_from(from, to).await;
    let _ = stream.write_all(&mqtt_connect(client_id)).await;
    let mut ack = [0u8; 4];
    let accepted = matches!(
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut ack)).await,
        Ok(Ok(_)) if ack == [0x20, 0x02, 0x00, 0x00]
    );
    (accepted, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_refuses_the_extra_mqtt_connection_while_the_device_keeps_working() {
    let s = start_with(|c| c.mqtt.max_connections_per_address = 3).await;
    let addr = s.running.mqtt_addr;
    s.admit("p1", "bed-1").await;
    // The bedside monitor, connected before the attack.
    let (device, mut acks) = mqtt_client(addr, "bed-1").await;
    let pack = |v: u32| {
        format!(
            r#"[{{"n":"heart_rate","u":"/min","v":{v},"bt":{}}}]"#,
            now_s()
        )
    };
    device
        .publish(topic("bed-1"), QoS::AtLeastOnce, false, pack(70))
        .await
        .unwrap();
    recv_ack(&mut acks).await;

    // The same machine opens connection after connection.
    let (first, _keep1) = mqtt_accepted("127.0.0.1", addr, "flood-1").await;
    let (second, _keep2) = mqtt_accepted("127.0.0.1", addr, "flood-2").await;
    assert!(first && second, "within the cap of 3 (with the monitor's)");
    let (third, mut refused) = mqtt_accepted("127.0.0.1", addr, "flood-3").await;
    assert!(!third, "the fourth connection from one address is refused");
    until_closed(&mut refused).await;
    // Another address is not affected.
    let (elsewhere, _keep3) = mqtt_accepted("127.0.0.2", addr, "other-host").await;
    assert!(elsewhere, "another address has its own allowance");

    // The monitor's connection was never touched: its next reading is stored.
    device
        .publish(topic("bed-1"), QoS::AtLeastOnce, false, pack(131))
        .await
        .unwrap();
    recv_ack(&mut acks).await;
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 131.0);

    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_connections_refused_total{listener=\"mqtt\",reason=\"address_full\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "medmesh_connections_open{listener=\"mqtt\"}"),
        4.0,
        "{m}"
    );
    // A connection that ends gives its place back.
    drop(_keep1);
    let mut retries = 0;
    while !mqtt_accepted("127.0.0.1", addr, "flood-4").await.0 {
        retries += 1;
        assert!(retries < 100, "a freed place was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_mllp_connection_caps_refuse_the_extra_connection_and_serve_on() {
    let s = start_with(|c| {
        c.http.max_connections_per_address = 2;
        c.hl7.max_connections = 2;
    })
    .await;
    // HTTP: an attacker's machine (127.0.0.2) holds its two connections; the
    // third is closed unanswered; clients at other addresses are served.
    let http = s.running.http_addr;
    let _a = connect_from("127.0.0.2", http).await;
    let _b = connect_from("127.0.0.2", http).await;
    let mut c = connect_from("127.0.0.2", http).await;
    let _ = c
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes())
        .await;
    assert!(until_closed(&mut c).await.is_empty(), "refused unanswered");
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);

    // MLLP: a cap of 2 on the listener; the gateway holds one connection.
    let hl7 = s.running.hl7_addr;
    let mut gateway = TcpStream::connect(hl7).await.unwrap();
    assert!(
        mllp_send(&mut gateway, &oru("OK-1", "P1", 72))
            .await
            .starts_with("MSA|AA|")
    );
    let _other = TcpStream::connect(hl7).await.unwrap();
    let mut extra = TcpStream::connect(hl7).await.unwrap();
    let _ = extra
        .write_all(format!("\x0b{}\x1c\x0d", oru("X-1", "P9", 150)).as_bytes())
        .await;
    assert!(
        until_closed(&mut extra).await.is_empty(),
        "refused unanswered"
    );
    assert!(
        mllp_send(&mut gateway, &oru("OK-2", "P1", 74))
            .await
            .starts_with("MSA|AA|")
    );

    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_connections_refused_total{listener=\"http\",reason=\"address_full\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "medmesh_connections_refused_total{listener=\"hl7\",reason=\"listener_full\"}"
        ),
        1.0,
        "{m}"
    );
    let (status, _) = s.get("/api/v1/patients/P9").await;
    assert_ne!(
        status, 200,
        "nothing of the refused connection was processed"
    );
}

/// A confirmable CoAP POST of SenML JSON to `path`, as raw bytes.
fn coap_post(
    mid: u16,
    path: &str,
    query: Option<&str>,
    block1: Option<(u32, bool, u8)>,
    size1: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    if let Some(q) = query {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.add_option(CoapOption::ContentFormat, vec![110]);
    if let Some((num, more, szx)) = block1 {
        let v = (num << 4) | (u32::from(more) << 3) | u32::from(szx);
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        p.add_option(CoapOption::Block1, bytes[skip..].to_vec());
    }
    if let Some(n) = size1 {
        p.add_option(CoapOption::Size1, n.to_be_bytes().to_vec());
    }
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

/// Sends one datagram and returns the answer's code, payload and packet.
async fn coap_exchange(
    sock: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
) -> (ResponseType, String, Packet) {
    sock.send_to(datagram, to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(PATIENCE, sock.recv_from(&mut buf))
        .await
        .expect("a CoAP answer")
        .unwrap();
    let packet = Packet::from_bytes(&buf[..n]).unwrap();
    let MessageClass::Response(code) = packet.header.code else {
        panic!("not a response: {:?}", packet.header.code);
    };
    let text = String::from_utf8_lossy(&packet.payload).to_string();
    (code, text, packet)
}

/// A SenML JSON pack of `n` heart rates dated now, padded with spaces to
/// `len` bytes (JSON allows trailing white space).
fn padded_pack(n: usize, len: usize) -> Vec<u8> {
    let t = now_s().floor();
    let records: Vec<_> = (0..n)
        .map(
            |i| serde_json::json!({"n": "heart_rate", "u": "/min", "v": 60 + i, "t": t - i as f64}),
        )
        .collect();
    let mut body = serde_json::to_vec(&records).unwrap();
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

fn uint_option(packet: &Packet, option: CoapOption) -> Option<u64> {
    packet
        .get_first_option(option)
        .map(|v| v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coap_block_wise_upload_without_valid_credentials_is_refused_at_block_0() {
    let s = start_with(|c| c.devices.allow_anonymous = Some(false)).await;
    s.admit("p1", "sensor-1").await;
    let (_, creds) = s
        .send(
            reqwest::Method::POST,
            "/api/v1/devices/sensor-1/credentials",
            serde_json::json!(null),
        )
        .await;
    let token = creds["password"].as_str().unwrap().to_string();
    let coap = s.running.coap_addr;
    let path = "/medmesh/v1/devices/sensor-1/senml";
    let block = vec![b' '; 64];
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // Block 0 of 64 bytes (SZX 2), no token: refused there and then.
    let (code, why, _) = coap_exchange(
        &sock,
        coap,
        &coap_post(1, path, None, Some((0, true, 2)), None, &block),
    )
    .await;
    assert_eq!(code, ResponseType::Unauthorized, "{why}");
    // A wrong token: the same.
    let (code, why, _) = coap_exchange(
        &sock,
        coap,
        &coap_post(
            2,
            path,
            Some("token=guess"),
            Some((0, true, 2)),
            None,
            &block,
        ),
    )
    .await;
    assert_eq!(code, ResponseType::Unauthorized, "{why}");
    // The blocks that follow belong to no upload: nothing was kept.
    for (mid, num) in [(3u16, 1u32), (4, 2)] {
        let (code, why, _) = coap_exchange(
            &sock,
            coap,
            &coap_post(
                mid,
                path,
                Some("token=guess"),
                Some((num, true, 2)),
                None,
                &block,
            ),
        )
        .await;
        assert_eq!(code, ResponseType::RequestEntityIncomplete, "{why}");
    }
    let m = s.metrics().await;
    assert_eq!(metric(&m, "medmesh_coap_buffered_bytes"), 0.0, "{m}");
    assert_eq!(
        metric(&m, "medmesh_ingest_refused_messages_total{source=\"coap\"}"),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "medmesh_payloads_refused_total{source=\"coap\",reason=\"incomplete\"}"
        ),
        2.0,
        "{m}"
    );

    // libcoap's client, block-wise without the token: 4.01 on the first block.
    let file = s.data_dir.path().join("pack.json");
    std::fs::write(&file, padded_pack(20, 2000)).unwrap();
    let coap_client = |uri: String| {
        let out = Command::new("coap-client-notls")
            .args(["-m", "post", "-t", "110", "-b", "64", "-f"])
            .arg(&file)
            .arg(uri)
            .output()
            .expect(
                "coap-client-notls is installed (Debian libcoap3-bin; scripts/test.sh installs it)",
            );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let said = coap_client(format!("coap://{coap}{path}"));
    assert!(said.contains("4.01"), "{said}");
    // The device itself, with its token, uploads the same pack in 32 blocks.
    let said = coap_client(format!("coap://{coap}{path}?token={token}"));
    assert!(said.contains("20 stored"), "{said}");
    let m = s.metrics().await;
    assert_eq!(metric(&m, "medmesh_coap_buffered_bytes"), 0.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_uploads_over_the_size_limit_get_4_13_naming_it() {
    let s = start_with(|c| c.coap.max_payload_bytes = 1024).await;
    s.admit("p1", "sensor-1").await;
    let coap = s.running.coap_addr;
    let path = "/medmesh/v1/devices/sensor-1/senml";
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let block = vec![b' '; 256];
    // Declared too large in Size1 on block 0.
    let (code, _, answer) = coap_exchange(
        &sock,
        coap,
        &coap_post(1, path, None, Some((0, true, 4)), Some(1_000_000), &block),
    )
    .await;
    assert_eq!(code, ResponseType::RequestEntityTooLarge);
    assert_eq!(uint_option(&answer, CoapOption::Size1), Some(1024));
    // Undeclared: blocks 0-3 fill the 1024 bytes, block 4 is one too many.
    for num in 0..4 {
        let (code, why, _) = coap_exchange(
            &sock,
            coap,
            &coap_post(
                10 + num as u16,
                path,
                None,
                Some((num, true, 4)),
                None,
                &block,
            ),
        )
        .await;
        assert_eq!(code, ResponseType::Continue, "block {num}: {why}");
    }
    let (code, why, answer) = coap_exchange(
        &sock,
        coap,
        &coap_post(20, path, None, Some((4, false, 4)), None, b"]"),
    )
    .await;
    assert_eq!(code, ResponseType::RequestEntityTooLarge, "{why}");
    assert_eq!(uint_option(&answer, CoapOption::Size1), Some(1024));
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            "medmesh_payloads_refused_total{source=\"coap\",reason=\"too_large\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "medmesh_coap_buffered_bytes"),
        0.0,
        "the upload was dropped: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_uploads_beyond_the_per_peer_and_global_budgets_get_5_03_and_the_device_is_served() {
    let s = start_with(|c| {
        // Room for one 600-byte upload per address, and for little more
        // than one and a half of them in all.
        c.coap.peer_buffer_bytes = 640;
        c.coap.buffer_budget_bytes = 896;
        c.coap.upload_timeout = "1s".into();
    })
    .await;
    s.admit("p1", "sensor-1").await;
    let coap = s.running.coap_addr;
    let path = "/medmesh/v1/devices/sensor-1/senml";
    let pack = padded_pack(5, 600);
    let sock = |ip: &str| {
        let ip = ip.to_string();
        async move { UdpSocket::bind(format!("{ip}:0")).await.unwrap() }
    };
    let (x, y, z, w) = (
        sock("127.0.0.1").await,
        sock("127.0.0.1").await,
        sock("127.0.0.2").await,
        sock("127.0.0.3").await,
    );
    // The device (x) is halfway through its upload: 512 bytes held for 127.0.0.1.
    for num in 0..2u32 {
        let chunk = &pack[num as usize * 256..(num as usize + 1) * 256];
        let (code, why, _) = coap_exchange(
            &x,
            coap,
            &coap_post(
                num as u16 + 1,
                path,
                None,
                Some((num, true, 4)),
                None,
                chunk,
            ),
        )
        .await;
        assert_eq!(code, ResponseType::Continue, "{why}");
    }
    // Another socket of the same address: over that address's budget
    // (512 + 256 > 640).
    let (code, _, answer) = coap_exchange(
        &y,
        coap,
        &coap_post(1, path, None, Some((0, true, 4)), None, &pack[..256]),
    )
    .await;
    assert_eq!(code, ResponseType::ServiceUnavailable);
    assert!(uint_option(&answer, CoapOption::MaxAge).is_some_and(|s| s > 0));
    // Another address: its own budget, until the listener's is spent
    // (768 held; 768 + 256 > 896).
    let (code, why, _) = coap_exchange(
        &z,
        coap,
        &coap_post(1, path, None, Some((0, true, 4)), None, &pack[..256]),
    )
    .await;
    assert_eq!(code, ResponseType::Continue, "{why}");
    let (code, _, _) = coap_exchange(
        &w,
        coap,
        &coap_post(1, path, None, Some((0, true, 4)), None, &pack[..256]),
    )
    .await;
    assert_eq!(code, ResponseType::ServiceUnavailable);
    let m = s.metrics().await;
    assert_eq!(metric(&m, "medmesh_coap_buffered_bytes"), 768.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "medmesh_payloads_refused_total{source=\"coap\",reason=\"peer_budget\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "medmesh_payloads_refused_total{source=\"coap\",reason=\"memory_budget\"}"
        ),
        1.0,
        "{m}"
    );

    // The device's upload completes: all 5 readings stored, none lost.
    let (code, why, answer) = coap_exchange(
        &x,
        coap,
        &coap_post(3, path, None, Some((2, false, 4)), None, &pack[512..]),
    )
    .await;
    assert_eq!(code, ResponseType::Changed, "{why}");
    assert_eq!(why, "5 stored");
    assert!(answer.get_first_option(CoapOption::Block1).is_some());
    let (_, p) = s.get("/api/v1/patients/p1").await;
    assert_eq!(p["latest"]["heart_rate"]["value"], 60.0);
    // The upload abandoned at 127.0.0.2 expires and frees what it held.
    let mut polls = 0;
    while metric(&s.metrics().await, "medmesh_coap_buffered_bytes") != 0.0 {
        polls += 1;
        assert!(polls < 300, "an abandoned upload was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a later upload is taken again.
    let (code, why, _) = coap_exchange(
        &y,
        coap,
        &coap_post(
            2,
            path,
            None,
            Some((0, false, 4)),
            None,
            &padded_pack(1, 200),
        ),
    )
    .await;
    assert_eq!(code, ResponseType::Changed, "{why}");
}

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_second: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_millis(ticks * 1000 / per_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_listener_backs_off_instead_of_spinning() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let token = provision_admin(dir.path());
    // `medmesh serve` with a hard limit of 64 open files: a few dozen
    // connections exhaust it and every further accept fails with EMFILE.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_medmesh"))
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--coap-listen",
            "127.0.0.1:0",
            "--hl7-listen",
            "127.0.0.1:0",
        ])
        .args(["--allow-anonymous-devices", "true", "--data-dir"])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Child(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = wait_for_line(&mut lines, "medmesh serving:");
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| eprintln!("serve: {l}"))
    });
    let addr_after = |marker: &str| -> SocketAddr {
        line.split(marker)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (http, mqtt) = (addr_after("http://"), addr_after("MQTT "));

    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(mqtt).await.unwrap());
    }
    // Out of descriptors, the accept loop waits between failures: over two
    // seconds it uses under a quarter of one core. This bounds a behaviour,
    // not a speed: a loop retrying at once used 1.4 s of the 2 s here.
    let pid = child.0.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(500),
        "the server used {used:?} of CPU in 2 s while out of file descriptors"
    );

    // Descriptors come back: the server serves on, and says what happened.
    drop(flood);
    let client = http_client(&token);
    let mut tries = 0;
    let metrics = loop {
        match client.get(format!("http://{http}/metrics")).send().await {
            Ok(r) if r.status().is_success() => break r.text().await.unwrap(),
            other => {
                tries += 1;
                assert!(tries < 100, "the server never recovered: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(
        metric(&metrics, "medmesh_accept_errors_total{listener=\"mqtt\"}") >= 1.0,
        "{metrics}"
    );
    let (device, mut acks) = mqtt_client(mqtt, "bed-1").await;
    let pack = format!(
        r#"[{{"n":"heart_rate","u":"/min","v":88,"bt":{}}}]"#,
        now_s()
    );
    device
        .publish(topic("bed-1"), QoS::AtLeastOnce, false, pack)
        .await
        .unwrap();
    recv_ack(&mut acks).await;
}
