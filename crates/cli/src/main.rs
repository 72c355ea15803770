//! `medmesh`: the command-line entry point.
//!
//! - `medmesh serve`: the server (MQTT listener, REST API, dashboard, storage).
//! - `medmesh demo`: the server plus a simulated ward publishing to it.
//! - `medmesh simulate`: the simulator alone, as a load generator against any broker.

mod bench;
mod demo;
mod progress;
mod user;

use clap::{Args, Parser, Subcommand};
use medmesh_server::{Config, Server};
use medmesh_simulator::{LoadConfig, LoadStats, Protocol, clinical_demo_ward, demo_ward, run_load};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "medmesh",
    version,
    about = "Internet-of-Medical-Things platform: devices in, durable data, alarms and dashboards out"
)]
struct Cli {
    /// Log format: "text" for people, "json" for log collectors.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: MQTT listener, REST API, dashboard and embedded storage.
    Serve(ServeArgs),
    /// Run the server with a simulated ward publishing live vitals to it.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Patients on the simulated ward.
        #[arg(long, default_value_t = 24)]
        patients: usize,
        /// Readings per patient per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// Publish a simulated fleet to an MQTT broker (medmesh or any other).
    Simulate(SimulateArgs),
    /// Benchmarks, compared side by side with other systems in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Manage user accounts in a data directory (with the server stopped;
    /// while it runs, use the API: POST /api/v1/users).
    #[command(subcommand)]
    User(user::UserCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable ingest through the whole path (MQTT, decode, rules, store, ack).
    Ingest(bench::IngestArgs),
    /// One patient's 24 hours of 1 Hz vitals read back as a range query.
    Query(bench::query::QueryArgs),
    /// Alarm latency from a device's publish to the live dashboard stream,
    /// every device on its own MQTT connection.
    Alarms(bench::alarms::AlarmsArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [config: data_dir; default: medmesh-data, or medmesh-demo-data for the demo].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address [config: http.listen; default: 127.0.0.1:8080].
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// MQTT listen address [config: mqtt.listen; default: 127.0.0.1:1883].
    #[arg(long)]
    mqtt_listen: Option<SocketAddr>,
    /// Accept readings from devices that were issued no credentials, on MQTT,
    /// CoAP, HTTP and HL7 [config: devices.allow_anonymous; default: false,
    /// whatever the bind address; true for `medmesh demo`].
    #[arg(long)]
    allow_anonymous_devices: Option<bool>,
    /// PEM certificate chain: with --tls-key, turns TLS on for the HTTP, MQTT
    /// and HL7 listeners [config: tls.cert; default: off].
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert [config: tls.key].
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA whose client certificates identify MQTT devices by Common Name
    /// [config: tls.client_ca].
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// CoAP (UDP) listen address [config: coap.listen; default: 127.0.0.1:5683].
    #[arg(long)]
    coap_listen: Option<SocketAddr>,
    /// CoAP over DTLS 1.2 with pre-shared keys (coaps, UDP) listen address
    /// [config: coap.dtls_listen; default: off].
    #[arg(long)]
    coaps_listen: Option<SocketAddr>,
    /// HL7 v2 MLLP (TCP) listen address [config: hl7.listen; default: 127.0.0.1:2575].
    #[arg(long)]
    hl7_listen: Option<SocketAddr>,
    /// Largest MQTT packet accepted, in bytes [config: mqtt.max_packet_bytes; default: 1048576].
    #[arg(long)]
    mqtt_max_packet_bytes: Option<usize>,
    /// Publishes per MQTT connection being stored at once [config: mqtt.max_inflight; default: 64].
    #[arg(long)]
    mqtt_max_inflight: Option<usize>,
    /// MQTT connections open at once, 0 for no cap [config: mqtt.max_connections; default: 10000].
    #[arg(long)]
    mqtt_max_connections: Option<usize>,
    /// MQTT connections open at once from one address, 0 for no cap
    /// [config: mqtt.max_connections_per_address; default: 256].
    #[arg(long)]
    mqtt_max_connections_per_address: Option<usize>,
    /// Size at which a write-ahead log segment is checkpointed into compressed
    /// chunks [config: storage.wal_segment_bytes; default: 67108864].
    #[arg(long)]
    wal_segment_bytes: Option<u64>,
    /// Checkpoint at least this often [config: storage.checkpoint_interval; default: 1h].
    #[arg(long)]
    checkpoint_interval: Option<String>,
    /// How long a kind of data is kept, KIND=DURATION, repeatable: e.g.
    /// --retention default=400days --retention heart_rate=90days
    /// [config: storage.retention; default: forever].
    #[arg(long, value_name = "KIND=DURATION")]
    retention: Vec<String>,
    /// Alarm profile of patients given no alarm settings
    /// [config: rules.default_profile; default: none].
    #[arg(long)]
    default_alarm_profile: Option<String>,
    /// Battery level (percent) under which a device's patient gets a
    /// low-priority alarm [config: rules.battery_low_percent; default: 20].
    #[arg(long)]
    battery_low_percent: Option<f64>,
    /// Seconds between runs of the timer rules (stale data)
    /// [config: rules.timer_interval_s; default: 10].
    #[arg(long)]
    rules_timer_interval_s: Option<u64>,
    /// Seconds an alarm's condition must stay clear before the alarm
    /// resolves by itself, for profiles that set none; 0: at the first
    /// clear reading [config: rules.clear_after_s; default: 30].
    #[arg(long)]
    alarm_clear_after_s: Option<u64>,
    /// Alarm changes are POSTed (signed) to this URL, repeatable
    /// [config: alarms.webhook.urls; default: none].
    #[arg(long, value_name = "URL")]
    webhook_url: Vec<String>,
    /// Shared secret that signs webhook requests, 16+ characters
    /// [config: alarms.webhook.secret; env: MEDMESH_WEBHOOK_SECRET].
    #[arg(long, env = "MEDMESH_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// SMTP server for alarm e-mail, e.g. smtp://127.0.0.1:25
    /// [config: alarms.email.smtp_url; default: no e-mail].
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// Sender of alarm e-mail, e.g. "medmesh <alarms@example.org>" [config: alarms.email.from].
    #[arg(long)]
    email_from: Option<String>,
    /// IANA time zone of the site, e.g. Europe/London: times in alarm e-mail
    /// (with their offset) and quiet hours [config: alarms.time_zone; default: UTC].
    #[arg(long)]
    time_zone: Option<String>,
    /// The dashboard's address as its users reach it, e.g.
    /// https://medmesh.example.org: alarm e-mail links to the alarm there
    /// [config: alarms.dashboard_url; default: no link].
    #[arg(long, value_name = "URL")]
    dashboard_url: Option<String>,
    /// Hold low-priority e-mail and webhooks during START-END, e.g. 22:00-07:00
    /// [config: alarms.quiet_hours.start, .end; default: none].
    #[arg(long, value_name = "START-END")]
    quiet_hours: Option<String>,
    /// UTC offset of --quiet-hours, e.g. +01:00 [config: alarms.quiet_hours.utc_offset; default: UTC].
    #[arg(long, requires = "quiet_hours", allow_hyphen_values = true)]
    quiet_hours_utc_offset: Option<String>,
    /// IANA time zone of --quiet-hours, e.g. Europe/London (follows daylight saving)
    /// [config: alarms.quiet_hours.time_zone; default: --time-zone, else UTC].
    #[arg(
        long,
        requires = "quiet_hours",
        conflicts_with = "quiet_hours_utc_offset"
    )]
    quiet_hours_time_zone: Option<String>,
}

