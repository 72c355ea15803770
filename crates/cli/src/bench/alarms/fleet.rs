//! The alarm bench's devices: one real MQTT connection per simulated bedside
//! monitor, each publishing a SenML pack of its six vital signs with QoS 1 at
//! a fixed rate, the fleet's publishes spread evenly over each period.
//!
//! Or, pipelined (`--gateways N`): N connections, each a store-and-forward
//! gateway for its share of the monitors, publishing all their packs at once
//! every period, with up to [`GATEWAY_IN_FLIGHT`] QoS 1 publishes awaiting
//! their acknowledgement (paho-mqtt's default window is 20; gateways
//! forwarding a buffer keep more). Each pack still goes to its own
//! monitor's topic.
//!
//! Values come from the simulator's stable physiology (normal, varying). When
//! a device is told to raise an alarm, its next pack carries a heart rate of
//! [`ALARM_HEART_RATE`]; the pack after is normal again, which clears it.

use super::book::Book;
use medmesh_model::{TimestampMs, VitalSign, now_ms};
use medmesh_simulator::{Physiology, Trajectory};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Pulse 140/min scores 3 on NEWS2 (RCP NEWS2 2017, Chart 1, pulse row
/// >=131): a single red parameter, which raises a high-priority alarm.
pub const ALARM_HEART_RATE: f64 = 140.0;

/// Connection attempts in progress at once: a burst of 10,000 SYNs would
/// overflow the listener's accept backlog and cost seconds of retransmits.
const CONNECTING_AT_ONCE: usize = 256;
/// How long one device may take to be connected and acknowledged.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// QoS 1 publishes a gateway keeps in flight.
pub const GATEWAY_IN_FLIGHT: u16 = 64;

/// The device id of fleet member `i`; [`index_of`] reverses it.
pub fn device_id(i: u32) -> String {
    format!("bench-mon-{i:05}")
}

/// The patient fleet member `i` is assigned to.
pub fn patient_id(i: u32) -> String {
    format!("bench-pt-{i:05}")
}

/// The fleet index in a device or patient id made by this module.
pub fn index_of(id: &str) -> Option<u32> {
    id.strip_prefix("bench-mon-")
        .or_else(|| id.strip_prefix("bench-pt-"))?
        .parse()
        .ok()
}

/// Live counters of the fleet.
#[derive(Default)]
pub struct FleetStats {
    pub connected: AtomicU64,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// Publishes refused because the connection's queue was full (the
    /// system under test is not keeping up).
    pub refused: AtomicU64,
    /// Connections lost after being established (each reconnects).
    pub disconnects: AtomicU64,
}

struct Shared {
    raise: Vec<AtomicBool>,
    books: Vec<Arc<Book>>,
    stats: Arc<FleetStats>,
}

/// Connected devices; dropping it closes every connection.
pub struct Fleet {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Connects `devices` devices to `broker` (waiting for every CONNACK),
    /// each on its own connection, or through `gateways` connections when
    /// that is not zero; then starts publishing at `rate_hz` each.
    /// Alarm-raising publishes are noted in each of `books`.
    pub async fn connect(
        broker: SocketAddr,
        devices: u32,
        gateways: u32,
        rate_hz: f64,
        books: Vec<Arc<Book>>,
        stats: Arc<FleetStats>,
    ) -> anyhow::Result<Fleet> {
        let shared = Arc::new(Shared {
            raise: (0..devices).map(|_| AtomicBool::new(false)).collect(),
            books,
            stats,
        });
        // Who publishes for whom: one connection per device, or device i
        // behind gateway i % gateways.
        let connections: Vec<(String, Vec<u32>)> = if gateways == 0 {
            (0..devices).map(|i| (device_id(i), vec![i])).collect()
        } else {
            (0..gateways.min(devices))
                .map(|g| {
                    let members = (g..devices).step_by(gateways as usize).collect();
                    (format!("bench-gw-{g:04}"), members)
                })
                .collect()
        };
        let mut tasks = JoinSet::new();
        let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
        let mut clients = Vec::with_capacity(connections.len());
        for (id, members) in &connections {
            let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
            opts.set_keep_alive(Duration::from_secs(60));
            opts.set_max_packet_size(64 * 1024, 64 * 1024);
            let queue = if gateways == 0 {
                opts.set_inflight(16);
                8
            } else {
                opts.set_inflight(GATEWAY_IN_FLIGHT);
                members.len() + 8
            };
            let (client, mut eventloop) = AsyncClient::new(opts, queue);
            let mut network = eventloop.network_options();
            network.set_connection_timeout(CONNECT_TIMEOUT.as_secs());
            eventloop.set_network_options(network);
            clients.push(client);
            tasks.spawn(drive(
                eventloop,
                gate.clone(),
                ready_tx.clone(),
                shared.stats.clone(),
            ));
        }
        drop(ready_tx);
        let mut failures: Vec<String> = Vec::new();
        for _ in 0..connections.len() {
            match tokio::time::timeout(CONNECT_TIMEOUT * 2, ready.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(e))) => failures.push(e),
                Ok(None) | Err(_) => {
                    failures.push("no answer to the connection attempt".into());
                    break;
                }
            }
        }
        if !failures.is_empty() {
            anyhow::bail!(
                "{} of {} connections could not connect to {broker}; first error: {}{}",
                failures.len(),
                connections.len(),
                failures[0],
                connect_hint(&failures[0])
            );
        }
        // Connection c publishes at start + c/connections of a period, then
        // every period.
        let period = Duration::from_secs_f64(1.0 / rate_hz);
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let n = connections.len();
        for (c, (client, (_, members))) in clients.into_iter().zip(connections).enumerate() {
            let offset = period.mul_f64(c as f64 / n as f64);
            tasks.spawn(publish(
                client,
                members,
                start + offset,
                period,
                shared.clone(),
            ));
        }
        Ok(Fleet { shared, tasks })
    }

    /// Makes device `i`'s next pack one that raises an alarm.
    pub fn raise(&self, i: u32) {
        self.shared.raise[i as usize].store(true, Ordering::Release);
    }

    /// Whether some device told to raise an alarm has not published it yet.
    pub fn raising(&self) -> bool {
        self.shared.raise.iter().any(|r| r.load(Ordering::Acquire))
    }

    pub fn len(&self) -> u32 {
        self.shared.raise.len() as u32
    }

    /// Closes every connection.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// What to tell the user when connecting fails for a reason they can fix.
