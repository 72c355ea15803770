//! The alarm load report: what a hospital's alarm committee reviews (The
//! Joint Commission's alarm-management goal, NPSG.06.01.01; AAMI's
//! alarm-management guidance), per ward and rule over a period, from the
//! alarm log and the registry:
//!
//! - **alarms per patient-day**: alarms raised, over the ward's
//!   patient-days (below);
//! - **cleared within 60 s without anyone acting**: resolved by medmesh (its
//!   condition cleared) at most 60 s after it was raised, never acknowledged
//!   or snoozed, nor resolved by a person: the alarms nobody needed to hear,
//!   the first a committee looks at when tuning limits and delays. Both
//!   times are the readings' own (the raise is the first abnormal reading,
//!   the resolution the reading that ended the clear delay), so the clear
//!   delay counts in the 60 s;
//! - **median time to acknowledge**: from the raise (the reading's time) to
//!   the first acknowledgement or snooze (the server's clock), over the
//!   alarms that were acknowledged; a reading dated a little ahead of the
//!   server clock counts as 0, not as a negative delay;
//! - **escalations**: every recorded escalation (each is a level notified;
//!   a snooze running out at the top level notifies it again), the alarms
//!   that climbed, and how many reached each level (an alarm re-raised at a
//!   higher priority climbs again from level 0: its highest level counts);
//! - **top patients and conditions** by number of alarms (five each).
//!
//! How alarms are chosen: an alarm belongs to the period in which it was
//! **raised** (`since_ms` included, `until_ms` excluded), with everything
//! that happened to it afterwards, even after the period's end (its
//! acknowledgement, escalations, resolution). So consecutive periods count
//! each alarm once; an alarm raised before the period is not counted in it,
//! even if it was acknowledged or resolved inside; an alarm still open when
//! the report is made counts as raised and as `still_open`. The rule of an
//! alarm is the one it was raised for (a vital sign's alarm may gain other
//! reasons later); its ward is the patient's ward now (the registry keeps
//! no transfers).
//!
//! **Patient-days** approximate the ward's census from the registry: the
//! time within the period (up to now) during which each patient had at least
//! one device assigned, in days of 24 h, summed over the ward's patients
//! (two devices at once count once). Patients whose readings come without a
//! device (HL7 v2, FHIR) have no such time: their alarms count, their days
//! do not (`patients_without_device_time` says how many there were).

use medmesh_model::{Alarm, AlarmState, Device, Patient, PatientId, TimestampMs};
use medmesh_rules::SYSTEM;
use medmesh_storage::LoggedAlarm;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// An alarm resolved by medmesh at most this long after its raise, with
/// nobody acting, counts as cleared by itself.
pub const QUICK_CLEAR_MS: TimestampMs = 60_000;
/// A patient-day.
const DAY_MS: f64 = 86_400_000.0;
/// Patients and conditions listed per ward.
const TOP: usize = 5;

/// How patient-days are counted, stated in every report.
pub const PATIENT_DAYS_BASIS: &str = "time with at least one device assigned to the patient, \
     within the period and up to now, in days of 24 h";

