//! How many alarms the demo ward raises: `clinical_demo_ward` run for hours
//! of simulated time through medmesh's own rules (NEWS2, the patients'
//! profiles, battery and falls, the alarm board with its default 30 s clear
//! delay), judged the way `Pipeline::store_for` judges each message, one
//! message a second per monitor as `medmesh demo` sends them.
//!
//! Simulated time, not the server's clock, so hours take seconds. The
//! README quotes the figures this prints; `medmesh demo` measured live
//! (README, "The demo's alarms") agrees with them.

use medmesh_codecs::senml;
use medmesh_model::{PatientId, Priority, TimestampMs, VitalSign};
use medmesh_rules::news2::{self, Reading};
use medmesh_rules::{AlarmBoard, AlarmChange, AlarmSettings, RuleEngine, RulesConfig};
use medmesh_simulator::{SimPatient, Trajectory, clinical_demo_ward};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::collections::{BTreeMap, HashMap};

const BEDS: usize = 24;
const HOURS: i64 = 6;
/// A fixed start (2026-01-01), so every run is the same.
const T0: TimestampMs = 1_767_225_600_000;

#[derive(Default, Debug)]
struct Tally {
    /// Alarms raised (new ones; an alarm raised again at a higher
    /// priority counts in `reraised`).
    raised: usize,
    reraised: usize,
    /// Raises (new or again) at high priority.
    high: usize,
    /// Raises per patient.
    per_patient: BTreeMap<String, usize>,
    /// Raises per patient and condition (rule, vital or device).
    per_condition: BTreeMap<String, usize>,
    /// Resolved within 60 s of being raised (nobody acting): noise.
    fleeting: usize,
    fleeting_conditions: BTreeMap<String, usize>,
    /// Clinical alarms still active at the end, per patient.
    active_at_end: BTreeMap<String, usize>,
    /// The longest any clinical alarm stayed active (ms).
    longest_ms: TimestampMs,
    /// Per deteriorating patient: did an episode raise an alarm, and did
    /// every one of their alarms resolve afterwards?
    deteriorating: Vec<String>,
}

