//! Observations due: how often a patient's full set of observations should
//! be taken, from their NEWS2, and whether the last one is older than that.
//!
//! Source: Royal College of Physicians, *National Early Warning Score
//! (NEWS) 2*, 2017, Chart 4 ("Clinical response to the NEWS trigger
//! thresholds"), column "Frequency of monitoring":
//!
//! | NEWS2 | minimum frequency | here (default) |
//! |---|---|---|
//! | 0 | 12-hourly | 12 h |
//! | 1-4 | 4-6-hourly | 4 h (the shorter end) |
//! | 3 in a single parameter | hourly | 1 h |
//! | 5 or more | hourly | 1 h |
//! | 7 or more | continuous monitoring | 15 min |
//!
//! The chart gives no interval for "continuous monitoring"; 15 minutes is a
//! product default (a monitor streaming every parameter is never near it,
//! a set charted by hand every quarter of an hour is as close as hands
//! get). Every interval is configurable per profile (`observations_due`).
//!
//! **The last complete set.** A set is complete when each of the five
//! measured NEWS2 parameters (respiration, SpO2, systolic pressure, pulse,
//! temperature) has a reading; it is only as recent as the oldest of their
//! latest readings, so a monitor streaming SpO2 and pulse does not make a
//! set charted hours ago new. Consciousness and oxygen are not required
//! (devices do not measure them; NEWS2 assumes alert and air without
//! them). The set is scored as the aggregate is ([`news2::aggregate_at`])
//! as of the set's time, with the latest readings of every parameter: a
//! newer red pulse from a monitor tightens the interval at once.
//!
//! Without a complete set the interval is that of what the readings there
//! are score at least (nothing: NEWS2 0), counted from when medmesh began
//! watching the patient (settings given, or the server's start).
//!
//! Judged on the readings' own times (when the observations were taken)
//! against the server clock: a set charted now for 08:00 counts from 08:00.

use crate::news2::{self, Aggregate, Reading, Settings};
use medmesh_model::{Priority, TimestampMs, VitalSign};
use serde::{Deserialize, Serialize};

/// Shortest interval accepted (one minute): shorter is not a round of
/// observations but a monitor, which the continuous row covers.
pub const MIN_INTERVAL_S: u64 = 60;
/// Longest interval accepted (a week).
pub const MAX_INTERVAL_S: u64 = 7 * 86_400;

fn yes() -> bool {
    true
}

/// A profile's `observations_due` table: on or off, and the interval per
/// row of RCP NEWS2 Chart 4 (seconds). Absent fields take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DueConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// NEWS2 0: at least 12-hourly.
    pub score_0_s: u64,
    /// NEWS2 1-4: at least 4-6-hourly.
    pub score_1_to_4_s: u64,
    /// A 3 in a single parameter, or NEWS2 5-6: at least hourly.
    pub red_or_5_to_6_s: u64,
    /// NEWS2 7 or more: continuous monitoring.
    pub score_7_or_more_s: u64,
}

impl Default for DueConfig {
    fn default() -> Self {
        DueConfig {
            enabled: true,
            score_0_s: 12 * 3600,
            score_1_to_4_s: 4 * 3600,
            red_or_5_to_6_s: 3600,
            score_7_or_more_s: 15 * 60,
        }
    }
}

impl DueConfig {
    /// The intervals are within bounds and never longer for a worse row.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        let rows = [
            ("score_0_s", self.score_0_s),
            ("score_1_to_4_s", self.score_1_to_4_s),
            ("red_or_5_to_6_s", self.red_or_5_to_6_s),
            ("score_7_or_more_s", self.score_7_or_more_s),
        ];
        for (name, s) in rows {
            if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&s) {
                return Err(format!(
                    "{what}.{name} must be from {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds"
                ));
            }
        }
        for pair in rows.windows(2) {
            let ((a, x), (b, y)) = (pair[0], pair[1]);
            if y > x {
                return Err(format!(
                    "{what}.{b} ({y} s) is longer than {a} ({x} s): a sicker patient is observed at least as often"
                ));
            }
        }
        Ok(())
    }

    pub fn interval_s(&self, row: Row) -> u64 {
        match row {
            Row::Score0 => self.score_0_s,
            Row::Score1To4 => self.score_1_to_4_s,
            Row::RedOr5To6 => self.red_or_5_to_6_s,
            Row::Score7OrMore => self.score_7_or_more_s,
        }
    }
}

