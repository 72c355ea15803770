//! The per-patient rule engine: each patient's effective settings and the
//! state the profile rules keep between readings (sustained-for runs, trend
//! windows, last reading). It returns [`Finding`]s; the board turns them
//! into alarms.
//!
//! To keep the per-sample path cheap, a condition known to be clear emits
//! nothing on further normal readings; the first normal reading after a
//! start (when the board may hold an alarm restored from the log) and the
//! first after an alarm emit a `Clears`.

use crate::board::{RULE_OBSERVATIONS_DUE, RULE_RATE_OF_CHANGE, RULE_STALE_DATA, RULE_THRESHOLD};
use crate::device;
use crate::finding::{Finding, Verdict, Worse};
use crate::news2::{self, Spo2Scale};
use crate::observations_due::{self, DueConfig, Judgement as Due};
use crate::profiles::Limits;
use crate::settings::{AlarmSettings, Catalogue, Effective, RulesConfig};
use crate::stale;
use crate::thresholds::{Breach, Judgement, ThresholdState};
use crate::trend::{self, Direction, TrendWindow};
use medmesh_model::{DeviceId, DeviceReport, Observation, PatientId, TimestampMs, VitalSign};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// What the observations-due rule needs of a patient's rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DueWatch {
    pub config: DueConfig,
    pub news2: news2::Settings,
    /// Since when medmesh watches the patient (settings given, or start):
    /// a patient without a complete set is due counted from here.
    pub since_ms: TimestampMs,
}

impl DueWatch {
    /// The rule's finding on the patient's latest readings at `now_ms`:
    /// holds while a set is overdue, clears otherwise.
    pub fn judge(
        &self,
        latest: impl Fn(VitalSign) -> Option<news2::Reading>,
        now_ms: TimestampMs,
    ) -> Finding {
        let verdict = match observations_due::judge(
            latest,
            self.news2,
            &self.config,
            self.since_ms,
            now_ms,
        ) {
            Due::NotDue => Verdict::Clears { value: 0.0 },
            Due::Overdue {
                priority,
                message,
                score,
            } => Verdict::Holds {
                priority,
                message,
                value: f64::from(score),
                worse: Worse::Latest,
            },
        };
        Finding {
            vital: None,
            device: None,
            rule: RULE_OBSERVATIONS_DUE,
            time_ms: now_ms,
            verdict,
        }
    }
}

/// A patient's settings, what they put in force, and since when.
struct Assigned {
    settings: AlarmSettings,
    effective: Arc<Effective>,
    since_ms: TimestampMs,
}

