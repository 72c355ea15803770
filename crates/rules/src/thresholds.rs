//! Limits on a vital sign, with an optional sustained-for delay.
//!
//! The delay is judged on the readings' own timestamps, never on the
//! wall clock: a gateway uploading an hour of stored readings at once
//! raises exactly the alarms the patient would have had live.

use crate::profiles::Limits;
use medmesh_model::TimestampMs;

/// Which side of the range a value left by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    Low,
    High,
}

/// Where a value stands against `limits`.
pub fn breach(limits: &Limits, value: f64) -> Option<Breach> {
    if limits.low.is_some_and(|low| value < low) {
        Some(Breach::Low)
    } else if limits.high.is_some_and(|high| value > high) {
        Some(Breach::High)
    } else {
        None
    }
}

/// What one reading means for the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Out of range for at least the sustained-for delay: alarm, and since when.
    Alarm {
        breach: Breach,
        since_ms: TimestampMs,
    },
    /// Out of range, but not for long enough yet.
    Pending,
    /// In range (the alarm, if any, resolves).
    Normal,
    /// Older than a reading already judged (`newest_ms`): it cannot change
    /// the present; `breach` says whether it was out of range then.
    Late {
        breach: Option<Breach>,
        newest_ms: TimestampMs,
    },
}

/// One vital sign's history as far as its limits care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThresholdState {
    /// Timestamp of the first reading of the current out-of-range run.
    out_since: Option<TimestampMs>,
    /// Timestamp of the newest reading judged.
    newest: Option<TimestampMs>,
}

impl ThresholdState {
    /// Judges one reading against `limits`.
    pub fn judge(&mut self, limits: &Limits, value: f64, time_ms: TimestampMs) -> Judgement {
        if let Some(newest_ms) = self.newest.filter(|t| time_ms < *t) {
            return Judgement::Late {
                breach: breach(limits, value),
                newest_ms,
            };
        }
        self.newest = Some(time_ms);
        let Some(breach) = breach(limits, value) else {
            self.out_since = None;
            return Judgement::Normal;
        };
        let since_ms = *self.out_since.get_or_insert(time_ms);
        let sustained_ms =
            i64::try_from(limits.sustained_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        if time_ms - since_ms >= sustained_ms {
            Judgement::Alarm { breach, since_ms }
        } else {
            Judgement::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::Priority;

    fn limits(low: f64, high: f64, sustained_s: u64) -> Limits {
        Limits {
            low: Some(low),
            high: Some(high),
            priority: Priority::Medium,
            sustained_s,
        }
    }

    #[test]
    fn limits_are_strict() {
        let l = limits(90.0, 110.0, 0);
        assert_eq!(breach(&l, 90.0), None);
        assert_eq!(breach(&l, 89.9), Some(Breach::Low));
        assert_eq!(breach(&l, 110.0), None);
        assert_eq!(breach(&l, 110.5), Some(Breach::High));
    }

    #[test]
    fn without_a_delay_the_first_reading_out_of_range_alarms() {
        let mut s = ThresholdState::default();
        let l = limits(90.0, 110.0, 0);
        assert_eq!(
            s.judge(&l, 85.0, 1_000),
            Judgement::Alarm {
                breach: Breach::Low,
                since_ms: 1_000
            }
        );
        assert_eq!(s.judge(&l, 95.0, 2_000), Judgement::Normal);
    }

    #[test]
    fn sustained_for_counts_sample_time_and_restarts_after_a_normal_reading() {
        let mut s = ThresholdState::default();
        let l = limits(90.0, 110.0, 60);
        assert_eq!(s.judge(&l, 120.0, 0), Judgement::Pending);
        assert_eq!(s.judge(&l, 121.0, 59_999), Judgement::Pending);
        // One normal reading restarts the clock.
        assert_eq!(s.judge(&l, 100.0, 60_000), Judgement::Normal);
        assert_eq!(s.judge(&l, 125.0, 61_000), Judgement::Pending);
        assert_eq!(s.judge(&l, 125.0, 120_000), Judgement::Pending);
        assert_eq!(
            s.judge(&l, 126.0, 121_000),
            Judgement::Alarm {
                breach: Breach::High,
                since_ms: 61_000
            }
        );
        // A late reading from before changes nothing.
        assert_eq!(
            s.judge(&l, 100.0, 90_000),
            Judgement::Late {
                breach: None,
                newest_ms: 121_000
            }
        );
        assert!(matches!(
            s.judge(&l, 127.0, 122_000),
            Judgement::Alarm { .. }
        ));
    }
}
