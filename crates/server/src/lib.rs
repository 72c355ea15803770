//! The medmesh server: opens storage, starts the sources and serves HTTP
//! (REST API, live stream, dashboard, metrics and health).
//!
//! [`Server::start`] locks the data directory (one server per directory;
//! files `0600`, directories `0700`), then binds every listener, so a port conflict is
//! reported before anything else happens, then opens the store (replaying the
//! write-ahead log) and only then starts accepting connections.

mod admin;
mod alarm_settings;
mod alarms_config;
mod api;
mod app;
mod auth;
mod browser_guard;
mod chart;
mod commands;
mod config;
mod consents;
mod dashboard;
mod device_auth;
mod error;
mod http_listener;
mod mqtt_feed;
mod ops;
mod reports;
mod stream;

pub use alarms_config::{AlarmsConfig, EmailConfig, QuietHoursConfig, StepConfig, WebhookConfig};
pub use config::{
    CoapConfig, Config, DevicesConfig, Hl7Config, Hl7SenderConfig, HttpConfig, HttpLimits,
    MqttConfig, StorageConfig, TlsConfig,
};

use medmesh_access::Access;
use medmesh_pipeline::{Metrics, Pipeline};
use medmesh_sinks::outbox::Outbox;
use medmesh_sources::coap::CoapListener;
use medmesh_sources::coap::dtls::DtlsListener;
use medmesh_sources::hl7::Hl7Listener;
use medmesh_sources::mqtt::{MqttListener, MqttSettings};
use medmesh_storage::{AlarmLog, DataDirLock, Registry, Store, StoreOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind; `flag` names the setting to change.
    #[error("cannot listen for {what} on {addr}: {source}; choose another address with {flag}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] medmesh_storage::StoreError),
    #[error(transparent)]
    Registry(#[from] medmesh_storage::RegistryError),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Access(#[from] medmesh_access::DirectoryError),
    #[error(transparent)]
    Locked(#[from] medmesh_storage::LockError),
}

/// A started server. Dropping it does not stop it; call [`Running::stop`].
pub struct Running {
    pub http_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub coap_addr: SocketAddr,
    /// The CoAP-over-DTLS (coaps) address, when `coap.dtls_listen` is set.
    pub coaps_addr: Option<SocketAddr>,
    pub hl7_addr: SocketAddr,
    /// HTTP, MQTT and HL7 listeners speak TLS.
    pub tls: bool,
    pub pipeline: Arc<Pipeline>,
    pub access: Arc<Access>,
    /// On the first start (no users yet): the one-time password of the
    /// `admin` user just created, for the operator to see once.
    pub bootstrap_password: Option<String>,
    tasks: Vec<JoinHandle<()>>,
    /// Held while serving: no other process writes this data directory.
    _lock: DataDirLock,
}

impl Running {
    /// Stops accepting connections. Samples already acknowledged are durable.
    /// The data directory's lock is released.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Waits until a listener task ends (it normally never does).
    pub async fn wait(&mut self) {
        if let Some(t) = self.tasks.last_mut() {
            let _ = t.await;
        }
    }
}

pub struct Server;

impl Server {
    pub async fn start(config: &Config) -> Result<Running, StartError> {
        // Before anything else: a second server on the same directory would
        // otherwise bind other ports and corrupt the first one's files.
        let lock = DataDirLock::acquire(&config.data_dir)?;
        medmesh_storage::tighten(&config.data_dir).map_err(|source| {
            StartError::Storage(medmesh_storage::StoreError::DataDir {
                path: config.data_dir.clone(),
                source,
            })
        })?;
        let bind = |what: &'static str, addr: SocketAddr, flag: &'static str| {
            move |source| StartError::Bind {
                what,
                addr,
                flag,
                source,
            }
        };
        // TLS files are read before anything binds: a bad path or key is
        // reported at once, naming the file.
        let tls = config
            .tls
            .files()
            .map_err(StartError::Config)?
            .map(|f| medmesh_sources::tls::acceptor(&f))
            .transpose()
            .map_err(|e| StartError::Config(format!("tls: {e}")))?;
        let delivery = config.alarms.build().map_err(StartError::Config)?;
        let http_limits = config.http.limits().map_err(StartError::Config)?;
        let hl7_limits = config.hl7.limits().map_err(StartError::Config)?;
        let coap_limits = config.coap.limits().map_err(StartError::Config)?;
        let mqtt_settings = MqttSettings {
            max_packet_bytes: config.mqtt.max_packet_bytes,
            max_inflight: config.mqtt.max_inflight,
            allow_anonymous: config.anonymous_devices(),
            limits: config.mqtt.connection_limits(),
        };
        let mut mqtt = MqttListener::bind(config.mqtt.listen, mqtt_settings)
            .await
            .map_err(bind("MQTT", config.mqtt.listen, "--mqtt-listen"))?;
        let http = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(bind("HTTP", config.http.listen, "--http-listen"))?;
        let dtls_limits = config.coap.dtls_limits().map_err(StartError::Config)?;
        let mut coap = CoapListener::bind(config.coap.listen)
            .await
            .map_err(bind("CoAP", config.coap.listen, "--coap-listen"))?
            .allow_anonymous(config.anonymous_devices())
            .with_limits(coap_limits);
        if let Some(addr) = config.coap.dtls_listen {
            let dtls = DtlsListener::bind(addr, dtls_limits).await.map_err(bind(
                "CoAP over DTLS",
                addr,
                "--coaps-listen",
            ))?;
            coap = coap.with_dtls(dtls);
        }
        let mut hl7 = Hl7Listener::bind(config.hl7.listen)
            .await
            .map_err(bind("HL7 v2 (MLLP)", config.hl7.listen, "--hl7-listen"))?
            .with_senders(config.hl7_senders())
            .with_limits(hl7_limits);
        if let Some(acceptor) = &tls {
            mqtt = mqtt.with_tls(acceptor.clone());
            hl7 = hl7.with_tls(acceptor.clone());
        }
        let bound = "a bound socket has an address";
        let mqtt_addr = mqtt.local_addr().expect(bound);
        let http_addr = http.local_addr().expect(bound);
        let coap_addr = coap.local_addr().expect(bound);
        let coaps_addr = coap.dtls_addr();
        let hl7_addr = hl7.local_addr().expect(bound);

        let checkpoint_every = config
            .storage
            .checkpoint_interval()
            .map_err(StartError::Config)?;
        let store = Store::open_with(
            &config.data_dir,
            StoreOptions {
                wal_segment_bytes: config.storage.wal_segment_bytes,
                retention: config.storage.retention().map_err(StartError::Config)?,
            },
        )?;
        let registry = Arc::new(Registry::open(&config.data_dir)?);
        let (alarm_log, recorded) = AlarmLog::open(&config.data_dir).map_err(|source| {
            StartError::Storage(medmesh_storage::StoreError::DataDir {
                path: config.data_dir.clone(),
                source,
            })
        })?;
        let metrics = Arc::new(Metrics::default());
        let pipeline = Arc::new(
            Pipeline::new(store, registry, metrics, alarm_log, recorded)
                .with_max_ahead_ms(
                    config
                        .ingest
                        .max_clock_ahead()
                        .map_err(StartError::Config)?
                        .as_millis()
                        .try_into()
                        .unwrap_or(i64::MAX),
                )
                .with_clock_skew_alarm_ms(
                    config
                        .ingest
                        .clock_skew_alarm()
                        .map_err(StartError::Config)?
                        .as_millis()
                        .try_into()
                        .unwrap_or(i64::MAX),
                )
                .with_rules(&config.rules, &config.data_dir)
                .map_err(StartError::Config)?
                .with_battery_log(&config.data_dir)
                .map_err(|source| {
                    StartError::Storage(medmesh_storage::StoreError::DataDir {
                        path: config.data_dir.clone(),
                        source,
                    })
                })?,
        );

        let access = Arc::new(Access::open(&config.data_dir)?);
        let bootstrap_password = access.bootstrap_admin()?;
        // Whoever an escalation step names may see and acknowledge the alarms
        // that reach it; an account that may not see clinical alarms is
        // refused here, before anything is served (unknown and disabled
        // names are warned about and counted by the recipient check).
        let named = delivery
            .policy
            .ladders
            .iter()
            .map(|(priority, ladder)| (*priority, ladder.iter().map(|s| s.users.clone()).collect()))
            .collect();
        access.set_escalation(named).map_err(StartError::Config)?;

        let broker = mqtt.broker();
        let state = app::App {
            pipeline: pipeline.clone(),
            access: access.clone(),
            broker: broker.clone(),
            coaps: coap.dtls_sessions(),
            allow_anonymous_devices: config.anonymous_devices(),
            https: tls.is_some(),
        };
        let routes = api::router()
            .merge(auth::router())
            .merge(admin::router())
            .merge(alarm_settings::router())
            .merge(chart::router())
            .merge(consents::router())
            .merge(reports::router())
            .merge(commands::router())
            .merge(stream::router())
            .merge(ops::router())
            .merge(dashboard::router())
            .fallback(error::not_found)
            .method_not_allowed_fallback(error::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                browser_guard::guard,
            ))
            // Outermost, so they hold for every route and extractor: the
            // largest body (413 beyond, also for a chunked body that grows
            // past it) and the longest pause inside one.
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                http_limits.max_body_bytes,
            ))
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                http_limits.request_body_timeout,
            ))
            .with_state(state);
        let http_task = tokio::spawn(http_listener::serve(
            http,
            tls.clone(),
            routes,
            http_limits,
            pipeline.metrics.clone(),
        ));
        // Integration accounts sign in to the alarm feed with their tokens.
        let mqtt = mqtt.with_accounts(Arc::new(mqtt_feed::FeedAccounts {
            access: access.clone(),
            pipeline: pipeline.clone(),
        }));
        let mqtt_task = tokio::spawn(mqtt.run(pipeline.clone()));
        let coap_task = tokio::spawn(coap.run(pipeline.clone()));
        let alarm_sink = tokio::spawn(medmesh_sinks::mqtt_alarms::run(
            pipeline.subscribe_alarms().events,
            broker.clone(),
        ));
        // HL7 senders are principals: their refusals and admissions are audited.
        let audit = access.clone();
        hl7 = hl7.with_audit(Arc::new(move |e: medmesh_sources::hl7::Hl7AuditEvent| {
            audit.audit.record(medmesh_access::Event {
                actor: &format!("hl7:{}", e.sender),
                role: None,
                action: e.action,
                patient: e.patient.as_ref(),
                outcome: if e.allowed {
                    medmesh_access::Outcome::Allowed
                } else {
                    medmesh_access::Outcome::Denied
                },
                detail: e.detail,
            })
        }));
        let hl7_task = tokio::spawn(hl7.run(pipeline.clone()));
        let outbox = Arc::new(Outbox::open(&config.data_dir).map_err(|source| {
            StartError::Storage(medmesh_storage::StoreError::DataDir {
                path: config.data_dir.clone(),
                source,
            })
        })?);
        let delivery_tasks = delivery_tasks(delivery, &pipeline, &access, outbox);
        let store = pipeline.store.clone();
        let checkpoint_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(checkpoint_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.checkpoint().await {
                    tracing::warn!(error = %e, "periodic checkpoint failed; the WAL keeps the data");
                }
            }
        });
        // Timer rules (stale data), on the server's clock.
        let timers = pipeline.clone();
        let timer_every = std::time::Duration::from_secs(config.rules.timer_interval_s);
        let timer_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(timer_every);
            loop {
                tick.tick().await;
                let now = medmesh_model::now_ms();
                timers.check_stale(now);
                timers.check_observations_due(now);
            }
        });
        tracing::info!(%http_addr, %mqtt_addr, %coap_addr, coaps_addr = ?coaps_addr, %hl7_addr, data_dir = %config.data_dir.display(), "medmesh serving");
        Ok(Running {
            http_addr,
            mqtt_addr,
            coap_addr,
            coaps_addr,
            hl7_addr,
            tls: tls.is_some(),
            pipeline,
            access,
            bootstrap_password,
            _lock: lock,
            tasks: delivery_tasks
                .into_iter()
                .chain([
                    timer_task,
                    alarm_sink,
                    checkpoint_task,
                    hl7_task,
                    coap_task,
                    mqtt_task,
                    http_task,
                ])
                .collect(),
        })
    }
}

