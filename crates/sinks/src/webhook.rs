//! Webhooks: every alarm change (raised, escalated, acknowledged, snoozed,
//! resolved) is POSTed as JSON to each configured URL:
//!
//! ```text
//! POST /your/path
//! Content-Type: application/json
//! X-Medmesh-Delivery: 5f0c...   (the same on every attempt: de-duplicate on it)
//! X-Medmesh-Timestamp: 1795600000123   (Unix ms of this attempt)
//! X-Medmesh-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//!
//! {"change": "escalated", "seq": 812, "alarm": {...}}
//! ```
//!
//! `seq` is the change's number in the alarm log: one alarm's changes are
//! delivered to a URL in that order (a change waits while an earlier one of
//! the same alarm is being retried), and a receiver can check it. Changes of
//! low-priority alarms held by quiet hours are sent when they end only if
//! they still hold (`crate::still_holds`): the numbers of dropped ones are
//! skipped.
//!
//! A receiver verifies by computing the HMAC-SHA256 of the timestamp header,
//! a `.`, and the raw body bytes, with the shared secret as key, comparing it
//! in constant time to the hex after `sha256=`, and refusing timestamps more
//! than a few minutes old (a replayed request). Any 2xx answer is delivery;
//! anything else, or no answer within 10 s, is retried with exponential
//! backoff and jitter ([`Retry`]), then given up and counted as failed.
//! Each POST is in the [`crate::outbox`] until then: after a restart it is
//! sent again with the same `X-Medmesh-Delivery`.

use crate::feed::{Change, Feed};
use crate::outbox::{Entry, Outbox};
use crate::quiet_hours::QuietHours;
use crate::retry::Retry;
use hmac::{Hmac, Mac};
use medmesh_model::now_ms;
use medmesh_pipeline::{AlarmSubscription, DeliveryOutcome, Pipeline, Turn, Turns};
pub use reqwest::Url;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const CHANNEL: &str = "webhook";
/// Deliveries in flight at once; more wait their turn.
const CONCURRENT: usize = 32;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub urls: Vec<Url>,
    /// Shared secret the signature is keyed with.
    pub secret: String,
    pub retry: Retry,
    pub quiet_hours: Option<QuietHours>,
    /// Longest wait for one answer.
    pub timeout: Duration,
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What every delivery task shares.
struct Sender {
    client: reqwest::Client,
    settings: WebhookSettings,
    slots: Semaphore,
    pipeline: Arc<Pipeline>,
    outbox: Arc<Outbox>,
    /// One alarm's changes reach one URL in the order they were made.
    order: Turns<(u64, String)>,
}

impl Sender {
    /// The entry's place among its alarm's changes to its URL, taken when
    /// it is queued (in change order).
    fn turn(&self, entry: &Entry) -> Turn<(u64, String)> {
        self.order.take(&(entry.alarm.id, entry.target.clone()))
    }
}