/// What a report covers, and what its reader may see of it.
pub struct LoadQuery<'a> {
    pub since_ms: TimestampMs,
    pub until_ms: TimestampMs,
    /// Wards the report covers.
    pub ward: &'a dyn Fn(&str) -> bool,
    /// Patients the report may name (id and name) in its top lists; the
    /// others appear as a count only.
    pub may_name: &'a dyn Fn(&Patient) -> bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmLoad {
    pub since_ms: TimestampMs,
    pub until_ms: TimestampMs,
    pub generated_ms: TimestampMs,
    pub patient_days_basis: &'static str,
    pub quick_clear_s: i64,
    /// Wards with patients' device time or alarms in the period, by name.
    pub wards: Vec<WardLoad>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WardLoad {
    pub ward: String,
    pub patient_days: f64,
    /// Patients with device time in the period.
    pub patients: usize,
    /// Patients with alarms in the period and no device time in it.
    pub patients_without_device_time: usize,
    /// The whole ward.
    pub total: Figures,
    /// Per rule, most alarms first.
    pub rules: Vec<RuleLoad>,
    pub top_patients: Vec<TopPatient>,
    pub top_conditions: Vec<TopCondition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleLoad {
    pub rule: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub alarms: usize,
    /// `alarms` over the ward's patient-days (`None` without patient-days).
    pub per_patient_day: Option<f64>,
    /// Resolved by medmesh within 60 s of the raise, nobody having acted.
    pub cleared_unattended_60s: usize,
    /// `cleared_unattended_60s` over `alarms` (`None` without alarms).
    pub cleared_unattended_60s_share: Option<f64>,
    /// Alarms acknowledged (or snoozed) at least once.
    pub acknowledged: usize,
    /// Median of raise-to-first-acknowledgement, over `acknowledged`.
    pub median_ack_ms: Option<f64>,
    pub escalations: Escalations,
    /// Not resolved when the report was made.
    pub still_open: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Escalations {
    /// Escalations recorded (each a level notified).
    pub count: usize,
    /// Alarms that escalated at least once.
    pub alarms: usize,
    /// Alarms that reached each level (at least once), by level.
    pub reached: BTreeMap<u32, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopPatient {
    /// Absent when the reader may not see the patient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<PatientId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub alarms: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopCondition {
    pub rule: String,
    /// Vital-sign key (`None` for conditions not about one: a NEWS2
    /// aggregate, a device).
    pub vital: Option<&'static str>,
    pub alarms: usize,
}

/// What the report needs of one alarm, from its recorded lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub patient: PatientId,
    pub rule: String,
    pub vital: Option<&'static str>,
    pub raised_ms: TimestampMs,
    /// Raise to first acknowledgement (or snooze), if any.
    pub ack_ms: Option<TimestampMs>,
    pub cleared_unattended: bool,
    pub escalations: usize,
    /// Highest escalation level reached.
    pub top_level: u32,
    pub open: bool,
}

impl Episode {
    /// Summarises an alarm's lines (oldest first, as the alarm log gives
    /// them); `None` for none.
    pub fn of(lines: Vec<LoggedAlarm>) -> Option<Episode> {
        let first = &lines.first()?.alarm;
        let last = &lines.last()?.alarm;
        let raised_ms = first.raised_ms;
        let acted_on = |a: &Alarm| a.acknowledged.is_some() || a.snoozed_until_ms.is_some();
        // The first acknowledgement: an escalation after a snooze ran out
        // clears it, a later one would set a new time.
        let ack_ms = lines
            .iter()
            .find_map(|l| l.alarm.acknowledged.as_ref())
            .map(|act| (act.at_ms - raised_ms).max(0));
        let acted = lines.iter().any(|l| {
            acted_on(&l.alarm) || matches!(l.change.as_deref(), Some("acknowledged" | "snoozed"))
        });
        let resolution = (last.state == AlarmState::Resolved)
            .then_some(last.resolved.as_ref())
            .flatten();
        let cleared_unattended = !acted
            && resolution.is_some_and(|r| r.by == SYSTEM && r.at_ms - raised_ms <= QUICK_CLEAR_MS);
        // Each "escalated" change is a climb; lines written before changes
        // were named show one as a higher level than the line before.
        let mut escalations = 0;
        let mut level = first.escalation_level;
        for l in &lines {
            let climbed = match l.change.as_deref() {
                Some(kind) => kind == "escalated",
                None => l.alarm.escalation_level > level,
            };
            escalations += usize::from(climbed);
            level = l.alarm.escalation_level;
        }
        Some(Episode {
            patient: first.patient_id.clone(),
            rule: first.rule.clone(),
            vital: first.vital.map(|v| v.key()),
            raised_ms,
            ack_ms,
            cleared_unattended,
            escalations,
            top_level: lines
                .iter()
                .map(|l| l.alarm.escalation_level)
                .max()
                .unwrap_or(0),
            open: last.state != AlarmState::Resolved,
        })
    }
}

/// The report over `episodes` (the alarms raised in the period), with
/// patient-days from `devices`' assignments up to `now_ms`.
pub fn compute(
    q: &LoadQuery<'_>,
    now_ms: TimestampMs,
    patients: &[Patient],
    devices: &[Device],
    episodes: &[Episode],
) -> AlarmLoad {
    let by_id: HashMap<&PatientId, &Patient> = patients.iter().map(|p| (&p.id, p)).collect();
    // A patient the registry does not know (any more) has no ward.
    let ward_of = |id: &PatientId| by_id.get(id).map_or("", |p| p.ward.as_str());
    let device_time = device_time(devices, q.since_ms, q.until_ms.min(now_ms));

    #[derive(Default)]
    struct Ward<'e> {
        device_ms: i64,
        patients: usize,
        episodes: Vec<&'e Episode>,
    }
    let mut wards: BTreeMap<&str, Ward> = BTreeMap::new();
    for (patient, ms) in &device_time {
        let ward = ward_of(patient);
        if *ms > 0 && (q.ward)(ward) {
            let w = wards.entry(ward).or_default();
            w.device_ms += ms;
            w.patients += 1;
        }
    }
    for e in episodes {
        let ward = ward_of(&e.patient);
        if (q.ward)(ward) && (q.since_ms..q.until_ms).contains(&e.raised_ms) {
            wards.entry(ward).or_default().episodes.push(e);
        }
    }

    let wards = wards
        .into_iter()
        .map(|(ward, w)| {
            // Summed in milliseconds, divided once.
            let patient_days = w.device_ms as f64 / DAY_MS;
            let mut by_rule: BTreeMap<&str, Vec<&Episode>> = BTreeMap::new();
            let mut by_patient: BTreeMap<&PatientId, usize> = BTreeMap::new();
            let mut by_condition: BTreeMap<(&str, Option<&'static str>), usize> = BTreeMap::new();
            for e in &w.episodes {
                by_rule.entry(&e.rule).or_default().push(e);
                *by_patient.entry(&e.patient).or_default() += 1;
                *by_condition.entry((&e.rule, e.vital)).or_default() += 1;
            }
            let mut rules: Vec<RuleLoad> = by_rule
                .into_iter()
                .map(|(rule, es)| RuleLoad {
                    rule: rule.to_string(),
                    figures: figures(&es, patient_days),
                })
                .collect();
            rules.sort_by_key(|r| std::cmp::Reverse(r.figures.alarms));
            let patients_without_device_time = by_patient
                .keys()
                .filter(|p| device_time.get(**p).is_none_or(|ms| *ms <= 0))
                .count();
            WardLoad {
                ward: ward.to_string(),
                patient_days,
                patients: w.patients,
                patients_without_device_time,
                total: figures(&w.episodes, patient_days),
                rules,
                top_patients: top(by_patient)
                    .into_iter()
                    .map(|(id, alarms)| {
                        let named = by_id.get(id).filter(|p| (q.may_name)(p));
                        TopPatient {
                            patient_id: named.map(|p| p.id.clone()),
                            name: named.map(|p| p.name.clone()),
                            alarms,
                        }
                    })
                    .collect(),
                top_conditions: top(by_condition)
                    .into_iter()
                    .map(|((rule, vital), alarms)| TopCondition {
                        rule: rule.to_string(),
                        vital,
                        alarms,
                    })
                    .collect(),
            }
        })
        .collect();
    AlarmLoad {
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        generated_ms: now_ms,
        patient_days_basis: PATIENT_DAYS_BASIS,
        quick_clear_s: QUICK_CLEAR_MS / 1000,
        wards,
    }
}

/// The figures of a set of alarms, over `patient_days`.
fn figures(episodes: &[&Episode], patient_days: f64) -> Figures {
    let n = episodes.len();
    let cleared = episodes.iter().filter(|e| e.cleared_unattended).count();
    let mut acks: Vec<TimestampMs> = episodes.iter().filter_map(|e| e.ack_ms).collect();
    let mut escalations = Escalations::default();
    for e in episodes {
        escalations.count += e.escalations;
        if e.top_level > 0 {
            escalations.alarms += 1;
            for level in 1..=e.top_level {
                *escalations.reached.entry(level).or_default() += 1;
            }
        }
    }
    Figures {
        alarms: n,
        per_patient_day: (patient_days > 0.0).then(|| n as f64 / patient_days),
        cleared_unattended_60s: cleared,
        cleared_unattended_60s_share: (n > 0).then(|| cleared as f64 / n as f64),
        acknowledged: acks.len(),
        median_ack_ms: median(&mut acks),
        escalations,
        still_open: episodes.iter().filter(|e| e.open).count(),
    }
}

/// The middle value; with an even count, the mean of the two middle ones.
fn median(values: &mut [TimestampMs]) -> Option<f64> {
    values.sort_unstable();
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2] as f64),
        _ => Some((values[n / 2 - 1] as f64 + values[n / 2] as f64) / 2.0),
    }
}