/// A row of RCP NEWS2 Chart 4's "frequency of monitoring".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Score0,
    Score1To4,
    RedOr5To6,
    Score7OrMore,
}

impl Row {
    /// The row an aggregate falls in: 7 or more, then 5-6 or any single
    /// parameter scoring 3, then 1-4, then 0.
    pub fn of(aggregate: &Aggregate) -> Row {
        let red = aggregate.components.iter().any(|c| c.score == 3);
        match aggregate.score {
            7.. => Row::Score7OrMore,
            5..=6 => Row::RedOr5To6,
            _ if red => Row::RedOr5To6,
            0 => Row::Score0,
            _ => Row::Score1To4,
        }
    }

    /// What calls for the interval, for the alarm's message.
    fn reason(self, score: u8) -> String {
        match self {
            Row::Score7OrMore => format!("NEWS2 {score} calls for continuous monitoring"),
            Row::RedOr5To6 if score >= 5 => format!("NEWS2 {score} calls for hourly observations"),
            Row::RedOr5To6 => "a parameter scoring 3 calls for hourly observations".into(),
            Row::Score1To4 | Row::Score0 => format!("NEWS2 {score}"),
        }
    }
}

/// The five parameters a complete set needs (see the module comment).
const SET: [VitalSign; 5] = news2::PARAMETERS;

/// The latest complete set: when it was taken (its oldest reading) and its
/// NEWS2 with the patient's settings. `None` while a parameter has never
/// been measured.
pub fn last_complete_set(
    latest: impl Fn(VitalSign) -> Option<Reading>,
    settings: Settings,
) -> Option<(TimestampMs, Aggregate)> {
    let taken = SET
        .iter()
        .map(|v| latest(*v).map(|r| r.time_ms))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()?;
    // Scored as of the set's time: its readings (all at or after it) are
    // fresh, and so are oxygen and ACVPU readings not older than the set
    // by more than the freshness limit.
    let aggregate = news2::aggregate_at(&latest, settings, taken)?;
    Some((taken, aggregate))
}

/// Whether observations are overdue for one patient at `now_ms`.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// A set is due later; nothing to raise (resolves an alarm raised).
    NotDue,
    Overdue {
        priority: Priority,
        message: String,
        /// The score the interval came from (a lower bound without a set).
        score: u8,
    },
}

