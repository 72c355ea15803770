//! Killing the process at any moment loses no acknowledged sample.
//!
//! Each round starts `medmesh serve` on the same data directory, drives it
//! with concurrent MQTT (QoS 1) and HTTP writers that record every sample
//! the server acknowledged, kills it with SIGKILL at a random moment, restarts
//! it and checks that every acknowledged sample is readable. The round count
//! is `MEDMESH_CRASH_ROUNDS` (default 20); `scripts/crash-soak.sh` runs more.
//! WAL segments are kept small so that checkpoints run, and are interrupted,
//! throughout.

mod common;

use common::{mqtt_client, spawn_serve, spawn_serve_with, topic};
use rand::Rng;
use rumqttc::QoS;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MQTT_WRITERS: usize = 4;
const HTTP_WRITERS: usize = 2;
const BASE_MS: i64 = 1_765_440_000_000;

type Acked = Arc<Mutex<BTreeSet<i64>>>;

/// Samples per message.
const BATCH: i64 = 25;

/// A SenML pack of `BATCH` heart rates at `first_ms`, `first_ms + 1`, ...
fn pack(first_ms: i64) -> String {
    let records: Vec<_> = (first_ms..first_ms + BATCH)
        .map(|t| json!({"bt": t as f64 / 1000.0, "n": "heart_rate", "u": "/min", "v": (t % 100) as f64 + 40.0}))
        .collect();
    json!(records).to_string()
}

fn record(acked: &Acked, first_ms: i64) {
    acked.lock().unwrap().extend(first_ms..first_ms + BATCH);
}

/// Publishes one sample at a time and records it once PUBACKed.
async fn mqtt_writer(addr: SocketAddr, device: String, first_ms: i64, acked: Acked) {
    let (client, mut acks) = mqtt_client(addr, &device).await;
    for seq in 0.. {
        let t = first_ms + seq * BATCH;
        if client
            .publish(topic(&device), QoS::AtLeastOnce, false, pack(t))
            .await
            .is_err()
        {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), acks.recv()).await {
            Ok(Some(_)) => {
                record(&acked, t);
            }
            _ => return,
        }
    }
}

/// POSTs one sample at a time and records it once answered 200.
async fn http_writer(addr: SocketAddr, device: String, first_ms: i64, acked: Acked) {
    let http = reqwest::Client::new();
    for seq in 0.. {
        let t = first_ms + seq * BATCH;
        let sent = http
            .post(format!("http://{addr}/api/v1/devices/{device}/senml"))
            .body(pack(t))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => {
                record(&acked, t);
            }
            _ => return,
        }
    }
}

async fn stored(http: &reqwest::Client, addr: SocketAddr, patient: &str) -> BTreeSet<i64> {
    let url = format!(
        "http://{addr}/api/v1/patients/{patient}/observations?code=heart_rate&from={BASE_MS}&to={}",
        BASE_MS + 1_000_000_000
    );
    let body: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    body["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_sample() {
    let rounds: usize = std::env::var("MEDMESH_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let http = common::http_client(&common::provision_admin(dir.path()));
    let writers = MQTT_WRITERS + HTTP_WRITERS;
    let acked: Vec<Acked> = (0..writers).map(|_| Acked::default()).collect();
    let mut rng = rand::rng();

    // Admit one patient per writer, each with their own device.
    {
        let (_server, http_addr, _) = spawn_serve(dir.path());
        for w in 0..writers {
            let base = format!("http://{http_addr}/api/v1");
            let r = http
                .post(format!("{base}/patients"))
                .json(&json!({"id": format!("crash-{w}"), "name": format!("Crash {w}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let r = http
                .put(format!("{base}/devices/dev-{w}"))
                .json(&json!({"patient_id": format!("crash-{w}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }

    let mut total_acked = 0;
    for round in 0..rounds {
        // Small WAL segments, so checkpoints (and segment deletion) run
        // during the load and get killed part-way too.
        let (server, http_addr, mqtt_addr) =
            spawn_serve_with(dir.path(), &["--wal-segment-bytes", "65536"]);
        let mut tasks = Vec::new();
        for (w, acked) in acked.iter().enumerate() {
            let first = BASE_MS + (round as i64) * 10_000_000 + (w as i64) * 1_000_000;
            let device = format!("dev-{w}");
            let a = acked.clone();
            tasks.push(if w < MQTT_WRITERS {
                tokio::spawn(mqtt_writer(mqtt_addr, device, first, a))
            } else {
                tokio::spawn(http_writer(http_addr, device, first, a))
            });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..700))).await;
        drop(server); // SIGKILL
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }

        let (_check, http_addr, _) = spawn_serve(dir.path());
        total_acked = 0;
        for (w, a) in acked.iter().enumerate() {
            let acked = a.lock().unwrap().clone();
            let have = stored(&http, http_addr, &format!("crash-{w}")).await;
            let lost: Vec<_> = acked.difference(&have).take(5).collect();
            assert!(
                lost.is_empty(),
                "round {round}, writer {w}: acknowledged but lost: {lost:?}"
            );
            total_acked += acked.len();
        }
    }
    let checkpoints = std::fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .count();
    eprintln!(
        "{rounds} rounds, {total_acked} acknowledged samples, none lost; {checkpoints} checkpoint files"
    );
    assert!(checkpoints > 0, "the test should exercise checkpoints too");
    assert!(
        total_acked > rounds * writers,
        "writers made too little progress to prove anything"
    );
}
