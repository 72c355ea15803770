//! Sinks: where alarms leave medmesh. Each sink subscribes to the pipeline's
//! alarm stream (`Pipeline::subscribe_alarms`: lifecycle changes already
//! handed to the alarm log, each with its number there) and runs as its own
//! task: a slow or dead receiver can lag, never slow ingest. The sinks that
//! notify people take changes through a [`feed::Feed`], which reads back
//! from the alarm log whatever they missed (a restart, or a stream they fell
//! behind on).
//!
//! - [`mqtt_alarms`]: every change to `medmesh/v1/alarms/{patient_id}`.
//! - [`webhook`]: signed JSON POSTs, retried with backoff.
//! - [`email`]: SMTP to the people an escalation level names and to the
//!   patient's consented followers.
//!
//! Notifications to people (webhook, e-mail) are recorded in the
//! [`outbox`] before they are attempted and until they are delivered or
//! given up, so a restart loses none; those about low-priority alarms wait
//! for the end of [`quiet_hours`] and are then sent only if they still hold
//! ([`still_holds`]); delivery attempts follow [`retry`]. Each sink owns its
//! deliveries in progress: stopping the sink stops them.

pub mod email;
pub mod feed;
pub mod mqtt_alarms;
pub mod outbox;
pub mod quiet_hours;
pub mod recipients;
pub mod retry;
pub mod webhook;

use medmesh_model::{AlarmState, Priority, TimestampMs, now_ms};
use medmesh_pipeline::{DeliveryOutcome, Metrics, Pipeline};
use outbox::{Entry, Outbox};
use quiet_hours::QuietHours;
use std::sync::Arc;

/// When a notification about an alarm of `priority` taken on at `now` is
/// due: at the end of the quiet hours if they hold it, else at once.
fn due_ms(quiet: Option<&QuietHours>, priority: Priority, now: TimestampMs) -> TimestampMs {
    quiet
        .and_then(|q| q.hold_until(priority, now))
        .unwrap_or(now)
}

/// Records `entries` in the outbox before anything is attempted (off the
/// async workers: it waits for an fsync). If the disk fails, the
/// notifications are still sent; only a restart would lose them.
async fn record(outbox: &Arc<Outbox>, entries: &[Entry], metrics: &Metrics) {
    if entries.is_empty() {
        return;
    }
    let (outbox, copy) = (outbox.clone(), entries.to_vec());
    let result = tokio::task::spawn_blocking(move || outbox.queue_all(copy)).await;
    if let Ok(Err(e)) = result {
        metrics.storage_error();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        tracing::error!(deliveries = ?ids, error = %e, "notifications not recorded in the outbox");
    }
}

/// Records that `entry` is delivered or given up.
async fn finish(outbox: &Arc<Outbox>, entry: &Entry) {
    let (outbox, id) = (outbox.clone(), entry.id.clone());
    let _ = tokio::task::spawn_blocking(move || outbox.done(&id)).await;
}

/// Waits until `entry` is due (counted as held on `channel` if that is later).
async fn wait_until_due(entry: &Entry, metrics: &Metrics, channel: &'static str) {
    let now = now_ms();
    if entry.due_ms > now {
        metrics.delivery(channel, DeliveryOutcome::Held);
        tracing::debug!(
            channel,
            delivery = entry.id,
            until_ms = entry.due_ms,
            "low-priority notification held for quiet hours"
        );
        tokio::time::sleep(std::time::Duration::from_millis(
            (entry.due_ms - now) as u64,
        ))
        .await;
    }
}

/// Whether `entry`, held by quiet hours that have now ended, is still worth
/// sending; if not, it is counted as dropped on `channel` and logged.
///
/// - News of a problem ("raised", "escalated") goes out only if the alarm
///   is still active and nobody has acknowledged or snoozed it: a resolved
///   or acknowledged alarm is not announced as new hours later.
/// - A follow-up ("acknowledged", "snoozed", "resolved") goes out only if
///   the receiver heard of the alarm, that is if it was raised before these
///   quiet hours began; one raised and settled within them is not mailed at
///   all (the dashboard and the alarm history keep it).
///
/// Entries that were never held always hold.
fn still_holds(
    entry: &Entry,
    pipeline: &Pipeline,
    quiet: Option<&QuietHours>,
    channel: &'static str,
) -> bool {
    if !entry.held {
        return true;
    }
    let alarm = &entry.alarm;
    let holds = match entry.change.as_str() {
        "raised" | "escalated" => pipeline
            .active_alarms_for(&alarm.patient_id)
            .iter()
            .any(|a| a.id == alarm.id && a.state == AlarmState::Active),
        _ => quiet
            .is_none_or(|q| q.hold_until(alarm.priority, alarm.raised_ms) != Some(entry.due_ms)),
    };
    if !holds {
        pipeline.metrics.delivery(channel, DeliveryOutcome::Dropped);
        tracing::info!(
            channel,
            delivery = entry.id,
            alarm = alarm.id,
            change = entry.change,
            "notification held for quiet hours dropped: its alarm was acknowledged or resolved meanwhile"
        );
    }
    holds
}

/// A new delivery id: 96 random bits in hex.
fn delivery_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}
