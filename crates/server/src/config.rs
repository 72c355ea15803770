//! Server configuration: a TOML file whose every key has a default.
//!
//! ```toml
//! data_dir = "medmesh-data"
//! [http]
//! listen = "127.0.0.1:8080"
//! [mqtt]
//! listen = "127.0.0.1:1883"
//! [storage]
//! wal_segment_bytes = 67108864
//! ```
//!
//! Listeners bind to loopback by default: exposing health data to a network
//! is a decision the operator makes explicitly.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where samples (write-ahead log) and the registry are kept.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// A write-ahead log segment this large is checkpointed into compressed
    /// chunks and deleted; bounds the uncompressed data on disk.
    pub wal_segment_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            wal_segment_bytes: medmesh_storage::StoreOptions::default().wal_segment_bytes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    pub listen: SocketAddr,
    /// Largest MQTT packet accepted, in bytes.
    pub max_packet_bytes: usize,
    /// Publishes per connection being stored at once.
    pub max_inflight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("medmesh-data"),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_packet_bytes: 1 << 20,
            max_inflight: 64,
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
    fn keys_override_and_typos_are_errors() {
        let c = Config::from_toml(
            "data_dir = \"/var/lib/medmesh\"\n[mqtt]\nlisten = \"0.0.0.0:1884\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/medmesh"));
        assert_eq!(c.mqtt.listen.port(), 1884);
        assert_eq!(c.http.listen.port(), 8080);
        let err = Config::from_toml("[mqtt]\nlistn = \"x\"").unwrap_err();
        assert!(err.contains("listn"), "{err}");
    }
}
