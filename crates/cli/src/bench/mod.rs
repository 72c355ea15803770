//! `medmesh bench ingest`: the full ingest path under load, side by side with
//! what a user would otherwise deploy, in the same run on the same machine.
//!
//! The workload is a fleet of bedside monitors sending 1 Hz vitals (the six
//! monitored vital signs, from the simulator's physiology) in SenML batches
//! over MQTT with QoS 1. Every system gets the same pre-built messages:
//!
//! - **medmesh**: the embedded listener; a PUBACK means the samples are fsynced.
//! - **Mosquitto + InfluxDB 1.x**: Mosquitto takes the publishes; a bridge
//!   (as Telegraf would) subscribes, decodes the SenML and writes line
//!   protocol to InfluxDB in batches. Mosquitto acknowledges on receipt.
//! - **Mosquitto + SQLite**: the same bridge inserting into a plain SQLite
//!   table, one transaction per batch, `synchronous=FULL`.
//!
//! Throughput is samples divided by the time from the first publish until
//! every sample is stored (for medmesh: acknowledged, which implies stored).

pub mod alarms;
mod client;
mod competitors;
pub mod query;
mod workload;

use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Simulated bedside monitors.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Seconds of 1 Hz vitals each device sends.
    #[arg(long, default_value_t = 600)]
    pub seconds: usize,
    /// Seconds of readings per SenML message (6 samples per second).
    #[arg(long, default_value_t = 10)]
    pub batch_seconds: usize,
    /// MQTT connections the messages are spread over.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Unacknowledged publishes allowed per connection.
    #[arg(long, default_value_t = 64)]
    pub inflight: u16,
    /// Which other systems to run the same workload against.
    #[arg(long, value_enum, default_value_t = Compare::All)]
    pub compare: Compare,
    /// Where data goes [default: a temporary directory, removed afterwards].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    None,
    Sqlite,
    Influxdb,
    All,
}

/// One system's figures.
pub struct Outcome {
    pub system: &'static str,
    pub samples: u64,
    pub elapsed: Duration,
    pub disk_bytes: u64,
    pub ack_latencies: Vec<Duration>,
    /// What an acknowledgement promised.
    pub acked_when: &'static str,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64()
    }

    fn bytes_per_sample(&self) -> f64 {
        self.disk_bytes as f64 / self.samples as f64
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.ack_latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut v = self.ack_latencies.clone();
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

pub async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.devices > 0 && args.seconds > 0,
        "--devices and --seconds must be at least 1"
    );
    anyhow::ensure!(
        args.batch_seconds > 0 && args.batch_seconds <= args.seconds,
        "--batch-seconds must be between 1 and --seconds"
    );
    let temp;
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempdir()?;
            temp.0.clone()
        }
    };
    eprintln!("bench ingest: building the workload…");
    let workload = workload::build(args.devices, args.seconds, args.batch_seconds);
    eprintln!(
        "bench ingest: {} devices x {} s x 6 vitals = {} samples in {} SenML messages of {} samples ({:.0} MiB)",
        args.devices,
        args.seconds,
        workload.samples,
        workload.messages.len(),
        args.batch_seconds * 6,
        workload.payload_bytes as f64 / (1 << 20) as f64
    );

    let mut outcomes =
        vec![competitors::medmesh(&args, &workload, &work_dir.join("medmesh")).await?];
    if matches!(args.compare, Compare::Influxdb | Compare::All) {
        outcomes.push(competitors::influxdb(&args, &workload, &work_dir.join("influxdb")).await?);
    }
    if matches!(args.compare, Compare::Sqlite | Compare::All) {
        outcomes.push(competitors::sqlite(&args, &workload, &work_dir.join("sqlite")).await?);
    }
    print_table(&args, &outcomes);
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory of this process (workload + medmesh): {peak:.0} MiB");
    }
    Ok(())
}

/// VmHWM from /proc/self/status, in MiB (Linux only).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn print_table(args: &IngestArgs, outcomes: &[Outcome]) {
    println!(
        "\nworkload: {} devices, {} s of 1 Hz vitals each, {} samples per message, {} connections x {} in flight, QoS 1",
        args.devices,
        args.seconds,
        args.batch_seconds * 6,
        args.connections,
        args.inflight
    );
    println!(
        "{:<30} {:>12} {:>13} {:>10} {:>10}  acknowledged when",
        "system", "samples/s", "bytes/sample", "ack p50", "ack p99"
    );
    for o in outcomes {
        println!(
            "{:<30} {:>12.0} {:>13.2} {:>8.1}ms {:>8.1}ms  {}",
            o.system,
            o.rate(),
            o.bytes_per_sample(),
            o.percentile(0.5).as_secs_f64() * 1e3,
            o.percentile(0.99).as_secs_f64() * 1e3,
            o.acked_when
        );
    }
    let ours = &outcomes[0];
    for o in &outcomes[1..] {
        println!(
            "medmesh vs {}: {:.2}x the throughput, {:.2}x the disk bytes per sample",
            o.system,
            ours.rate() / o.rate(),
            ours.bytes_per_sample() / o.bytes_per_sample()
        );
    }
}

/// Total size of the files under `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> anyhow::Result<TempDir> {
    let dir = std::env::temp_dir().join(format!("medmesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(TempDir(dir))
}
