//! Helpers shared by the integration tests: a server on ephemeral ports with
//! its own data directory, and small HTTP/MQTT conveniences.
#![allow(dead_code)]

pub mod live;
#[allow(unused_imports)]
pub use live::Live;

use medmesh_server::{Config, Running, Server};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

pub struct TestServer {
    pub running: Running,
    pub data_dir: tempfile::TempDir,
    /// The administrator's API token `http` sends.
    pub token: String,
    pub http: reqwest::Client,
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// An HTTP client that sends `token` as its API token on every request.
pub fn http_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An API token of the administrator of a running in-process server.
pub fn admin_token(running: &Running) -> String {
    running
        .access
        .directory
        .create_token("admin", "tests")
        .unwrap()
        .0
}

/// A client signed in (API token) as a new clinician `username` of a care
/// team covering ward "Test", where [`TestServer::admit`] puts patients.
pub fn clinician(s: &TestServer, username: &str, role: medmesh_access::Role) -> reqwest::Client {
    let d = &s.running.access.directory;
    d.add_user(username, role, None, "a long test password")
        .unwrap();
    let mut team = d
        .teams()
        .into_iter()
        .find(|t| t.id == "test-team")
        .unwrap_or_else(|| medmesh_access::Team {
            id: "test-team".into(),
            wards: ["Test".to_string()].into(),
            ..Default::default()
        });
    team.members.insert(username.to_string());
    d.put_team(team).unwrap();
    http_client(&d.create_token(username, "tests").unwrap().0)
}

/// Sends `body` with `client`; returns the status and JSON answer.
pub async fn send_as(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> (u16, Value) {
    let r = client
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Prepares `dir` for a spawned server: an administrator account
/// `test-admin` (created once) and a new API token for it.
pub fn provision_admin(dir: &std::path::Path) -> String {
    let access = medmesh_access::Access::open(dir).unwrap();
    if access.directory.user("test-admin").is_none() {
        access
            .directory
            .add_user(
                "test-admin",
                medmesh_access::Role::Admin,
                None,
                "test-admin-password",
            )
            .unwrap();
    }
    access
        .directory
        .create_token("test-admin", "tests")
        .unwrap()
        .0
}

pub async fn start_in(dir: &std::path::Path) -> Running {
    start_in_with(dir, |_| {}).await
}

/// A server whose configuration `adjust` changes first.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let data_dir = tempfile::tempdir().unwrap();
    let running = start_in_with(data_dir.path(), adjust).await;
    let token = admin_token(&running);
    let http = http_client(&token);
    TestServer {
        running,
        data_dir,
        token,
        http,
    }
}

pub async fn start_in_with(dir: &std::path::Path, adjust: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.coap.listen = "127.0.0.1:0".parse().unwrap();
    config.hl7.listen = "127.0.0.1:0".parse().unwrap();
    // Most tests play devices without credentials, as `medmesh demo` does:
    // allowed here explicitly (the product's default is off). Tests of
    // credentials turn it off again, or back to the default (None).
    config.devices.allow_anonymous = Some(true);
    // Most tests assert that one normal reading resolves an alarm: without
    // the product's clear delay here; tests of the delay set it back.
    config.rules.clear_after_s = 0;
    adjust(&mut config);
    Server::start(&config).await.expect("server starts")
}

impl TestServer {
    /// Stops the server and starts it again on the same data directory
    /// (new ports), keeping the administrator's token and client.
    pub async fn restart(self) -> TestServer {
        let TestServer {
            running,
            data_dir,
            token,
            http,
        } = self;
        running.stop();
        TestServer {
            running: start_in(data_dir.path()).await,
            data_dir,
            token,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` to a device ingest route as the device would, without
    /// credentials (these servers allow anonymous devices): a user's token
    /// is refused there.
    pub async fn device_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Admits patient `id` and assigns device `device` to them.
    pub async fn admit(&self, id: &str, device: &str) {
        let (s, _) = self
            .send(
                reqwest::Method::POST,
                "/api/v1/patients",
                serde_json::json!({"id": id, "name": format!("Patient {id}"), "ward": "Test", "bed": "1"}),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/devices/{device}"),
                serde_json::json!({"patient_id": id}),
            )
            .await;
        assert_eq!(s, 200);
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of one metric line, e.g. `medmesh_ingest_malformed_messages_total{source="mqtt"}`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// An MQTT 3.1.1 client (rumqttc) connected to `addr`, with its event loop
/// driven in the background; PUBACKs are forwarded on the returned channel.
pub async fn mqtt_client(
    addr: SocketAddr,
    id: &str,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    mqtt_client_with_inflight(addr, id, 100)
}

/// [`mqtt_client`] keeping up to `inflight` QoS 1 publishes unacknowledged
/// (as paho-mqtt and store-and-forward gateways do).
pub fn mqtt_client_with_inflight(
    addr: SocketAddr,
    id: &str,
    inflight: u16,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_inflight(inflight);
    let (client, mut eventloop) = AsyncClient::new(opts, 512);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let _ = tx.send(ack.pkid);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("test MQTT client: {e}");
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// What a 3.1.1 client's event loop saw, as text: "connack", "suback
/// [codes]", "puback", "publish TOPIC PAYLOAD", or "closed: REASON" (last).
pub async fn mqtt_events_client(
    addr: SocketAddr,
    id: &str,
    adjust: impl FnOnce(&mut MqttOptions),
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    adjust(&mut opts);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let said = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => "connack".to_string(),
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    format!("suback {:?}", ack.return_codes)
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => "puback".to_string(),
                Ok(Event::Incoming(Packet::Publish(p))) => format!(
                    "publish {} {}",
                    p.topic,
                    String::from_utf8_lossy(&p.payload)
                ),
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(format!("closed: {e:?}"));
                    return;
                }
            };
            if tx.send(said).is_err() {
                return;
            }
        }
    });
    (client, rx)
}

/// The next event (10 s at most: a bound on a hang, not a timing assertion).
pub async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an MQTT event within 10 s")
        .unwrap_or_else(|| "channel closed".into())
}

pub async fn recv_ack(acks: &mut tokio::sync::mpsc::UnboundedReceiver<u16>) -> u16 {
    tokio::time::timeout(Duration::from_secs(10), acks.recv())
        .await
        .expect("PUBACK within 10 s")
        .expect("connection alive")
}

pub fn topic(device: &str) -> String {
    medmesh_sources::mqtt::device_topic(device)
}

/// A `medmesh` child process, killed (SIGKILL) when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines until one contains `needle`; returns it.
pub fn wait_for_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    needle: &str,
) -> String {
    for line in lines {
        let line = line.unwrap();
        if line.contains(needle) {
            return line;
        }
    }
    panic!("process ended before printing {needle:?}");
}

/// Starts `medmesh serve` on ephemeral ports with `dir` as data directory.
/// Returns the process and its HTTP and MQTT addresses.
pub fn spawn_serve(dir: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
    spawn_serve_with(dir, &[])
}

/// [`spawn_serve`] with extra flags.
pub fn spawn_serve_with(dir: &std::path::Path, flags: &[&str]) -> (Child, SocketAddr, SocketAddr) {
    let (child, addrs) = spawn_serve_full(dir, flags);
    (child, addrs.http, addrs.mqtt)
}

/// Where a spawned server listens.
pub struct Addrs {
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub coap: SocketAddr,
    pub hl7: SocketAddr,
}

/// [`spawn_serve_with`], returning every listener's address.
pub fn spawn_serve_full(dir: &std::path::Path, flags: &[&str]) -> (Child, Addrs) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["serve", "--http-listen", "127.0.0.1:0"])
        .args([
            "--mqtt-listen",
            "127.0.0.1:0",
            "--coap-listen",
            "127.0.0.1:0",
            "--hl7-listen",
            "127.0.0.1:0",
        ])
        // Explicitly, as in `start_in_with`: these tests send as devices
        // without credentials.
        .args(["--allow-anonymous-devices", "true"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Child(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = wait_for_line(&mut lines, "medmesh serving:");
    // Keep draining stderr so the child never blocks on a full pipe; its
    // log goes to the test's output (shown when a test fails).
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("medmesh serve: {line}");
        }
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
    let addrs = Addrs {
        http: addr_after("http://"),
        mqtt: addr_after("MQTT "),
        coap: addr_after("CoAP "),
        hl7: addr_after("HL7 "),
    };
    (child, addrs)
}
