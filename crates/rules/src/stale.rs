//! Stale data: a patient from whom no reading arrived for too long.
//!
//! Judged on the server's clock (when readings *arrived*), because the
//! question is whether the patient's devices are still reaching us; a
//! device's own timestamps may be wrong or replayed. The delay per profile
//! (`stale_after_s`) is a product default, not a clinical standard.

use medmesh_model::TimestampMs;

/// How long (ms) the patient has been silent, if longer than `after_s`.
pub fn silent_for(
    last_reading_ms: TimestampMs,
    after_s: u64,
    now_ms: TimestampMs,
) -> Option<TimestampMs> {
    let silent = now_ms - last_reading_ms;
    let limit = i64::try_from(after_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    (silent >= limit).then_some(silent)
}

/// "42 min", "3 h 5 min", "2 days 1 h": a silence as people say it.
pub fn human_silence(ms: TimestampMs) -> String {
    let seconds = ms.max(0) / 1000;
    let minutes = seconds / 60;
    match minutes {
        0 => format!("{seconds} s"),
        m if m < 60 => format!("{m} min"),
        m if m < 24 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days {} h", m / 1440, (m % 1440) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_only_from_the_delay_on() {
        assert_eq!(silent_for(1_000, 60, 60_999), None);
        assert_eq!(silent_for(1_000, 60, 61_000), Some(60_000));
        assert_eq!(
            silent_for(1_000, 60, 500),
            None,
            "a clock step back is not silence"
        );
    }

    #[test]
    fn silences_read_as_people_say_them() {
        assert_eq!(human_silence(5_000), "5 s");
        assert_eq!(human_silence(42 * 60_000 + 5_000), "42 min");
        assert_eq!(human_silence(185 * 60_000), "3 h 5 min");
        assert_eq!(human_silence(49 * 3_600_000), "2 days 1 h");
    }
}
