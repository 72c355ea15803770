//! `medmesh bench alarms`: how long an alarm takes from a device's publish
//! to a live dashboard stream, with every device on its own MQTT connection,
//! side by side with what a user would otherwise deploy, in the same run.
//!
//! Every system gets the same workload: `--devices` connections, each
//! publishing its six vital signs as SenML with QoS 1 at `--rate`, the
//! publishes spread evenly over each period. After a warm-up, randomly chosen
//! devices (`--alarms-per-second`) send a pulse of 140/min (NEWS2 score 3)
//! and then normal values again. One sample is the time from just before
//! that publish call until the system reports the alarm raised:
//!
//! - **medmesh**: the `alarm` "raised" event arriving on `GET /api/v1/stream`
//!   (server-sent events, read as the dashboard does, as an administrator);
//!   medmesh stores the samples durably before evaluating the rules.
//! - **Mosquitto + SQLite alerter**: a subscriber decodes the pack, commits
//!   it to SQLite (`synchronous=FULL`), then checks the threshold.
//! - **Mosquitto fan-out floor**: the same subscriber's threshold check as
//!   soon as the pack is received, nothing stored.
//!
//! Each alarm is matched to its publish by device (patient); alarms that
//! never arrive are counted as missed.
//!
//! `--gateways N` pipelines the same load: N connections, each forwarding
//! its share of the monitors' packs at once with 64 QoS 1 publishes in
//! flight (see `fleet`). `--runs` repeats the whole comparison (5 by
//! default) and reports each system's p99 per run with the median and the
//! worst of them: one lucky run says nothing about the tail.

mod book;
mod fleet;
mod medmesh;
mod mosquitto;

use book::{Book, Tally};
use clap::{Args, ValueEnum};
use fleet::{Fleet, FleetStats};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct AlarmsArgs {
    /// Devices, each its own MQTT connection.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    /// SenML packs (six vital signs each) per device per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Load before measuring, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// How long alarms are provoked and measured, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub measure: Duration,
    /// Alarms provoked per second while measuring, each on a random device.
    #[arg(long, default_value_t = 10.0)]
    pub alarms_per_second: f64,
    /// Forward the devices' packs through this many gateway connections,
    /// each with 64 publishes in flight (0: one connection per device).
    #[arg(long, default_value_t = 0)]
    pub gateways: u32,
    /// Times the whole comparison is run, one after the other.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Which other system to run the same workload against.
    #[arg(long, value_enum, default_value_t = AlarmsCompare::Mosquitto)]
    pub compare: AlarmsCompare,
    /// Where data goes [default: a temporary directory, removed afterwards].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print the figures as one JSON document on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlarmsCompare {
    None,
    Mosquitto,
}

/// How the load went, for one system.
#[derive(Debug, Clone, Default)]
struct LoadFigures {
    connected: u64,
    connect_time: Duration,
    /// Publishes sent and acknowledged per second while measuring.
    published_per_s: f64,
    acked_per_s: f64,
    /// Publishes the clients could not queue, and connections lost.
    refused: u64,
    disconnects: u64,
    /// Provocations skipped because every device was still in an episode.
    skipped: u64,
    /// CPU used while measuring, in cores: the server (medmesh or Mosquitto)
    /// and this process (the devices, the stream reader or the alerter).
    server_cores: Option<f64>,
    bench_cores: Option<f64>,
}

/// One column of the result: a system and where its clock stops.
struct Column {
    system: &'static str,
    observed_when: &'static str,
    load: LoadFigures,
    tally: Tally,
    /// Measured in the same run as the column before it (same load figures).
    same_run: bool,
    /// The live stream's events, observation events it skipped for the
    /// reader, and other alarms (medmesh only).
    stream_events: Option<u64>,
    observations_skipped: Option<u64>,
    other_alarms: Option<u64>,
}