/// The `TOP` keys with the highest counts, highest first (ties in key order).
fn top<K: Ord>(counts: BTreeMap<K, usize>) -> Vec<(K, usize)> {
    let mut all: Vec<(K, usize)> = counts.into_iter().collect();
    // Stable: ties keep the map's key order.
    all.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    all.truncate(TOP);
    all
}

/// Each patient's time with at least one device assigned within
/// `since..end` (ms; overlapping assignments counted once).
fn device_time(
    devices: &[Device],
    since: TimestampMs,
    end: TimestampMs,
) -> HashMap<PatientId, i64> {
    let mut spans: HashMap<PatientId, Vec<(TimestampMs, TimestampMs)>> = HashMap::new();
    for d in devices {
        if d.assignments.is_empty() {
            // Recorded before assignments had a history: assigned throughout.
            if let Some(p) = &d.patient_id {
                spans.entry(p.clone()).or_default().push((since, end));
            }
            continue;
        }
        for (i, a) in d.assignments.iter().enumerate() {
            let until = d.assignments.get(i + 1).map_or(end, |next| next.from_ms);
            let (from, to) = (a.from_ms.max(since), until.min(end));
            if let (Some(p), true) = (&a.patient_id, from < to) {
                spans.entry(p.clone()).or_default().push((from, to));
            }
        }
    }
    spans
        .into_iter()
        .map(|(patient, mut spans)| {
            spans.sort_unstable();
            let (mut total, mut reached) = (0, TimestampMs::MIN);
            for (from, to) in spans {
                let from = from.max(reached);
                if to > from {
                    total += to - from;
                    reached = to;
                }
            }
            (patient, total)
        })
        .collect()
}

