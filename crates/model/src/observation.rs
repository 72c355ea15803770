//! Observations: one measured value of one vital sign at one instant.

use crate::VitalSign;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC. Millisecond resolution covers
/// every numeric vital sign medmesh stores (waveforms are out of scope).
pub type TimestampMs = i64;

/// The current wall-clock time in [`TimestampMs`].
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A validated measurement: the value is finite, plausible, and expressed in
/// the vital sign's canonical UCUM unit ([`VitalSign::ucum`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observation {
    pub vital: VitalSign,
    pub value: f64,
    pub time_ms: TimestampMs,
}
