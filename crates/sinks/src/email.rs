//! E-mail over SMTP (lettre, rustls): an alarm raised or escalated is mailed
//! to the people its escalation level names, and an alarm raised or
//! resolved to the patient's consented followers (see [`crate::recipients`]).
//! One message per person (nobody sees the other addresses), all sent at
//! once. Users without
//! an e-mail address are skipped. A message the server does not accept is
//! retried with backoff ([`Retry`]), then given up and counted as failed.
//! A notification is in the [`crate::outbox`] until all its messages are sent
//! or given up, and each person served is noted there: after a restart, it
//! goes to those not yet served.
//!
//! The server is named by URL: `smtp://host:25` (plain, for a relay on the
//! same machine or network), `smtp://host:587?tls=required` (STARTTLS),
//! `smtps://host:465` (TLS); `user:password@` before the host logs in.

use crate::feed::{Change, Feed};
use crate::outbox::{Entry, Outbox};
use crate::quiet_hours::QuietHours;
use crate::recipients;
use crate::retry::Retry;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use medmesh_access::Access;
use medmesh_model::{Alarm, Priority, now_ms};
use medmesh_pipeline::{AlarmSubscription, DeliveryOutcome, Pipeline};
use medmesh_rules::escalation::Policy;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

const CHANNEL: &str = "email";

type Transport = AsyncSmtpTransport<Tokio1Executor>;

#[derive(Clone)]
pub struct EmailSettings {
    transport: Transport,
    from: Mailbox,
    pub retry: Retry,
    pub quiet_hours: Option<QuietHours>,
    pub policy: Policy,
}

impl EmailSettings {
    /// Checks the SMTP URL and sender address (errors name the key).
    pub fn new(
        smtp_url: &str,
        from: &str,
        timeout: Duration,
        policy: Policy,
    ) -> Result<EmailSettings, String> {
        let transport = Transport::from_url(smtp_url)
            .map_err(|e| format!("alarms.email.smtp_url {smtp_url:?}: {e}; e.g. smtp://127.0.0.1:25 or smtps://user:password@mail.example.org"))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e| {
            format!("alarms.email.from {from:?}: {e}; e.g. \"medmesh <alarms@example.org>\"")
        })?;
        Ok(EmailSettings {
            transport,
            from,
            retry: Retry::default(),
            quiet_hours: None,
            policy,
        })
    }
}

