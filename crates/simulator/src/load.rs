//! Sending a simulated fleet's readings, as fast as asked.
//!
//! Devices are dealt out over the configured protocols in turn. MQTT devices
//! are spread over a number of connections (a load generator cannot afford
//! one socket per device at 10,000 devices, and the broker sees the same
//! topics either way); each connection publishes one SenML pack per device per
//! tick and counts the broker's acknowledgements. CoAP, HTTP and HL7 devices
//! are spread over as many workers, each sending one request at a time and
//! waiting for its acknowledgement.

use crate::transport::{CoapSender, Hl7Sender, HttpSender, Protocol};
use crate::ward::SimPatient;
use medmesh_model::now_ms;
use medmesh_sources::mqtt::device_topic;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Protocols the devices are dealt out over, in turn.
    pub protocols: Vec<Protocol>,
    /// `host:port` of the MQTT broker (needed when `protocols` has MQTT).
    pub broker: String,
    /// The CoAP, HTTP and HL7 (MLLP) servers, when used.
    pub coap: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub hl7: Option<SocketAddr>,
    pub devices: Vec<SimPatient>,
    /// Packs per device per second.
    pub rate_hz: f64,
    pub connections: usize,
    /// 0 or 1.
    pub qos: u8,
    /// Stop after this long; run until the task is dropped when `None`.
    pub duration: Option<Duration>,
}

/// Counters, updated live; read them for progress output.
#[derive(Debug, Default)]
pub struct LoadStats {
    pub published: AtomicU64,
    pub samples: AtomicU64,
    /// PUBACKs received (QoS 1).
    pub acked: AtomicU64,
    pub connection_errors: AtomicU64,
}

impl LoadStats {
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
            self.connection_errors.load(Ordering::Relaxed),
        )
    }
}