impl crate::Pipeline {
    /// The alarm load report for `q`, from the alarm log (only the lines of
    /// the alarms raised in the period are read) and the registry. Blocks
    /// on the disk.
    pub fn alarm_load(&self, q: &LoadQuery<'_>) -> std::io::Result<AlarmLoad> {
        let episodes: Vec<Episode> = self
            .alarm_log
            .raised_between(q.since_ms, q.until_ms, Episode::of)?
            .into_iter()
            .flatten()
            .collect();
        Ok(compute(
            q,
            medmesh_model::now_ms(),
            &self.registry.patients(),
            &self.registry.devices(),
            &episodes,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{Act, Assignment, DeviceId, Priority, VitalSign};

    const T0: TimestampMs = 1_765_000_000_000;
    const MIN: TimestampMs = 60_000;
    const HOUR: TimestampMs = 3_600_000;

    fn pid(s: &str) -> PatientId {
        PatientId::new(s).unwrap()
    }

    fn patient(id: &str, ward: &str) -> Patient {
        Patient {
            id: pid(id),
            name: format!("Name of {id}"),
            ward: ward.into(),
            bed: String::new(),
        }
    }

    /// A synthetic alarm log, written the way the pipeline writes it: each
    /// alarm's lines as the board's changes leave them.
    struct Log {
        next_id: u64,
        alarms: Vec<Vec<LoggedAlarm>>,
    }

    impl Log {
        fn new() -> Log {
            Log {
                next_id: 0,
                alarms: Vec::new(),
            }
        }

        /// Raises an alarm for `patient` at `at`; returns its index.
        fn raise(&mut self, patient: &str, rule: &str, at: TimestampMs) -> usize {
            self.next_id += 1;
            let alarm = Alarm {
                id: self.next_id,
                patient_id: pid(patient),
                vital: (rule != "news2-aggregate").then_some(VitalSign::HeartRate),
                device_id: None,
                rule: rule.into(),
                priority: Priority::Medium,
                state: AlarmState::Active,
                message: "m".into(),
                value: 135.0,
                worst: Some(135.0),
                raised_ms: at,
                updated_ms: at,
                acknowledged: None,
                snoozed_until_ms: None,
                resolved: None,
                escalation_level: 0,
                escalation_since_ms: None,
            };
            self.alarms.push(vec![line("raised", alarm)]);
            self.alarms.len() - 1
        }

        fn change(&mut self, i: usize, kind: &str, edit: impl FnOnce(&mut Alarm)) {
            let mut alarm = self.alarms[i].last().unwrap().alarm.clone();
            edit(&mut alarm);
            self.alarms[i].push(line(kind, alarm));
        }

        fn acknowledge(&mut self, i: usize, at: TimestampMs) {
            self.change(i, "acknowledged", |a| {
                a.state = AlarmState::Acknowledged;
                a.acknowledged = Some(Act {
                    by: "nurse".into(),
                    at_ms: at,
                });
            });
        }

        fn resolve(&mut self, i: usize, by: &str, at: TimestampMs) {
            self.change(i, "resolved", |a| {
                a.state = AlarmState::Resolved;
                a.resolved = Some(Act {
                    by: by.into(),
                    at_ms: at,
                });
            });
        }

        fn escalate(&mut self, i: usize, level: u32) {
            self.change(i, "escalated", |a| a.escalation_level = level);
        }

        fn episodes(&self) -> Vec<Episode> {
            self.alarms
                .iter()
                .map(|lines| Episode::of(lines.clone()).unwrap())
                .collect()
        }
    }

    fn line(kind: &str, alarm: Alarm) -> LoggedAlarm {
        LoggedAlarm {
            seq: Some(alarm.id),
            change: Some(kind.into()),
            alarm,
        }
    }

    /// A device assigned to `patient` from `from`.
    fn device(id: &str, assignments: &[(Option<&str>, TimestampMs)]) -> Device {
        Device {
            id: DeviceId::new(id).unwrap(),
            patient_id: assignments.last().and_then(|(p, _)| p.map(pid)),
            assignments: assignments
                .iter()
                .map(|(p, from)| Assignment {
                    patient_id: p.map(pid),
                    from_ms: *from,
                })
                .collect(),
        }
    }

    fn report(
        since: TimestampMs,
        until: TimestampMs,
        now: TimestampMs,
        patients: &[Patient],
        devices: &[Device],
        log: &Log,
    ) -> AlarmLoad {
        let q = LoadQuery {
            since_ms: since,
            until_ms: until,
            ward: &|_| true,
            may_name: &|_| true,
        };
        compute(&q, now, patients, devices, &log.episodes())
    }

    #[test]
    fn cleared_within_60_s_is_counted_on_both_sides_of_the_boundary() {
        let mut log = Log::new();
        // Resolved by medmesh 60.000 s after the raise: counts.
        let a = log.raise("p1", "threshold", T0);
        log.resolve(a, SYSTEM, T0 + 60_000);
        // 60.001 s: does not.
        let b = log.raise("p1", "threshold", T0 + HOUR);
        log.resolve(b, SYSTEM, T0 + HOUR + 60_001);
        // Quick, but acknowledged first: somebody acted.
        let c = log.raise("p1", "threshold", T0 + 2 * HOUR);
        log.acknowledge(c, T0 + 2 * HOUR + 5_000);
        log.resolve(c, SYSTEM, T0 + 2 * HOUR + 10_000);
        // Quick, but a person closed it.
        let d = log.raise("p1", "threshold", T0 + 3 * HOUR);
        log.resolve(d, "dr.okafor", T0 + 3 * HOUR + 10_000);
        // Quick after a snooze (which acknowledges, then escalated when it
        // ran out, which clears the acknowledgement): still acted on.
        let e = log.raise("p1", "threshold", T0 + 4 * HOUR);
        log.change(e, "snoozed", |a| {
            a.state = AlarmState::Acknowledged;
            a.acknowledged = Some(Act {
                by: "nurse".into(),
                at_ms: T0 + 4 * HOUR + 1_000,
            });
            a.snoozed_until_ms = Some(T0 + 4 * HOUR + 2_000);
        });
        log.change(e, "escalated", |a| {
            a.state = AlarmState::Active;
            a.acknowledged = None;
            a.snoozed_until_ms = None;
            a.escalation_level = 1;
        });
        log.resolve(e, SYSTEM, T0 + 4 * HOUR + 3_000);
        // A raise and a resolution at the same instant: counts.
        let f = log.raise("p1", "threshold", T0 + 5 * HOUR);
        log.resolve(f, SYSTEM, T0 + 5 * HOUR);
        let r = report(T0, T0 + 6 * HOUR, T0 + 6 * HOUR, &[], &[], &log);
        let quick: Vec<bool> = log
            .episodes()
            .iter()
            .map(|e| e.cleared_unattended)
            .collect();
        assert_eq!(quick, [true, false, false, false, false, true]);
        let total = &r.wards[0].total;
        assert_eq!(total.alarms, 6);
        assert_eq!(total.cleared_unattended_60s, 2);
        assert_eq!(total.cleared_unattended_60s_share, Some(2.0 / 6.0));
        // The snoozed one counts as acknowledged (at its snooze), the
        // escalation after it as one climb.
        assert_eq!(total.acknowledged, 2);
        assert_eq!(total.escalations.count, 1);
        assert_eq!(total.still_open, 0);
    }

    #[test]
    fn median_time_to_acknowledge_with_odd_and_even_counts() {
        let mut log = Log::new();
        for (i, delay) in [30_000, 10_000, 90_000].into_iter().enumerate() {
            let at = T0 + i as i64 * HOUR;
            let a = log.raise("p1", "threshold", at);
            log.acknowledge(a, at + delay);
        }
        // Never acknowledged: not in the median.
        log.raise("p1", "threshold", T0 + 5 * HOUR);
        let odd = report(T0, T0 + 10 * HOUR, T0 + 10 * HOUR, &[], &[], &log);
        assert_eq!(odd.wards[0].total.acknowledged, 3);
        assert_eq!(odd.wards[0].total.median_ack_ms, Some(30_000.0));
        assert_eq!(odd.wards[0].total.still_open, 4);
        // A fourth, 45.001 s: the mean of 30 and 45.001 s.
        let a = log.raise("p1", "threshold", T0 + 6 * HOUR);
        log.acknowledge(a, T0 + 6 * HOUR + 45_001);
        let even = report(T0, T0 + 10 * HOUR, T0 + 10 * HOUR, &[], &[], &log);
        assert_eq!(even.wards[0].total.median_ack_ms, Some(37_500.5));
        // Re-acknowledged after a re-raise: the first acknowledgement counts.
        let b = log.raise("p2", "threshold", T0 + 7 * HOUR);
        log.acknowledge(b, T0 + 7 * HOUR + 1_000);
        log.change(b, "raised", |a| {
            a.state = AlarmState::Active;
            a.acknowledged = None;
            a.priority = Priority::High;
        });
        log.acknowledge(b, T0 + 7 * HOUR + 500_000);
        assert_eq!(log.episodes()[5].ack_ms, Some(1_000));
        // A reading dated ahead of the server clock: 0, not negative.
        let c = log.raise("p2", "threshold", T0 + 8 * HOUR);
        log.acknowledge(c, T0 + 8 * HOUR - 2_000);
        assert_eq!(log.episodes()[6].ack_ms, Some(0));
        let none = report(T0 - HOUR, T0, T0 + 10 * HOUR, &[], &[], &log);
        assert!(none.wards.is_empty());
    }

    #[test]
    fn alarms_belong_to_the_period_they_were_raised_in() {
        let mut log = Log::new();
        let since = T0;
        let until = T0 + 24 * HOUR;
        // Raised before the period, acknowledged and resolved inside it:
        // not counted (it belongs to the period before).
        let before = log.raise("p1", "threshold", since - MIN);
        log.acknowledge(before, since + MIN);
        log.resolve(before, "nurse", since + 2 * MIN);
        // Raised exactly at `since`: counted.
        let at_start = log.raise("p1", "threshold", since);
        log.resolve(at_start, SYSTEM, since + 30_000);
        // Raised inside, acknowledged and resolved after the end: counted,
        // with its acknowledgement.
        let spanning = log.raise("p1", "threshold", until - MIN);
        log.acknowledge(spanning, until + MIN);
        log.resolve(spanning, "nurse", until + 2 * MIN);
        // Raised inside, still open: counted and open.
        log.raise("p2", "news2-aggregate", until - 1);
        // Raised exactly at `until`: the next period's.
        log.raise("p2", "threshold", until);
        let r = report(since, until, until + HOUR, &[], &[], &log);
        let t = &r.wards[0].total;
        assert_eq!(t.alarms, 3);
        assert_eq!(t.cleared_unattended_60s, 1);
        assert_eq!(t.acknowledged, 1);
        assert_eq!(t.median_ack_ms, Some(2.0 * MIN as f64));
        assert_eq!(t.still_open, 1);
        // The next period takes the one raised at its start, and nothing
        // of the others.
        let next = report(until, until + 24 * HOUR, until + HOUR, &[], &[], &log);
        assert_eq!(next.wards[0].total.alarms, 1);
        assert_eq!(next.wards[0].total.still_open, 1);
    }

    #[test]
    fn escalations_count_each_climb_and_the_levels_alarms_reached() {
        let mut log = Log::new();
        let a = log.raise("p1", "threshold", T0);
        log.escalate(a, 1);
        log.escalate(a, 2);
        // Its snooze ran out at the top: the top level is told again.
        log.escalate(a, 2);
        let b = log.raise("p1", "threshold", T0 + 1);
        log.escalate(b, 1);
        // Re-raised at a higher priority: back to level 0, climbs again.
        log.change(b, "raised", |x| x.escalation_level = 0);
        log.escalate(b, 1);
        log.raise("p2", "news2-aggregate", T0 + 2);
        // A line from before changes were named: a climb shows as a level
        // above the line before.
        let c = log.raise("p2", "news2-aggregate", T0 + 3);
        let mut old = log.alarms[c][0].alarm.clone();
        old.escalation_level = 1;
        log.alarms[c].push(LoggedAlarm {
            seq: None,
            change: None,
            alarm: old,
        });
        let r = report(T0, T0 + HOUR, T0 + HOUR, &[], &[], &log);
        let w = &r.wards[0];
        assert_eq!(w.total.escalations.count, 3 + 2 + 1);
        assert_eq!(w.total.escalations.alarms, 3);
        assert_eq!(
            w.total.escalations.reached,
            BTreeMap::from([(1, 3), (2, 1)])
        );
        let threshold = w.rules.iter().find(|r| r.rule == "threshold").unwrap();
        assert_eq!(threshold.figures.escalations.count, 5);
        assert_eq!(
            threshold.figures.escalations.reached,
            BTreeMap::from([(1, 2), (2, 1)])
        );
        let json = serde_json::to_value(&w.total.escalations).unwrap();
        assert_eq!(json["reached"], serde_json::json!({"1": 3, "2": 1}));
    }

    #[test]
    fn patient_days_come_from_device_time_per_ward_and_name_only_whom_the_reader_may_see() {
        let patients = [
            patient("a1", "Ward A"),
            patient("a2", "Ward A"),
            patient("b1", "Ward B"),
            patient("h1", "Ward A"),
        ];
        let since = T0;
        let until = T0 + 48 * HOUR;
        let now = T0 + 36 * HOUR;
        let devices = [
            // Assigned before the period, throughout: 36 h (up to now).
            device("m1", &[(Some("a1"), since - 10 * HOUR)]),
            // A second device of a1 overlapping: counted once.
            device(
                "m2",
                &[(Some("a1"), since + HOUR), (None, since + 2 * HOUR)],
            ),
            // a2 from 12 h in, moved to b1 at 24 h: 12 h each.
            device(
                "m3",
                &[
                    (Some("a2"), since + 12 * HOUR),
                    (Some("b1"), since + 24 * HOUR),
                ],
            ),
            // Unassigned before the period ended it.
            device("m4", &[(Some("b1"), since - 20 * HOUR), (None, since)]),
        ];
        let mut log = Log::new();
        for (p, rule) in [
            ("a1", "threshold"),
            ("a1", "threshold"),
            ("a1", "news2-single-parameter-3"),
            ("a2", "threshold"),
            // Readings from HL7: no device, so no device time.
            ("h1", "news2-aggregate"),
            ("b1", "threshold"),
        ] {
            log.raise(p, rule, T0 + HOUR);
        }
        let q = LoadQuery {
            since_ms: since,
            until_ms: until,
            ward: &|w| w == "Ward A",
            may_name: &|p| p.id.as_str() != "a2",
        };
        let r = compute(&q, now, &patients, &devices, &log.episodes());
        assert_eq!(r.wards.len(), 1, "Ward B is not asked for");
        let w = &r.wards[0];
        assert_eq!(w.ward, "Ward A");
        assert_eq!(w.patient_days, (36 + 12) as f64 / 24.0);
        assert_eq!(w.patients, 2);
        assert_eq!(w.patients_without_device_time, 1);
        assert_eq!(w.total.alarms, 5);
        assert_eq!(w.total.per_patient_day, Some(5.0 / 2.0));
        assert_eq!(
            w.rules
                .iter()
                .map(|r| (r.rule.as_str(), r.figures.alarms, r.figures.per_patient_day))
                .collect::<Vec<_>>(),
            [
                ("threshold", 3, Some(1.5)),
                ("news2-aggregate", 1, Some(0.5)),
                ("news2-single-parameter-3", 1, Some(0.5)),
            ]
        );
        let top: Vec<_> = w
            .top_patients
            .iter()
            .map(|t| {
                (
                    t.patient_id.as_ref().map(|p| p.as_str()),
                    t.name.as_deref(),
                    t.alarms,
                )
            })
            .collect();
        assert_eq!(
            top,
            [
                (Some("a1"), Some("Name of a1"), 3),
                // a2 is counted, not named.
                (None, None, 1),
                (Some("h1"), Some("Name of h1"), 1),
            ]
        );
        assert_eq!(
            w.top_conditions
                .iter()
                .map(|c| (c.rule.as_str(), c.vital, c.alarms))
                .collect::<Vec<_>>(),
            [
                ("threshold", Some("heart_rate"), 3),
                ("news2-aggregate", None, 1),
                ("news2-single-parameter-3", Some("heart_rate"), 1),
            ]
        );
        // Ward B on its own: b1's 12 h, one alarm, two per patient-day.
        let q = LoadQuery {
            ward: &|w| w == "Ward B",
            ..q
        };
        let r = compute(&q, now, &patients, &devices, &log.episodes());
        assert_eq!(r.wards[0].patient_days, 0.5);
        assert_eq!(r.wards[0].total.per_patient_day, Some(2.0));
        // A period in the future has no device time yet and no alarms.
        let q = LoadQuery {
            since_ms: now + HOUR,
            until_ms: now + 2 * HOUR,
            ward: &|_| true,
            may_name: &|_| true,
        };
        assert!(
            compute(&q, now, &patients, &devices, &log.episodes())
                .wards
                .is_empty()
        );
    }

    #[test]
    fn a_ward_with_patients_and_no_alarms_reports_zeros() {
        let patients = [patient("a1", "Ward A")];
        let devices = [device("m1", &[(Some("a1"), T0)])];
        let r = report(
            T0,
            T0 + 24 * HOUR,
            T0 + 24 * HOUR,
            &patients,
            &devices,
            &Log::new(),
        );
        let w = &r.wards[0];
        assert_eq!(w.patient_days, 1.0);
        assert_eq!(w.total.alarms, 0);
        assert_eq!(w.total.per_patient_day, Some(0.0));
        assert_eq!(w.total.cleared_unattended_60s_share, None);
        assert_eq!(w.total.median_ack_ms, None);
        assert!(w.rules.is_empty() && w.top_patients.is_empty());
    }
}
