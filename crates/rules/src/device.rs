//! Rules on what devices report about themselves and events they detect:
//! low battery and falls.

use crate::board::{RULE_BATTERY_LOW, RULE_FALL};
use crate::finding::{Finding, Verdict, Worse};
use medmesh_model::{DeviceId, Priority, TimestampMs};

/// A low-battery alarm resolves once the level is this many points above
/// the threshold, so a level hovering at the threshold does not flap.
/// (Product default.)
pub const BATTERY_HYSTERESIS: f64 = 5.0;

/// A device's battery level against `low_percent`. Low battery threatens
/// the monitoring, not the patient directly: low priority. `None` while the
/// level sits between the threshold and the hysteresis band above it.
pub fn battery(
    device: &DeviceId,
    percent: f64,
    low_percent: f64,
    time_ms: TimestampMs,
) -> Option<Finding> {
    let verdict = if percent < low_percent {
        Verdict::Holds {
            priority: Priority::Low,
            message: format!(
                "Device {device} battery at {percent} % (below {low_percent} %): charge or replace it"
            ),
            value: percent,
            worse: Worse::Lower,
        }
    } else if percent >= low_percent + BATTERY_HYSTERESIS {
        Verdict::Clears { value: percent }
    } else {
        return None;
    };
    Some(Finding {
        vital: None,
        device: Some(device.clone()),
        rule: RULE_BATTERY_LOW,
        time_ms,
        verdict,
    })
}

/// A wearable detected a fall: high priority, and it never clears by
/// itself (no later reading can say the patient is unhurt), so only a
/// clinician resolves it.
pub fn fall(device: &DeviceId, time_ms: TimestampMs) -> Finding {
    Finding {
        vital: None,
        device: Some(device.clone()),
        rule: RULE_FALL,
        time_ms,
        verdict: Verdict::Holds {
            priority: Priority::High,
            message: format!("Fall detected by {device}: check on the patient now"),
            value: 1.0,
            worse: Worse::Latest,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn battery_low_below_the_threshold_recovered_above_the_band() {
        let d = DeviceId::new("watch-1").unwrap();
        let low = battery(&d, 15.0, 20.0, 1).unwrap();
        assert!(matches!(
            low.verdict,
            Verdict::Holds {
                priority: Priority::Low,
                ..
            }
        ));
        assert_eq!(low.rule, RULE_BATTERY_LOW);
        assert_eq!(battery(&d, 20.0, 20.0, 2), None, "in the hysteresis band");
        assert_eq!(battery(&d, 24.9, 20.0, 3), None);
        assert!(matches!(
            battery(&d, 25.0, 20.0, 4).unwrap().verdict,
            Verdict::Clears { value } if value == 25.0
        ));
    }

    #[test]
    fn a_fall_is_high_priority() {
        let f = fall(&DeviceId::new("watch-1").unwrap(), 7);
        assert!(matches!(
            f.verdict,
            Verdict::Holds {
                priority: Priority::High,
                ..
            }
        ));
        assert_eq!((f.rule, f.time_ms), (RULE_FALL, 7));
    }
}