/// Runs the ward for `hours`; a nurse acknowledges each raised alarm
/// `ack_after_s` later (None: nobody does, and the ward responds only when
/// the escalation reaches the outreach team).
fn run(hours: i64, ack_after_s: Option<i64>) -> Tally {
    let mut ward: Vec<SimPatient> = clinical_demo_ward(BEDS, 2026);
    let config = RulesConfig::default();
    let mut rules = RuleEngine::new(&config, T0).unwrap();
    let mut board = AlarmBoard::default();
    board.set_default_clear_delay(config.clear_after_s as i64 * 1000);
    for p in &ward {
        if let Some(s) = &p.extras.alarm_settings {
            let s: AlarmSettings = serde_json::from_value(s.clone()).unwrap();
            rules.set(&p.patient.id, Some(s), T0).unwrap();
        }
    }
    let mut latest: HashMap<PatientId, HashMap<VitalSign, Reading>> = HashMap::new();
    let mut rng = SmallRng::seed_from_u64(7);
    let mut tally = Tally {
        deteriorating: ward
            .iter()
            .filter(|p| matches!(p.physiology.trajectory(), Trajectory::Deteriorating { .. }))
            .map(|p| p.patient.id.to_string())
            .collect(),
        ..Tally::default()
    };
    let mut raised_at: HashMap<u64, TimestampMs> = HashMap::new();
    let mut to_acknowledge: Vec<(TimestampMs, usize)> = Vec::new();
    for s in 0..hours * 3600 {
        let now = T0 + s * 1000;
        // The nurse's acknowledgements due now start the patients' treatment.
        to_acknowledge.retain(|(at, bed)| {
            if *at <= now {
                ward[*bed].physiology.treatment().order(now);
            }
            *at > now
        });
        // The server's 1 s timer: alarms clear for their delay resolve.
        let settled = board.settle(now);
        for (bed, p) in ward.iter_mut().enumerate() {
            let decoded = senml::decode_json(&p.next_pack(now, &mut rng), now).unwrap();
            assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
            let id = p.patient.id.clone();
            let mine = latest.entry(id.clone()).or_default();
            for o in &decoded.observations {
                mine.insert(
                    o.vital,
                    Reading {
                        value: o.value,
                        time_ms: o.time_ms,
                    },
                );
            }
            let reading = |v: VitalSign| mine.get(&v).copied();
            // As Pipeline::store_for judges a stored message.
            let settings = rules.news2_settings(&id);
            let findings = rules.observe(&id, &decoded.observations, now);
            let due = rules.observations_due(&id).map(|w| w.judge(reading, now));
            let aggregate = news2::aggregate_at(reading, settings, now);
            let inputs = news2::inputs(reading, settings, now);
            board.set_clear_delay(&id, rules.clear_after_ms(&id));
            let mut changes = Vec::new();
            for o in &decoded.observations {
                changes.extend(board.judge_scored(
                    &id,
                    o,
                    news2::score_with(o.vital, o.value, inputs),
                ));
            }
            changes.extend(findings.into_iter().filter_map(|f| board.apply(&id, f)));
            changes.extend(due.and_then(|f| board.apply(&id, f)));
            changes.extend(board.observe_news2(&id, aggregate.as_ref(), now));
            for r in &decoded.device {
                if let Some(f) = rules.device_report(&p.device, r) {
                    changes.extend(board.apply(&id, f));
                }
            }
            let mine = settled
                .iter()
                .filter(|c| c.alarm().patient_id == id)
                .cloned();
            for c in changes.into_iter().chain(mine) {
                match c {
                    // A priority climb raises the same alarm again
                    // (it sounds again, and needs acknowledging again).
                    AlarmChange::Raised(a) if raised_at.contains_key(&a.id) => {
                        tally.reraised += 1;
                        tally.high += usize::from(a.priority == Priority::High);
                    }
                    AlarmChange::Raised(a) => {
                        tally.raised += 1;
                        tally.high += usize::from(a.priority == Priority::High);
                        *tally.per_patient.entry(id.to_string()).or_default() += 1;
                        let what = a
                            .vital
                            .map(|v| v.key().to_string())
                            .or(a.device_id.as_ref().map(|d| d.to_string()))
                            .unwrap_or_default();
                        *tally
                            .per_condition
                            .entry(format!("{id} {} {what}", a.rule))
                            .or_default() += 1;
                        raised_at.insert(a.id, now);
                        if let Some(after) = ack_after_s {
                            to_acknowledge.push((now + after * 1000, bed));
                        }
                    }
                    AlarmChange::Resolved(a) => {
                        let since = raised_at.remove(&a.id).unwrap_or(now);
                        if now - since < 60_000 {
                            tally.fleeting += 1;
                            *tally
                                .fleeting_conditions
                                .entry(format!("{id} {} {:?}", a.rule, a.vital))
                                .or_default() += 1;
                        }
                        if a.device_id.is_none() {
                            tally.longest_ms = tally.longest_ms.max(now - since);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for a in board.active() {
        if a.device_id.is_none() {
            *tally
                .active_at_end
                .entry(a.patient_id.to_string())
                .or_default() += 1;
            tally.longest_ms = tally.longest_ms.max(T0 + hours * 3_600_000 - a.raised_ms);
        }
    }
    tally
}

fn report(label: &str, t: &Tally, hours: i64) {
    eprintln!(
        "{label}: {} alarms in {hours} h across {BEDS} beds ({:.1} an hour, {:.2} per bed an hour), \
         raised again at a higher priority {} times, {} raises at high, {} resolved within 60 s, longest clinical alarm {} min; per patient {:?}; \
         most raised condition {:?}; active at the end {:?}; fleeting {:?}",
        t.raised,
        t.raised as f64 / hours as f64,
        t.raised as f64 / hours as f64 / BEDS as f64,
        t.reraised,
        t.high,
        t.fleeting,
        t.longest_ms / 60_000,
        t.per_patient,
        t.per_condition.iter().max_by_key(|(_, n)| **n),
        t.active_at_end,
        t.fleeting_conditions,
    );
}

/// What the ward must look like either way: a handful of alarms an hour,
/// no condition raised over and over, every deteriorating patient alarmed
/// and recovered, nothing left active for long.
fn believable(t: &Tally) {
    let per_hour = t.raised as f64 / HOURS as f64;
    assert!(
        (1.0..=10.0).contains(&per_hour),
        "{per_hour} alarms an hour: {t:?}"
    );
    // An episode crosses each limit once on the way up and once on the way
    // down; noise at the crossing may add one more. More is flapping.
    for (what, n) in &t.per_condition {
        assert!(*n <= 3, "{what} raised {n} times in {HOURS} h: {t:?}");
    }
    assert!(
        t.fleeting * 3 <= t.raised,
        "more than a third of the alarms cleared within a minute: {t:?}"
    );
    for p in &t.deteriorating {
        assert!(t.per_patient.contains_key(p), "{p} never alarmed: {t:?}");
    }
    // At most one episode still under way when the run ends.
    assert!(t.active_at_end.len() <= 1, "{t:?}");
    assert!(
        t.longest_ms < 45 * 60_000,
        "an alarm active for {} min: {t:?}",
        t.longest_ms / 60_000
    );
}

#[test]
fn nobody_acknowledging_the_demo_ward_still_sees_a_handful_of_alarms_an_hour() {
    let t = run(HOURS, None);
    report("nobody acknowledges", &t, HOURS);
    believable(&t);
}

#[test]
fn a_nurse_acknowledging_the_demo_ward_sees_a_handful_of_alarms_an_hour() {
    let t = run(HOURS, Some(120));
    report("a nurse acknowledges within 2 min", &t, HOURS);
    believable(&t);
}
