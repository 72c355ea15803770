//! The bench's MQTT publisher: sends pre-built messages over several
//! connections with QoS 1, a bounded window in flight per connection, and
//! records the latency of every acknowledgement.

use super::workload::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Published {
    /// From the first publish to the last acknowledgement.
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

/// Publishes every message once and waits for all acknowledgements.
pub async fn publish_all(
    broker: SocketAddr,
    messages: &Arc<Vec<Message>>,
    connections: usize,
    inflight: u16,
    label: &str,
) -> anyhow::Result<Published> {
    let acked = Arc::new(AtomicU64::new(0));
    let total = messages.len() as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mut opts = MqttOptions::new(
            format!("bench-{label}-{c}"),
            broker.ip().to_string(),
            broker.port(),
        );
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_inflight(inflight);
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, usize::from(inflight));
        let messages = messages.clone();
        let acked = acked.clone();
        let mine = (c..messages.len()).step_by(connections).count();
        tasks.push(tokio::spawn(async move {
            let publisher = tokio::spawn(async move {
                for m in messages.iter().skip(c).step_by(connections) {
                    client
                        .publish(m.topic.clone(), QoS::AtLeastOnce, false, m.payload.clone())
                        .await?;
                }
                anyhow::Ok(client)
            });
            let mut sent_at: HashMap<u16, Instant> = HashMap::new();
            let mut latencies = Vec::with_capacity(mine);
            while latencies.len() < mine {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        sent_at.insert(pkid, Instant::now());
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(t) = sent_at.remove(&ack.pkid) {
                            latencies.push(t.elapsed());
                        }
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("bench connection {c} failed: {e}"),
                }
            }
            let _client = publisher.await??;
            anyhow::Ok(latencies)
        }));
    }
    let progress = tokio::spawn(report_progress(acked.clone(), total, label.to_string()));
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    progress.abort();
    Ok(Published { elapsed, latencies })
}

async fn report_progress(acked: Arc<AtomicU64>, total: u64, label: String) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    loop {
        tick.tick().await;
        let done = acked.load(Ordering::Relaxed);
        eprintln!(
            "  {label}: {done}/{total} messages acknowledged ({:.0}%)",
            done as f64 * 100.0 / total as f64
        );
    }
}