/// Judges a patient's observations: overdue when the last complete set (or,
/// without one, the start of watching, `watched_since_ms`) is older than
/// the interval its NEWS2 row calls for. The message depends only on the
/// readings, not on `now_ms`, so judging again raises nothing new.
pub fn judge(
    latest: impl Fn(VitalSign) -> Option<Reading>,
    settings: Settings,
    config: &DueConfig,
    watched_since_ms: TimestampMs,
    now_ms: TimestampMs,
) -> Judgement {
    let (since, score, row, what) = match last_complete_set(&latest, settings) {
        Some((taken, aggregate)) => (
            taken,
            aggregate.score,
            Row::of(&aggregate),
            "the last complete set was taken",
        ),
        None => {
            let partial = news2::aggregate_at(&latest, settings, now_ms);
            let (score, row) = partial
                .as_ref()
                .map_or((0, Row::Score0), |a| (a.score, Row::of(a)));
            (
                watched_since_ms,
                score,
                row,
                "no complete set since monitoring began",
            )
        }
    };
    let interval_s = config.interval_s(row);
    let interval_ms = i64::try_from(interval_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now_ms.saturating_sub(since) < interval_ms {
        return Judgement::NotDue;
    }
    let every = crate::trend::human_window(interval_s);
    Judgement::Overdue {
        priority: Priority::Low,
        message: format!(
            "Observations overdue: {} (RCP NEWS2 Chart 4: a complete set at least every {every}); {what} more than {every} ago",
            row.reason(score),
        ),
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VitalSign::*;

    const H: i64 = 3_600_000;
    const NOW: i64 = 100 * H;

    /// A complete set taken at `t` with these values (respiration, SpO2,
    /// systolic, pulse, temperature), plus extra readings.
    fn set(
        t: i64,
        values: [f64; 5],
        extra: &[(VitalSign, f64, i64)],
    ) -> impl Fn(VitalSign) -> Option<Reading> {
        let mut readings: Vec<(VitalSign, Reading)> = SET
            .iter()
            .zip(values)
            .map(|(v, value)| (*v, Reading { value, time_ms: t }))
            .collect();
        for (v, value, time_ms) in extra {
            readings.retain(|(w, _)| w != v);
            readings.push((
                *v,
                Reading {
                    value: *value,
                    time_ms: *time_ms,
                },
            ));
        }
        move |v| readings.iter().find(|(w, _)| *w == v).map(|(_, r)| *r)
    }

    fn judge_at(latest: impl Fn(VitalSign) -> Option<Reading>, now: i64) -> Judgement {
        judge(latest, Settings::default(), &DueConfig::default(), 0, now)
    }

    fn overdue(j: &Judgement) -> Option<(u8, &str)> {
        match j {
            Judgement::Overdue {
                priority,
                message,
                score,
                ..
            } => {
                assert_eq!(*priority, Priority::Low);
                Some((*score, message.as_str()))
            }
            Judgement::NotDue => None,
        }
    }

    /// Chart 1 values scoring 0 in every parameter.
    const NORMAL: [f64; 5] = [16.0, 97.0, 120.0, 70.0, 37.0];

    /// Chart 4 row "0: minimum 12 hourly".
    #[test]
    fn chart_4_row_score_0_twelve_hourly() {
        let t = NOW - 12 * H;
        assert_eq!(judge_at(set(t, NORMAL, &[]), NOW - 1), Judgement::NotDue);
        let j = judge_at(set(t, NORMAL, &[]), NOW);
        let (score, message) = overdue(&j).unwrap();
        assert_eq!(score, 0);
        assert_eq!(
            message,
            "Observations overdue: NEWS2 0 (RCP NEWS2 Chart 4: a complete set at least every 12 h); \
             the last complete set was taken more than 12 h ago"
        );
    }

    /// Chart 4 row "total 1-4: minimum 4-6 hourly" (4 h here): pulse 95
    /// (1) and temperature 38.5 (1) make 2; on oxygen adds 2 (4).
    #[test]
    fn chart_4_row_score_1_to_4_four_hourly() {
        let values = [16.0, 97.0, 120.0, 95.0, 38.5];
        let t = NOW - 4 * H;
        assert_eq!(judge_at(set(t, values, &[]), NOW - 1), Judgement::NotDue);
        let j = judge_at(set(t, values, &[]), NOW);
        let (score, message) = overdue(&j).unwrap();
        assert_eq!(score, 2);
        assert!(
            message.contains("NEWS2 2 (RCP NEWS2 Chart 4: a complete set at least every 4 h)"),
            "{message}"
        );
        // Oxygen at 2 L/min charted with the set: 4, still the same row.
        let oxygen = [(OxygenFlow, 2.0, t)];
        let j = judge_at(set(t, values, &oxygen), NOW);
        assert_eq!(overdue(&j).unwrap().0, 4);
        assert_eq!(
            judge_at(set(t, values, &oxygen), NOW - 1),
            Judgement::NotDue
        );
    }

    /// Chart 4 row "3 in single parameter: minimum 1 hourly": respiration
    /// 26 alone scores 3 (aggregate 3).
    #[test]
    fn chart_4_row_single_red_parameter_hourly() {
        let values = [26.0, 97.0, 120.0, 70.0, 37.0];
        let t = NOW - H;
        assert_eq!(judge_at(set(t, values, &[]), NOW - 1), Judgement::NotDue);
        let j = judge_at(set(t, values, &[]), NOW);
        let (score, message) = overdue(&j).unwrap();
        assert_eq!(score, 3);
        assert!(
            message.starts_with("Observations overdue: a parameter scoring 3 calls for hourly observations (RCP NEWS2 Chart 4: a complete set at least every 1 h)"),
            "{message}"
        );
        // New confusion (C) is a red parameter too.
        let j = judge_at(set(t, NORMAL, &[(Consciousness, 1.0, t)]), NOW);
        assert_eq!(overdue(&j).unwrap().0, 3);
    }

    /// Chart 4 row "total 5 or more: minimum 1 hourly": respiration 22
    /// (2), SpO2 93 (2), pulse 95 (1) make 5; and 6 with temperature 38.5.
    #[test]
    fn chart_4_row_score_5_to_6_hourly() {
        for (values, expected) in [
            ([22.0, 93.0, 120.0, 95.0, 37.0], 5),
            ([22.0, 93.0, 120.0, 95.0, 38.5], 6),
        ] {
            let t = NOW - H;
            assert_eq!(judge_at(set(t, values, &[]), NOW - 1), Judgement::NotDue);
            let j = judge_at(set(t, values, &[]), NOW);
            let (score, message) = overdue(&j).unwrap();
            assert_eq!(score, expected);
            assert!(
                message.starts_with(&format!(
                    "Observations overdue: NEWS2 {expected} calls for hourly observations"
                )),
                "{message}"
            );
        }
    }

    /// Chart 4 row "total 7 or more: continuous monitoring" (a set at
    /// least every 15 min here): respiration 25 (3), SpO2 91 (3), pulse 95
    /// (1) make 7.
    #[test]
    fn chart_4_row_score_7_or_more_continuous() {
        let values = [25.0, 91.0, 120.0, 95.0, 37.0];
        let t = NOW - 15 * 60_000;
        assert_eq!(judge_at(set(t, values, &[]), NOW - 1), Judgement::NotDue);
        let j = judge_at(set(t, values, &[]), NOW);
        let (score, message) = overdue(&j).unwrap();
        assert_eq!(score, 7);
        assert!(
            message.starts_with("Observations overdue: NEWS2 7 calls for continuous monitoring (RCP NEWS2 Chart 4: a complete set at least every 15 min)"),
            "{message}"
        );
        // A monitor streaming every parameter is never overdue.
        assert_eq!(
            judge_at(set(NOW - 1_000, values, &[]), NOW),
            Judgement::NotDue
        );
    }

    /// A set is only as new as its oldest reading: a monitor's fresh SpO2
    /// and pulse do not renew a set charted 12 h ago, but a red pulse from
    /// it tightens the interval at once.
    #[test]
    fn a_set_is_as_old_as_its_oldest_reading() {
        let t = NOW - 5 * H;
        let streaming = [(OxygenSaturation, 97.0, NOW), (HeartRate, 70.0, NOW)];
        assert_eq!(judge_at(set(t, NORMAL, &streaming), NOW), Judgement::NotDue);
        assert!(overdue(&judge_at(set(NOW - 12 * H, NORMAL, &streaming), NOW)).is_some());
        let red = [(OxygenSaturation, 97.0, NOW), (HeartRate, 135.0, NOW)];
        let j = judge_at(set(t, NORMAL, &red), NOW);
        assert_eq!(overdue(&j).unwrap().0, 3);
    }

    /// Without a complete set, counted from when watching began, at the
    /// interval of what the readings there are score at least.
    #[test]
    fn without_a_complete_set_counted_from_the_start_of_watching() {
        let none = |_| None;
        let start = NOW - 12 * H;
        let j = judge(none, Settings::default(), &DueConfig::default(), start, NOW);
        let (_, message) = overdue(&j).unwrap();
        assert!(
            message.ends_with("no complete set since monitoring began more than 12 h ago"),
            "{message}"
        );
        assert_eq!(
            judge(
                none,
                Settings::default(),
                &DueConfig::default(),
                start + 1,
                NOW
            ),
            Judgement::NotDue
        );
        // Respiration 26 alone (3): hourly.
        let rr = |v| {
            (v == RespiratoryRate).then_some(Reading {
                value: 26.0,
                time_ms: NOW - 60_000,
            })
        };
        let j = judge(rr, Settings::default(), &DueConfig::default(), NOW - H, NOW);
        assert_eq!(overdue(&j).unwrap().0, 3);
    }

    #[test]
    fn configured_intervals_are_checked() {
        let mut c = DueConfig::default();
        c.validate("p").unwrap();
        c.score_1_to_4_s = 13 * 3600;
        assert!(c.validate("p").unwrap_err().contains("score_1_to_4_s"));
        c.score_1_to_4_s = 30;
        assert!(c.validate("p").unwrap_err().contains("from 60"));
        let parsed: DueConfig = toml::from_str("score_1_to_4_s = 21600\n").unwrap();
        assert_eq!(
            (parsed.enabled, parsed.score_1_to_4_s, parsed.score_0_s),
            (true, 21_600, 43_200)
        );
        let off: DueConfig = toml::from_str("enabled = false\n").unwrap();
        assert!(!off.enabled);
        assert!(toml::from_str::<DueConfig>("every = 1\n").is_err());
    }
}
