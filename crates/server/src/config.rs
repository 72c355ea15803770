//! Server configuration: a TOML file whose every key has a default.
//!
//! ```toml
//! data_dir = "medmesh-data"
//! [http]
//! listen = "127.0.0.1:8080"
//! max_connections = 10000
//! max_connections_per_address = 256
//! header_read_timeout = "30s"
//! request_body_timeout = "30s"
//! max_body_bytes = 8388608
//! [mqtt]
//! listen = "127.0.0.1:1883"
//! max_connections = 10000
//! max_connections_per_address = 256
//! [coap]
//! listen = "127.0.0.1:5683"
//! max_payload_bytes = 1048576
//! peer_buffer_bytes = 2097152
//! buffer_budget_bytes = 67108864
//! upload_timeout = "60s"
//! max_remembered_exchanges = 100000
//! # CoAP over DTLS 1.2 with pre-shared keys (coaps); off unless set.
//! # dtls_listen = "0.0.0.0:5684"
//! dtls_max_sessions = 10000
//! dtls_max_sessions_per_address = 256
//! dtls_handshake_timeout = "10s"
//! dtls_idle_timeout = "10min"
//! [hl7]
//! listen = "127.0.0.1:2575"
//! max_connections = 1000
//! max_connections_per_address = 256
//! idle_timeout = "5min"
//! message_timeout = "60s"
//! max_message_bytes = 1048576
//! [storage]
//! wal_segment_bytes = 67108864
//! checkpoint_interval = "1h"
//! [storage.retention]
//! default = "forever"
//! heart_rate = "400days"
//! [ingest]
//! max_clock_ahead = "5min"
//! clock_skew_alarm = "1min"
//! ```
//!
//! Listeners bind to loopback by default: exposing health data to a network
//! is a decision the operator makes explicitly.

use medmesh_model::VitalSign;
use medmesh_sources::coap::CoapLimits;
use medmesh_sources::coap::dtls::DtlsLimits;
use medmesh_sources::hl7::Hl7Limits;
use medmesh_sources::limits::ConnectionLimits;
use medmesh_storage::Retention;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where samples (write-ahead log) and the registry are kept.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub coap: CoapConfig,
    pub hl7: Hl7Config,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub devices: DevicesConfig,
    pub tls: TlsConfig,
    /// Alarm rules: profiles, default profile, battery threshold, timers.
    pub rules: medmesh_rules::RulesConfig,
    /// Escalation, quiet hours, webhook and e-mail delivery (`alarms_config.rs`).
    pub alarms: crate::alarms_config::AlarmsConfig,
}

/// TLS for the TCP listeners: setting `cert` and `key` turns it on for
/// HTTP, MQTT and HL7 (MLLP) at once. CoAP (UDP) stays plain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s): MQTT clients may present a certificate it
    /// issued, whose Common Name is their device ID.
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// The files to load, if TLS is on; an error if only half is given.
    pub fn files(&self) -> Result<Option<medmesh_sources::tls::TlsFiles>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(medmesh_sources::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            })),
            (None, None) if self.client_ca.is_none() => Ok(None),
            (None, None) => Err("tls.client_ca needs tls.cert and tls.key".into()),
            _ => Err("TLS needs both tls.cert and tls.key".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// How far ahead of the server clock a reading may be dated; readings
    /// dated further ahead are refused per record (they would stand as the
    /// latest value and hide the present ones).
    pub max_clock_ahead: String,
    /// A device whose readings come dated further than this ahead of the
    /// server clock raises a technical alarm for its patient (its clock
    /// needs setting; past `max_clock_ahead` its readings are refused).
    pub clock_skew_alarm: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_clock_ahead: "5min".into(),
            clock_skew_alarm: "1min".into(),
        }
    }
}

impl IngestConfig {
    pub fn max_clock_ahead(&self) -> Result<Duration, String> {
        humantime::parse_duration(&self.max_clock_ahead)
            .map_err(|e| format!("ingest.max_clock_ahead {:?}: {e}", self.max_clock_ahead))
    }

