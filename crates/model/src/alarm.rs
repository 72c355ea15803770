//! Alarms raised by rules about a patient.

use crate::{PatientId, TimestampMs, VitalSign};
use serde::Serialize;

/// How urgently a clinician must respond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    /// The condition holds and nobody has acted on it yet.
    Active,
    /// The condition no longer holds.
    Resolved,
}

/// One alarm condition about one patient and one vital sign. A repeat of the
/// same condition updates the alarm (value, `updated_ms`) rather than raising
/// a second one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub id: u64,
    pub patient_id: PatientId,
    pub vital: VitalSign,
    /// Short machine-readable name of the rule that raised it.
    pub rule: &'static str,
    pub priority: Priority,
    pub state: AlarmState,
    pub message: String,
    /// The value that last triggered (or, once resolved, cleared) the alarm.
    pub value: f64,
    pub raised_ms: TimestampMs,
    pub updated_ms: TimestampMs,
}
