//! Quiet hours: a daily window (say 22:00 to 07:00 in Europe/London) during
//! which low-priority notifications to people are held and sent when it
//! ends. High and medium alarms are never held, and the dashboard and MQTT
//! topics show every alarm at once whatever the hour.
//!
//! The window's wall-clock times are read in a named IANA time zone (from
//! the system tz database, so they follow daylight-saving changes) or at a
//! fixed UTC offset.

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};
use medmesh_model::{Priority, TimestampMs};

#[derive(Debug, Clone)]
pub struct QuietHours {
    start: Time,
    end: Time,
    /// Where the wall clock is read: a named zone or a fixed offset.
    zone: TimeZone,
}

impl QuietHours {
    /// From "HH:MM" (or "HH:MM:SS") start and end, and an offset "+01:00",
    /// "-05:30" or "Z"/"UTC". A window whose end is before its start runs
    /// over midnight.
    pub fn parse(start: &str, end: &str, utc_offset: &str) -> Result<QuietHours, String> {
        let seconds = offset(utc_offset).map_err(|e| format!("utc_offset {utc_offset:?}: {e}"))?;
        let offset =
            Offset::from_seconds(seconds).map_err(|e| format!("utc_offset {utc_offset:?}: {e}"))?;
        Self::window(start, end, TimeZone::fixed(offset))
    }

    /// As [`QuietHours::parse`], with the wall clock of an IANA time zone
    /// ("Europe/London") looked up in the system tz database (`TZDIR` or
    /// /usr/share/zoneinfo).
    pub fn parse_in_time_zone(
        start: &str,
        end: &str,
        time_zone: &str,
    ) -> Result<QuietHours, String> {
        Self::window(start, end, time_zone_named(time_zone)?)
    }

    fn window(start: &str, end: &str, zone: TimeZone) -> Result<QuietHours, String> {
        let start = time_of_day(start).map_err(|e| format!("start {start:?}: {e}"))?;
        let end = time_of_day(end).map_err(|e| format!("end {end:?}: {e}"))?;
        if start == end {
            return Err("start and end are the same time: the window would be empty".into());
        }
        Ok(QuietHours { start, end, zone })
    }

    /// If a notification about an alarm of `priority` must wait at `now`,
    /// the time the quiet hours end (when to send it).
    ///
    /// The end is the instant the local clock shows `end`: the first time if
    /// a clock change repeats it; if a change skips it, it is read with the
    /// offset from before the change (01:30 skipped by a one-hour spring
    /// forward is 02:30). A time outside what the calendar can represent is
    /// never held (sending early beats losing the notification).
    pub fn hold_until(&self, priority: Priority, now: TimestampMs) -> Option<TimestampMs> {
        if priority != Priority::Low {
            return None;
        }
        let local = Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(self.zone.clone());
        let (today, time) = (local.date(), local.time());
        let end_date = if self.start < self.end {
            (self.start..self.end).contains(&time).then_some(today)?
        } else if time >= self.start {
            today.tomorrow().ok()?
        } else if time < self.end {
            today
        } else {
            return None;
        };
        let end = self.zone.to_zoned(end_date.to_datetime(self.end)).ok()?;
        Some(end.timestamp().as_millisecond())
    }
}

/// The IANA time zone `name` ("Europe/London") from the system tz database
/// (`TZDIR` or /usr/share/zoneinfo), with an error naming it.
pub fn time_zone_named(name: &str) -> Result<TimeZone, String> {
    named_zone(jiff::tz::db(), name)
}

/// `name` in `db`, with an error that names the zone and says whether the
/// database itself is missing (no tzdata installed) or lacks the name.
fn named_zone(db: &TimeZoneDatabase, name: &str) -> Result<TimeZone, String> {
    if db.is_definitively_empty() {
        return Err(format!(
            "time_zone {name:?}: no time zone database found on this machine \
             (install tzdata, or point TZDIR at a zoneinfo directory)"
        ));
    }
    db.get(name).map_err(|_| {
        format!(
            "time_zone {name:?}: unknown time zone (expected an IANA name such as \
             \"Europe/London\" from the system tz database)"
        )
    })
}

fn time_of_day(s: &str) -> Result<Time, String> {
    let ms = time_of_day_ms(s)?;
    let secs = ms / 1000;
    Time::new(
        (secs / 3600) as i8,
        (secs / 60 % 60) as i8,
        (secs % 60) as i8,
        0,
    )
    .map_err(|e| e.to_string())
}