pub async fn run(args: AlarmsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 100.0,
        "--rate must be above 0 and at most 100"
    );
    anyhow::ensure!(
        args.alarms_per_second > 0.0 && args.alarms_per_second <= 1000.0,
        "--alarms-per-second must be above 0 and at most 1000"
    );
    anyhow::ensure!(
        !args.measure.is_zero(),
        "--measure must be longer than zero"
    );
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        args.gateways <= args.devices,
        "--gateways must be at most --devices"
    );
    raise_open_files_limit(args.devices)?;
    let temp;
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => {
            temp = super::tempdir()?;
            temp.0.clone()
        }
    };
    eprintln!(
        "bench alarms: {} x {} Hz SenML over MQTT QoS 1, {} warm-up, {} measured, {} alarms/s provoked, {} run(s)",
        connections(&args),
        args.rate,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.measure),
        args.alarms_per_second,
        args.runs
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        eprintln!("bench alarms: run {run} of {}", args.runs);
        let dir = work_dir.join(format!("run-{run}"));
        let mut columns = vec![medmesh_column(&args, &dir.join("medmesh")).await?];
        if args.compare == AlarmsCompare::Mosquitto {
            columns.extend(mosquitto_columns(&args, &dir.join("mosquitto")).await?);
        }
        // Each run starts from nothing: its data directories go.
        let _ = std::fs::remove_dir_all(&dir);
        runs.push(columns);
    }
    if args.json {
        println!("{}", to_json(&args, &runs));
    } else {
        for (k, columns) in runs.iter().enumerate() {
            println!("\nrun {} of {}", k + 1, runs.len());
            print_table(&args, columns);
        }
        print_summary(&runs);
    }
    Ok(())
}

/// How the devices connect, for the headings.
fn connections(args: &AlarmsArgs) -> String {
    if args.gateways == 0 {
        format!("{} devices (one MQTT connection each)", args.devices)
    } else {
        format!(
            "{} devices through {} gateways ({} publishes in flight each)",
            args.devices,
            args.gateways,
            fleet::GATEWAY_IN_FLIGHT
        )
    }
}

/// One system's figures over every run: its p99 in each, their median and
/// worst, and what was missed in all.
struct Summary {
    system: &'static str,
    p99s: Vec<Option<Duration>>,
    missed: u64,
    observations_skipped: Option<u64>,
}

impl Summary {
    fn of(runs: &[Vec<Column>]) -> Vec<Summary> {
        let Some(first) = runs.first() else {
            return Vec::new();
        };
        (0..first.len())
            .map(|k| Summary {
                system: first[k].system,
                p99s: runs.iter().map(|r| r[k].tally.percentile(0.99)).collect(),
                missed: runs.iter().map(|r| r[k].tally.missed).sum(),
                observations_skipped: runs
                    .iter()
                    .map(|r| r[k].observations_skipped)
                    .sum::<Option<u64>>(),
            })
            .collect()
    }

    /// The median of the runs' p99s (the lower middle one for an even
    /// count); none if a run had no alarm.
    fn median(&self) -> Option<Duration> {
        let mut v: Vec<Duration> = self.p99s.iter().copied().collect::<Option<_>>()?;
        v.sort();
        v.get((v.len() - 1) / 2).copied()
    }

