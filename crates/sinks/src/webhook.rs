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
//! {"change": "escalated", "alarm": {...}}
//! ```
//!
//! A receiver verifies by computing the HMAC-SHA256 of the timestamp header,
//! a `.`, and the raw body bytes, with the shared secret as key, comparing it
//! in constant time to the hex after `sha256=`, and refusing timestamps more
//! than a few minutes old (a replayed request). Any 2xx answer is delivery;
//! anything else, or no answer within 10 s, is retried with exponential
//! backoff and jitter ([`Retry`]), then given up and counted as failed.

use crate::quiet_hours::QuietHours;
use crate::retry::Retry;
use hmac::{Hmac, Mac};
use medmesh_model::now_ms;
use medmesh_pipeline::{DeliveryOutcome, LiveEvent, Pipeline};
pub use reqwest::Url;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;

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

/// Posts alarm changes until the pipeline goes away.
pub async fn run(pipeline: Arc<Pipeline>, settings: WebhookSettings) {
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook sink cannot start its HTTP client");
            return;
        }
    };
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut events = pipeline.subscribe_alarms();
    loop {
        match events.recv().await {
            Ok(LiveEvent::Alarm { change, alarm }) if change != "updated" => {
                let body: Arc<[u8]> =
                    serde_json::to_vec(&serde_json::json!({"change": change, "alarm": alarm}))
                        .expect("alarm JSON")
                        .into();
                for url in &settings.urls {
                    let delivery = Delivery {
                        id: hex::encode(rand::random::<[u8; 12]>()),
                        url: url.clone(),
                        body: body.clone(),
                    };
                    let (client, settings, slots, pipeline) = (
                        client.clone(),
                        settings.clone(),
                        slots.clone(),
                        pipeline.clone(),
                    );
                    let priority = alarm.priority;
                    tokio::spawn(async move {
                        let metrics = &pipeline.metrics;
                        crate::wait_for_quiet_hours(
                            settings.quiet_hours.as_ref(),
                            priority,
                            metrics,
                            CHANNEL,
                        )
                        .await;
                        let _slot = slots.acquire().await;
                        delivery.send(&client, &settings, &pipeline).await;
                    });
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "webhook sink fell behind; alarm changes missed")
            }
            Err(RecvError::Closed) => return,
        }
    }
}

struct Delivery {
    id: String,
    url: Url,
    body: Arc<[u8]>,
}

impl Delivery {
    async fn send(
        &self,
        client: &reqwest::Client,
        settings: &WebhookSettings,
        pipeline: &Pipeline,
    ) {
        let attempts = settings.retry.attempts.max(1);
        for attempt in 1..=attempts {
            let timestamp = now_ms().to_string();
            let result = client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .header("x-medmesh-delivery", &self.id)
                .header("x-medmesh-timestamp", &timestamp)
                .header(
                    "x-medmesh-signature",
                    signature(settings.secret.as_bytes(), &timestamp, &self.body),
                )
                .body(self.body.to_vec())
                .send()
                .await;
            let problem = match result {
                Ok(r) if r.status().is_success() => {
                    pipeline
                        .metrics
                        .delivery(CHANNEL, DeliveryOutcome::Delivered);
                    tracing::debug!(url = %self.url, attempt, "webhook delivered");
                    return;
                }
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == attempts {
                pipeline.metrics.delivery(CHANNEL, DeliveryOutcome::Failed);
                tracing::error!(url = %self.url, attempts, problem, "webhook given up");
                return;
            }
            pipeline.metrics.delivery(CHANNEL, DeliveryOutcome::Retried);
            let wait = settings.retry.delay(attempt, &mut rand::rng());
            tracing::warn!(url = %self.url, attempt, problem, retry_in = ?wait, "webhook failed; retrying");
            tokio::time::sleep(wait).await;
        }
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