    pub fn clock_skew_alarm(&self) -> Result<Duration, String> {
        humantime::parse_duration(&self.clock_skew_alarm)
            .map_err(|e| format!("ingest.clock_skew_alarm {:?}: {e}", self.clock_skew_alarm))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    /// Accept readings from devices that were issued no credentials. Devices
    /// that were issued credentials must use them either way. Off unless
    /// set, whatever the bind address: behind a reverse proxy or a port
    /// forward a loopback listener serves everyone. `medmesh demo` turns it on.
    pub allow_anonymous: Option<bool>,
}

impl Config {
    /// Whether the device listeners accept devices without credentials.
    pub fn anonymous_devices(&self) -> bool {
        self.devices.allow_anonymous.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoapConfig {
    /// UDP address of the CoAP listener.
    pub listen: SocketAddr,
    /// Largest payload of one request, whole or from blocks (4.13 beyond).
    pub max_payload_bytes: usize,
    /// Payload bytes held for one source address at once (5.03 beyond).
    pub peer_buffer_bytes: usize,
    /// Payload bytes held for all peers at once (5.03 beyond).
    pub buffer_budget_bytes: usize,
    /// A block-wise upload whose next block does not come within this is dropped.
    pub upload_timeout: String,
    /// Exchanges remembered to answer retransmissions; the oldest go first.
    pub max_remembered_exchanges: usize,
    /// UDP address of the CoAP-over-DTLS (coaps) listener; none by default.
    /// Devices authenticate with the pre-shared key issued to them
    /// (`POST /api/v1/devices/{id}/psk`), their device id as PSK identity.
    pub dtls_listen: Option<SocketAddr>,
    /// DTLS sessions (handshakes included) held at once.
    pub dtls_max_sessions: usize,
    /// DTLS sessions from one source address at once.
    pub dtls_max_sessions_per_address: usize,
    /// A DTLS handshake not finished within this is dropped.
    pub dtls_handshake_timeout: String,
    /// A DTLS session that receives nothing for this long is closed.
    pub dtls_idle_timeout: String,
}

impl Default for CoapConfig {
    fn default() -> Self {
        let limits = CoapLimits::default();
        let dtls = DtlsLimits::default();
        CoapConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5683)),
            max_payload_bytes: limits.max_payload_bytes,
            peer_buffer_bytes: limits.peer_buffer_bytes,
            buffer_budget_bytes: limits.buffer_budget_bytes,
            upload_timeout: humantime::format_duration(limits.upload_timeout).to_string(),
            max_remembered_exchanges: limits.max_exchanges,
            dtls_listen: None,
            dtls_max_sessions: dtls.max_sessions,
            dtls_max_sessions_per_address: dtls.max_sessions_per_address,
            dtls_handshake_timeout: humantime::format_duration(dtls.handshake_timeout).to_string(),
            dtls_idle_timeout: humantime::format_duration(dtls.idle_timeout).to_string(),
        }
    }
}

impl CoapConfig {
    pub fn limits(&self) -> Result<CoapLimits, String> {
        if self.max_payload_bytes == 0 {
            return Err("coap.max_payload_bytes must be at least 1".into());
        }
        if self.peer_buffer_bytes == 0 || self.buffer_budget_bytes < self.peer_buffer_bytes {
            return Err(
                "coap.peer_buffer_bytes must be at least 1, and coap.buffer_budget_bytes at least coap.peer_buffer_bytes"
                    .into(),
            );
        }
        Ok(CoapLimits {
            max_payload_bytes: self.max_payload_bytes,
            peer_buffer_bytes: self.peer_buffer_bytes,
            buffer_budget_bytes: self.buffer_budget_bytes,
            upload_timeout: duration("coap.upload_timeout", &self.upload_timeout)?,
            max_exchanges: self.max_remembered_exchanges.max(1),
        })
    }

    pub fn dtls_limits(&self) -> Result<DtlsLimits, String> {
        if self.dtls_max_sessions == 0 || self.dtls_max_sessions_per_address == 0 {
            return Err(
                "coap.dtls_max_sessions and coap.dtls_max_sessions_per_address must be at least 1"
                    .into(),
            );
        }
        Ok(DtlsLimits {
            max_sessions: self.dtls_max_sessions,
            max_sessions_per_address: self.dtls_max_sessions_per_address,
            handshake_timeout: duration(
                "coap.dtls_handshake_timeout",
                &self.dtls_handshake_timeout,
            )?,
            idle_timeout: duration("coap.dtls_idle_timeout", &self.dtls_idle_timeout)?,
        })
    }
}