#[derive(Args)]
struct SimulateArgs {
    /// Protocols the devices speak, dealt out in turn: mqtt, coap, http, hl7
    /// (comma-separated, e.g. "mqtt,coap").
    #[arg(long, value_delimiter = ',', default_value = "mqtt")]
    protocol: Vec<Protocol>,
    /// MQTT broker to publish to, HOST:PORT (for mqtt).
    #[arg(long)]
    broker: Option<String>,
    /// CoAP server, HOST:PORT (for coap).
    #[arg(long)]
    coap: Option<SocketAddr>,
    /// HTTP server, HOST:PORT (for http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// HL7 v2 MLLP server, HOST:PORT (for hl7).
    #[arg(long)]
    hl7: Option<SocketAddr>,
    /// Simulated devices (one patient monitor each).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// SenML packs per device per second (6 samples each).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Connections (per protocol) the devices are spread over [default: min(devices, 64)].
    #[arg(long)]
    connections: Option<usize>,
    /// MQTT QoS: 1 waits for the broker's acknowledgements, 0 does not.
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// Stop after this many seconds [default: run until interrupted].
    #[arg(long)]
    duration: Option<u64>,
}

impl ServeArgs {
    fn config(&self, default_data_dir: &str) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
                Config::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
            }
            None => Config {
                data_dir: PathBuf::from(default_data_dir),
                ..Config::default()
            },
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = self.http_listen {
            config.http.listen = a;
        }
        if let Some(a) = self.mqtt_listen {
            config.mqtt.listen = a;
        }
        if let Some(b) = self.allow_anonymous_devices {
            config.devices.allow_anonymous = Some(b);
        }
        if let Some(p) = &self.tls_cert {
            config.tls.cert = Some(p.clone());
        }
        if let Some(p) = &self.tls_key {
            config.tls.key = Some(p.clone());
        }
        if let Some(p) = &self.tls_client_ca {
            config.tls.client_ca = Some(p.clone());
        }
        if let Some(a) = self.coap_listen {
            config.coap.listen = a;
        }
        if let Some(a) = self.coaps_listen {
            config.coap.dtls_listen = Some(a);
        }
        if let Some(a) = self.hl7_listen {
            config.hl7.listen = a;
        }
        if let Some(n) = self.mqtt_max_packet_bytes {
            config.mqtt.max_packet_bytes = n;
        }
        if let Some(n) = self.mqtt_max_inflight {
            config.mqtt.max_inflight = n;
        }
        if let Some(n) = self.mqtt_max_connections {
            config.mqtt.max_connections = n;
        }
        if let Some(n) = self.mqtt_max_connections_per_address {
            config.mqtt.max_connections_per_address = n;
        }
        if let Some(n) = self.wal_segment_bytes {
            config.storage.wal_segment_bytes = n;
        }
        if let Some(i) = &self.checkpoint_interval {
            config.storage.checkpoint_interval = i.clone();
        }
        if let Some(p) = &self.default_alarm_profile {
            config.rules.default_profile = Some(p.clone());
        }
        if let Some(p) = self.battery_low_percent {
            config.rules.battery_low_percent = p;
        }
        if let Some(s) = self.rules_timer_interval_s {
            config.rules.timer_interval_s = s;
        }
        if let Some(s) = self.alarm_clear_after_s {
            config.rules.clear_after_s = s;
        }
        for r in &self.retention {
            let (kind, keep) = r.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--retention {r:?}: expected KIND=DURATION, e.g. heart_rate=90days")
            })?;
            config
                .storage
                .retention
                .insert(kind.to_string(), keep.to_string());
        }
        if !self.webhook_url.is_empty() {
            config.alarms.webhook.urls = self.webhook_url.clone();
        }
        if let Some(s) = &self.webhook_secret {
            config.alarms.webhook.secret = Some(s.clone());
        }
        if let Some(u) = &self.smtp_url {
            config.alarms.email.smtp_url = Some(u.clone());
        }
        if let Some(f) = &self.email_from {
            config.alarms.email.from = Some(f.clone());
        }
        if let Some(z) = &self.time_zone {
            config.alarms.time_zone = Some(z.clone());
        }
        if let Some(u) = &self.dashboard_url {
            config.alarms.dashboard_url = Some(u.clone());
        }
        if let Some(q) = &self.quiet_hours {
            let (start, end) = q.split_once('-').ok_or_else(|| {
                anyhow::anyhow!("--quiet-hours {q:?}: expected START-END, e.g. 22:00-07:00")
            })?;
            // A zone or offset given on the command line replaces both file
            // keys; otherwise the file's (if any) stays.
            let old = config.alarms.quiet_hours.take();
            let (time_zone, utc_offset) =
                match (&self.quiet_hours_time_zone, &self.quiet_hours_utc_offset) {
                    (None, None) => old.map(|o| (o.time_zone, o.utc_offset)).unwrap_or_default(),
                    (zone, offset) => (zone.clone(), offset.clone()),
                };
            config.alarms.quiet_hours = Some(medmesh_server::QuietHoursConfig {
                start: start.into(),
                end: end.into(),
                time_zone,
                utc_offset,
            });
        }
        anyhow::ensure!(
            config.storage.wal_segment_bytes >= 1 << 16,
            "storage.wal_segment_bytes must be at least 65536"
        );
        anyhow::ensure!(
            config.mqtt.max_inflight >= 1,
            "mqtt.max_inflight must be at least 1"
        );
        anyhow::ensure!(
            config.mqtt.max_packet_bytes >= 64,
            "mqtt.max_packet_bytes must be at least 64"
        );
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Raises the open-files soft limit to the hard one: the default soft limit
/// (often 1024) would run the listeners out of descriptors long before
/// their connection caps. Warns when the caps still exceed the limit, since
/// accepts then fail (and back off) before the caps refuse anything.
fn raise_open_files_limit(config: &medmesh_server::Config) {
    let caps = [
        config.mqtt.max_connections,
        config.http.max_connections,
        config.hl7.max_connections,
    ];
    // Data files, the WAL, timers and the like: a few hundred at most.
    const OWN_FILES: u64 = 512;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
        Ok(limit) if caps.contains(&0) => {
            tracing::info!(limit, "open-files limit (a listener has no connection cap)")
        }
        Ok(limit) => {
            let need = caps.iter().map(|c| *c as u64).sum::<u64>() + OWN_FILES;
            if limit < need {
                tracing::warn!(
                    limit,
                    need,
                    "the open-files limit is below the listeners' connection caps: raise it \
                     (LimitNOFILE for a service, ulimit -Hn) or lower the caps"
                );
            }
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            let config = args.config("medmesh-data")?;
            raise_open_files_limit(&config);
            let running = Server::start(&config).await?;
            if let Some(password) = &running.bootstrap_password {
                eprintln!(
                    "medmesh: first start, created administrator account\n  username: admin\n  password: {password}\n  (shown once: sign in and keep it safe, or add users with `medmesh user add`)"
                );
            }
            eprintln!(
                "medmesh serving: dashboard {}://{} · MQTT{} {} · CoAP {}{} · HL7{} {} · data in {}",
                if running.tls { "https" } else { "http" },
                running.http_addr,
                if running.tls { "S" } else { "" },
                running.mqtt_addr,
                running.coap_addr,
                running
                    .coaps_addr
                    .map(|a| format!(" · CoAP over DTLS {a}"))
                    .unwrap_or_default(),
                if running.tls { " (TLS)" } else { "" },
                running.hl7_addr,
                config.data_dir.display()
            );
            wait_for_shutdown(running).await
        }
        Command::Demo {
            serve,
            patients,
            rate,
        } => {
            let mut config = serve.config("medmesh-demo-data")?;
            // The simulated ward sends without credentials, so the demo
            // allows anonymous devices unless told otherwise, and says so.
            let anonymous = *config.devices.allow_anonymous.get_or_insert(true);
            raise_open_files_limit(&config);
            let running = Server::start(&config).await?;
            let ward = clinical_demo_ward(patients, 2026);
            for p in &ward {
                running
                    .pipeline
                    .registry
                    .upsert_patient(p.patient.clone())?;
                running
                    .pipeline
                    .registry
                    .assign_device(p.device.clone(), Some(p.patient.id.clone()))?;
                // Alarm profiles (home-copd on SpO2 scale 2, adult-ward), as
                // a clinician would set them; kept if set before.
                let (current, _) = running.pipeline.alarm_settings(&p.patient.id);
                if let (None, Some(settings)) = (current, &p.extras.alarm_settings) {
                    let settings = serde_json::from_value(settings.clone())?;
                    running
                        .pipeline
                        .set_alarm_settings(&p.patient.id, Some(settings))?;
                }
            }
            let accounts = demo::accounts(&running, &ward)?;
            demo::treat_on_acknowledgement(&running, &ward);
            // The ward speaks every protocol, like a real one: bedside monitors
            // on MQTT and through an HL7 gateway, constrained sensors on CoAP,
            // a few devices on plain HTTP.
            let load = LoadConfig {
                protocols: vec![
                    Protocol::Mqtt,
                    Protocol::Coap,
                    Protocol::Http,
                    Protocol::Hl7,
                ],
                broker: running.mqtt_addr.to_string(),
                coap: Some(running.coap_addr),
                http: Some(running.http_addr),
                hl7: Some(running.hl7_addr),
                devices: ward,
                rate_hz: rate,
                connections: patients.min(8),
                qos: 1,
                duration: None,
            };
            let stats = Arc::new(LoadStats::default());
            tokio::spawn(async move {
                if let Err(e) = run_load(load, stats).await {
                    tracing::error!(error = %e, "demo simulator stopped");
                }
            });
            eprintln!(
                "medmesh demo: {patients} simulated patients on Ward A and at home\n  dashboard  http://{}\n  sign in    {accounts}\n  devices    {}\n  MQTT       {} (try: mosquitto_pub -h {} -p {} -t {} -m '[{{\"n\":\"heart_rate\",\"u\":\"/min\",\"v\":140}}]')",
                running.http_addr,
                if anonymous {
                    "anonymous devices ALLOWED on every listener (demo only; --allow-anonymous-devices false to refuse them)"
                } else {
                    "anonymous devices refused: the simulated ward's readings will be refused too"
                },
                running.mqtt_addr,
                running.mqtt_addr.ip(),
                running.mqtt_addr.port(),
                medmesh_sources::mqtt::device_topic("ward-a-bed-001"),
            );
            wait_for_shutdown(running).await
        }
        Command::Simulate(args) => simulate(args).await,
        Command::Bench(BenchCommand::Ingest(args)) => bench::ingest(args).await,
        Command::Bench(BenchCommand::Query(args)) => bench::query::run(args).await,
        Command::Bench(BenchCommand::Alarms(args)) => bench::alarms::run(args).await,
        Command::User(cmd) => user::run(cmd),
    }
}