fn connect_hint(error: &str) -> &'static str {
    if error.contains("os error 24") {
        "\n  hint: too many open files. Each device is a socket in this process (and one in the server): raise the open-files limit (`ulimit -n`, or LimitNOFILE for a service) above twice --devices"
    } else if error.contains("os error 99") {
        "\n  hint: out of local ports. Widen net.ipv4.ip_local_port_range or wait for earlier connections in TIME_WAIT to expire"
    } else {
        ""
    }
}

/// Drives one device's connection: connects (at most CONNECTING_AT_ONCE at a
/// time), reports the outcome, then counts acknowledgements until dropped.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    gate: Arc<Semaphore>,
    ready: tokio::sync::mpsc::UnboundedSender<Result<(), String>>,
    stats: Arc<FleetStats>,
) {
    {
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    let _ = ready.send(Ok(()));
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            }
        }
    }
    let mut connected = true;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) if !connected => {
                connected = true;
                stats.connected.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    connected = false;
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    stats.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "bench device lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// One connection's publishing: a pack for each of its `members` every
/// period from `first` (all at once: a gateway forwarding its buffer).
async fn publish(
    client: AsyncClient,
    members: Vec<u32>,
    first: tokio::time::Instant,
    period: Duration,
    shared: Arc<Shared>,
) {
    let mut devices: Vec<_> = members
        .into_iter()
        .map(|i| {
            let mut rng = SmallRng::seed_from_u64(u64::from(i));
            let physiology = Physiology::new(&mut rng, Trajectory::Stable);
            let device = device_id(i);
            let topic = medmesh_sources::mqtt::device_topic(&device);
            (i, rng, physiology, device, topic)
        })
        .collect();
    let mut tick = tokio::time::interval_at(first, period);
    // A machine that cannot keep up publishes less rather than in bursts;
    // the achieved rate is reported.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for (i, rng, physiology, device, topic) in &mut devices {
            let i = *i as usize;
            let now = now_ms();
            let mut readings = physiology.sample(now, rng);
            // Cleared only once the publish is noted as pending, so that a
            // provoked alarm is always either flagged or pending.
            let alarm = shared.raise[i].load(Ordering::Acquire);
            if alarm {
                readings[0] = (VitalSign::HeartRate, ALARM_HEART_RATE);
            }
            let payload = senml(device, &readings, now);
            if alarm {
                let at = Instant::now();
                for book in &shared.books {
                    book.published(i as u32, at);
                }
                shared.raise[i].store(false, Ordering::Release);
            }
            match client.try_publish(topic.as_str(), QoS::AtLeastOnce, false, payload) {
                Ok(()) => shared.stats.published.fetch_add(1, Ordering::Relaxed),
                Err(_) => shared.stats.refused.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// A SenML JSON pack (RFC 8428) of one monitor's readings at `now_ms`.
pub fn senml(device: &str, readings: &[(VitalSign, f64)], now_ms: TimestampMs) -> Vec<u8> {
    let mut s = String::with_capacity(64 * readings.len());
    s.push('[');
    for (k, (vital, value)) in readings.iter().enumerate() {
        if k == 0 {
            let _ = write!(
                s,
                "{{\"bn\":\"urn:dev:medmesh:{device}:\",\"bt\":{},",
                now_ms as f64 / 1000.0
            );
        } else {
            s.push_str(",{");
        }
        let _ = write!(
            s,
            "\"n\":\"{}\",\"u\":\"{}\",\"v\":{value}}}",
            vital.key(),
            vital.ucum()
        );
    }
    s.push(']');
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(index_of(&device_id(42)), Some(42));
        assert_eq!(index_of(&patient_id(9999)), Some(9999));
        assert_eq!(index_of("ward-a-bed-001"), None);
        assert!(medmesh_model::DeviceId::new(device_id(1)).is_ok());
        assert!(medmesh_model::PatientId::new(patient_id(1)).is_ok());
    }

    #[test]
    fn packs_decode_to_the_readings() {
        let readings = [
            (VitalSign::HeartRate, ALARM_HEART_RATE),
            (VitalSign::BodyTemperature, 36.8),
        ];
        let pack = senml("bench-mon-00001", &readings, 1_767_225_600_123);
        let d = medmesh_codecs::senml::decode_json(&pack, 0).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        assert_eq!(d.observations.len(), 2);
        assert_eq!(d.observations[0].vital, VitalSign::HeartRate);
        assert_eq!(d.observations[0].value, 140.0);
        assert_eq!(d.observations[1].value, 36.8);
        assert_eq!(d.observations[0].time_ms, 1_767_225_600_123);
    }
}