/// A positive duration ("30s", "5min") from the key `key`.
fn duration(key: &str, raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw).map_err(|e| format!("{key} {raw:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{key} must be longer than 0"));
    }
    Ok(d)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7Config {
    /// TCP address of the HL7 v2 MLLP listener.
    pub listen: SocketAddr,
    /// The HL7 senders allowed (unless anonymous devices are): a sending
    /// application and facility, and the source addresses it sends from.
    pub senders: Vec<Hl7SenderConfig>,
    /// MLLP connections open at once (0: no cap).
    pub max_connections: usize,
    /// MLLP connections open at once from one address (0: no cap).
    pub max_connections_per_address: usize,
    /// A connection that sends nothing (or reads no ACK) for this long is closed.
    pub idle_timeout: String,
    /// One message must arrive whole within this of its first bytes.
    pub message_timeout: String,
    /// Largest message accepted; a longer one closes the connection.
    pub max_message_bytes: usize,
}

impl Default for Hl7Config {
    fn default() -> Self {
        let limits = Hl7Limits::default();
        Hl7Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 2575)),
            senders: Vec::new(),
            max_connections: limits.connections.max_connections,
            max_connections_per_address: limits.connections.max_per_address,
            idle_timeout: humantime::format_duration(limits.idle_timeout).to_string(),
            message_timeout: humantime::format_duration(limits.message_timeout).to_string(),
            max_message_bytes: limits.max_message_bytes,
        }
    }
}

impl Hl7Config {
    pub fn limits(&self) -> Result<Hl7Limits, String> {
        if self.max_message_bytes < 64 {
            return Err("hl7.max_message_bytes must be at least 64".into());
        }
        Ok(Hl7Limits {
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                max_per_address: self.max_connections_per_address,
            },
            idle_timeout: duration("hl7.idle_timeout", &self.idle_timeout)?,
            message_timeout: duration("hl7.message_timeout", &self.message_timeout)?,
            max_message_bytes: self.max_message_bytes,
        })
    }
}

/// One `[[hl7.senders]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7SenderConfig {
    /// MSH-3, the sending application.
    pub application: String,
    /// MSH-4, the sending facility.
    pub facility: String,
    /// Source IP addresses its MLLP connections come from.
    pub addresses: Vec<std::net::IpAddr>,
}

impl Config {
    /// Who may send over MLLP.
    pub fn hl7_senders(&self) -> medmesh_sources::hl7::Hl7Senders {
        medmesh_sources::hl7::Hl7Senders {
            senders: self
                .hl7
                .senders
                .iter()
                .map(|s| medmesh_sources::hl7::Hl7Sender {
                    application: s.application.clone(),
                    facility: s.facility.clone(),
                    addresses: s.addresses.clone(),
                })
                .collect(),
            allow_anonymous: self.anonymous_devices(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// A write-ahead log segment this large is checkpointed into compressed
    /// chunks and deleted; bounds the uncompressed data on disk.
    pub wal_segment_bytes: u64,
    /// Checkpoint at least this often ("1h", "15m"), whatever the traffic:
    /// bounds replay time after a crash and runs retention.
    pub checkpoint_interval: String,
    /// How long data is kept: `default` and per vital-sign key
    /// (`heart_rate = "90days"`), each "forever" or a duration.
    pub retention: BTreeMap<String, String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            wal_segment_bytes: medmesh_storage::StoreOptions::default().wal_segment_bytes,
            checkpoint_interval: "1h".into(),
            retention: BTreeMap::new(),
        }
    }
}

impl StorageConfig {
    pub fn checkpoint_interval(&self) -> Result<Duration, String> {
        let d = humantime::parse_duration(&self.checkpoint_interval).map_err(|e| {
            format!(
                "storage.checkpoint_interval {:?}: {e}",
                self.checkpoint_interval
            )
        })?;
        if d < Duration::from_secs(1) {
            return Err("storage.checkpoint_interval must be at least 1s".into());
        }
        Ok(d)
    }