/// Posts alarm changes until the pipeline goes away; first the ones the
/// outbox still holds from before a restart (same delivery id, same due time).
/// `alarms` comes from `Pipeline::subscribe_alarms`, subscribed before the
/// task is spawned so that no change raised while it starts is missed.
pub async fn run(
    pipeline: Arc<Pipeline>,
    alarms: AlarmSubscription,
    outbox: Arc<Outbox>,
    settings: WebhookSettings,
) {
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook sink cannot start its HTTP client");
            return;
        }
    };
    let sender = Arc::new(Sender {
        client,
        settings,
        slots: Semaphore::new(CONCURRENT),
        pipeline: pipeline.clone(),
        outbox: outbox.clone(),
        order: Turns::default(),
    });
    // Dropped with this task, which aborts every delivery in progress (they
    // are in the outbox and resume at the next start).
    let mut deliveries = JoinSet::new();
    for entry in outbox.pending(CHANNEL) {
        let still_configured =
            Url::parse(&entry.target).is_ok_and(|url| sender.settings.urls.contains(&url));
        if still_configured {
            tracing::info!(
                url = entry.target,
                delivery = entry.id,
                "webhook resumed after a restart"
            );
            let turn = sender.turn(&entry);
            deliveries.spawn(sender.clone().deliver(entry, turn));
        } else {
            tracing::warn!(
                url = entry.target,
                delivery = entry.id,
                "webhook given up: its URL is no longer configured"
            );
            crate::finish(&outbox, &entry).await;
        }
    }
    let mut feed = Feed::open(CHANNEL, pipeline.clone(), alarms, outbox.clone()).await;
    loop {
        tokio::select! {
            change = feed.next() => {
                let Some(Change { seq, change, alarm }) = change else { return };
                if change != "updated" {
                    let now = now_ms();
                    let due_ms = crate::due_ms(sender.settings.quiet_hours.as_ref(), alarm.priority, now);
                    let entries: Vec<Entry> = sender.settings.urls.iter().map(|url| Entry {
                        id: crate::delivery_id(),
                        channel: CHANNEL.to_string(),
                        target: url.to_string(),
                        due_ms,
                        held: due_ms > now,
                        change: change.clone(),
                        seq: Some(seq),
                        alarm: alarm.clone(),
                        sent: Default::default(),
                    }).collect();
                    // In the outbox before the change counts as taken on.
                    crate::record(&outbox, &entries, &pipeline.metrics).await;
                    for entry in entries {
                        let turn = sender.turn(&entry);
                        deliveries.spawn(sender.clone().deliver(entry, turn));
                    }
                }
                feed.taken(seq);
            },
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

impl Sender {
    /// Waits until the alarm's earlier changes to this URL are delivered
    /// or given up and `entry` (in the outbox) is due, sends it (with
    /// retries), then marks it done.
    async fn deliver(self: Arc<Self>, entry: Entry, mut turn: Turn<(u64, String)>) {
        let metrics = &self.pipeline.metrics;
        // Before taking a slot: a change waiting for an earlier one must not
        // hold the slot that earlier one needs.
        turn.wait().await;
        crate::wait_until_due(&entry, metrics, CHANNEL).await;
        let quiet = self.settings.quiet_hours.as_ref();
        if !crate::still_holds(&entry, &self.pipeline, quiet, CHANNEL) {
            crate::finish(&self.outbox, &entry).await;
            return;
        }
        let _slot = self.slots.acquire().await;
        match Url::parse(&entry.target) {
            Ok(url) => {
                let body = serde_json::to_vec(
                    &serde_json::json!({"change": entry.change, "seq": entry.seq, "alarm": entry.alarm}),
                )
                .expect("alarm JSON");
                self.send(&entry.id, url, &body).await;
            }
            Err(e) => {
                metrics.delivery(CHANNEL, DeliveryOutcome::Failed);
                tracing::error!(url = entry.target, error = %e, "webhook given up: bad URL in the outbox");
            }
        }
        crate::finish(&self.outbox, &entry).await;
    }

    /// Attempts one delivery until it is taken or the attempts run out.
    async fn send(&self, id: &str, url: Url, body: &[u8]) {
        let settings = &self.settings;
        let attempt = || async {
            // Signed anew each attempt: the timestamp is the attempt's own.
            let timestamp = now_ms().to_string();
            let result = self
                .client
                .post(url.clone())
                .header("content-type", "application/json")
                .header("x-medmesh-delivery", id)
                .header("x-medmesh-timestamp", &timestamp)
                .header(
                    "x-medmesh-signature",
                    signature(settings.secret.as_bytes(), &timestamp, body),
                )
                .body(body.to_vec())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        };
        settings
            .retry
            .run(&self.pipeline.metrics, CHANNEL, url.as_str(), attempt)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The key and text of RFC 4231 test case 2, with our "." joining
        // timestamp and body; the digest is Python's hmac module's.
        assert_eq!(
            signature(b"Jefe", "what do ya want", b"for nothing?"),
            "sha256=e33f91577b90d4b3bbd73cb61803074f1965d27701b5527942dd9ea9443af37c"
        );
    }
}
