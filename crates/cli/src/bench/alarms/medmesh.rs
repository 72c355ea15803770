//! The medmesh side of the alarm bench: a `medmesh serve` child process on
//! ephemeral ports over a fresh data directory, and a reader of its live
//! dashboard stream (`GET /api/v1/stream`), as the dashboard opens it.
//!
//! The server runs as its own process, as deployed (and as Mosquitto runs on
//! the other side): it then has its own open-files budget for its half of
//! the connections.

use super::book::Book;
use super::fleet::{device_id, index_of, patient_id};
use crate::bench::competitors::Process;
use medmesh_model::{DeviceId, Patient, PatientId};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running `medmesh serve`, killed when dropped.
pub struct Server {
    process: Process,
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    /// An administrator's API token.
    pub token: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// Prepares `dir` as a ward of `devices` patients, each with one monitor
/// assigned, and an administrator; returns the administrator's API token.
/// Written before the server starts, which then reads it as its own.
fn provision(dir: &Path, devices: u32) -> anyhow::Result<String> {
    let access = medmesh_access::Access::open(dir)?;
    access.directory.add_user(
        "bench-admin",
        medmesh_access::Role::Admin,
        None,
        &medmesh_access::secret::random_password(),
    )?;
    let (token, _) = access
        .directory
        .create_token("bench-admin", "bench alarms")?;
    let registry = medmesh_storage::Registry::open(dir)?;
    let admissions = (0..devices)
        .map(|i| -> anyhow::Result<(Patient, DeviceId)> {
            Ok((
                Patient {
                    id: PatientId::new(patient_id(i))?,
                    name: format!("Bench Patient {i}"),
                    ward: "Bench".into(),
                    bed: i.to_string(),
                },
                DeviceId::new(device_id(i))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    registry.admit_all(admissions)?;
    Ok(token)
}

/// Starts `medmesh serve` (this same executable) over `dir`.
pub async fn start(dir: &Path, devices: u32) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let token = provision(dir, devices)?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .args([
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
        // The simulated devices, like the demo's, send without credentials,
        // each on its own connection, all from this machine's address.
        .args(["--allow-anonymous-devices", "true"])
        .args(["--mqtt-max-connections", "0"])
        .args(["--mqtt-max-connections-per-address", "0"])
        .env(
            "MEDMESH_LOG",
            std::env::var("MEDMESH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start medmesh serve: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let process = Process(child);
    // Read the server's stderr on a thread: the line announcing the
    // listeners, then errors (passed on), so the pipe never fills.
    let (serving_tx, serving) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut serving_tx = Some(serving_tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("medmesh serving:") {
                if let Some(tx) = serving_tx.take() {
                    let _ = tx.send(line);
                }
            } else if line.contains("ERROR") {
                eprintln!("  medmesh server: {line}");
            }
        }
    });
    let line = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .map_err(|_| anyhow::anyhow!("medmesh serve did not start within 60 s"))?
        .map_err(|_| anyhow::anyhow!("medmesh serve exited before serving"))?;
    let addr_after = |marker: &str| -> anyhow::Result<SocketAddr> {
        line.split(marker)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {marker:?} address in {line:?}"))
    };
    Ok(Server {
        http: addr_after("http://")?,
        mqtt: addr_after("MQTT ")?,
        token,
        process,
    })
}

/// What the stream reader saw besides matched alarms.
#[derive(Default)]
pub struct StreamStats {
    pub events: AtomicU64,
    /// Alarms raised other than the heart-rate alarms the bench provokes.
    pub other_alarms: AtomicU64,
    /// Observation and device events the server skipped because the reader
    /// fell behind (`observations_skipped` events; alarm changes are never
    /// skipped, they are read back from the alarm log).
    pub observations_skipped: AtomicU64,
}

/// Opens the live stream as the administrator and notes in `book` every
/// heart-rate alarm raised, at the instant its bytes arrived. Runs until the
/// returned task is aborted; fails if the stream ends.
pub async fn watch_stream(
    server: &Server,
    book: Arc<Book>,
    stats: Arc<StreamStats>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let mut response = reqwest::Client::new()
        .get(format!("http://{}/api/v1/stream", server.http))
        .bearer_auth(&server.token)
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /api/v1/stream answered {}",
        response.status()
    );
    Ok(tokio::spawn(async move {
        let mut buffer: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            let Some(chunk) = response.chunk().await? else {
                anyhow::bail!("the live stream ended");
            };
            let arrived = Instant::now();
            buffer.extend_from_slice(&chunk);
            // Events end with a blank line.
            let mut consumed = 0;
            while let Some(end) = find(&buffer[consumed..], b"\n\n") {
                let event = &buffer[consumed..consumed + end];
                consumed += end + 2;
                on_event(event, arrived, &book, &stats);
            }
            buffer.drain(..consumed);
        }
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One server-sent event: `event: NAME` and `data: JSON` lines.
fn on_event(event: &[u8], arrived: Instant, book: &Book, stats: &StreamStats) {
    let text = String::from_utf8_lossy(event);
    let mut name = "message";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim_start();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return; // a keep-alive comment
    }
    stats.events.fetch_add(1, Ordering::Relaxed);
    match name {
        "alarm" => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
                tracing::warn!(%data, "unreadable alarm event");
                return;
            };
            let alarm = &v["alarm"];
            let ours = v["change"] == "raised" && alarm["vital"] == "heart_rate";
            match alarm["patient_id"].as_str().and_then(index_of) {
                Some(i) if ours => {
                    book.raised(i, arrived);
                }
                _ if v["change"] == "raised" => {
                    stats.other_alarms.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        "observations_skipped" => {
            let n = data.trim().parse().unwrap_or(1);
            stats.observations_skipped.fetch_add(n, Ordering::Relaxed);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_heart_rate_alarms_are_matched_by_patient() {
        let book = Book::default();
        let stats = StreamStats::default();
        let t0 = Instant::now();
        book.published(7, t0);
        let at = t0 + Duration::from_millis(4);
        on_event(
            b"event: observations\ndata: {\"type\":\"observations\"}",
            at,
            &book,
            &stats,
        );
        on_event(
            br#"event: alarm
data: {"type":"alarm","change":"raised","alarm":{"patient_id":"bench-pt-00007","vital":"heart_rate","value":140.0}}"#,
            at,
            &book,
            &stats,
        );
        on_event(
            br#"event: alarm
data: {"type":"alarm","change":"resolved","alarm":{"patient_id":"bench-pt-00007","vital":"heart_rate"}}"#,
            at,
            &book,
            &stats,
        );
        on_event(
            br#"event: alarm
data: {"type":"alarm","change":"raised","alarm":{"patient_id":"bench-pt-00003","vital":null}}"#,
            at,
            &book,
            &stats,
        );
        on_event(b"event: observations_skipped\ndata: 12", at, &book, &stats);
        let t = book.tally();
        assert_eq!(t.latencies, [Duration::from_millis(4)]);
        assert_eq!((t.missed, t.unexpected), (0, 0));
        assert_eq!(stats.other_alarms.load(Ordering::Relaxed), 1);
        assert_eq!(stats.observations_skipped.load(Ordering::Relaxed), 12);
        assert_eq!(stats.events.load(Ordering::Relaxed), 5);
    }
}