fn time_of_day_ms(s: &str) -> Result<i64, String> {
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

/// Seconds east of UTC.
fn offset(s: &str) -> Result<i32, String> {
    if matches!(s, "Z" | "UTC" | "") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err("expected +HH:MM, -HH:MM or UTC".into()),
    };
    let ms = time_of_day_ms(rest).map_err(|_| "expected +HH:MM, -HH:MM or UTC".to_string())?;
    if ms > 14 * 3_600_000 {
        return Err("offsets run from -14:00 to +14:00".into());
    }
    Ok(sign * (ms / 1000) as i32)
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

    fn at(rfc3339: &str) -> TimestampMs {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn london() -> QuietHours {
        QuietHours::parse_in_time_zone("22:00", "07:00", "Europe/London").unwrap()
    }

    /// 2026-03-29: London goes from GMT (UTC+0) to BST (UTC+1) at 01:00Z.
    #[test]
    fn a_named_zone_follows_the_spring_clock_change() {
        let q = london();
        let low = |t| q.hold_until(Priority::Low, at(t));
        // Saturday 21:59 GMT: not yet quiet; 22:00 GMT: quiet.
        assert_eq!(low("2026-03-28T21:59:00Z"), None);
        // Held over the change until 07:00 BST, which is 06:00Z (a fixed
        // +00:00 would have waited until 07:00Z).
        assert_eq!(
            low("2026-03-28T22:00:00Z"),
            Some(at("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            low("2026-03-29T00:59:00Z"),
            Some(at("2026-03-29T06:00:00Z"))
        );
        assert_eq!(
            low("2026-03-29T01:00:00Z"),
            Some(at("2026-03-29T06:00:00Z"))
        );
        // 06:30Z is 07:30 BST: released.
        assert_eq!(low("2026-03-29T06:00:00Z"), None);
        assert_eq!(low("2026-03-29T06:30:00Z"), None);
        // That evening quiet starts at 22:00 BST = 21:00Z.
        assert_eq!(low("2026-03-29T20:59:00Z"), None);
        assert_eq!(
            low("2026-03-29T21:00:00Z"),
            Some(at("2026-03-30T06:00:00Z"))
        );
        assert_eq!(
            q.hold_until(Priority::High, at("2026-03-29T02:00:00Z")),
            None
        );
    }

    /// 2026-10-25: London goes from BST (UTC+1) back to GMT (UTC+0) at 01:00Z,
    /// so 01:00 to 02:00 local happens twice.
    #[test]
    fn a_named_zone_follows_the_autumn_clock_change() {
        let q = london();
        let low = |t| q.hold_until(Priority::Low, at(t));
        // Saturday 22:00 BST is 21:00Z.
        assert_eq!(low("2026-10-24T20:59:00Z"), None);
        assert_eq!(
            low("2026-10-24T21:00:00Z"),
            Some(at("2026-10-25T07:00:00Z"))
        );
        // 01:30 local, first (BST) and second (GMT) time: both held to 07:00 GMT.
        assert_eq!(
            low("2026-10-25T00:30:00Z"),
            Some(at("2026-10-25T07:00:00Z"))
        );
        assert_eq!(
            low("2026-10-25T01:30:00Z"),
            Some(at("2026-10-25T07:00:00Z"))
        );
        // 06:30Z is 06:30 GMT: still quiet (a fixed +01:00 would have released it).
        assert_eq!(
            low("2026-10-25T06:30:00Z"),
            Some(at("2026-10-25T07:00:00Z"))
        );
        assert_eq!(low("2026-10-25T07:00:00Z"), None);
        // That evening quiet starts at 22:00 GMT = 22:00Z.
        assert_eq!(low("2026-10-25T21:30:00Z"), None);
        assert_eq!(
            low("2026-10-25T22:00:00Z"),
            Some(at("2026-10-26T07:00:00Z"))
        );
    }

    #[test]
    fn an_end_skipped_by_the_spring_change_is_read_with_the_old_offset() {
        let q = QuietHours::parse_in_time_zone("00:30", "01:30", "Europe/London").unwrap();
        // 01:30 does not exist in London on 2026-03-29; 02:30 BST is 01:30Z.
        assert_eq!(
            q.hold_until(Priority::Low, at("2026-03-29T00:45:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn unknown_zones_and_a_missing_database_are_named() {
        let err = QuietHours::parse_in_time_zone("22:00", "07:00", "Europe/Atlantis").unwrap_err();
        assert!(
            err.contains("\"Europe/Atlantis\"") && err.contains("unknown time zone"),
            "{err}"
        );
        let err = named_zone(&TimeZoneDatabase::none(), "Europe/London").unwrap_err();
        assert!(
            err.contains("\"Europe/London\"") && err.contains("no time zone database"),
            "{err}"
        );
        assert!(
            QuietHours::parse_in_time_zone("22:00", "22:00", "Europe/London")
                .unwrap_err()
                .contains("same")
        );
    }
}
