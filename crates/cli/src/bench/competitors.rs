//! Running the workload against each system.

use super::client::publish_all;
use super::workload::Workload;
use super::{IngestArgs, Outcome, disk_usage};
use medmesh_server::{Config, Server};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn medmesh(args: &IngestArgs, w: &Workload, dir: &Path) -> anyhow::Result<Outcome> {
    eprintln!("bench ingest: medmesh…");
    std::fs::create_dir_all(dir)?;
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.coap.listen = "127.0.0.1:0".parse()?;
    config.hl7.listen = "127.0.0.1:0".parse()?;
    config.mqtt.max_inflight = usize::from(args.inflight);
    // The simulated devices, like the demo's, send without credentials,
    // all from this machine's address.
    config.devices.allow_anonymous = Some(true);
    config.mqtt.max_connections_per_address = 0;
    let running = Server::start(&config).await?;
    // Every device on a patient, so the rules run as they would on a ward.
    let registry = &running.pipeline.registry;
    let ward = medmesh_simulator::demo_ward(args.devices, 7);
    registry.admit_all(
        ward.iter()
            .map(|p| (p.patient.clone(), p.device.clone()))
            .collect(),
    )?;

    let published = publish_all(
        running.mqtt_addr,
        &w.messages,
        args.connections,
        args.inflight,
        "medmesh",
    )
    .await?;
    let stored = running.pipeline.store.stats().samples;
    anyhow::ensure!(
        stored == w.samples,
        "medmesh stored {stored} of {} samples",
        w.samples
    );
    // Compress what is still in the write-ahead log, as the store does on
    // its own whenever a segment fills, so the disk figure is the lasting one.
    let checkpoint_start = Instant::now();
    running.pipeline.store.checkpoint().await?;
    let stats = running.pipeline.store.stats();
    eprintln!(
        "  medmesh: checkpoint took {:.0} ms; WAL {} bytes, chunks {} bytes, other files (registry, alarm log) {} bytes",
        checkpoint_start.elapsed().as_secs_f64() * 1e3,
        stats.wal_bytes,
        stats.chunk_bytes,
        disk_usage(dir).saturating_sub(stats.wal_bytes + stats.chunk_bytes)
    );
    running.stop();
    Ok(Outcome {
        system: "medmesh (embedded)",
        samples: w.samples,
        elapsed: published.elapsed,
        // The samples' storage, as for the others: WAL and chunks. The
        // registry and the alarm log are not sample data (printed above).
        disk_bytes: stats.wal_bytes + stats.chunk_bytes,
        ack_latencies: published.latencies,
        acked_when: "fsynced to disk",
    })
}

/// One decoded sample on its way to a competitor's database.
pub(super) struct Row {
    pub device: String,
    pub code: &'static str,
    pub time_ms: i64,
    pub value: f64,
}

impl Row {
    /// One row per decoded observation of `device`.
    pub(super) fn of(device: &str, observations: &[medmesh_model::Observation]) -> Vec<Row> {
        observations
            .iter()
            .map(|o| Row {
                device: device.to_string(),
                code: o.vital.loinc(),
                time_ms: o.time_ms,
                value: o.value,
            })
            .collect()
    }
}