    /// The retention policy the `[storage.retention]` table describes.
    pub fn retention(&self) -> Result<Retention, String> {
        let parse = |key: &str, raw: &str| -> Result<Option<Duration>, String> {
            if raw == "forever" {
                return Ok(None);
            }
            humantime::parse_duration(raw).map(Some).map_err(|e| {
                format!(
                    "storage.retention.{key} = {raw:?}: {e}; use \"forever\" or e.g. \"90days\""
                )
            })
        };
        let mut policy = Retention::forever();
        for (key, raw) in &self.retention {
            let keep = parse(key, raw)?;
            if key == "default" {
                policy = policy.with_default(keep);
            } else {
                let vital = VitalSign::ALL
                    .iter()
                    .find(|v| v.key() == key)
                    .ok_or_else(|| {
                        let keys: Vec<_> = VitalSign::ALL.iter().map(|v| v.key()).collect();
                        format!(
                            "storage.retention.{key}: unknown kind; use \"default\" or one of {}",
                            keys.join(", ")
                        )
                    })?;
                policy = policy.with(*vital, keep);
            }
        }
        Ok(policy)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// HTTP connections open at once (0: no cap).
    pub max_connections: usize,
    /// HTTP connections open at once from one address (0: no cap). Behind a
    /// reverse proxy every client has the proxy's address.
    pub max_connections_per_address: usize,
    /// A request's headers must arrive whole within this; the time counts
    /// from the connection's opening or its previous response, so it is
    /// also how long an idle keep-alive connection is kept.
    pub header_read_timeout: String,
    /// Longest pause inside a request body.
    pub request_body_timeout: String,
    /// Largest request body on any route (413 beyond; the ingest routes
    /// have their own, smaller limits).
    pub max_body_bytes: usize,
}

/// HTTP limits, parsed.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub connections: ConnectionLimits,
    pub header_read_timeout: Duration,
    pub request_body_timeout: Duration,
    pub max_body_bytes: usize,
}

impl HttpConfig {
    pub fn limits(&self) -> Result<HttpLimits, String> {
        Ok(HttpLimits {
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                max_per_address: self.max_connections_per_address,
            },
            header_read_timeout: duration("http.header_read_timeout", &self.header_read_timeout)?,
            request_body_timeout: duration(
                "http.request_body_timeout",
                &self.request_body_timeout,
            )?,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub listen: SocketAddr,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_bytes: usize,
    /// Publishes per connection being stored at once.
    pub max_inflight: usize,
    /// MQTT connections open at once (0: no cap).
    pub max_connections: usize,
    /// MQTT connections open at once from one address (0: no cap).
    pub max_connections_per_address: usize,
}

impl MqttConfig {
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("medmesh-data"),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            coap: CoapConfig::default(),
            hl7: Hl7Config::default(),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            devices: DevicesConfig::default(),
            tls: TlsConfig::default(),
            rules: medmesh_rules::RulesConfig::default(),
            alarms: Default::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        let connections = ConnectionLimits::default();
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: connections.max_connections,
            max_connections_per_address: connections.max_per_address,
            header_read_timeout: "30s".into(),
            request_body_timeout: "30s".into(),
            max_body_bytes: 8 << 20,
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_packet_bytes: 1 << 20,
            max_inflight: 64,
            max_connections: ConnectionLimits::default().max_connections,
            max_connections_per_address: ConnectionLimits::default().max_per_address,
        }
    }
}

impl Config {
    /// Parses a TOML configuration; missing keys take their defaults,
    /// unknown keys are an error (a typo must not silently fall back).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.mqtt.listen.port(), 1883);
        assert!(c.mqtt.listen.ip().is_loopback());
    }

    #[test]
    fn retention_table_is_validated() {
        let c = Config::from_toml(
            "[storage.retention]\ndefault = \"30days\"\nbody_weight = \"forever\"\n",
        )
        .unwrap();
        let r = c.storage.retention().unwrap();
        assert_eq!(
            r.cutoff(VitalSign::HeartRate, 31 * 86_400_000),
            Some(86_400_000)
        );
        assert_eq!(r.cutoff(VitalSign::BodyWeight, 31 * 86_400_000), None);
        let bad = Config::from_toml("[storage.retention]\npulse_ox = \"1day\"\n").unwrap();
        assert!(bad.storage.retention().unwrap_err().contains("pulse_ox"));
        let bad = Config::from_toml("[storage.retention]\ndefault = \"a while\"\n").unwrap();
        assert!(bad.storage.retention().unwrap_err().contains("a while"));
        let bad = Config::from_toml("[storage]\ncheckpoint_interval = \"10ms\"\n").unwrap();
        assert!(bad.storage.checkpoint_interval().is_err());
    }

