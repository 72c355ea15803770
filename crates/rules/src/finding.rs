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
        /// Which way this condition gets worse: the alarm keeps the worst
        /// reading of its episode and that reading's message.
        worse: Worse,
    },
    /// The condition no longer holds: resolve its alarm, if any.
    Clears { value: f64 },
    /// A reading that arrived late held the condition at its time, but a
    /// newer one (at `cleared_ms`) was already judged clear: the episode is
    /// recorded as it was (raised then, resolved at once) unless an alarm
    /// already covered it.
    HeldBefore {
        priority: Priority,
        message: String,
        value: f64,
        worse: Worse,
        cleared_ms: TimestampMs,
    },
}

/// Which way a condition gets worse, so the alarm shows the worst of its
/// episode rather than whichever reading came last (a respiratory rate of
/// 30 is not "25" because 25 was the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    /// Higher values are worse (a high limit, a rise, a NEWS2 red above
    /// the normal band): the message is that of the highest reading.
    Higher,
    /// Lower values are worse (a low limit, a fall, SpO2).
    Lower,
    /// The message follows the latest verdict; the worst value kept is the
    /// highest (a NEWS2 aggregate, a device's condition).
    Latest,
}

impl Worse {
    /// Whether `value` is at least as bad as `worst` so far.
    pub fn at_least_as_bad(self, value: f64, worst: f64) -> bool {
        match self {
            Worse::Higher => value >= worst,
            Worse::Lower => value <= worst,
            Worse::Latest => true,
        }
    }

    /// The worse of `value` and `worst`.
    pub fn worst(self, value: f64, worst: f64) -> f64 {
        match self {
            Worse::Lower => value.min(worst),
            Worse::Higher | Worse::Latest => value.max(worst),
        }
    }
}
