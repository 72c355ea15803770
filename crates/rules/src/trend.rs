//! Rate of change: how far a vital sign moved within a time window.
//!
//! The window keeps two monotonic queues of readings (candidates for the
//! window's minimum and maximum), so each reading costs O(1) amortised and
//! a steady series keeps only a few points. Judged on the readings' own
//! timestamps; readings older than the newest one are ignored.
//!
//! Clinical basis of the built-in rule: a weight gain of more than 2 kg
//! within 3 days is the fluid-retention warning sign the ESC 2021 heart
//! failure guideline (McDonagh et al., Eur Heart J 2021) teaches patients
//! to report. Other rules (e.g. a pulse rising by more than 30/min within
//! 5 minutes) are the operator's, per profile.

use crate::profiles::Trend;
use medmesh_model::TimestampMs;
use std::collections::VecDeque;

/// Most points a queue keeps (a 1 Hz monotone run of over 2 hours): beyond
/// it the oldest go, so the window is shorter than asked rather than
/// memory growing without bound.
const MAX_POINTS: usize = 8192;

/// The readings of one vital sign that may still be a window's extreme.
#[derive(Debug, Clone, Default)]
pub struct TrendWindow {
    /// Increasing values: the front is the window's minimum.
    lows: VecDeque<(TimestampMs, f64)>,
    /// Decreasing values: the front is the window's maximum.
    highs: VecDeque<(TimestampMs, f64)>,
    newest: Option<TimestampMs>,
}

/// How far the newest value moved within the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Movement {
    /// Newest value minus the window's lowest (>= 0).
    pub rise: f64,
    /// The window's highest minus the newest value (>= 0).
    pub fall: f64,
}

impl TrendWindow {
    /// Adds a reading and returns the movement over the `window_s` seconds
    /// up to it, or `None` for a reading older than one already seen.
    pub fn push(&mut self, time_ms: TimestampMs, value: f64, window_s: u64) -> Option<Movement> {
        if self.newest.is_some_and(|t| time_ms < t) {
            return None;
        }
        self.newest = Some(time_ms);
        let start = time_ms.saturating_sub(i64::try_from(window_s * 1000).unwrap_or(i64::MAX));
        while self.lows.back().is_some_and(|(_, v)| *v >= value) {
            self.lows.pop_back();
        }
        while self.highs.back().is_some_and(|(_, v)| *v <= value) {
            self.highs.pop_back();
        }
        self.lows.push_back((time_ms, value));
        self.highs.push_back((time_ms, value));
        for q in [&mut self.lows, &mut self.highs] {
            while q.front().is_some_and(|(t, _)| *t < start) || q.len() > MAX_POINTS {
                q.pop_front();
            }
        }
        let low = self.lows.front().map_or(value, |(_, v)| *v);
        let high = self.highs.front().map_or(value, |(_, v)| *v);
        Some(Movement {
            rise: value - low,
            fall: high - value,
        })
    }
}

/// Which way a trend rule fired, and by how much.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Direction {
    Rose(f64),
    Fell(f64),
}

/// Whether `movement` exceeds the rule's rise or fall.
pub fn exceeds(rule: &Trend, movement: Movement) -> Option<Direction> {
    if rule.rise.is_some_and(|r| movement.rise > r) {
        Some(Direction::Rose(movement.rise))
    } else if rule.fall.is_some_and(|f| movement.fall > f) {
        Some(Direction::Fell(movement.fall))
    } else {
        None
    }
}

/// "3 days", "5 min", "90 s": a window as people say it.
pub fn human_window(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{Priority, VitalSign};

    const DAY_MS: i64 = 86_400_000;

    fn weight_rule() -> Trend {
        Trend {
            vital: VitalSign::BodyWeight,
            rise: Some(2.0),
            fall: None,
            window_s: 3 * 86_400,
            priority: Priority::Medium,
        }
    }

    /// ESC 2021 heart failure: more than 2 kg within 3 days.
    #[test]
    fn weight_gain_of_more_than_2_kg_in_3_days() {
        let rule = weight_rule();
        let mut w = TrendWindow::default();
        let mut judge = |t: i64, kg: f64| exceeds(&rule, w.push(t, kg, rule.window_s).unwrap());
        assert_eq!(judge(0, 80.0), None);
        assert_eq!(judge(DAY_MS, 81.0), None);
        // Exactly 2 kg is not more than 2 kg.
        assert_eq!(judge(2 * DAY_MS, 82.0), None);
        assert!(
            matches!(judge(3 * DAY_MS, 82.3), Some(Direction::Rose(r)) if (r - 2.3).abs() < 1e-9)
        );
        // Day 0 has left the window: 82.3 - 81.0 is 1.3 kg.
        assert_eq!(judge(4 * DAY_MS, 82.3), None);
    }

    #[test]
    fn a_slow_gain_over_weeks_does_not_fire() {
        let rule = weight_rule();
        let mut w = TrendWindow::default();
        for day in 0..30 {
            let m = w
                .push(day * DAY_MS, 80.0 + 0.5 * day as f64, rule.window_s)
                .unwrap();
            assert_eq!(exceeds(&rule, m), None, "day {day}");
        }
    }

    #[test]
    fn pulse_rising_fast_and_falls_and_late_readings() {
        let rule = Trend {
            vital: VitalSign::HeartRate,
            rise: Some(30.0),
            fall: Some(30.0),
            window_s: 300,
            priority: Priority::High,
        };
        let mut w = TrendWindow::default();
        for (t, v) in [(0, 70.0), (60_000, 75.0), (120_000, 90.0)] {
            assert_eq!(exceeds(&rule, w.push(t, v, 300).unwrap()), None);
        }
        assert_eq!(
            exceeds(&rule, w.push(180_000, 105.0, 300).unwrap()),
            Some(Direction::Rose(35.0))
        );
        assert_eq!(w.push(100_000, 60.0, 300), None, "late reading ignored");
        assert_eq!(
            exceeds(&rule, w.push(240_000, 70.0, 300).unwrap()),
            Some(Direction::Fell(35.0))
        );
    }

    #[test]
    fn windows_read_as_people_say_them() {
        assert_eq!(human_window(259_200), "3 days");
        assert_eq!(human_window(300), "5 min");
        assert_eq!(human_window(90), "90 s");
    }
}
