//! E-mail over SMTP (lettre, rustls): an alarm raised or escalated is mailed
//! to the people its escalation level names, and an alarm raised or
//! resolved to the patient's consented followers (see [`crate::recipients`]).
//! One message per person (nobody sees the other addresses), all sent at
//! once. A message the server does not accept is retried with backoff
//! ([`Retry`]), then given up and counted as failed. A notification is in
//! the [`crate::outbox`] until all its messages are sent or given up, and
//! each person served is noted there: after a restart, it goes to those not
//! yet served.
//!
//! Each message is MIME (RFC 2045: `MIME-Version`, `text/plain;
//! charset=utf-8` with a transfer encoding, RFC 2047 words for names and
//! subjects), dated, and has a `Message-ID` made of the delivery id and the
//! recipient, the same on every attempt and after a restart (a mail store
//! can de-duplicate on it). It gives the value with its UCUM unit, times in
//! the site's time zone with their UTC offset (`alarms.time_zone`), and a
//! link to the alarm in the dashboard when `alarms.dashboard_url` is set.
//! Clinicians are asked to acknowledge it there; followers (family, carers)
//! are told the care team has been alerted and are never asked to act.
//!
//! A recipient without an e-mail address is skipped with a warning; a raise
//! or escalation that reaches no one of the alarm's level is logged as an
//! error and counted (`outcome="unreachable"`).
//!
//! The server is named by URL: `smtp://host:25` (plain, for a relay on the
//! same machine or network), `smtp://host:587?tls=required` (STARTTLS),
//! `smtps://host:465` (TLS); `user:password@` before the host logs in.

