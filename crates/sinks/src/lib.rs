//! Sinks: where alarms leave medmesh. Each sink subscribes to the pipeline's
//! alarm stream (`Pipeline::subscribe_alarms`: lifecycle changes that are
//! already recorded), so it only ever sees durable data, and runs as its own
//! task: a slow or dead receiver can lag, never slow ingest; if a sink lags
//! past the stream's buffer it logs how many changes it missed.
//!
//! - [`mqtt_alarms`]: every change to `medmesh/v1/alarms/{patient_id}`.
//! - [`webhook`]: signed JSON POSTs, retried with backoff.
//! - [`email`]: SMTP to the people an escalation level names and to the
//!   patient's consented followers.
//!
//! Notifications to people (webhook, e-mail) about low-priority alarms wait
//! for the end of [`quiet_hours`]; delivery attempts follow [`retry`].

pub mod email;
pub mod mqtt_alarms;
pub mod quiet_hours;
pub mod recipients;
pub mod retry;
pub mod webhook;

use medmesh_model::{Priority, now_ms};
use medmesh_pipeline::{DeliveryOutcome, Metrics};
use quiet_hours::QuietHours;

/// Waits out the quiet hours, if they hold a notification about an alarm
/// of `priority` now (counted as held on `channel`).
async fn wait_for_quiet_hours(
    quiet: Option<&QuietHours>,
    priority: Priority,
    metrics: &Metrics,
    channel: &'static str,
) {
    let now = now_ms();
    if let Some(until) = quiet.and_then(|q| q.hold_until(priority, now)) {
        metrics.delivery(channel, DeliveryOutcome::Held);
        tracing::debug!(
            channel,
            until_ms = until,
            "low-priority notification held for quiet hours"
        );
        tokio::time::sleep(std::time::Duration::from_millis((until - now).max(0) as u64)).await;
    }
}
