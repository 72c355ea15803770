//! Quiet hours: a daily window (say 22:00 to 07:00 at UTC+01:00) during
//! which low-priority notifications to people are held and sent when it
//! ends. High and medium alarms are never held, and the dashboard and MQTT
//! topics show every alarm at once whatever the hour.
//!
//! The window is set with a fixed UTC offset rather than a named time zone:
//! an operator on daylight-saving time moves the offset twice a year.

use medmesh_model::{Priority, TimestampMs};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Start and end as milliseconds after local midnight.
    start_ms: i64,
    end_ms: i64,
    /// Local time minus UTC.
    offset_ms: i64,
}

impl QuietHours {
    /// From "HH:MM" (or "HH:MM:SS") start and end, and an offset "+01:00",
    /// "-05:30" or "Z"/"UTC". A window whose end is before its start runs
    /// over midnight.
    pub fn parse(start: &str, end: &str, utc_offset: &str) -> Result<QuietHours, String> {
        let start_ms = time_of_day(start).map_err(|e| format!("start {start:?}: {e}"))?;
        let end_ms = time_of_day(end).map_err(|e| format!("end {end:?}: {e}"))?;
        if start_ms == end_ms {
            return Err("start and end are the same time: the window would be empty".into());
        }
        let offset_ms =
            offset(utc_offset).map_err(|e| format!("utc_offset {utc_offset:?}: {e}"))?;
        Ok(QuietHours {
            start_ms,
            end_ms,
            offset_ms,
        })
    }

    /// If a notification about an alarm of `priority` must wait at `now`,
    /// the time the quiet hours end (when to send it).
    pub fn hold_until(&self, priority: Priority, now: TimestampMs) -> Option<TimestampMs> {
        if priority != Priority::Low {
            return None;
        }
        let local = now + self.offset_ms;
        let into_day = local.rem_euclid(DAY_MS);
        let midnight = local - into_day;
        let end_local = if self.start_ms < self.end_ms {
            (self.start_ms..self.end_ms)
                .contains(&into_day)
                .then_some(midnight + self.end_ms)?
        } else if into_day >= self.start_ms {
            midnight + DAY_MS + self.end_ms
        } else if into_day < self.end_ms {
            midnight + self.end_ms
        } else {
            return None;
        };
        Some(end_local - self.offset_ms)
    }
}

fn time_of_day(s: &str) -> Result<i64, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str, max: i64| -> Result<i64, String> {
        let n: i64 = p
            .parse()
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or("expected HH:MM or HH:MM:SS")?;
        if n > max {
            return Err(format!("{n} is out of range"));
        }
        Ok(n)
    };
    let (h, m, sec) = match parts[..] {
        [h, m] => (num(h, 23)?, num(m, 59)?, 0),
        [h, m, s] => (num(h, 23)?, num(m, 59)?, num(s, 59)?),
        _ => return Err("expected HH:MM or HH:MM:SS".into()),
    };
    Ok(((h * 60 + m) * 60 + sec) * 1000)
}

fn offset(s: &str) -> Result<i64, String> {
    if matches!(s, "Z" | "UTC" | "") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err("expected +HH:MM, -HH:MM or UTC".into()),
    };
    let ms = time_of_day(rest).map_err(|_| "expected +HH:MM, -HH:MM or UTC".to_string())?;
    if ms > 14 * 3_600_000 {
        return Err("offsets run from -14:00 to +14:00".into());
    }
    Ok(sign * ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// 2026-11-25T00:00:00Z.
    const DAY: i64 = 1_795_564_800_000;

    #[test]
    fn a_window_over_midnight_holds_low_priority_until_its_end() {
        let q = QuietHours::parse("22:00", "07:00", "+01:00").unwrap();
        // 21:30Z is 22:30 local: held until 07:00 local = 06:00Z next day.
        assert_eq!(
            q.hold_until(Priority::Low, DAY + 21 * H + H / 2),
            Some(DAY + 30 * H)
        );
        // 03:00Z is 04:00 local: held until 06:00Z the same day.
        assert_eq!(q.hold_until(Priority::Low, DAY + 3 * H), Some(DAY + 6 * H));
        // 06:00Z is 07:00 local: the window has ended.
        assert_eq!(q.hold_until(Priority::Low, DAY + 6 * H), None);
        assert_eq!(q.hold_until(Priority::Low, DAY + 12 * H), None);
        // Medium and high are never held.
        assert_eq!(q.hold_until(Priority::Medium, DAY + 3 * H), None);
        assert_eq!(q.hold_until(Priority::High, DAY + 3 * H), None);
    }

    #[test]
    fn a_daytime_window_and_negative_offsets() {
        let q = QuietHours::parse("12:00", "13:30:15", "-05:30").unwrap();
        // 17:45Z is 12:15 local.
        let t = DAY + 17 * H + 45 * 60_000;
        assert_eq!(q.hold_until(Priority::Low, t), Some(DAY + 19 * H + 15_000));
        assert_eq!(q.hold_until(Priority::Low, DAY + 17 * H), None);
    }

    #[test]
    fn bad_settings_are_explained() {
        assert!(
            QuietHours::parse("25:00", "07:00", "UTC")
                .unwrap_err()
                .contains("start")
        );
        assert!(
            QuietHours::parse("22:00", "7", "UTC")
                .unwrap_err()
                .contains("end")
        );
        assert!(
            QuietHours::parse("22:00", "07:00", "CET")
                .unwrap_err()
                .contains("utc_offset")
        );
        assert!(
            QuietHours::parse("22:00", "22:00", "Z")
                .unwrap_err()
                .contains("same")
        );
        assert!(QuietHours::parse("22:00", "07:00", "+15:00").is_err());
    }
}
