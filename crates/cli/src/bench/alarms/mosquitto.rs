//! The other side of the alarm bench: what a user would otherwise deploy.
//! Mosquitto takes the devices' publishes; an alerting subscriber (as one
//! would write with any MQTT client library) decodes each SenML pack and
//! checks the same NEWS2 threshold. It reports an alarm twice:
//!
//! - **fan-out floor**: as soon as the pack is received and decoded, with
//!   nothing stored (publish -> Mosquitto -> subscriber);
//! - **durable**: after the pack's rows are committed to SQLite with
//!   `synchronous=FULL` (the same bridge as `bench ingest`), the order
//!   medmesh keeps: store first, then alert.

use super::book::Book;
use super::fleet::index_of;
use crate::bench::competitors::{Row, insert_rows, open_sqlite};
use medmesh_model::{Observation, VitalSign};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows committed per SQLite transaction at most.
const BATCH_ROWS: usize = 5000;

/// Pulse >=131/min scores 3 on NEWS2 (RCP NEWS2 2017, Chart 1): the single
/// red parameter medmesh raises a high alarm for. The subscriber checks only
/// the vital the bench provokes, so it does less work than medmesh's rules.
const NEWS2_PULSE_RED: f64 = 131.0;

/// Raises an alarm when a device's pulse enters the red band and clears it
/// when the pulse leaves, so one episode gives one alarm, as in medmesh.
#[derive(Default)]
struct PulseAlert {
    active: HashSet<u32>,
}

impl PulseAlert {
    /// Returns whether `observations` of device `i` raise a new alarm.
    fn observe(&mut self, i: u32, observations: impl Iterator<Item = (VitalSign, f64)>) -> bool {
        let mut raised = false;
        for (vital, value) in observations {
            if vital != VitalSign::HeartRate {
                continue;
            }
            if value >= NEWS2_PULSE_RED {
                raised |= self.active.insert(i);
            } else {
                self.active.remove(&i);
            }
        }
        raised
    }
}

/// One received pack on its way to SQLite.
struct Pack {
    device: u32,
    rows: Vec<Row>,
}

/// The subscriber and its SQLite writer; stops when dropped.
pub struct Alerter {
    subscriber: tokio::task::JoinHandle<()>,
}

impl Drop for Alerter {
    fn drop(&mut self) {
        // Dropping the subscriber's channel ends the writer thread too.
        self.subscriber.abort();
    }
}

/// Subscribes to every device topic on `broker` and starts alerting into
/// `floor` and `durable`; SQLite's database goes in `dir`.
pub async fn start_alerter(
    broker: SocketAddr,
    dir: &Path,
    floor: Arc<Book>,
    durable: Arc<Book>,
) -> anyhow::Result<Alerter> {
    let db = open_sqlite(&dir.join("alarms.sqlite"))?;
    let (packs_tx, packs) = tokio::sync::mpsc::unbounded_channel::<Pack>();
    std::thread::Builder::new()
        .name("bench-sqlite".into())
        .spawn(move || write_then_alert(db, packs, durable))?;

    let mut opts = MqttOptions::new("bench-alerter", broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    client
        .subscribe("medmesh/v1/devices/+/senml", QoS::AtLeastOnce)
        .await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let subscriber = tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        let mut alert = PulseAlert::default();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Some(device) = p.topic.split('/').nth(3) else {
                        continue;
                    };
                    let Some(i) = index_of(device) else { continue };
                    let Ok(decoded) = medmesh_codecs::senml::decode_json(&p.payload, 0) else {
                        tracing::warn!(device, "bench alerter: undecodable pack");
                        continue;
                    };
                    if alert.observe(i, pairs(&decoded.observations)) {
                        floor.raised(i, Instant::now());
                    }
                    let rows = Row::of(device, &decoded.observations);
                    if packs_tx.send(Pack { device: i, rows }).is_err() {
                        tracing::error!("bench alerter: the SQLite writer stopped");
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "bench alerter connection closed");
                    return;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .map_err(|_| anyhow::anyhow!("the alerter's subscription was not acknowledged"))??;
    Ok(Alerter { subscriber })
}

fn pairs(observations: &[Observation]) -> impl Iterator<Item = (VitalSign, f64)> + '_ {
    observations.iter().map(|o| (o.vital, o.value))
}

/// The writer thread: commits packs in batches, then alerts on what each
/// committed batch holds, in arrival order.
fn write_then_alert(
    mut db: rusqlite::Connection,
    mut packs: tokio::sync::mpsc::UnboundedReceiver<Pack>,
    durable: Arc<Book>,
) {
    let mut alert = PulseAlert::default();
    let heart_rate = VitalSign::HeartRate.loinc();
    while let Some(first) = packs.blocking_recv() {
        // (device, its rows) per pack, in arrival order, and all rows.
        let mut spans = Vec::new();
        let mut rows = Vec::with_capacity(BATCH_ROWS);
        let mut next = Some(first);
        while let Some(pack) = next {
            spans.push((pack.device, pack.rows.len()));
            rows.extend(pack.rows);
            next = if rows.len() < BATCH_ROWS {
                packs.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = insert_rows(&mut db, &rows) {
            tracing::error!(error = %e, "bench alerter: SQLite write failed; alarms not raised");
            continue;
        }
        // Durable now: alert on the batch, pack by pack.
        let mut committed = rows.iter();
        for (device, n) in spans {
            let pulses = committed
                .by_ref()
                .take(n)
                .filter(|r| r.code == heart_rate)
                .map(|r| (VitalSign::HeartRate, r.value));
            if alert.observe(device, pulses) {
                durable.raised(device, Instant::now());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alarm_per_red_pulse_episode() {
        // RCP NEWS2 2017 Chart 1, pulse rows: 111-130 scores 2, >=131 scores 3.
        let mut alert = PulseAlert::default();
        let hr = |v: f64| std::iter::once((VitalSign::HeartRate, v));
        assert!(!alert.observe(1, hr(130.0)));
        assert!(alert.observe(1, hr(131.0)));
        assert!(!alert.observe(1, hr(140.0)), "still the same episode");
        assert!(alert.observe(2, hr(140.0)), "devices are independent");
        assert!(!alert.observe(1, hr(80.0)));
        assert!(alert.observe(1, hr(140.0)), "a new episode");
        assert!(!alert.observe(3, std::iter::once((VitalSign::RespiratoryRate, 140.0))));
    }
}
