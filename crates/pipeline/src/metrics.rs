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
    /// CoAP over DTLS (coaps), authenticated by the device's pre-shared key.
    Coaps,
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
            SourceKind::Coaps => "coaps",
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

/// Why a listener turned a connection away, or closed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionRefusal {
    /// The listener holds its `max_connections`.
    ListenerFull,
    /// The client's address holds its `max_connections_per_address`.
    AddressFull,
}

impl EncodeLabelValue for ConnectionRefusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let label = match self {
            ConnectionRefusal::ListenerFull => "listener_full",
            ConnectionRefusal::AddressFull => "address_full",
        };
        std::fmt::Write::write_str(encoder, label)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabel {
    listener: SourceKind,
    reason: ConnectionRefusal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ListenerLabel {
    listener: SourceKind,
}

/// Why a payload was refused for its size or for the memory it would take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadRefusal {
    /// Larger than the listener accepts for one message (CoAP 4.13, MLLP close).
    TooLarge,
    /// The sender's address already has its share of buffered payloads (CoAP 5.03).
    PeerBudget,
    /// All payloads in flight together are at the listener's budget (CoAP 5.03).
    MemoryBudget,
    /// A later block of an upload whose first block was never accepted, or
    /// that arrived out of order (CoAP 4.08).
    Incomplete,
}

impl EncodeLabelValue for PayloadRefusal {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let label = match self {
            PayloadRefusal::TooLarge => "too_large",
            PayloadRefusal::PeerBudget => "peer_budget",
            PayloadRefusal::MemoryBudget => "memory_budget",
            PayloadRefusal::Incomplete => "incomplete",
        };
        std::fmt::Write::write_str(encoder, label)
    }
}

/// How a DTLS handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeOutcome {
    /// The device proved its pre-shared key: a session is open.
    Established,
    /// The PSK identity is no device with a pre-shared key.
    UnknownIdentity,
    /// Any other failure: a wrong key (the Finished messages disagree), no
    /// cipher suite in common, a malformed or unexpected message.
    Failed,
    /// Not finished within the handshake timeout.
    TimedOut,
}