/// Mails alarm notifications until the pipeline goes away; first the ones
/// the outbox still holds from before a restart. `alarms`: as for
/// [`crate::webhook::run`].
pub async fn run(
    pipeline: Arc<Pipeline>,
    alarms: AlarmSubscription,
    access: Arc<Access>,
    outbox: Arc<Outbox>,
    settings: EmailSettings,
) {
    let settings = Arc::new(settings);
    // Dropped with this task, which aborts every message in progress (they
    // are in the outbox and resume at the next start).
    let mut deliveries = JoinSet::new();
    let deliver = |entry: Entry| {
        let (pipeline, access, outbox, settings) = (
            pipeline.clone(),
            access.clone(),
            outbox.clone(),
            settings.clone(),
        );
        async move {
            crate::wait_until_due(&entry, &pipeline.metrics, CHANNEL).await;
            notify(&pipeline, &access, &settings, &outbox, &entry).await;
            crate::finish(&outbox, &entry).await;
        }
    };
    for entry in outbox.pending(CHANNEL) {
        tracing::info!(
            delivery = entry.id,
            alarm = entry.alarm.id,
            "alarm e-mail resumed after a restart"
        );
        deliveries.spawn(deliver(entry));
    }
    let mut feed = Feed::open(CHANNEL, pipeline.clone(), alarms, outbox.clone()).await;
    loop {
        tokio::select! {
            change = feed.next() => {
                let Some(Change { seq, change, alarm }) = change else { return };
                if matches!(change.as_str(), "raised" | "escalated" | "resolved") {
                    let due_ms =
                        crate::due_ms(settings.quiet_hours.as_ref(), alarm.priority, now_ms());
                    let entry = Entry {
                        id: crate::delivery_id(),
                        channel: CHANNEL.to_string(),
                        target: String::new(),
                        due_ms,
                        change,
                        seq: Some(seq),
                        alarm,
                        sent: Default::default(),
                    };
                    // In the outbox before the change counts as taken on.
                    crate::record(&outbox, std::slice::from_ref(&entry), &pipeline.metrics).await;
                    deliveries.spawn(deliver(entry));
                }
                feed.taken(seq);
            },
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

/// Resolves the recipients now (a consent revoked while the notification
/// was held no longer counts) and sends each not yet served their message,
/// noting in the outbox each one served.
async fn notify(
    pipeline: &Pipeline,
    access: &Access,
    settings: &EmailSettings,
    outbox: &Outbox,
    entry: &Entry,
) {
    let (change, alarm) = (entry.change.as_str(), &entry.alarm);
    let patient = pipeline.registry.patient(&alarm.patient_id);
    let ward = patient.as_ref().map_or("", |p| p.ward.as_str());
    let names = recipients::for_change(
        &access.directory,
        &settings.policy,
        change,
        alarm,
        ward,
        now_ms(),
    );
    let (subject, text) = compose(change, alarm, patient.as_ref());
    let mut sends = Vec::new();
    for name in names {
        if entry.sent.contains(&name) {
            tracing::debug!(
                user = name,
                delivery = entry.id,
                "already mailed before the restart"
            );
            continue;
        }
        let Some(address) = access.directory.user(&name).and_then(|u| u.email) else {
            tracing::debug!(user = name, "no e-mail address; not mailed");
            continue;
        };
        let message = address
            .parse()
            .map(|a| Mailbox::new(Some(name.clone()), a))
            .map_err(|e| e.to_string())
            .and_then(|to| {
                Message::builder()
                    .from(settings.from.clone())
                    .to(to)
                    .subject(subject.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.clone())
                    .map_err(|e| e.to_string())
            });
        match message {
            Ok(m) => sends.push((send(pipeline, settings, m, name.clone()), name)),
            Err(e) => {
                pipeline.metrics.delivery(CHANNEL, DeliveryOutcome::Failed);
                tracing::error!(
                    user = name,
                    address,
                    error = e,
                    "cannot address an alarm e-mail"
                );
                outbox.sent(&entry.id, &name);
            }
        }
    }
    // Side by side: one person's server retrying never delays the others.
    futures_util::future::join_all(sends.into_iter().map(|(send, user)| async move {
        send.await;
        outbox.sent(&entry.id, &user);
    }))
    .await;
}

async fn send(pipeline: &Pipeline, settings: &EmailSettings, message: Message, user: String) {
    let attempt = || async {
        settings
            .transport
            .send(message.clone())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    };
    settings
        .retry
        .run(&pipeline.metrics, CHANNEL, &user, attempt)
        .await;
}

/// A Unix time in ms as RFC 3339 (UTC), as people read it.
fn utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Subject and plain-text body of a notification.
fn compose(
    change: &str,
    alarm: &Alarm,
    patient: Option<&medmesh_model::Patient>,
) -> (String, String) {
    let priority = match alarm.priority {
        Priority::High => "HIGH",
        Priority::Medium => "MEDIUM",
        Priority::Low => "LOW",
    };
    let who = match patient {
        Some(p) if !p.bed.is_empty() => format!("{} ({}, {} bed {})", p.name, p.id, p.ward, p.bed),
        Some(p) => format!("{} ({})", p.name, p.id),
        None => alarm.patient_id.to_string(),
    };
    let what = match change {
        "escalated" => format!(
            "escalated to level {} (not acknowledged in time)",
            alarm.escalation_level
        ),
        "resolved" => "resolved".to_string(),
        _ => "raised".to_string(),
    };
    let subject = format!("[medmesh] {priority} alarm {what}: {who}");
    let text = format!(
        "{priority} alarm {what}\n\nPatient: {who}\nAlarm: {}\nRule: {}\nValue: {}\nRaised: {} (UTC)\nAlarm id: {}\nEscalation level: {}\n\nSent by medmesh. Acknowledge it on the dashboard or with POST /api/v1/alarms/{}/acknowledge.\n",
        alarm.message,
        alarm.rule,
        alarm.value,
        utc(alarm.raised_ms),
        alarm.id,
        alarm.escalation_level,
        alarm.id
    );
    (subject, text)
}