/// A child process killed when dropped.
pub(super) struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) async fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A private Mosquitto on a free port, queueing without limit so the bridge
/// sees every message.
pub(super) async fn start_mosquitto(dir: &Path) -> anyhow::Result<(Process, SocketAddr)> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_inflight_messages 100\n"
        ),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run mosquitto (Debian package mosquitto): {e}"))?;
    let p = Process(child);
    wait_for_port(port, "mosquitto").await?;
    Ok((p, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Subscribes to the device topics and hands decoded rows to `rows` in
/// batches, as Telegraf's MQTT consumer would.
async fn start_bridge(
    broker: SocketAddr,
    rows: tokio::sync::mpsc::Sender<Vec<Row>>,
) -> anyhow::Result<()> {
    let mut opts = MqttOptions::new("bench-bridge", broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    client
        .subscribe("medmesh/v1/devices/+/senml", QoS::AtLeastOnce)
        .await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let device = p.topic.split('/').nth(3).unwrap_or("?");
                    let Ok(decoded) = medmesh_codecs::senml::decode_json(&p.payload, 0) else {
                        continue;
                    };
                    if rows
                        .send(Row::of(device, &decoded.observations))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // Normal at teardown, when the broker is stopped.
                    tracing::debug!(error = %e, "bench bridge connection closed");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .map_err(|_| anyhow::anyhow!("bridge subscription not acknowledged"))??;
    Ok(())
}

/// Writes one batch of decoded rows into a competitor's database.
type BatchWriter = Box<
    dyn FnMut(
            Vec<Row>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>
        + Send,
>;

/// Runs the workload through Mosquitto and the bridge: subscribes the
/// bridge, publishes every message, and writes what the bridge decodes with
/// `write` in batches of up to 5,000 rows. Returns the publish figures, when
/// publishing started and when the last row was written.
async fn through_bridge(
    args: &IngestArgs,
    w: &Workload,
    broker: SocketAddr,
    label: &str,
    mut write: BatchWriter,
) -> anyhow::Result<(super::client::Published, Instant, Instant)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    start_bridge(broker, tx).await?;
    let total = w.samples;
    let writer = tokio::spawn(async move {
        let mut stored = 0u64;
        while stored < total {
            let Some(batch) = next_batch(&mut rx, 5000).await else {
                anyhow::bail!("bridge stopped after {stored} samples");
            };
            stored += batch.len() as u64;
            write(batch).await?;
        }
        anyhow::Ok(Instant::now())
    });
    let start = Instant::now();
    let published =
        publish_all(broker, &w.messages, args.connections, args.inflight, label).await?;
    let done = writer.await??;
    Ok((published, start, done))
}

/// Takes up to `max` rows from the channel, waiting only for the first.
async fn next_batch(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<Row>>,
    max: usize,
) -> Option<Vec<Row>> {
    let mut batch = rx.recv().await?;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(more) => batch.extend(more),
            Err(_) => break,
        }
    }
    Some(batch)
}

pub async fn influxdb(args: &IngestArgs, w: &Workload, dir: &Path) -> anyhow::Result<Outcome> {
    eprintln!("bench ingest: Mosquitto + InfluxDB…");
    std::fs::create_dir_all(dir)?;
    let (_mosquitto, broker) = start_mosquitto(dir).await?;
    let http_port = free_port()?;
    let rpc_port = free_port()?;
    let data = dir.join("influxdb");
    let conf = dir.join("influxdb.conf");
    std::fs::write(
        &conf,
        format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  wal-fsync-delay = "0s"
  cache-snapshot-write-cold-duration = "1s"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
"#,
            d = data.display()
        ),
    )?;
    let influxd = Command::new("influxd")
        .arg("-config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run influxd (Debian package influxdb): {e}"))?;
    let _influxd = Process(influxd);
    wait_for_port(http_port, "influxd").await?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let r = http
        .post(format!("{base}/query"))
        .form(&[("q", "CREATE DATABASE bench")])
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "InfluxDB refused CREATE DATABASE: {}",
        r.status()
    );

    let write: BatchWriter = Box::new(move |batch| {
        let (http, base) = (http.clone(), base.clone());
        Box::pin(async move {
            let mut body = String::with_capacity(batch.len() * 64);
            for r in &batch {
                use std::fmt::Write;
                let _ = writeln!(
                    body,
                    "vitals,device={},code={} value={} {}",
                    r.device, r.code, r.value, r.time_ms
                );
            }
            let resp = http
                .post(format!("{base}/write?db=bench&precision=ms"))
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "InfluxDB write failed: {}",
                resp.status()
            );
            Ok(())
        })
    });
    let (published, start, done) =
        through_bridge(args, w, broker, "mosquitto+influxdb", write).await?;
    // As for medmesh's checkpoint: let InfluxDB move the data from its WAL
    // into compressed TSM files (it does when the shard goes cold), so the
    // disk figure is the lasting one.
    let deadline = Instant::now() + Duration::from_secs(60);
    while disk_usage(&data.join("wal")) > 64 * 1024 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "  InfluxDB: WAL {} bytes, TSM data {} bytes",
        disk_usage(&data.join("wal")),
        disk_usage(&data.join("data"))
    );
    Ok(Outcome {
        system: "Mosquitto + InfluxDB 1.x",
        samples: w.samples,
        elapsed: done - start,
        disk_bytes: disk_usage(&data),
        ack_latencies: published.latencies,
        acked_when: "received by Mosquitto (not durable)",
    })
}

pub async fn sqlite(args: &IngestArgs, w: &Workload, dir: &Path) -> anyhow::Result<Outcome> {
    eprintln!("bench ingest: Mosquitto + SQLite…");
    std::fs::create_dir_all(dir)?;
    let (_mosquitto, broker) = start_mosquitto(dir).await?;
    let db_path = dir.join("bench.sqlite");
    let db = Arc::new(std::sync::Mutex::new(open_sqlite(&db_path)?));
    let db_at_end = db.clone();
    let write: BatchWriter = Box::new(move |batch| {
        let db = db.clone();
        // One transaction per batch; commit fsyncs (synchronous=FULL).
        Box::pin(async move {
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                insert_rows(&mut db.lock().expect("sqlite lock"), &batch)
            })
            .await?
        })
    });
    let (published, start, done) =
        through_bridge(args, w, broker, "mosquitto+sqlite", write).await?;
    // Fold SQLite's WAL into the database file, the lasting form.
    db_at_end
        .lock()
        .expect("sqlite lock")
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(Outcome {
        system: "Mosquitto + SQLite (batched)",
        samples: w.samples,
        elapsed: done - start,
        disk_bytes: disk_usage(dir)
            - std::fs::metadata(dir.join("mosquitto.conf")).map_or(0, |m| m.len()),
        ack_latencies: published.latencies,
        acked_when: "received by Mosquitto (not durable)",
    })
}

/// A new SQLite database with the bridge's samples table, in WAL mode with
/// `synchronous=FULL`: every commit is fsynced, so a committed row is durable.
pub(super) fn open_sqlite(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE samples (device TEXT NOT NULL, code TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                               PRIMARY KEY (device, code, ts)) WITHOUT ROWID;",
    )?;
    Ok(db)
}

/// Inserts `rows` in one transaction; returns once the commit is on disk.
pub(super) fn insert_rows(db: &mut rusqlite::Connection, rows: &[Row]) -> anyhow::Result<()> {
    let tx = db.transaction()?;
    {
        let mut insert =
            tx.prepare_cached("INSERT OR REPLACE INTO samples VALUES (?1, ?2, ?3, ?4)")?;
        for r in rows {
            insert.execute(rusqlite::params![r.device, r.code, r.time_ms, r.value])?;
        }
    }
    tx.commit()?;
    Ok(())
}