fn split_broker(broker: &str) -> Result<(String, u16), String> {
    let (host, port) = broker
        .rsplit_once(':')
        .ok_or_else(|| format!("broker {broker:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| format!("broker {broker:?}: bad port {port:?}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Runs the load until `duration` has passed (then waits up to 10 s for
/// outstanding acknowledgements) or forever.
pub async fn run_load(config: LoadConfig, stats: Arc<LoadStats>) -> Result<(), String> {
    if config.protocols.is_empty() {
        return Err("no protocol to speak".into());
    }
    if !(config.rate_hz > 0.0 && config.rate_hz <= 1000.0) {
        return Err(format!(
            "rate {} Hz is outside 0 < rate <= 1000",
            config.rate_hz
        ));
    }
    let qos = match config.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        q => {
            return Err(format!(
                "QoS {q} is not offered by the simulator; use 0 or 1"
            ));
        }
    };
    // Deal the devices out over the protocols.
    let mut by_protocol: Vec<(Protocol, Vec<SimPatient>)> =
        config.protocols.iter().map(|p| (*p, Vec::new())).collect();
    let n = by_protocol.len();
    for (i, d) in config.devices.into_iter().enumerate() {
        by_protocol[i % n].1.push(d);
    }
    let period = Duration::from_secs_f64(1.0 / config.rate_hz);
    let mut tasks = tokio::task::JoinSet::new();
    for (protocol, devices) in by_protocol {
        if devices.is_empty() {
            continue;
        }
        let connections = config.connections.clamp(1, devices.len());
        let mut groups: Vec<Vec<SimPatient>> = vec![Vec::new(); connections];
        for (i, d) in devices.into_iter().enumerate() {
            groups[i % connections].push(d);
        }
        if protocol == Protocol::Mqtt {
            spawn_mqtt(
                &mut tasks,
                &config.broker,
                groups,
                period,
                qos,
                config.duration,
                &stats,
            )?;
            continue;
        }
        let target = match protocol {
            Protocol::Coap => config.coap,
            Protocol::Http => config.http,
            _ => config.hl7,
        }
        .ok_or_else(|| format!("{protocol:?} devices need the server's address"))?;
        for (i, devices) in groups.into_iter().enumerate() {
            tasks.spawn(request_devices(
                protocol,
                target,
                devices,
                period,
                config.duration,
                stats.clone(),
                i as u64,
            ));
        }
    }
    let uses_acks =
        qos == QoS::AtLeastOnce || config.protocols.iter().any(|p| *p != Protocol::Mqtt);
    match config.duration {
        Some(d) => {
            tokio::time::sleep(d).await;
            // Give outstanding acknowledgements a moment to arrive.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while uses_acks
                && stats.acked.load(Ordering::Relaxed)
                    + stats.connection_errors.load(Ordering::Relaxed)
                    < stats.published.load(Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tasks.abort_all();
            Ok(())
        }
        None => {
            while tasks.join_next().await.is_some() {}
            Ok(())
        }
    }
}

fn spawn_mqtt(
    tasks: &mut tokio::task::JoinSet<()>,
    broker: &str,
    groups: Vec<Vec<SimPatient>>,
    period: Duration,
    qos: QoS,
    duration: Option<Duration>,
    stats: &Arc<LoadStats>,
) -> Result<(), String> {
    let (host, port) = split_broker(broker)?;
    for (i, devices) in groups.into_iter().enumerate() {
        let mut opts = MqttOptions::new(
            format!("medmesh-sim-{}-{i}", std::process::id()),
            host.clone(),
            port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(
            u16::try_from(devices.len() * 4)
                .unwrap_or(u16::MAX)
                .clamp(16, 1000),
        );
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, eventloop) = AsyncClient::new(opts, devices.len().max(16));
        tasks.spawn(drive_connection(eventloop, stats.clone()));
        tasks.spawn(publish_devices(
            client,
            devices,
            period,
            qos,
            duration,
            stats.clone(),
            i as u64,
        ));
    }
    Ok(())
}

/// One CoAP, HTTP or HL7 worker: each tick, one acknowledged request per device.
async fn request_devices(
    protocol: Protocol,
    target: SocketAddr,
    mut devices: Vec<SimPatient>,
    period: Duration,
    duration: Option<Duration>,
    stats: Arc<LoadStats>,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut coap = None;
    let http = HttpSender::new(target);
    let mut hl7 = Hl7Sender::new(target);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        tick.tick().await;
        if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
            return;
        }
        let now = now_ms();
        for d in &mut devices {
            let message = d.next_message(protocol, now, &mut rng);
            stats.published.fetch_add(1, Ordering::Relaxed);
            stats
                .samples
                .fetch_add(d.samples_in_last_message() as u64, Ordering::Relaxed);
            let sent = match protocol {
                Protocol::Coap => {
                    if coap.is_none() {
                        coap = CoapSender::connect(target).await.ok();
                    }
                    match coap.as_mut() {
                        Some(c) => c.post(d.device.as_str(), message).await,
                        None => Err("cannot open a UDP socket".into()),
                    }
                }
                Protocol::Http => http.post(d.device.as_str(), message).await,
                Protocol::Hl7 => hl7.send(message).await,
                Protocol::Mqtt => unreachable!("MQTT devices are published by connection tasks"),
            };
            match sent {
                Ok(()) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %d.device, ?protocol, error = %e, "simulated request failed");
                }
            }
        }
    }
}

async fn drive_connection(mut eventloop: rumqttc::EventLoop, stats: Arc<LoadStats>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                stats.connection_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "simulator connection error; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn publish_devices(
    client: AsyncClient,
    mut devices: Vec<SimPatient>,
    period: Duration,
    qos: QoS,
    duration: Option<Duration>,
    stats: Arc<LoadStats>,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tick = tokio::time::interval(period);
    // If the broker or this machine cannot keep up, publish less rather than in bursts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = duration.map(|d| tokio::time::Instant::now() + d);
    loop {
        tick.tick().await;
        if end.is_some_and(|e| tokio::time::Instant::now() >= e) {
            return;
        }
        let now = now_ms();
        for d in &mut devices {
            let payload = d.next_pack(now, &mut rng);
            if client
                .publish(device_topic(d.device.as_str()), qos, false, payload)
                .await
                .is_err()
            {
                return;
            }
            stats.published.fetch_add(1, Ordering::Relaxed);
            stats
                .samples
                .fetch_add(d.samples_in_last_message() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            split_broker("localhost:1883").unwrap(),
            ("localhost".into(), 1883)
        );
        assert_eq!(split_broker("[::1]:1884").unwrap(), ("::1".into(), 1884));
        assert!(split_broker("localhost").is_err());
        assert!(split_broker("h:port").is_err());
    }
}