/// How often the alarm recipients are checked again after the start.
const RECIPIENT_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The escalation timer, the webhook and e-mail sinks and the check of
/// alarm recipients, each its own task.
/// Notifications the outbox holds for a sink no longer configured are given up.
fn delivery_tasks(
    delivery: alarms_config::AlarmDelivery,
    pipeline: &Arc<Pipeline>,
    access: &Arc<Access>,
    outbox: Arc<Outbox>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    // Who the escalation policy cannot reach: warned about now, before the
    // "serving" line, then checked again every minute (users, teams,
    // addresses and patients change while the server runs).
    let email_on = delivery.email.is_some();
    let check = {
        let (pipeline, access, policy) =
            (pipeline.clone(), access.clone(), delivery.policy.clone());
        move |before: std::collections::BTreeSet<String>| {
            medmesh_sinks::recipients::report(
                &access.directory,
                &policy,
                &pipeline.registry.patients(),
                email_on,
                &pipeline.metrics,
                &before,
            )
        }
    };
    let mut reported = check(Default::default());
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECIPIENT_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Every patient's every level: off the async workers.
            let check = check.clone();
            let before = std::mem::take(&mut reported);
            match tokio::task::spawn_blocking(move || check(before)).await {
                Ok(now) => reported = now,
                Err(e) => tracing::error!(error = %e, "checking alarm recipients failed"),
            }
        }
    }));
    match delivery.webhook {
        Some(w) => tasks.push(tokio::spawn(medmesh_sinks::webhook::run(
            pipeline.clone(),
            pipeline.subscribe_alarms(),
            outbox.clone(),
            w,
        ))),
        None => outbox.abandon("webhook"),
    }
    match delivery.email {
        Some(e) => tasks.push(tokio::spawn(medmesh_sinks::email::run(
            pipeline.clone(),
            pipeline.subscribe_alarms(),
            access.clone(),
            outbox,
            e,
        ))),
        None => outbox.abandon("email"),
    }
    // Always on, ladders or not: a snooze that runs out brings its alarm back.
    let (pipeline, policy) = (pipeline.clone(), delivery.policy);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pipeline = pipeline.clone();
            let policy = policy.clone();
            // The alarm log's fsync blocks: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                let now = medmesh_model::now_ms();
                pipeline.check_system(now);
                // Settled first: an alarm that cleared does not climb.
                pipeline.settle_alarms(now);
                pipeline.escalate_due(&policy, now)
            })
            .await;
        }
    }));
    tasks
}