    #[test]
    fn keys_override_and_typos_are_errors() {
        let c = Config::from_toml(
            "data_dir = \"/var/lib/medmesh\"\n[mqtt]\nlisten = \"0.0.0.0:1884\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/medmesh"));
        assert_eq!(c.mqtt.listen.port(), 1884);
        assert_eq!(c.http.listen.port(), 8080);
        assert!(
            !c.anonymous_devices() && !Config::default().anonymous_devices(),
            "devices need credentials unless anonymous ones are allowed explicitly"
        );
        let open = Config::from_toml("[devices]\nallow_anonymous = true\n").unwrap();
        assert!(open.anonymous_devices());
        let gw = Config::from_toml(
            "[[hl7.senders]]\napplication = \"GW\"\nfacility = \"ICU\"\naddresses = [\"10.0.0.5\"]\n",
        )
        .unwrap();
        assert_eq!(
            gw.hl7_senders().senders[0].addresses[0].to_string(),
            "10.0.0.5"
        );
        let err = Config::from_toml("[mqtt]\nlistn = \"x\"").unwrap_err();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn listener_limits_have_defaults_and_are_checked() {
        let c = Config::default();
        let http = c.http.limits().unwrap();
        assert_eq!(http.header_read_timeout, Duration::from_secs(30));
        assert_eq!(http.connections.max_per_address, 256);
        assert_eq!(c.mqtt.connection_limits().max_connections, 10_000);
        let hl7 = c.hl7.limits().unwrap();
        assert_eq!(hl7.idle_timeout, Duration::from_secs(300));
        assert_eq!(hl7.message_timeout, Duration::from_secs(60));
        let coap = c.coap.limits().unwrap();
        assert_eq!(coap.upload_timeout, Duration::from_secs(60));
        let c = Config::from_toml(
            "[http]\nheader_read_timeout = \"2s\"\nmax_connections_per_address = 0\n[hl7]\nidle_timeout = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(
            c.http.limits().unwrap().header_read_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(c.http.limits().unwrap().connections.max_per_address, 0);
        assert_eq!(c.hl7.limits().unwrap().idle_timeout, Duration::from_secs(1));
        let bad = Config::from_toml("[hl7]\nidle_timeout = \"0s\"\n").unwrap();
        assert!(bad.hl7.limits().unwrap_err().contains("hl7.idle_timeout"));
        let bad = Config::from_toml("[coap]\nbuffer_budget_bytes = 10\n").unwrap();
        assert!(bad.coap.limits().is_err());
        assert_eq!(c.coap.dtls_listen, None, "coaps is off unless configured");
        let dtls = c.coap.dtls_limits().unwrap();
        assert_eq!(dtls.handshake_timeout, Duration::from_secs(10));
        assert_eq!(dtls.idle_timeout, Duration::from_secs(600));
        let on = Config::from_toml(
            "[coap]\ndtls_listen = \"0.0.0.0:5684\"\ndtls_idle_timeout = \"1min\"\n",
        )
        .unwrap();
        assert_eq!(on.coap.dtls_listen, Some("0.0.0.0:5684".parse().unwrap()));
        assert_eq!(
            on.coap.dtls_limits().unwrap().idle_timeout,
            Duration::from_secs(60)
        );
        let bad = Config::from_toml("[coap]\ndtls_handshake_timeout = \"0s\"\n").unwrap();
        assert!(bad.coap.dtls_limits().is_err());
    }

    #[test]
    fn rules_table_parses_profiles() {
        let c = Config::from_toml(
            "[rules]\ndefault_profile = \"adult-ward\"\nbattery_low_percent = 15\n[rules.profiles.step-down.thresholds.heart_rate]\nhigh = 120\nsustained_s = 30\n[[rules.profiles.step-down.trends]]\nvital = \"body_weight\"\nrise = 2\nwindow_s = 259200\n",
        )
        .unwrap();
        assert_eq!(c.rules.battery_low_percent, 15.0);
        assert_eq!(c.rules.profiles["step-down"].trends.len(), 1);
        assert!(Config::from_toml("[rules]\nbattery = 1\n").is_err());
    }
}