#[derive(Default)]
struct PatientState {
    thresholds: HashMap<VitalSign, ThresholdState>,
    trends: HashMap<VitalSign, TrendWindow>,
    /// Conditions known to be clear (no `Clears` needed on a normal reading).
    quiet: HashSet<(VitalSign, &'static str)>,
    /// When the newest reading arrived (server clock).
    last_reading_ms: Option<TimestampMs>,
    /// A stale-data alarm was raised and no reading came since.
    stale_raised: bool,
    /// No stale-data alarm can be active (cleared since start).
    stale_quiet: bool,
}

pub struct RuleEngine {
    catalogue: Catalogue,
    default: Option<Arc<Effective>>,
    battery_low_percent: f64,
    clear_after_s: u64,
    assigned: HashMap<PatientId, Assigned>,
    state: HashMap<PatientId, PatientState>,
    started_ms: TimestampMs,
}

impl RuleEngine {
    /// An engine for `config`, started at `now_ms` (stale-data delays of
    /// patients without a reading since count from then).
    pub fn new(config: &RulesConfig, now_ms: TimestampMs) -> Result<RuleEngine, String> {
        let catalogue = Catalogue::new(config)?;
        let default = match &config.default_profile {
            Some(name) => Some(Arc::new(catalogue.resolve(&AlarmSettings {
                profile: Some(name.clone()),
                thresholds: BTreeMap::new(),
                spo2_scale: 1,
            })?)),
            None => None,
        };
        Ok(RuleEngine {
            catalogue,
            default,
            battery_low_percent: config.battery_low_percent,
            clear_after_s: config.clear_after_s,
            assigned: HashMap::new(),
            state: HashMap::new(),
            started_ms: now_ms,
        })
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The rules in force for `patient`: their own settings, else the
    /// configured default profile, else none.
    pub fn effective(&self, patient: &PatientId) -> Option<Arc<Effective>> {
        self.assigned
            .get(patient)
            .map(|a| a.effective.clone())
            .or_else(|| self.default.clone())
    }

    /// The settings a clinician gave `patient`, if any.
    pub fn settings(&self, patient: &PatientId) -> Option<AlarmSettings> {
        self.assigned.get(patient).map(|a| a.settings.clone())
    }

    /// Every patient's settings, for saving.
    pub fn all_settings(&self) -> BTreeMap<PatientId, AlarmSettings> {
        self.assigned
            .iter()
            .map(|(p, a)| (p.clone(), a.settings.clone()))
            .collect()
    }

    pub fn spo2_scale(&self, patient: &PatientId) -> Spo2Scale {
        self.effective(patient)
            .map_or(Spo2Scale::Scale1, |e| e.spo2_scale)
    }

    /// How long (ms) `patient`'s alarms must stay clear before they resolve.
    pub fn clear_after_ms(&self, patient: &PatientId) -> TimestampMs {
        let s = self
            .effective(patient)
            .and_then(|e| e.clear_after_s)
            .unwrap_or(self.clear_after_s);
        i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// What NEWS2 scoring needs of the patient's settings: SpO2 scale and
    /// how old a parameter's reading may be (the default without settings).
    pub fn news2_settings(&self, patient: &PatientId) -> news2::Settings {
        self.effective(patient)
            .map_or_else(news2::Settings::default, |e| news2::Settings {
                scale: e.spo2_scale,
                max_age_ms: e.news2_max_age_s as i64 * 1000,
            })
    }

    /// The observations-due rule of `patient`, if their profile has it on.
    pub fn observations_due(&self, patient: &PatientId) -> Option<DueWatch> {
        let effective = self.effective(patient)?;
        let config = effective.observations_due?;
        Some(DueWatch {
            config,
            news2: self.news2_settings(patient),
            since_ms: self
                .assigned
                .get(patient)
                .map_or(self.started_ms, |a| a.since_ms.max(self.started_ms)),
        })
    }

    /// Checks `settings` without applying them.
    pub fn resolve(&self, settings: &AlarmSettings) -> Result<Effective, String> {
        self.catalogue.resolve(settings)
    }

    /// Gives `patient` new settings (`None`: back to the default). Returns
    /// `Clears` for conditions the new settings no longer watch, so their
    /// alarms do not stay active with nothing left to resolve them.
    pub fn set(
        &mut self,
        patient: &PatientId,
        settings: Option<AlarmSettings>,
        now_ms: TimestampMs,
    ) -> Result<Vec<Finding>, String> {
        let old = self.effective(patient);
        match settings {
            Some(settings) => {
                let effective = Arc::new(self.catalogue.resolve(&settings)?);
                self.assigned.insert(
                    patient.clone(),
                    Assigned {
                        settings,
                        effective,
                        since_ms: now_ms,
                    },
                );
            }
            None => {
                self.assigned.remove(patient);
            }
        }
        let new = self.effective(patient);
        let watched = |e: &Option<Arc<Effective>>| -> Vec<(VitalSign, &'static str)> {
            e.iter()
                .flat_map(|e| {
                    e.thresholds
                        .keys()
                        .map(|v| (*v, RULE_THRESHOLD))
                        .chain(e.trends.iter().map(|t| (t.vital, RULE_RATE_OF_CHANGE)))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let still = watched(&new);
        let state = self.state.entry(patient.clone()).or_default();
        let mut out = Vec::new();
        for (vital, rule) in watched(&old).into_iter().filter(|c| !still.contains(c)) {
            // Forget the rule's history, so a later return starts afresh.
            if rule == RULE_THRESHOLD {
                state.thresholds.remove(&vital);
            } else {
                state.trends.remove(&vital);
            }
            state.quiet.insert((vital, rule));
            out.push(clears(Some(vital), rule, now_ms, 0.0));
        }
        let stale_watched = |e: &Option<Arc<Effective>>| e.as_ref().and_then(|e| e.stale_after_s);
        if stale_watched(&old).is_some() && stale_watched(&new).is_none() {
            out.push(clears(None, RULE_STALE_DATA, now_ms, 0.0));
            state.stale_raised = false;
            state.stale_quiet = true;
        }
        let due_watched = |e: &Option<Arc<Effective>>| e.as_ref().and_then(|e| e.observations_due);
        if due_watched(&old).is_some() && due_watched(&new).is_none() {
            out.push(clears(None, RULE_OBSERVATIONS_DUE, now_ms, 0.0));
        }
        Ok(out)
    }

    /// Restores saved settings at start. A patient whose settings no longer
    /// resolve (a profile removed from the configuration) keeps them on
    /// record but gets the default rules; the reasons are returned.
    pub fn load(&mut self, saved: BTreeMap<PatientId, AlarmSettings>) -> Vec<String> {
        let mut problems = Vec::new();
        for (patient, settings) in saved {
            match self.catalogue.resolve(&settings) {
                Ok(e) => {
                    self.assigned.insert(
                        patient,
                        Assigned {
                            settings,
                            effective: Arc::new(e),
                            since_ms: self.started_ms,
                        },
                    );
                }
                Err(e) => problems.push(format!("alarm settings of {patient}: {e}")),
            }
        }
        problems
    }

    /// At start: when `patient`'s newest stored reading was taken, so the
    /// stale-data delay of a patient silent across a restart keeps counting
    /// from that reading rather than from the start. The store keeps a
    /// reading's own time, not when it arrived; it stands in for arrival
    /// (capped at the start, so a device clock ahead of ours cannot hold
    /// the alarm off). A reading that arrived since start wins.
    pub fn seed_last_reading(&mut self, patient: &PatientId, taken_ms: TimestampMs) {
        let state = self.state.entry(patient.clone()).or_default();
        if state.last_reading_ms.is_none() {
            state.last_reading_ms = Some(taken_ms.min(self.started_ms));
        }
    }

    /// Judges a patient's newly stored readings against their profile's
    /// limits and trends; `now_ms` is when they arrived.
    pub fn observe(
        &mut self,
        patient: &PatientId,
        observations: &[Observation],
        now_ms: TimestampMs,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(effective) = self.effective(patient) else {
            if let Some(s) = self.state.get_mut(patient) {
                s.last_reading_ms = Some(now_ms);
            }
            return out;
        };
        // Look up before inserting: no patient id clone per message.
        if !self.state.contains_key(patient) {
            self.state.insert(patient.clone(), PatientState::default());
        }
        let state = self.state.get_mut(patient).expect("inserted above");
        state.last_reading_ms = Some(now_ms);
        state.stale_raised = false;
        if !state.stale_quiet {
            state.stale_quiet = true;
            out.push(clears(None, RULE_STALE_DATA, now_ms, 0.0));
        }
        for o in observations {
            if let Some(limits) = effective.thresholds.get(&o.vital) {
                let judgement = state
                    .thresholds
                    .entry(o.vital)
                    .or_default()
                    .judge(limits, o.value, o.time_ms);
                let key = (o.vital, RULE_THRESHOLD);
                match judgement {
                    Judgement::Alarm { breach, since_ms } => {
                        state.quiet.remove(&key);
                        out.push(Finding {
                            vital: Some(o.vital),
                            device: None,
                            rule: RULE_THRESHOLD,
                            time_ms: o.time_ms,
                            verdict: Verdict::Holds {
                                priority: limits.priority,
                                message: threshold_message(
                                    o,
                                    limits,
                                    breach,
                                    since_ms,
                                    effective.profile.as_deref(),
                                ),
                                value: o.value,
                                worse: match breach {
                                    Breach::High => Worse::Higher,
                                    Breach::Low => Worse::Lower,
                                },
                            },
                        });
                    }
                    Judgement::Normal if state.quiet.insert(key) => {
                        out.push(clears(Some(o.vital), RULE_THRESHOLD, o.time_ms, o.value));
                    }
                    // Out of range at its time, but a newer reading was
                    // judged already (a gateway forwarding its buffer):
                    // recorded as the episode it was. Not with a
                    // sustained-for delay, which one late reading cannot
                    // show was met.
                    Judgement::Late {
                        breach: Some(breach),
                        newest_ms,
                    } if limits.sustained_s == 0 => {
                        out.push(Finding {
                            vital: Some(o.vital),
                            device: None,
                            rule: RULE_THRESHOLD,
                            time_ms: o.time_ms,
                            verdict: Verdict::HeldBefore {
                                priority: limits.priority,
                                message: format!(
                                    "{} (reading arrived late; a newer reading is back in range)",
                                    threshold_message(
                                        o,
                                        limits,
                                        breach,
                                        o.time_ms,
                                        effective.profile.as_deref(),
                                    )
                                ),
                                value: o.value,
                                worse: match breach {
                                    Breach::High => Worse::Higher,
                                    Breach::Low => Worse::Lower,
                                },
                                cleared_ms: newest_ms,
                            },
                        });
                    }
                    Judgement::Normal | Judgement::Pending | Judgement::Late { .. } => {}
                }
            }
            if let Some(rule) = effective.trends.iter().find(|t| t.vital == o.vital) {
                let window = state.trends.entry(o.vital).or_default();
                let Some(movement) = window.push(o.time_ms, o.value, rule.window_s) else {
                    continue;
                };
                let key = (o.vital, RULE_RATE_OF_CHANGE);
                match trend::exceeds(rule, movement) {
                    Some(direction) => {
                        state.quiet.remove(&key);
                        let (verb, by) = match direction {
                            Direction::Rose(d) => ("rose", d),
                            Direction::Fell(d) => ("fell", d),
                        };
                        let limit = if verb == "rose" { rule.rise } else { rule.fall };
                        out.push(Finding {
                            vital: Some(o.vital),
                            device: None,
                            rule: RULE_RATE_OF_CHANGE,
                            time_ms: o.time_ms,
                            verdict: Verdict::Holds {
                                priority: rule.priority,
                                message: format!(
                                    "{} {verb} by {} {unit} within {} (limit {} {unit}), now {} {unit}",
                                    o.vital.display(),
                                    round(by),
                                    trend::human_window(rule.window_s),
                                    limit.unwrap_or_default(),
                                    o.value,
                                    unit = o.vital.ucum(),
                                ),
                                value: o.value,
                                worse: if verb == "rose" {
                                    Worse::Higher
                                } else {
                                    Worse::Lower
                                },
                            },
                        });
                    }
                    None if state.quiet.insert(key) => {
                        out.push(clears(
                            Some(o.vital),
                            RULE_RATE_OF_CHANGE,
                            o.time_ms,
                            o.value,
                        ));
                    }
                    None => {}
                }
            }
        }
        out
    }

    /// Judges something a device reported; the finding is about the
    /// device's patient.
    pub fn device_report(&self, device: &DeviceId, report: &DeviceReport) -> Option<Finding> {
        match *report {
            DeviceReport::Battery { percent, time_ms } => {
                device::battery(device, percent, self.battery_low_percent, time_ms)
            }
            DeviceReport::Fall { time_ms } => Some(device::fall(device, time_ms)),
        }
    }

    /// The timer rule: patients among `patients` whose profile has a
    /// stale-data delay and who sent nothing for that long. Each silence
    /// raises once; a reading resolves it (see [`RuleEngine::observe`]).
    pub fn check_stale(
        &mut self,
        patients: impl IntoIterator<Item = PatientId>,
        now_ms: TimestampMs,
    ) -> Vec<(PatientId, Finding)> {
        let mut out = Vec::new();
        for patient in patients {
            let Some(effective) = self.effective(&patient) else {
                continue;
            };
            let Some(after_s) = effective.stale_after_s else {
                continue;
            };
            let watched_since = self
                .assigned
                .get(&patient)
                .map_or(self.started_ms, |a| a.since_ms.max(self.started_ms));
            let state = self.state.entry(patient.clone()).or_default();
            if state.stale_raised {
                continue;
            }
            let last = state.last_reading_ms.unwrap_or(watched_since);
            let Some(silent) = stale::silent_for(last, after_s, now_ms) else {
                continue;
            };
            state.stale_raised = true;
            state.stale_quiet = false;
            let since = if state.last_reading_ms.is_some() {
                "No reading"
            } else {
                "No reading since monitoring started"
            };
            let message = format!(
                "{since} for {} (expected at least every {}{})",
                stale::human_silence(silent),
                trend::human_window(after_s),
                effective
                    .profile
                    .as_deref()
                    .map(|p| format!(", profile {p}"))
                    .unwrap_or_default(),
            );
            out.push((
                patient,
                Finding {
                    vital: None,
                    device: None,
                    rule: RULE_STALE_DATA,
                    time_ms: now_ms,
                    verdict: Verdict::Holds {
                        priority: medmesh_model::Priority::Medium,
                        message,
                        value: (silent / 60_000) as f64,
                        worse: Worse::Latest,
                    },
                },
            ));
        }
        out
    }
}

fn clears(
    vital: Option<VitalSign>,
    rule: &'static str,
    time_ms: TimestampMs,
    value: f64,
) -> Finding {
    Finding {
        vital,
        device: None,
        rule,
        time_ms,
        verdict: Verdict::Clears { value },
    }
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn threshold_message(
    o: &Observation,
    limits: &Limits,
    breach: Breach,
    since_ms: TimestampMs,
    profile: Option<&str>,
) -> String {
    let (side, limit) = match breach {
        Breach::Low => ("below the low limit", limits.low),
        Breach::High => ("above the high limit", limits.high),
    };
    let unit = o.vital.ucum();
    let mut m = format!(
        "{} {} {unit} {side} {} {unit}",
        o.vital.display(),
        o.value,
        limit.unwrap_or_default()
    );
    if limits.sustained_s > 0 {
        m.push_str(&format!(
            " for {}",
            stale::human_silence(o.time_ms - since_ms)
        ));
    }
    if let Some(p) = profile {
        m.push_str(&format!(" (profile {p})"));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{AlarmBoard, AlarmChange, RULE_BATTERY_LOW, RULE_FALL};
    use medmesh_model::{AlarmState, Priority};

    fn obs(vital: VitalSign, t: i64, value: f64) -> Observation {
        Observation {
            vital,
            value,
            time_ms: t,
        }
    }

    fn copd() -> AlarmSettings {
        serde_json::from_str(
            r#"{"profile": "home-copd", "thresholds": {"spo2": {"low": 88, "sustained_s": 120}}}"#,
        )
        .unwrap()
    }

    /// Engine and board together, as the pipeline runs them.
    fn run(
        engine: &mut RuleEngine,
        board: &mut AlarmBoard,
        p: &PatientId,
        o: &[Observation],
        now: i64,
    ) -> Vec<AlarmChange> {
        engine
            .observe(p, o, now)
            .into_iter()
            .filter_map(|f| board.apply(p, f))
            .collect()
    }

    #[test]
    fn patients_without_settings_get_no_profile_rules_unless_a_default_is_configured() {
        let p = PatientId::new("p1").unwrap();
        let mut e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        assert!(
            e.observe(&p, &[obs(VitalSign::HeartRate, 1, 200.0)], 1)
                .is_empty()
        );
        let config = RulesConfig {
            default_profile: Some("adult-ward".into()),
            ..RulesConfig::default()
        };
        let mut e = RuleEngine::new(&config, 0).unwrap();
        assert_eq!(
            e.effective(&p).unwrap().profile.as_deref(),
            Some("adult-ward")
        );
        // adult-ward: pulse above 110 for 60 s of sample time.
        assert!(matches!(
            e.observe(&p, &[obs(VitalSign::HeartRate, 0, 120.0)], 0)[..],
            [Finding {
                rule: RULE_STALE_DATA,
                ..
            }]
        ));
        let f = e.observe(&p, &[obs(VitalSign::HeartRate, 60_000, 121.0)], 1);
        assert!(matches!(f[0].verdict, Verdict::Holds { .. }), "{f:?}");
    }

    #[test]
    fn sustained_threshold_raises_updates_and_resolves_one_alarm() {
        let p = PatientId::new("p1").unwrap();
        let mut e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        let mut b = AlarmBoard::default();
        e.set(&p, Some(copd()), 0).unwrap();
        let spo2 = |t, v| obs(VitalSign::OxygenSaturation, t, v);
        // 86 % for less than 120 s of sample time: nothing yet.
        assert!(run(&mut e, &mut b, &p, &[spo2(0, 86.0), spo2(60_000, 85.0)], 1).is_empty());
        let raised = run(&mut e, &mut b, &p, &[spo2(120_000, 86.0)], 2);
        let [AlarmChange::Raised(a)] = &raised[..] else {
            panic!("{raised:?}")
        };
        assert_eq!(
            (a.rule.as_str(), a.priority),
            (RULE_THRESHOLD, Priority::Medium)
        );
        assert!(
            a.message.contains("below the low limit 88 %"),
            "{}",
            a.message
        );
        assert!(a.message.contains("for 2 min"), "{}", a.message);
        let again = run(&mut e, &mut b, &p, &[spo2(130_000, 84.0)], 3);
        assert!(matches!(&again[..], [AlarmChange::Updated(x)] if x.id == a.id));
        let back = run(&mut e, &mut b, &p, &[spo2(140_000, 90.0)], 4);
        assert!(matches!(&back[..], [AlarmChange::Resolved(x)] if x.id == a.id));
        // Further normal readings cost nothing.
        assert!(e.observe(&p, &[spo2(150_000, 91.0)], 5).is_empty());
    }

    #[test]
    fn trend_rule_of_a_profile_alarms_on_weight_gain() {
        let p = PatientId::new("hf").unwrap();
        let mut e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        let mut b = AlarmBoard::default();
        let hf = serde_json::from_str(r#"{"profile": "home-heart-failure"}"#).unwrap();
        e.set(&p, Some(hf), 0).unwrap();
        let day = 86_400_000;
        let w = |d: i64, kg| obs(VitalSign::BodyWeight, d * day, kg);
        run(&mut e, &mut b, &p, &[w(0, 80.0), w(1, 81.0)], 0);
        let c = run(&mut e, &mut b, &p, &[w(2, 82.5)], 0);
        let [AlarmChange::Raised(a)] = &c[..] else {
            panic!("{c:?}")
        };
        assert_eq!(a.rule, RULE_RATE_OF_CHANGE);
        assert!(
            a.message.contains("rose by 2.5 kg within 3 days"),
            "{}",
            a.message
        );
        // Diuretics work: 80.5 kg is below the window's gain limit again.
        let c = run(&mut e, &mut b, &p, &[w(3, 80.5)], 0);
        assert!(matches!(&c[..], [AlarmChange::Resolved(_)]), "{c:?}");
    }

    #[test]
    fn stale_data_raises_once_and_a_reading_resolves_it() {
        let p = PatientId::new("p1").unwrap();
        let mut e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        let mut b = AlarmBoard::default();
        e.set(&p, Some(copd()), 1_000).unwrap();
        let day = 86_400_000;
        // Nothing yet, not even a reading: counted from when monitoring began.
        assert!(e.check_stale([p.clone()], day).is_empty());
        let found = e.check_stale([p.clone()], day + 1_000);
        let [(who, f)] = &found[..] else {
            panic!("{found:?}")
        };
        assert_eq!((who, f.rule), (&p, RULE_STALE_DATA));
        let raised = b.apply(&p, f.clone()).unwrap();
        assert!(
            raised
                .alarm()
                .message
                .starts_with("No reading since monitoring started for 1 days 0 h"),
            "{}",
            raised.alarm().message
        );
        assert!(
            e.check_stale([p.clone()], day + 60_000).is_empty(),
            "raised once"
        );
        let c = run(
            &mut e,
            &mut b,
            &p,
            &[obs(VitalSign::OxygenSaturation, 5, 95.0)],
            day + 90_000,
        );
        assert!(matches!(&c[..], [AlarmChange::Resolved(a)] if a.rule == RULE_STALE_DATA));
        assert!(e.check_stale([p.clone()], 2 * day + 80_000).is_empty());
        assert_eq!(e.check_stale([p.clone()], 2 * day + 90_000).len(), 1);
    }

    #[test]
    fn stale_data_after_a_restart_counts_from_the_last_stored_reading() {
        let p = PatientId::new("p1").unwrap();
        let q = PatientId::new("p2").unwrap();
        let day = 86_400_000;
        // Restarted at 10 days; p1's last reading was taken 23 h before.
        let start = 10 * day;
        let mut e = RuleEngine::new(&RulesConfig::default(), start).unwrap();
        e.load([(p.clone(), copd()), (q.clone(), copd())].into());
        e.seed_last_reading(&p, start - 23 * 3_600_000);
        assert!(e.check_stale([p.clone(), q.clone()], start).is_empty());
        // An hour after the restart p1 is a day silent; p2, with nothing
        // stored, counts from the start.
        let found = e.check_stale([p.clone(), q.clone()], start + 3_600_000);
        let [(who, f)] = &found[..] else {
            panic!("{found:?}")
        };
        assert_eq!((who, f.rule), (&p, RULE_STALE_DATA));
        let Verdict::Holds { message, .. } = &f.verdict else {
            panic!("{f:?}")
        };
        assert!(
            message.starts_with("No reading for 1 days 0 h"),
            "{message}"
        );
        assert_eq!(e.check_stale([q.clone()], start + day).len(), 1);
        // A device clock ahead of ours counts as a reading at the start.
        let r = PatientId::new("p3").unwrap();
        e.load([(r.clone(), copd())].into());
        e.seed_last_reading(&r, start + 5 * day);
        assert!(e.check_stale([r.clone()], start + day - 1).is_empty());
        assert_eq!(e.check_stale([r.clone()], start + day).len(), 1);
    }

    #[test]
    fn changing_settings_resolves_conditions_no_longer_watched() {
        let p = PatientId::new("p1").unwrap();
        let mut e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        let mut b = AlarmBoard::default();
        let tight =
            serde_json::from_str(r#"{"thresholds": {"heart_rate": {"high": 100}}}"#).unwrap();
        e.set(&p, Some(tight), 0).unwrap();
        let c = run(
            &mut e,
            &mut b,
            &p,
            &[obs(VitalSign::HeartRate, 1, 105.0)],
            1,
        );
        assert!(matches!(&c[..], [AlarmChange::Raised(_)]));
        let cleared: Vec<_> = e
            .set(&p, None, 2)
            .unwrap()
            .into_iter()
            .filter_map(|f| b.apply(&p, f))
            .collect();
        assert!(
            matches!(&cleared[..], [AlarmChange::Resolved(a)] if a.state == AlarmState::Resolved)
        );
        assert!(
            e.set(
                &p,
                Some(serde_json::from_str(r#"{"profile": "x"}"#).unwrap()),
                3
            )
            .is_err()
        );
    }

    #[test]
    fn battery_and_fall_reports() {
        let e = RuleEngine::new(&RulesConfig::default(), 0).unwrap();
        let mut b = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let d = DeviceId::new("watch").unwrap();
        let low = e
            .device_report(
                &d,
                &DeviceReport::Battery {
                    percent: 12.0,
                    time_ms: 1,
                },
            )
            .unwrap();
        assert_eq!(low.rule, RULE_BATTERY_LOW);
        let raised = b.apply(&p, low).unwrap();
        assert_eq!(raised.alarm().priority, Priority::Low);
        let ok = e
            .device_report(
                &d,
                &DeviceReport::Battery {
                    percent: 90.0,
                    time_ms: 2,
                },
            )
            .unwrap();
        assert!(matches!(b.apply(&p, ok), Some(AlarmChange::Resolved(_))));
        // A fall stays until a clinician resolves it; the same report again
        // changes nothing anyone sees.
        let fall = e
            .device_report(&d, &DeviceReport::Fall { time_ms: 3 })
            .unwrap();
        let a = b.apply(&p, fall.clone()).unwrap();
        assert!(
            matches!(&a, AlarmChange::Raised(x) if x.priority == Priority::High && x.rule == RULE_FALL)
        );
        assert_eq!(b.apply(&p, fall), None);
        assert_eq!(b.active().len(), 1);
        let closed = b.resolve(a.alarm().id, "nurse", 9).unwrap();
        assert_eq!(closed.alarm().resolved.as_ref().unwrap().by, "nurse");
    }
}