    fn worst(&self) -> Option<Duration> {
        self.p99s
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

fn print_summary(runs: &[Vec<Column>]) {
    println!(
        "\np99 over {} run(s), each system in the same runs:",
        runs.len()
    );
    println!(
        "{:<30} {:>12} {:>12} {:>7}  p99 of each run",
        "system", "median p99", "worst p99", "missed"
    );
    let cell = |d: Option<Duration>| match ms(d) {
        Some(v) => format!("{v:.1}ms"),
        None => "-".into(),
    };
    for s in Summary::of(runs) {
        let each: Vec<String> = s.p99s.iter().map(|d| cell(*d)).collect();
        let mut line = format!(
            "{:<30} {:>12} {:>12} {:>7}  {}",
            s.system,
            cell(s.median()),
            cell(s.worst()),
            s.missed,
            each.join(" ")
        );
        if let Some(n) = s.observations_skipped {
            line.push_str(&format!(
                "; {n} observation events skipped for the slow stream reader (alarms never are)"
            ));
        }
        println!("{line}");
    }
}

/// Each device is a socket here and one in the server (a separate process).
/// Raises this process's soft limit to the hard one (children inherit it).
fn raise_open_files_limit(devices: u32) -> anyhow::Result<()> {
    let need = u64::from(devices) + 256;
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| anyhow::anyhow!("cannot read or raise the open-files limit: {e}"))?;
    anyhow::ensure!(
        limit >= need,
        "{devices} devices need about {need} open files in this process and as many in the server, \
         but the limit is {limit}: raise the hard limit (e.g. `ulimit -Hn {need}` as root, LimitNOFILE \
         for a service, or nofile in /etc/security/limits.conf) or use fewer --devices"
    );
    Ok(())
}

async fn medmesh_column(args: &AlarmsArgs, dir: &Path) -> anyhow::Result<Column> {
    eprintln!(
        "bench alarms: medmesh: starting `medmesh serve`, admitting {} patients…",
        args.devices
    );
    let server = medmesh::start(dir, args.devices).await?;
    let book = Arc::new(Book::default());
    let stream = Arc::new(medmesh::StreamStats::default());
    let reader = medmesh::watch_stream(&server, book.clone(), stream.clone()).await?;
    let load = drive_load(
        args,
        "medmesh",
        server.mqtt,
        server.pid(),
        vec![book.clone()],
    )
    .await;
    // Counted before the devices disconnect, which raises device-offline alarms.
    let other_alarms = stream.other_alarms.load(Ordering::Relaxed);
    let stream_events = stream.events.load(Ordering::Relaxed);
    if reader.is_finished() {
        match reader.await {
            Ok(Err(e)) => anyhow::bail!("medmesh's live stream failed during the run: {e:#}"),
            Ok(Ok(())) => {}
            Err(e) => anyhow::bail!("the live stream reader stopped: {e}"),
        }
    } else {
        reader.abort();
    }
    let (load, fleet) = load?;
    fleet.stop().await;
    drop(server);
    Ok(Column {
        system: "medmesh -> live stream (SSE)",
        observed_when: "alarm event read from GET /api/v1/stream (samples fsynced first)",
        load,
        same_run: false,
        tally: book.tally(),
        stream_events: Some(stream_events),
        observations_skipped: Some(stream.observations_skipped.load(Ordering::Relaxed)),
        other_alarms: Some(other_alarms),
    })
}

async fn mosquitto_columns(args: &AlarmsArgs, dir: &Path) -> anyhow::Result<[Column; 2]> {
    eprintln!("bench alarms: Mosquitto + alerting subscriber…");
    std::fs::create_dir_all(dir)?;
    let (mosquitto, broker) = super::competitors::start_mosquitto(dir).await?;
    let durable = Arc::new(Book::default());
    let floor = Arc::new(Book::default());
    let alerter = mosquitto::start_alerter(broker, dir, floor.clone(), durable.clone()).await?;
    let (load, fleet) = drive_load(
        args,
        "Mosquitto",
        broker,
        mosquitto.0.id(),
        vec![durable.clone(), floor.clone()],
    )
    .await?;
    fleet.stop().await;
    drop(alerter);
    Ok([
        Column {
            system: "Mosquitto + SQLite alerter",
            observed_when: "subscriber decided, after committing the pack to SQLite (synchronous=FULL)",
            load: load.clone(),
            same_run: false,
            tally: durable.tally(),
            stream_events: None,
            observations_skipped: None,
            other_alarms: None,
        },
        Column {
            system: "Mosquitto fan-out (floor)",
            observed_when: "subscriber decided on receipt, nothing stored",
            load,
            same_run: true,
            tally: floor.tally(),
            stream_events: None,
            observations_skipped: None,
            other_alarms: None,
        },
    ])
}

/// Connects the fleet to `broker`, warms up, provokes and measures alarms,
/// and waits for the last ones. Returns the figures and the fleet, still
/// connected, for the caller to stop once it has read what it needs.
async fn drive_load(
    args: &AlarmsArgs,
    label: &'static str,
    broker: SocketAddr,
    server_pid: u32,
    books: Vec<Arc<Book>>,
) -> anyhow::Result<(LoadFigures, Fleet)> {
    let stats = Arc::new(FleetStats::default());
    let stage = Arc::new(Mutex::new("connecting"));
    let progress = tokio::spawn(crate::progress::lines(progress_line(
        label,
        args.devices,
        stats.clone(),
        stage.clone(),
        books[0].clone(),
    )));
    let connecting = Instant::now();
    let fleet = Fleet::connect(
        broker,
        args.devices,
        args.gateways,
        args.rate,
        books.clone(),
        stats.clone(),
    )
    .await;
    let connect_time = connecting.elapsed();
    let fleet = match fleet {
        Ok(f) => f,
        Err(e) => {
            progress.abort();
            crate::progress::end_line();
            return Err(e);
        }
    };
    *stage.lock().expect("stage lock") = "warm-up";
    tokio::time::sleep(args.warmup).await;

    *stage.lock().expect("stage lock") = "measuring";
    let before = (
        stats.published.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
    );
    let cpu_before = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let measuring = Instant::now();
    let skipped = provoke(&fleet, args).await;
    let measured = measuring.elapsed().as_secs_f64();
    let cpu_after = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let cores = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / measured);
    let after = (
        stats.published.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
    );

