//! What a rule module concludes about one condition, for the board to turn
//! into an alarm change. Rule modules stay pure: they judge readings and
//! times; only the board keeps alarms.

use medmesh_model::{DeviceId, Priority, TimestampMs, VitalSign};

/// One rule's verdict on one condition of a patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The vital sign concerned, if the condition is about one.
    pub vital: Option<VitalSign>,
    /// The device concerned, if the condition is about one.
    pub device: Option<DeviceId>,
    /// The rule's name (one of the board's `RULE_*` constants).
    pub rule: &'static str,
    /// When the condition was judged: the reading's time, or the timer's.
    pub time_ms: TimestampMs,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The condition holds: raise (or update) its alarm.
    Holds {
        priority: Priority,
        message: String,
        value: f64,
    },
    /// The condition no longer holds: resolve its alarm, if any.
    Clears { value: f64 },
}