impl EncodeLabelValue for HandshakeOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let label = match self {
            HandshakeOutcome::Established => "established",
            HandshakeOutcome::UnknownIdentity => "unknown_identity",
            HandshakeOutcome::Failed => "failed",
            HandshakeOutcome::TimedOut => "timed_out",
        };
        std::fmt::Write::write_str(encoder, label)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandshakeLabel {
    listener: SourceKind,
    outcome: HandshakeOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PayloadLabel {
    source: SourceKind,
    reason: PayloadRefusal,
}

pub struct Metrics {
    registry: Registry,
    connections_open: Family<ListenerLabel, Gauge>,
    connections_refused: Family<RefusedLabel, Counter>,
    connections_timed_out: Family<ListenerLabel, Counter>,
    accept_errors: Family<ListenerLabel, Counter>,
    payloads_refused: Family<PayloadLabel, Counter>,
    coap_buffered_bytes: Gauge,
    handshakes: Family<HandshakeLabel, Counter>,
    alarm_deliveries: Family<DeliveryLabel, Counter>,
    unreachable_recipients: Family<ReasonLabel, Gauge>,
    samples_stored: Family<SourceLabel, Counter>,
    malformed_messages: Family<SourceLabel, Counter>,
    refused_messages: Family<SourceLabel, Counter>,
    rejected_records: Family<SourceLabel, Counter>,
    future_dated: Family<SourceLabel, Counter>,
    storage_errors: Counter,
    system_alarms_active: Gauge,
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
        let connections_open = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "Connections open, by listener (mqtt, http, hl7)",
            connections_open.clone(),
        );
        let connections_refused = Family::<RefusedLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at once because the listener (listener_full) or the client's address (address_full) held its cap",
            connections_refused.clone(),
        );
        let connections_timed_out = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections_timed_out",
            "Connections closed for sending too slowly or nothing at all (HTTP header read and keep-alive, MLLP idle and message timeouts)",
            connections_timed_out.clone(),
        );
        let accept_errors = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accepts (typically out of file descriptors), each followed by a back-off",
            accept_errors.clone(),
        );
        let payloads_refused = Family::<PayloadLabel, Counter>::default();
        registry.register(
            "payloads_refused",
            "Payloads refused for their size or the memory they would hold, by source and reason",
            payloads_refused.clone(),
        );
        let coap_buffered_bytes = Gauge::default();
        registry.register(
            "coap_buffered_bytes",
            "CoAP payload bytes held now: block-wise uploads being reassembled and requests being stored",
            coap_buffered_bytes.clone(),
        );
        let system_alarms_active = Gauge::default();
        registry.register(
            "system_alarms_active",
            "medmesh's own failures now active as system alarms (storage: readings cannot be stored), for operations to page on",
            system_alarms_active.clone(),
        );
        let handshakes = Family::<HandshakeLabel, Counter>::default();
        registry.register(
            "dtls_handshakes",
            "DTLS handshakes by listener (coaps) and outcome (established, unknown_identity, failed: a wrong key among others, timed_out)",
            handshakes.clone(),
        );
        Metrics {
            registry,
            system_alarms_active,
            handshakes,
            connections_open,
            connections_refused,
            connections_timed_out,
            accept_errors,
            payloads_refused,
            coap_buffered_bytes,
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

    pub(crate) fn system_alarms_active(&self, n: usize) {
        self.system_alarms_active.set(n as i64);
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

    /// A connection opened (`+1`) or closed (`-1`) on `listener`.
    pub fn connection_open(&self, listener: SourceKind, delta: i64) {
        self.connections_open
            .get_or_create(&ListenerLabel { listener })
            .inc_by(delta);
    }

    pub fn connections_open_count(&self, listener: SourceKind) -> i64 {
        self.connections_open
            .get_or_create(&ListenerLabel { listener })
            .get()
    }

    pub fn connection_refused(&self, listener: SourceKind, reason: ConnectionRefusal) {
        self.connections_refused
            .get_or_create(&RefusedLabel { listener, reason })
            .inc();
    }

    pub fn connections_refused_count(
        &self,
        listener: SourceKind,
        reason: ConnectionRefusal,
    ) -> u64 {
        self.connections_refused
            .get_or_create(&RefusedLabel { listener, reason })
            .get()
    }

    pub fn connection_timed_out(&self, listener: SourceKind) {
        self.connections_timed_out
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    pub fn connections_timed_out_count(&self, listener: SourceKind) -> u64 {
        self.connections_timed_out
            .get_or_create(&ListenerLabel { listener })
            .get()
    }

    pub fn accept_error(&self, listener: SourceKind) {
        self.accept_errors
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    pub fn payload_refused(&self, source: SourceKind, reason: PayloadRefusal) {
        self.payloads_refused
            .get_or_create(&PayloadLabel { source, reason })
            .inc();
    }

    pub fn payloads_refused_count(&self, source: SourceKind, reason: PayloadRefusal) -> u64 {
        self.payloads_refused
            .get_or_create(&PayloadLabel { source, reason })
            .get()
    }

    pub fn handshake(&self, listener: SourceKind, outcome: HandshakeOutcome) {
        self.handshakes
            .get_or_create(&HandshakeLabel { listener, outcome })
            .inc();
    }

    pub fn handshakes_count(&self, listener: SourceKind, outcome: HandshakeOutcome) -> u64 {
        self.handshakes
            .get_or_create(&HandshakeLabel { listener, outcome })
            .get()
    }

    /// The CoAP listener's payload bytes held now.
    pub fn set_coap_buffered_bytes(&self, bytes: usize) {
        self.coap_buffered_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
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