async fn wait_for_shutdown(mut running: medmesh_server::Running) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = running.wait() => anyhow::bail!("a listener stopped unexpectedly"),
    }
    // Every acknowledged sample is already durable; nothing to flush.
    eprintln!("medmesh: interrupted, stopping");
    running.stop();
    Ok(())
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    if args.protocol.contains(&Protocol::Mqtt) {
        anyhow::ensure!(
            args.broker.is_some(),
            "--protocol mqtt needs --broker HOST:PORT"
        );
    }
    for (p, target, flag) in [
        (Protocol::Coap, args.coap, "--coap"),
        (Protocol::Http, args.http, "--http"),
        (Protocol::Hl7, args.hl7, "--hl7"),
    ] {
        anyhow::ensure!(
            !args.protocol.contains(&p) || target.is_some(),
            "--protocol {p:?} needs {flag} HOST:PORT"
        );
    }
    let config = LoadConfig {
        protocols: args.protocol.clone(),
        broker: args.broker.clone().unwrap_or_default(),
        coap: args.coap,
        http: args.http,
        hl7: args.hl7,
        devices: demo_ward(args.devices, 2026),
        rate_hz: args.rate,
        connections: args.connections.unwrap_or(args.devices.min(64)),
        qos: args.qos,
        duration: args.duration.map(Duration::from_secs),
    };
    eprintln!(
        "simulating {} devices at {} Hz ({} samples/s target) over {:?} (MQTT QoS {})",
        args.devices,
        args.rate,
        (args.devices as f64 * args.rate * 6.0) as u64,
        args.protocol,
        args.qos
    );
    let stats = Arc::new(LoadStats::default());
    let reporter = tokio::spawn(progress::report(stats.clone()));
    let result = tokio::select! {
        r = run_load(config, stats.clone()) => r.map_err(anyhow::Error::msg),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    reporter.abort();
    progress::summary(&stats);
    result
}