    // Devices told last publish their alarm within a period; then allow
    // every pending alarm time to arrive.
    *stage.lock().expect("stage lock") = "draining";
    let deadline = Instant::now() + period(args) + Duration::from_secs(10);
    while (fleet.raising() || books.iter().any(|b| b.pending() > 0)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.abort();
    crate::progress::end_line();
    let figures = LoadFigures {
        connected: stats.connected.load(Ordering::Relaxed),
        connect_time,
        published_per_s: (after.0 - before.0) as f64 / measured,
        acked_per_s: (after.1 - before.1) as f64 / measured,
        refused: stats.refused.load(Ordering::Relaxed),
        disconnects: stats.disconnects.load(Ordering::Relaxed),
        skipped,
        server_cores: cores(cpu_before.0, cpu_after.0),
        bench_cores: cores(cpu_before.1, cpu_after.1),
    };
    Ok((figures, fleet))
}

/// CPU time process `pid` has used, all threads, user and system (Linux:
/// /proc/PID/stat fields 14 and 15, in USER_HZ ticks, 100 a second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let mut after_name = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: f64 = after_name.nth(11)?.parse().ok()?;
    let stime: f64 = after_name.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn period(args: &AlarmsArgs) -> Duration {
    Duration::from_secs_f64(1.0 / args.rate)
}

/// For `--measure`, tells a random device `--alarms-per-second` times a
/// second to raise an alarm. A device is left alone for a while after, so
/// its alarm has resolved (its next packs are normal, for medmesh's clear
/// delay) before it is chosen again. Returns how many provocations found no
/// device free.
async fn provoke(fleet: &Fleet, args: &AlarmsArgs) -> u64 {
    let clear_delay = Duration::from_secs(medmesh_rules::DEFAULT_CLEAR_AFTER_S);
    let cooldown = period(args) * 3 + Duration::from_secs(2) + clear_delay;
    let n = fleet.len();
    let mut last: Vec<Option<Instant>> = vec![None; n as usize];
    let mut rng = SmallRng::seed_from_u64(2026);
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / args.alarms_per_second));
    let end = tokio::time::sleep(args.measure);
    tokio::pin!(end);
    let mut skipped = 0;
    loop {
        tokio::select! {
            _ = &mut end => return skipped,
            _ = every.tick() => {
                let now = Instant::now();
                let free = |i: u32| last[i as usize].is_none_or(|t| now - t >= cooldown);
                // Random first; scanning on from there if that one is busy.
                let start = rng.random_range(0..n);
                match (0..n).map(|k| (start + k) % n).find(|&i| free(i)) {
                    Some(i) => {
                        last[i as usize] = Some(now);
                        fleet.raise(i);
                    }
                    None => skipped += 1,
                }
            }
        }
    }
}

fn progress_line(
    label: &'static str,
    devices: u32,
    stats: Arc<FleetStats>,
    stage: Arc<Mutex<&'static str>>,
    book: Arc<Book>,
) -> impl FnMut() -> String + Send + 'static {
    let start = Instant::now();
    let mut last = (0u64, Instant::now());
    move || {
        let published = stats.published.load(Ordering::Relaxed);
        let rate = (published - last.0) as f64 / last.1.elapsed().as_secs_f64();
        last = (published, Instant::now());
        format!(
            "  {label} [{:>4.0}s {}] {}/{devices} devices connected, {rate:.0} msgs/s, {} alarms delivered, {} pending, {} lost connections",
            start.elapsed().as_secs_f64(),
            stage.lock().expect("stage lock"),
            stats.connected.load(Ordering::Relaxed),
            book.delivered(),
            book.pending(),
            stats.disconnects.load(Ordering::Relaxed),
        )
    }
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e3)
}

