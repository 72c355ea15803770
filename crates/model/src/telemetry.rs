//! What a device reports about itself or an event it detected, as opposed
//! to a measured vital sign: kept with the device and judged by the rules,
//! never stored as a patient's series.

use crate::TimestampMs;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceReport {
    /// Remaining battery energy, 0-100 % (SenML unit `%EL`, RFC 8428
    /// section 12.1; Bluetooth Battery Level characteristic 0x2A19).
    Battery { percent: f64, time_ms: TimestampMs },
    /// A wearable detected that its wearer fell.
    Fall { time_ms: TimestampMs },
}

impl DeviceReport {
    pub fn time_ms(&self) -> TimestampMs {
        match self {
            DeviceReport::Battery { time_ms, .. } | DeviceReport::Fall { time_ms } => *time_ms,
        }
    }
}
