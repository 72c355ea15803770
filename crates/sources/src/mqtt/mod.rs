//! The embedded MQTT listener (MQTT 3.1.1 and 5).
//!
//! Devices publish SenML JSON to `medmesh/v1/devices/{device_id}/senml`.
//! QoS 1 and 2 publishes are acknowledged (PUBACK / PUBREC) only once their
//! samples are durable; if storage fails the connection is closed without an
//! acknowledgement, so the device keeps the message and sends it again.
//! QoS 0 is best-effort by definition: stored if valid, never acknowledged.
//!
//! Clients may also subscribe (a device to its commands, at
//! `medmesh/v1/devices/{device_id}/commands`); sessions, last wills and
//! delivery are in [`broker`]. A client whose ID is a device ID marks that
//! device on line while connected, and off line when it goes. Accounts
//! (integrations with an `alarm-feed` token, [`account`]) subscribe to the
//! alarm topics and receive their patients' alarms only.
//!
//! Packet encoding and decoding come from the `rumqttc` crate's packet
//! modules; this module is the broker side: sessions, keep-alive, ordering of
//! acknowledgements and the hand-off to the pipeline.

mod account;
mod broker;
mod codec;
mod session;
mod topic;

pub use account::{Account, Accounts, AlarmSubject, Login};
pub use broker::{Broker, Delivery, Message};
pub use topic::{ALARM_TOPIC_PREFIX, DEVICE_TOPIC_PREFIX, command_topic, device_topic, gatt_topic};

use crate::limits::{self, Backoff, ConnectionGate, ConnectionLimits};
use medmesh_pipeline::{Pipeline, SourceKind};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Limits of the listener.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Largest packet accepted; larger ones close the connection.
    pub max_packet_bytes: usize,
    /// Publishes of one connection being stored at once; further packets
    /// wait, which pushes back on a device that sends faster than the disk.
    pub max_inflight: usize,
    /// Accept clients that send no credentials (devices that have
    /// credentials must always use them).
    pub allow_anonymous: bool,
    /// Connections held at once, in all and per client address.
    pub limits: ConnectionLimits,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            max_packet_bytes: 1 << 20,
            max_inflight: 64,
            allow_anonymous: false,
            limits: ConnectionLimits::default(),
        }
    }
}

/// Runs the packet reader over `data` as a connection would: the CONNECT's
/// version first, then every packet. For the fuzz target; never panics.
#[doc(hidden)]
pub fn read_all_for_fuzzing(data: &[u8]) {
    let max = MqttSettings::default().max_packet_bytes;
    let Ok(Some(version)) = codec::sniff_version(data, max) else {
        return;
    };
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(_)) = codec::read(version, &mut buf, max) {}
}

pub struct MqttListener {
    listener: TcpListener,
    settings: Arc<MqttSettings>,
    broker: Arc<Broker>,
    tls: Option<crate::tls::TlsAcceptor>,
    accounts: Option<Arc<dyn Accounts>>,
}

impl MqttListener {
    pub async fn bind(addr: SocketAddr, settings: MqttSettings) -> std::io::Result<MqttListener> {
        Ok(MqttListener {
            listener: TcpListener::bind(addr).await?,
            settings: Arc::new(settings),
            broker: Arc::new(Broker::default()),
            tls: None,
            accounts: None,
        })
    }

    /// Lets accounts sign in (the alarm feed); without it every login is a
    /// device's.
    pub fn with_accounts(mut self, accounts: Arc<dyn Accounts>) -> MqttListener {
        self.accounts = Some(accounts);
        self
    }

    /// Serves MQTT over TLS (MQTTS) instead of plain TCP.
    pub fn with_tls(mut self, acceptor: crate::tls::TlsAcceptor) -> MqttListener {
        self.tls = Some(acceptor);
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The broker that routes messages to this listener's subscribers
    /// (commands to devices, last wills).
    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self, pipeline: Arc<Pipeline>) {
        let gate = ConnectionGate::new(
            SourceKind::Mqtt,
            self.settings.limits,
            pipeline.metrics.clone(),
        );
        let mut backoff = Backoff::default();
        loop {
            let (stream, peer) = limits::accept(
                &self.listener,
                SourceKind::Mqtt,
                &mut backoff,
                &pipeline.metrics,
            )
            .await;
            // Over a cap: closed before a byte is read or a handshake begun.
            let Some(permit) = gate.admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let pipeline = pipeline.clone();
            let settings = self.settings.clone();
            let broker = self.broker.clone();
            let tls = self.tls.clone();
            let shared = session::Shared {
                pipeline,
                broker,
                settings,
                accounts: self.accounts.clone(),
                peer,
            };
            tokio::spawn(async move {
                let _permit = permit;
                let served = match tls {
                    None => session::serve(stream, None, shared).await,
                    Some(acceptor) => match crate::tls::handshake(&acceptor, stream).await {
                        Ok(tls) => {
                            let device = crate::tls::certified_device(&tls);
                            session::serve(tls, device, shared).await
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = served {
                    tracing::info!(%peer, reason = %e, "MQTT connection closed");
                }
            });
        }
    }
}