use crate::feed::{Change, Feed};
use crate::outbox::{Entry, Outbox};
use crate::quiet_hours::QuietHours;
use crate::recipients::{self, Reader};
use crate::retry::Retry;
use jiff::tz::TimeZone;
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use medmesh_access::Access;
use medmesh_model::{ACVPU, Alarm, Patient, Priority, VitalSign, now_ms};
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
    /// Where the ward is: times in messages are its wall clock (UTC unless
    /// `alarms.time_zone` names a zone).
    pub time_zone: TimeZone,
    /// The dashboard's public address (`alarms.dashboard_url`), without a
    /// trailing slash: messages link to the alarm there.
    pub dashboard_url: Option<String>,
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
            time_zone: TimeZone::UTC,
            dashboard_url: None,
        })
    }

    /// The dashboard link to alarm `id`, if the dashboard's address is known.
    fn link(&self, id: u64) -> Option<String> {
        self.dashboard_url
            .as_ref()
            .map(|base| format!("{base}/#/alarms/{id}"))
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
            let quiet = settings.quiet_hours.as_ref();
            if crate::still_holds(&entry, &pipeline, quiet, CHANNEL) {
                notify(&pipeline, &access, &settings, &outbox, &entry).await;
            }
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
                    let now = now_ms();
                    let due_ms = crate::due_ms(settings.quiet_hours.as_ref(), alarm.priority, now);
                    let entry = Entry {
                        id: crate::delivery_id(),
                        channel: CHANNEL.to_string(),
                        target: String::new(),
                        due_ms,
                        held: due_ms > now,
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
    let domain = settings.from.email.domain().to_string();
    let mut sends = Vec::new();
    // Staff of the alarm's level who get (or already got) a message.
    let mut staff_reached = 0;
    for (name, reader) in names {
        if entry.sent.contains(&name) {
            tracing::debug!(
                user = name,
                delivery = entry.id,
                "already mailed before the restart"
            );
            staff_reached += usize::from(reader == Reader::Staff);
            continue;
        }
        let Some(address) = access.directory.user(&name).and_then(|u| u.email) else {
            tracing::warn!(
                user = name,
                alarm = alarm.id,
                "alarm e-mail not sent: the user has no e-mail address"
            );
            continue;
        };
        let (subject, text) = compose(change, alarm, patient.as_ref(), reader, settings);
        let message = address
            .parse()
            .map(|a| Mailbox::new(Some(name.clone()), a))
            .map_err(|e| e.to_string())
            .and_then(|to| {
                Message::builder()
                    .from(settings.from.clone())
                    .to(to)
                    .subject(subject)
                    .message_id(Some(message_id(&entry.id, &name, &domain)))
                    .singlepart(SinglePart::plain(text))
                    .map_err(|e| e.to_string())
            });
        match message {
            Ok(m) => {
                staff_reached += usize::from(reader == Reader::Staff);
                sends.push((send(pipeline, settings, m, name.clone()), name));
            }
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
    if recipients::tells_staff(change) && staff_reached == 0 {
        pipeline
            .metrics
            .delivery(CHANNEL, DeliveryOutcome::Unreachable);
        tracing::error!(
            alarm = alarm.id,
            patient = %alarm.patient_id,
            priority = ?alarm.priority,
            level = alarm.escalation_level,
            change,
            "alarm e-mail reached nobody on the care team: no one the escalation level names has an e-mail address (see the warnings at start and medmesh_alarm_recipients_unreachable)"
        );
    }
    // Side by side: one person's server retrying never delays the others.
    futures_util::future::join_all(sends.into_iter().map(|(send, user)| async move {
        send.await;
        outbox.sent(&entry.id, &user);
    }))
    .await;
}

/// `<delivery.recipient@domain>`: unique per message (one delivery per
/// alarm change, one message per recipient) and the same on every attempt,
/// so a retried or resumed message can be recognised. The user name is hex
/// encoded: it may hold an `@`, which a Message-ID's left part may not.
fn message_id(delivery: &str, user: &str, domain: &str) -> String {
    format!("<{delivery}.{}@{domain}>", hex::encode(user))
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

/// A Unix time in ms on the site's wall clock, with the UTC offset (and the
/// zone's name when it has one): "2026-12-01 06:18:01 +05:30 (Asia/Kolkata)".
fn local_time(ms: i64, zone: &TimeZone) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(ms) else {
        return format!("{ms} ms after 1970-01-01 UTC");
    };
    let local = t.to_zoned(zone.clone());
    let mut text = local.strftime("%Y-%m-%d %H:%M:%S %:z").to_string();
    if let Some(name) = zone.iana_name() {
        text.push_str(&format!(" ({name})"));
    }
    text
}

/// A number as people read it: at most two decimals, no trailing zeros.
fn number(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    format!("{rounded}")
}

/// The alarm's value with its unit: the vital sign's UCUM unit, or what the
/// rule's value means (a NEWS2 score, a battery percentage, minutes without
/// data). `None` where the value says nothing (a fall, a device off line).
fn value_text(alarm: &Alarm) -> Option<String> {
    let v = alarm.value;
    match alarm.rule.as_str() {
        medmesh_rules::RULE_NEWS2_AGGREGATE => Some(format!("NEWS2 score {}", number(v))),
        medmesh_rules::RULE_BATTERY_LOW => Some(format!("{} % battery", number(v))),
        medmesh_rules::RULE_STALE_DATA => Some(format!("{} min without readings", number(v))),
        medmesh_rules::RULE_FALL | medmesh_rules::RULE_DEVICE_OFFLINE => None,
        _ => alarm.vital.map(|vital| match vital {
            VitalSign::Consciousness => ACVPU
                .get(v as usize)
                .map_or_else(|| number(v), |c| format!("{c} (ACVPU)")),
            _ => format!("{} {}", number(v), vital.ucum()),
        }),
    }
}

fn priority_word(p: Priority) -> &'static str {
    match p {
        Priority::High => "HIGH",
        Priority::Medium => "MEDIUM",
        Priority::Low => "LOW",
    }
}

/// Subject and plain-text body of one message, worded for its reader.
fn compose(
    change: &str,
    alarm: &Alarm,
    patient: Option<&Patient>,
    reader: Reader,
    settings: &EmailSettings,
) -> (String, String) {
    let zone = &settings.time_zone;
    let link = settings.link(alarm.id);
    let name = patient.map_or_else(|| alarm.patient_id.to_string(), |p| p.name.clone());
    // A resolution carries the value that cleared the alarm.
    let label = if change == "resolved" {
        "Latest value"
    } else {
        "Value"
    };
    let value = value_text(alarm)
        .map(|v| format!("{label}: {v}\n"))
        .unwrap_or_default();
    let raised = format!("Raised: {}\n", local_time(alarm.raised_ms, zone));
    let resolved = alarm
        .resolved
        .as_ref()
        .map(|r| format!("Resolved: {}\n", local_time(r.at_ms, zone)))
        .unwrap_or_default();
    match reader {
        Reader::Staff => {
            let priority = priority_word(alarm.priority);
            let who = match patient {
                Some(p) if !p.bed.is_empty() => {
                    format!("{} ({}, {} bed {})", p.name, p.id, p.ward, p.bed)
                }
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
            let action = match (change, &link) {
                ("resolved", Some(link)) => format!("Nothing to do. The alarm: {link}"),
                ("resolved", None) => "Nothing to do.".to_string(),
                (_, Some(link)) => format!("Acknowledge it in the medmesh dashboard: {link}"),
                (_, None) => format!(
                    "Acknowledge it in the medmesh dashboard (alarm console, alarm {}).",
                    alarm.id
                ),
            };
            let subject = format!("[medmesh] {priority} alarm {what}: {who}");
            let text = format!(
                "{priority} alarm {what}\n\n{action}\n\nPatient: {who}\nAlarm: {}\n{value}{raised}{resolved}Rule: {}\nEscalation level: {}\nAlarm id: {}\n\nSent by medmesh.\n",
                alarm.message, alarm.rule, alarm.escalation_level, alarm.id,
            );
            (subject, text)
        }
        Reader::Follower => {
            let (subject, opening) = if change == "resolved" {
                (
                    format!("[medmesh] Alert for {name} is over"),
                    format!(
                        "The alert about {name} has ended. The care team was alerted when it began."
                    ),
                )
            } else {
                (
                    format!("[medmesh] Alert for {name}: the care team has been alerted"),
                    format!(
                        "medmesh noticed a change in {name}'s readings and has alerted the care team, who will respond. You do not need to do anything."
                    ),
                )
            };
            let text = format!(
                "{opening}\n\nWhat was noticed: {}\n{value}{raised}{resolved}\nYou receive this because {name} chose to share alerts with you. Sent by medmesh.\n",
                alarm.message,
            );
            (subject, text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{AlarmState, PatientId};

    fn alarm() -> Alarm {
        Alarm {
            id: 42,
            patient_id: PatientId::new("p1").unwrap(),
            vital: Some(VitalSign::HeartRate),
            device_id: None,
            rule: "news2-single-parameter-3".into(),
            priority: Priority::Medium,
            state: AlarmState::Active,
            message: "Heart rate 135 /min scores 3 on NEWS2".into(),
            value: 135.0,
            // 2026-12-01T00:00:00Z
            raised_ms: 1_796_083_200_000,
            updated_ms: 1_796_083_200_000,
            acknowledged: None,
            snoozed_until_ms: None,
            resolved: None,
            escalation_level: 0,
            escalation_since_ms: None,
        }
    }

    fn settings() -> EmailSettings {
        let mut s = EmailSettings::new(
            "smtp://127.0.0.1:25",
            "medmesh <alarms@hospital.test>",
            Duration::from_secs(1),
            Policy::default(),
        )
        .unwrap();
        s.time_zone = crate::quiet_hours::time_zone_named("Asia/Kolkata").unwrap();
        s.dashboard_url = Some("https://medmesh.hospital.test".into());
        s
    }

    fn patient() -> Patient {
        Patient {
            id: PatientId::new("p1").unwrap(),
            name: "José Núñez".into(),
            ward: "Ward A".into(),
            bed: "4".into(),
        }
    }

    #[test]
    fn clinicians_are_asked_to_acknowledge_by_link_and_followers_to_do_nothing() {
        let s = settings();
        let (subject, text) = compose("raised", &alarm(), Some(&patient()), Reader::Staff, &s);
        assert_eq!(
            subject,
            "[medmesh] MEDIUM alarm raised: José Núñez (p1, Ward A bed 4)"
        );
        for part in [
            "Acknowledge it in the medmesh dashboard: https://medmesh.hospital.test/#/alarms/42",
            "Value: 135 /min\n",
            // Midnight UTC is 05:30 in India.
            "Raised: 2026-12-01 05:30:00 +05:30 (Asia/Kolkata)\n",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }

        let (subject, text) = compose("raised", &alarm(), Some(&patient()), Reader::Follower, &s);
        assert_eq!(
            subject,
            "[medmesh] Alert for José Núñez: the care team has been alerted"
        );
        assert!(text.contains("You do not need to do anything"), "{text}");
        for staff_only in ["acknowledge", "Acknowledge", "/api/", "Escalation", "Rule:"] {
            assert!(!text.contains(staff_only), "{staff_only:?} in {text}");
        }
        assert!(text.contains("Value: 135 /min"), "{text}");

        // Without a dashboard address: no link, the alarm is named.
        let mut plain = settings();
        plain.dashboard_url = None;
        let (_, text) = compose("escalated", &alarm(), None, Reader::Staff, &plain);
        assert!(
            text.contains("Acknowledge it in the medmesh dashboard (alarm console, alarm 42)."),
            "{text}"
        );
        assert!(!text.contains("http"), "{text}");
    }

    #[test]
    fn values_carry_their_unit_or_meaning() {
        let with = |rule: &str, vital: Option<VitalSign>, value: f64| {
            value_text(&Alarm {
                rule: rule.into(),
                vital,
                value,
                ..alarm()
            })
        };
        let news2 = medmesh_rules::RULE_NEWS2_RED;
        let t = Some(VitalSign::BodyTemperature);
        assert_eq!(
            with(news2, t, 38.000000000000014).as_deref(),
            Some("38 Cel")
        );
        let spo2 = Some(VitalSign::OxygenSaturation);
        assert_eq!(with("threshold", spo2, 91.4).as_deref(), Some("91.4 %"));
        let acvpu = Some(VitalSign::Consciousness);
        assert_eq!(with(news2, acvpu, 2.0).as_deref(), Some("V (ACVPU)"));
        let aggregate = medmesh_rules::RULE_NEWS2_AGGREGATE;
        assert_eq!(with(aggregate, None, 7.0).as_deref(), Some("NEWS2 score 7"));
        let battery = medmesh_rules::RULE_BATTERY_LOW;
        assert_eq!(with(battery, None, 10.0).as_deref(), Some("10 % battery"));
        assert_eq!(with(medmesh_rules::RULE_FALL, None, 1.0), None);
    }

    #[test]
    fn messages_are_mime_with_a_stable_message_id() {
        let s = settings();
        let (subject, text) = compose("raised", &alarm(), Some(&patient()), Reader::Staff, &s);
        let id = message_id("5f0c", "nurse@ward", s.from.email.domain());
        // The user name in hex: "nurse@ward".
        assert_eq!(id, "<5f0c.6e757273654077617264@hospital.test>");
        let m = Message::builder()
            .from(s.from.clone())
            .to("ada@hospital.test".parse().unwrap())
            .subject(subject)
            .message_id(Some(id.clone()))
            .singlepart(SinglePart::plain(text))
            .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        for header in [
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
            "Date: ",
            &format!("Message-ID: {id}\r\n"),
        ] {
            assert!(raw.contains(header), "{header:?} not in {raw}");
        }
        // Non-ASCII only in encoded form.
        assert!(raw.is_ascii(), "{raw}");
    }
}