fn print_table(args: &AlarmsArgs, columns: &[Column]) {
    println!(
        "workload: {} x {} Hz SenML, QoS 1; {} warm-up, {} measured; {} alarms/s provoked (pulse 140/min, NEWS2 3)",
        connections(args),
        args.rate,
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.measure),
        args.alarms_per_second
    );
    println!(
        "{:<30} {:>9} {:>9} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "system", "connected", "msgs/s", "alarms", "matched", "missed", "p50", "p90", "p99", "max"
    );
    let cell = |d: Option<Duration>| match ms(d) {
        Some(v) => format!("{v:.1}ms"),
        None => "-".into(),
    };
    for c in columns {
        let t = &c.tally;
        println!(
            "{:<30} {:>9} {:>9.0} {:>7} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}",
            c.system,
            c.load.connected,
            c.load.published_per_s,
            t.injected,
            t.latencies.len(),
            t.missed,
            cell(t.percentile(0.5)),
            cell(t.percentile(0.9)),
            cell(t.percentile(0.99)),
            cell(t.latencies.last().copied()),
        );
    }
    println!();
    for c in columns {
        let l = &c.load;
        let mut notes = vec![format!("clock stops when {}", c.observed_when)];
        if c.same_run {
            notes.push("same devices and run as the line above".into());
            println!("{}: {}", c.system, notes.join("; "));
            continue;
        }
        notes.push(format!(
            "{:.0} acks/s, connected in {:.1} s",
            l.acked_per_s,
            l.connect_time.as_secs_f64()
        ));
        if let (Some(server), Some(bench)) = (l.server_cores, l.bench_cores) {
            notes.push(format!(
                "CPU while measuring: server {server:.2} cores, bench process {bench:.2} cores"
            ));
        }
        if l.refused > 0 {
            notes.push(format!(
                "{} publishes refused (client queue full)",
                l.refused
            ));
        }
        if l.disconnects > 0 {
            notes.push(format!("{} connections lost", l.disconnects));
        }
        if l.skipped > 0 {
            notes.push(format!(
                "{} provocations skipped (no device free)",
                l.skipped
            ));
        }
        if c.tally.unexpected > 0 {
            notes.push(format!(
                "{} alarms with no publish pending",
                c.tally.unexpected
            ));
        }
        if let Some(e) = c.stream_events {
            notes.push(format!("{e} stream events read"));
        }
        if let Some(n) = c.observations_skipped.filter(|n| *n > 0) {
            notes.push(format!(
                "{n} observation events skipped for the stream reader (it fell behind; no alarm is skipped)"
            ));
        }
        if let Some(o) = c.other_alarms.filter(|o| *o > 0) {
            notes.push(format!("{o} other alarms raised"));
        }
        println!("{}: {}", c.system, notes.join("; "));
    }
    if let Some(peak) = super::peak_rss_mib() {
        println!(
            "peak resident memory of this process (devices, stream reader, alerter): {peak:.0} MiB"
        );
    }
}

fn to_json(args: &AlarmsArgs, runs: &[Vec<Column>]) -> serde_json::Value {
    let system = |c: &Column| {
        serde_json::json!({
            "system": c.system,
            "observed_when": c.observed_when,
            "connected": c.load.connected,
            "connect_s": c.load.connect_time.as_secs_f64(),
            "published_per_s": c.load.published_per_s,
            "acked_per_s": c.load.acked_per_s,
            "refused": c.load.refused,
            "disconnects": c.load.disconnects,
            "skipped": c.load.skipped,
            "server_cores": c.load.server_cores,
            "bench_cores": c.load.bench_cores,
            "alarms": c.tally.injected,
            "matched": c.tally.latencies.len(),
            "missed": c.tally.missed,
            "unexpected": c.tally.unexpected,
            "p50_ms": ms(c.tally.percentile(0.5)),
            "p90_ms": ms(c.tally.percentile(0.9)),
            "p99_ms": ms(c.tally.percentile(0.99)),
            "max_ms": ms(c.tally.latencies.last().copied()),
            "stream_events": c.stream_events,
            "stream_observations_skipped": c.observations_skipped,
            "other_alarms": c.other_alarms,
        })
    };
    serde_json::json!({
        "devices": args.devices,
        "gateways": args.gateways,
        "rate_hz": args.rate,
        "warmup_s": args.warmup.as_secs_f64(),
        "measure_s": args.measure.as_secs_f64(),
        "alarms_per_second": args.alarms_per_second,
        "runs": runs.iter().map(|r| r.iter().map(system).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "summary": Summary::of(runs).iter().map(|s| serde_json::json!({
            "system": s.system,
            "p99_ms": s.p99s.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "p99_median_ms": ms(s.median()),
            "p99_worst_ms": ms(s.worst()),
            "missed": s.missed,
            "stream_observations_skipped": s.observations_skipped,
        })).collect::<Vec<_>>(),
    })
}
