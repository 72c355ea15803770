//! Alarms raised by rules about a patient, and what clinicians did with them.

use crate::{DeviceId, PatientId, TimestampMs, VitalSign};
use serde::{Deserialize, Serialize};

/// How urgently a clinician must respond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    /// The condition holds and nobody has acted on it yet.
    Active,
    /// Somebody has taken it on; the condition may still hold.
    Acknowledged,
    /// The condition no longer holds, or a clinician closed it.
    Resolved,
}

/// Who did something to an alarm, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub by: String,
    pub at_ms: TimestampMs,
}

/// One alarm condition about one patient. A repeat of the same condition
/// updates the alarm (value, `updated_ms`) rather than raising a second one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: u64,
    pub patient_id: PatientId,
    /// The vital sign concerned; `None` for rules over several (NEWS2 aggregate).
    pub vital: Option<VitalSign>,
    /// The device concerned, for alarms about a device (it went off line).
    #[serde(default)]
    pub device_id: Option<DeviceId>,
    /// Short machine-readable name of the rule that raised it.
    pub rule: String,
    pub priority: Priority,
    pub state: AlarmState,
    pub message: String,
    /// The latest value judged for the condition (once resolved: the one
    /// that cleared it).
    pub value: f64,
    /// The worst value of the episode (the highest, or the lowest where
    /// lower is worse), whose reading the message describes; `None` for
    /// conditions without a scale (a device off line) and in records
    /// written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<f64>,
    pub raised_ms: TimestampMs,
    pub updated_ms: TimestampMs,
    #[serde(default)]
    pub acknowledged: Option<Act>,
    /// Notifications are held back until then.
    #[serde(default)]
    pub snoozed_until_ms: Option<TimestampMs>,
    /// `by` is "medmesh" when the condition cleared by itself.
    #[serde(default)]
    pub resolved: Option<Act>,
    /// How far up its escalation chain the alarm has climbed: 0 is the first
    /// responders, each level above was notified because nobody acted in time.
    #[serde(default)]
    pub escalation_level: u32,
    /// When the current escalation level began, by medmesh's clock (`None`
    /// until the escalation timer first sees the alarm); the next level's
    /// delay counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_since_ms: Option<TimestampMs>,
}
