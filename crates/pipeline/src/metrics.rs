//! Prometheus metrics of the ingest path, rendered by the server at `/metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which kind of source a message arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Mqtt,
    Http,
    Coap,
    Hl7,
    /// Observations a clinician charted by hand (the API's observation sets).
    Chart,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Mqtt => "mqtt",
            SourceKind::Http => "http",
            SourceKind::Coap => "coap",
            SourceKind::Hl7 => "hl7",
            SourceKind::Chart => "chart",
        }
    }
}

/// Label values are the lowercase protocol names, as Prometheus users expect.
impl EncodeLabelValue for SourceKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    source: SourceKind,
}

/// What became of one attempt to deliver an alarm notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// The receiver took it (HTTP 2xx, SMTP accepted).
    Delivered,
    /// An attempt failed and another will follow.
    Retried,
    /// Every attempt failed: the notification is given up.
    Failed,
    /// Held back by quiet hours (sent when they end).
    Held,
    /// Held by quiet hours, then dropped when they ended because it no
    /// longer held (its alarm was acknowledged or resolved meanwhile).
    Dropped,
    /// Reached nobody it should have: no one on the alarm's escalation
    /// level could be mailed (unknown users, no e-mail address).
    Unreachable,
}

impl EncodeLabelValue for DeliveryOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let label = match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retried => "retried",
            DeliveryOutcome::Failed => "failed",
            DeliveryOutcome::Held => "held",
            DeliveryOutcome::Dropped => "dropped",
            DeliveryOutcome::Unreachable => "unreachable",
        };
        std::fmt::Write::write_str(encoder, label)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabel {
    channel: &'static str,
    outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    alarm_deliveries: Family<DeliveryLabel, Counter>,
    unreachable_recipients: Family<ReasonLabel, Gauge>,
    samples_stored: Family<SourceLabel, Counter>,
    malformed_messages: Family<SourceLabel, Counter>,
    refused_messages: Family<SourceLabel, Counter>,
    rejected_records: Family<SourceLabel, Counter>,
    future_dated: Family<SourceLabel, Counter>,
    storage_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("medmesh");
        let samples_stored = Family::<SourceLabel, Counter>::default();
        let malformed_messages = Family::<SourceLabel, Counter>::default();
        let rejected_records = Family::<SourceLabel, Counter>::default();
        let refused_messages = Family::<SourceLabel, Counter>::default();
        let storage_errors = Counter::default();
        let future_dated = Family::<SourceLabel, Counter>::default();
        registry.register(
            "ingest_samples_stored",
            "Samples stored durably, by source",
            samples_stored.clone(),
        );
        registry.register(
            "ingest_malformed_messages",
            "Messages rejected whole because they could not be decoded",
            malformed_messages.clone(),
        );
        registry.register(
            "ingest_refused_messages",
            "Messages, connections and subscriptions refused because the client may not act as that device",
            refused_messages.clone(),
        );
        registry.register(
            "ingest_rejected_records",
            "Records rejected inside otherwise readable messages",
            rejected_records.clone(),
        );
        registry.register(
            "ingest_future_dated_records",
            "Records refused because they were dated too far ahead of the server clock (a device clock to check); also counted as rejected",
            future_dated.clone(),
        );
        registry.register(
            "storage_errors",
            "Appends refused because the write-ahead log could not be written",
            storage_errors.clone(),
        );
        let alarm_deliveries = Family::<DeliveryLabel, Counter>::default();
        registry.register(
            "alarm_deliveries",
            "Alarm notifications by channel (webhook, email) and outcome",
            alarm_deliveries.clone(),
        );
        let unreachable_recipients = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "alarm_recipients_unreachable",
            "Alarm recipients the configuration names but notifications cannot reach (reason: unknown_user, disabled_user, no_email, nobody_at_level), as of the last check (at start, then every minute)",
            unreachable_recipients.clone(),
        );
        Metrics {
            registry,
            alarm_deliveries,
            unreachable_recipients,
            samples_stored,
            malformed_messages,
            refused_messages,
            rejected_records,
            future_dated,
            storage_errors,
        }
    }
}

impl Metrics {
    pub(crate) fn stored(&self, source: SourceKind, n: usize) {
        self.samples_stored
            .get_or_create(&SourceLabel { source })
            .inc_by(n as u64);
    }

    pub fn malformed_message(&self, source: SourceKind) {
        self.malformed_messages
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    pub fn refused_message(&self, source: SourceKind) {
        self.refused_messages
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    pub fn refused_count(&self, source: SourceKind) -> u64 {
        self.refused_messages
            .get_or_create(&SourceLabel { source })
            .get()
    }

    pub(crate) fn rejected_records(&self, source: SourceKind, n: usize) {
        self.rejected_records
            .get_or_create(&SourceLabel { source })
            .inc_by(n as u64);
    }

    pub(crate) fn future_dated(&self, source: SourceKind, n: usize) {
        self.future_dated
            .get_or_create(&SourceLabel { source })
            .inc_by(n as u64);
    }

    pub fn future_dated_count(&self, source: SourceKind) -> u64 {
        self.future_dated
            .get_or_create(&SourceLabel { source })
            .get()
    }

    pub fn storage_error(&self) {
        self.storage_errors.inc();
    }

    pub fn malformed_count(&self, source: SourceKind) -> u64 {
        self.malformed_messages
            .get_or_create(&SourceLabel { source })
            .get()
    }

    pub fn rejected_record_count(&self, source: SourceKind) -> u64 {
        self.rejected_records
            .get_or_create(&SourceLabel { source })
            .get()
    }

    /// Counts a delivery attempt's outcome on `channel` ("webhook", "email").
    pub fn delivery(&self, channel: &'static str, outcome: DeliveryOutcome) {
        self.alarm_deliveries
            .get_or_create(&DeliveryLabel { channel, outcome })
            .inc();
    }

    pub fn delivery_count(&self, channel: &'static str, outcome: DeliveryOutcome) -> u64 {
        self.alarm_deliveries
            .get_or_create(&DeliveryLabel { channel, outcome })
            .get()
    }

    /// Sets how many recipients are unreachable for `reason` (see
    /// `medmesh_sinks::recipients::check`).
    pub fn unreachable_recipients(&self, reason: &'static str, n: usize) {
        self.unreachable_recipients
            .get_or_create(&ReasonLabel { reason })
            .set(n as i64);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
