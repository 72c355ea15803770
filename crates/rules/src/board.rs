//! The alarm board: active alarms, their lifecycle, and recent history.
//!
//! Rules raise, update and resolve alarms as observations arrive; clinicians
//! acknowledge, snooze or resolve them. There is one alarm per condition: a
//! repeat updates it, and an acknowledged alarm stays acknowledged while its
//! condition lasts.
//!
//! Against alarm fatigue (IEC 60601-1-8 alarm conditions; The Joint
//! Commission's National Patient Safety Goal on alarm management):
//! - The clinical rules on one vital sign (a NEWS2 red parameter, a profile
//!   limit, a rate of change) share one alarm per patient and vital sign:
//!   each rule is a *reason*; the alarm holds while any reason does, takes
//!   the highest reason's priority, and its message names every reason.
//! - An alarm shows the worst reading of its episode (see [`Worse`]).
//! - An alarm whose reasons all cleared resolves only once it has stayed
//!   clear for the patient's clear delay (`clear_after_s`, by the readings'
//!   time, or by medmesh's clock when no reading comes): an episode that
//!   dips in and out is one alarm, not a flapping series.
//! - A repeat that changes nothing a viewer sees (priority, reasons, the
//!   worst reading, state) is no change at all: the live stream and the
//!   sinks only hear of alarms that changed.

use crate::escalation::Policy;
use crate::finding::{Finding, Verdict, Worse};
use crate::news2::{self, Aggregate};
use medmesh_model::{
    Act, Alarm, AlarmState, DeviceId, Observation, PatientId, Priority, TimestampMs, VitalSign,
};
use std::collections::{HashMap, VecDeque};

/// Name of the rule that fires on a NEWS2 parameter score of 3.
pub const RULE_NEWS2_RED: &str = "news2-single-parameter-3";
/// Name of the rule that fires on the NEWS2 aggregate (5 or more).
pub const RULE_NEWS2_AGGREGATE: &str = "news2-aggregate";
/// Name of the rule that fires when a patient's device drops off line.
pub const RULE_DEVICE_OFFLINE: &str = "device-offline";
/// Name of the rule that fires on a value beyond a profile's or patient's limit.
pub const RULE_THRESHOLD: &str = "threshold";
/// Name of the rule that fires on a rise or fall faster than a profile allows.
pub const RULE_RATE_OF_CHANGE: &str = "rate-of-change";
/// Name of the rule that fires when a patient sends no reading for too long.
pub const RULE_STALE_DATA: &str = "stale-data";
/// Name of the rule that fires when a patient's complete set of
/// observations is older than their NEWS2 allows (RCP NEWS2 Chart 4).
pub const RULE_OBSERVATIONS_DUE: &str = "observations-due";
/// Name of the rule that fires when a device's clock runs ahead.
pub const RULE_DEVICE_CLOCK: &str = "device-clock";
/// Name of the rule that fires on a device's low battery.
pub const RULE_BATTERY_LOW: &str = "battery-low";
/// Name of the rule that fires on a fall a wearable detected.
pub const RULE_FALL: &str = "fall";
/// Name of the notice raised when a device is taken off a patient: its
/// readings (and the alarms they would raise) no longer reach them.
pub const RULE_MONITORING_STOPPED: &str = "monitoring-stopped";
/// Who resolves an alarm whose condition cleared by itself.
pub const SYSTEM: &str = "medmesh";
/// Resolved alarms kept in memory for the API (the alarm log keeps all).
const HISTORY: usize = 10_000;
/// How much older than the newest reading already judged for its condition
/// a late reading may be and still be judged (a gateway that stored and
/// forwards, messages of one device taken by different listeners). Older
/// still, it is stored and shown in trends, but raises nothing now.
pub const LATE_WINDOW_MS: TimestampMs = 10 * 60_000;

/// What happened to an alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmChange {
    Raised(Alarm),
    /// Something a viewer sees of an active alarm changed without it being
    /// raised again: a worse reading, a reason joined or left, its priority
    /// fell, a NEWS2 aggregate moved. (A repeat that changes none of that
    /// is no change.)
    Updated(Alarm),
    Acknowledged(Alarm),
    Snoozed(Alarm),
    Resolved(Alarm),
    /// Nobody acknowledged it in time (or its snooze ran out): the next
    /// level of its escalation chain is told (`escalation_level`).
    Escalated(Alarm),
}

impl AlarmChange {
    pub fn alarm(&self) -> &Alarm {
        match self {
            AlarmChange::Raised(a)
            | AlarmChange::Updated(a)
            | AlarmChange::Acknowledged(a)
            | AlarmChange::Snoozed(a)
            | AlarmChange::Resolved(a)
            | AlarmChange::Escalated(a) => a,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AlarmChange::Raised(_) => "raised",
            AlarmChange::Updated(_) => "updated",
            AlarmChange::Acknowledged(_) => "acknowledged",
            AlarmChange::Snoozed(_) => "snoozed",
            AlarmChange::Resolved(_) => "resolved",
            AlarmChange::Escalated(_) => "escalated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("no active alarm with id {0}")]
    NoSuchAlarm(u64),
}

/// One patient's condition: the vital sign or device concerned, and the rule.
type Condition = (Option<VitalSign>, Option<DeviceId>, &'static str);

/// The rules about one vital sign whose alarms merge into one per patient
/// and vital sign, in the order a tie in priority ranks them.
const VITAL_RULES: [&str; 3] = [RULE_NEWS2_RED, RULE_THRESHOLD, RULE_RATE_OF_CHANGE];
/// The rule slot of the key a vital sign's merged alarm is kept under.
const VITAL_ALARM: &str = "vital-sign";

/// The key of the alarm a condition belongs to: a vital sign's clinical
/// rules share one; every other condition is its own.
fn alarm_key(condition: &Condition) -> Condition {
    match condition {
        (Some(vital), None, rule) if VITAL_RULES.contains(rule) => {
            (Some(*vital), None, VITAL_ALARM)
        }
        other => other.clone(),
    }
}

/// Orders reasons highest priority first; a tie in [`VITAL_RULES`] order.
fn rank(reasons: &mut [Reason]) {
    let order = |rule| {
        VITAL_RULES
            .iter()
            .position(|r| *r == rule)
            .unwrap_or(VITAL_RULES.len())
    };
    reasons.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(order(a.rule).cmp(&order(b.rule)))
    });
}

/// What an alarm shows of its reasons: the highest one's priority, rule
/// and message, the others named after it.
struct Shown {
    priority: Priority,
    rule: &'static str,
    message: String,
    worst: Option<f64>,
}

impl Shown {
    /// `reasons` ranked and not empty.
    fn of(key: &Condition, reasons: &[Reason]) -> Shown {
        let top = &reasons[0];
        let mut message = top.message.clone();
        for other in &reasons[1..] {
            message.push_str(" Also: ");
            message.push_str(&other.message);
        }
        Shown {
            priority: top.priority,
            rule: top.rule,
            message,
            worst: (key.0.is_some() || key.2 == RULE_NEWS2_AGGREGATE).then_some(top.worst),
        }
    }

    /// Shows it on `alarm`; whether anything a viewer sees changed.
    fn apply(self, alarm: &mut Alarm) -> bool {
        let changed = alarm.priority != self.priority
            || alarm.rule != self.rule
            || alarm.message != self.message
            || alarm.worst != self.worst;
        alarm.priority = self.priority;
        alarm.rule = self.rule.to_string();
        alarm.message = self.message;
        alarm.worst = self.worst;
        changed
    }
}

/// Which way a NEWS2 red reading is worse: away from the chart's score-0
/// band (RCP NEWS2 2017 Chart 1), so a low reading is worse lower and a
/// high one higher. The centres: respiration 12-20, SpO2 between scale 1's
/// 96+ and scale 2's 88-92 (both sides of scale 2 can score 3), systolic
/// 111-219, pulse 51-90, temperature 36.1-38.0; consciousness: anything
/// but Alert is worse the further down ACVPU.
fn red_worse(vital: VitalSign, value: f64) -> Worse {
    let centre = match vital {
        VitalSign::RespiratoryRate => 16.0,
        VitalSign::OxygenSaturation => 94.0,
        VitalSign::SystolicBloodPressure => 165.0,
        VitalSign::HeartRate => 70.0,
        VitalSign::BodyTemperature => 37.0,
        _ => return Worse::Higher,
    };
    if value > centre {
        Worse::Higher
    } else {
        Worse::Lower
    }
}

/// One rule's reason for an alarm, while it holds.
#[derive(Debug, Clone)]
struct Reason {
    rule: &'static str,
    priority: Priority,
    /// The message of the reading the reason keeps (the worst, see [`Worse`]).
    message: String,
    worst: f64,
}

/// An alarm whose reasons all cleared, waiting out its clear delay.
#[derive(Debug, Clone, Copy)]
struct Clearing {
    /// Time of the reading that cleared it.
    since_ms: TimestampMs,
    /// When the settling timer first saw it (medmesh's clock).
    noted_ms: Option<TimestampMs>,
}

/// The rules' names, to map recorded alarms back to their rule.
const RULES: [&str; 11] = [
    RULE_DEVICE_CLOCK,
    RULE_MONITORING_STOPPED,
    RULE_NEWS2_RED,
    RULE_NEWS2_AGGREGATE,
    RULE_DEVICE_OFFLINE,
    RULE_THRESHOLD,
    RULE_RATE_OF_CHANGE,
    RULE_STALE_DATA,
    RULE_OBSERVATIONS_DUE,
    RULE_BATTERY_LOW,
    RULE_FALL,
];

/// One patient's active alarms, and when each condition was last judged.
#[derive(Default)]
struct PatientAlarms {
    active: HashMap<Condition, Alarm>,
    /// Time of the newest observation judged per condition: an older one
    /// arriving late (a resend, a gateway catching up) must not overrule it.
    judged: HashMap<Condition, TimestampMs>,
    /// The reading times each alarm's last resolved episode covered (by
    /// alarm key), so a late reading from inside it does not raise it again.
    episodes: HashMap<Condition, (TimestampMs, TimestampMs)>,
    /// The reasons each active alarm holds for (by alarm key), highest first.
    reasons: HashMap<Condition, Vec<Reason>>,
    /// Active alarms (by key) whose reasons all cleared, until they settle.
    clearing: HashMap<Condition, Clearing>,
    /// This patient's clear delay (ms); `None`: the board's default.
    clear_after_ms: Option<TimestampMs>,
    /// The highest priority each active alarm (by key) has had: coming back
    /// up to it is not news, going above it is.
    peaks: HashMap<Condition, Priority>,
}

/// Active alarms by patient and condition, and recently resolved ones.
/// Keyed by patient first so that the per-sample path looks up by
/// reference and allocates nothing.
#[derive(Default)]
pub struct AlarmBoard {
    patients: HashMap<PatientId, PatientAlarms>,
    history: VecDeque<Alarm>,
    next_id: u64,
    /// How long an alarm must stay clear before it resolves, for patients
    /// whose rules give no delay of their own (0: at the first clear
    /// reading).
    clear_after_ms: TimestampMs,
}

impl AlarmBoard {
    /// Alarms resolve once clear for `clear_after_ms` (the `[rules]
    /// clear_after_s` default) unless a patient's rules say otherwise.
    pub fn set_default_clear_delay(&mut self, clear_after_ms: TimestampMs) {
        self.clear_after_ms = clear_after_ms;
    }

    /// Sets `patient`'s clear delay (from their profile or settings).
    pub fn set_clear_delay(&mut self, patient: &PatientId, clear_after_ms: TimestampMs) {
        if self.patients.get(patient).and_then(|p| p.clear_after_ms) != Some(clear_after_ms) {
            self.patient(patient).clear_after_ms = Some(clear_after_ms);
        }
    }

    fn clear_delay(&self, patient: &PatientId) -> TimestampMs {
        self.patients
            .get(patient)
            .and_then(|p| p.clear_after_ms)
            .unwrap_or(self.clear_after_ms)
    }

    fn patient(&mut self, patient: &PatientId) -> &mut PatientAlarms {
        if !self.patients.contains_key(patient) {
            self.patients
                .insert(patient.clone(), PatientAlarms::default());
        }
        self.patients.get_mut(patient).expect("inserted above")
    }

    /// Rebuilds the board from an alarm's latest recorded state (start-up).
    pub fn restore(&mut self, alarm: Alarm) {
        self.next_id = self.next_id.max(alarm.id);
        let Some(rule) = RULES.iter().find(|r| **r == alarm.rule) else {
            // A rule this version no longer has: keep it as history only.
            self.remember(alarm);
            return;
        };
        let key = alarm_key(&(alarm.vital, alarm.device_id.clone(), *rule));
        let patient = alarm.patient_id.clone();
        if alarm.state == AlarmState::Resolved {
            self.patient(&patient).active.remove(&key);
            self.remember(alarm);
        } else {
            self.patient(&patient).active.insert(key, alarm);
        }
    }

    fn remember(&mut self, alarm: Alarm) {
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(alarm);
    }

    /// Raises or updates the alarm of a condition that holds now. Returns
    /// no change when nothing a viewer sees changed (the alarm still takes
    /// the value and time).
    #[allow(clippy::too_many_arguments)]
    fn holds(
        &mut self,
        patient: &PatientId,
        condition: Condition,
        priority: Priority,
        message: impl FnOnce() -> String,
        value: f64,
        time_ms: TimestampMs,
        worse: Worse,
    ) -> Option<AlarmChange> {
        let key = alarm_key(&condition);
        let rule = condition.2;
        let next_id = self.next_id + 1;
        let alarms = self.patient(patient);
        let was_clearing = alarms.clearing.remove(&key).is_some();
        let reasons = alarms.reasons.entry(key.clone()).or_default();
        if was_clearing {
            // Back within the clear delay: the same episode goes on, with
            // this rule's worst reading; the reasons that cleared stay gone.
            reasons.retain(|r| r.rule == rule);
        }
        match reasons.iter_mut().find(|r| r.rule == rule) {
            Some(reason) => {
                reason.priority = priority;
                if worse.at_least_as_bad(value, reason.worst) {
                    reason.message = message();
                }
                reason.worst = worse.worst(value, reason.worst);
            }
            None => reasons.push(Reason {
                rule,
                priority,
                message: message(),
                worst: value,
            }),
        }
        rank(reasons);
        let shown = Shown::of(&key, reasons);
        if let Some(alarm) = alarms.active.get_mut(&key) {
            alarm.value = value;
            alarm.updated_ms = alarm.updated_ms.max(time_ms);
            // Worse than it has ever been in this episode: raised again. An
            // aggregate going 7, 6, 7 climbs back to a priority it had (and
            // was acknowledged at, perhaps): an update, not a new alarm.
            let peak = alarms.peaks.entry(key.clone()).or_insert(alarm.priority);
            let above_peak = shown.priority > *peak;
            *peak = (*peak).max(shown.priority);
            if above_peak {
                shown.apply(alarm);
                // Worse than when acknowledged: it needs attention again.
                alarm.state = AlarmState::Active;
                alarm.acknowledged = None;
                alarm.snoozed_until_ms = None;
                alarm.escalation_level = 0;
                alarm.escalation_since_ms = None;
                return Some(AlarmChange::Raised(alarm.clone()));
            }
            return shown
                .apply(alarm)
                .then(|| AlarmChange::Updated(alarm.clone()));
        }
        let mut alarm = Alarm {
            id: next_id,
            patient_id: patient.clone(),
            vital: key.0,
            device_id: key.1.clone(),
            rule: rule.to_string(),
            priority,
            state: AlarmState::Active,
            message: String::new(),
            value,
            worst: None,
            raised_ms: time_ms,
            updated_ms: time_ms,
            acknowledged: None,
            snoozed_until_ms: None,
            resolved: None,
            escalation_level: 0,
            escalation_since_ms: None,
        };
        shown.apply(&mut alarm);
        alarms.active.insert(key, alarm.clone());
        self.next_id = next_id;
        Some(AlarmChange::Raised(alarm))
    }

    /// A condition no longer holds: its reason leaves the alarm. While
    /// another reason holds, the alarm stays (shown for that one); once
    /// none does, it resolves after the clear delay (see
    /// [`AlarmBoard::settle`] for the clock's side), or at once without one.
    fn cleared(
        &mut self,
        patient: &PatientId,
        condition: &Condition,
        value: f64,
        time_ms: TimestampMs,
    ) -> Option<AlarmChange> {
        let key = alarm_key(condition);
        let delay = self.clear_delay(patient);
        let alarms = self.patients.get_mut(patient)?;
        let reasons = alarms.reasons.entry(key.clone()).or_default();
        let alarm = alarms.active.get_mut(&key)?;
        alarm.value = value;
        if reasons.iter().any(|r| r.rule != condition.2) {
            reasons.retain(|r| r.rule != condition.2);
            let shown = Shown::of(&key, reasons);
            return shown
                .apply(alarm)
                .then(|| AlarmChange::Updated(alarm.clone()));
        }
        // The last reason cleared. It is kept while the alarm waits out its
        // delay, so a return within it goes on from the episode's worst.
        // Stale data resolves with the reading that ends the silence, an
        // overdue round with the set that was due: there is nothing to flap.
        if delay <= 0 || matches!(condition.2, RULE_STALE_DATA | RULE_OBSERVATIONS_DUE) {
            return self.resolve_cleared(patient, &key, value, time_ms);
        }
        let clearing = alarms.clearing.entry(key.clone()).or_insert(Clearing {
            since_ms: time_ms,
            noted_ms: None,
        });
        if time_ms - clearing.since_ms >= delay {
            return self.resolve_cleared(patient, &key, value, time_ms);
        }
        None
    }

    /// Resolves the alarm under `key` (medmesh resolves it: its condition
    /// cleared), if it is active.
    fn resolve_cleared(
        &mut self,
        patient: &PatientId,
        key: &Condition,
        value: f64,
        time_ms: TimestampMs,
    ) -> Option<AlarmChange> {
        let alarms = self.patients.get_mut(patient)?;
        alarms.reasons.remove(key);
        alarms.clearing.remove(key);
        alarms.peaks.remove(key);
        let mut alarm = alarms.active.remove(key)?;
        alarms
            .episodes
            .insert(key.clone(), (alarm.raised_ms, time_ms));
        alarm.state = AlarmState::Resolved;
        alarm.value = value;
        alarm.updated_ms = time_ms;
        alarm.resolved = Some(Act {
            by: SYSTEM.into(),
            at_ms: time_ms,
        });
        self.remember(alarm.clone());
        Some(AlarmChange::Resolved(alarm))
    }

    /// Resolves the alarms that have stayed clear for their delay by
    /// medmesh's clock (`now`): a patient whose readings stopped, or whose
    /// condition cleared with a rule that says so once (a limit). The
    /// escalation timer calls it every second; an alarm's delay counts from
    /// the first call that finds it clearing.
    pub fn settle(&mut self, now: TimestampMs) -> Vec<AlarmChange> {
        let default = self.clear_after_ms;
        let mut due = Vec::new();
        for (patient, alarms) in &mut self.patients {
            let delay = alarms.clear_after_ms.unwrap_or(default);
            for (key, clearing) in &mut alarms.clearing {
                match clearing.noted_ms {
                    None => clearing.noted_ms = Some(now),
                    Some(noted) if now - noted >= delay => {
                        due.push((patient.clone(), key.clone(), clearing.since_ms + delay));
                    }
                    Some(_) => {}
                }
            }
        }
        due.into_iter()
            .filter_map(|(patient, key, at)| {
                let value = self.patients.get(&patient)?.active.get(&key)?.value;
                self.resolve_cleared(&patient, &key, value, at)
            })
            .collect()
    }

    /// Whether an observation at `time_ms` is the newest for the condition
    /// (and remembers it if so).
    fn newest(&mut self, patient: &PatientId, key: &Condition, time_ms: TimestampMs) -> bool {
        let judged = &mut self.patient(patient).judged;
        match judged.get_mut(key) {
            Some(t) if *t > time_ms => false,
            Some(t) => {
                *t = time_ms;
                true
            }
            None => {
                judged.insert(key.clone(), time_ms);
                true
            }
        }
    }

    /// Applies what a rule module found about one condition: raises or
    /// updates its alarm while it holds, resolves it once it clears. A
    /// finding that may be a late episode (`Verdict::HeldBefore`, from the
    /// profile rules on readings) goes through [`AlarmBoard::apply_all`].
    pub fn apply(&mut self, patient: &PatientId, finding: Finding) -> Option<AlarmChange> {
        let key = (finding.vital, finding.device, finding.rule);
        match finding.verdict {
            Verdict::Holds {
                priority,
                message,
                value,
                worse,
            } => self.holds(
                patient,
                key,
                priority,
                || message,
                value,
                finding.time_ms,
                worse,
            ),
            Verdict::Clears { value } => self.cleared(patient, &key, value, finding.time_ms),
            Verdict::HeldBefore {
                priority,
                message,
                value,
                worse,
                cleared_ms,
            } => {
                let mut changes = self.late_episode(
                    patient,
                    key,
                    priority,
                    || message,
                    value,
                    finding.time_ms,
                    worse,
                    cleared_ms,
                );
                // Two changes (raised, resolved): findings that can carry a
                // late episode go through `apply_all`, which returns both.
                debug_assert!(changes.len() < 2, "a late episode through `apply`");
                changes.pop()
            }
        }
    }

    /// [`AlarmBoard::apply`] for findings that may make two changes (a late
    /// episode: raised, then resolved); every change, in order.
    pub fn apply_all(&mut self, patient: &PatientId, finding: Finding) -> Vec<AlarmChange> {
        if let Verdict::HeldBefore {
            priority,
            message,
            value,
            worse,
            cleared_ms,
        } = finding.verdict
        {
            let key = (finding.vital, finding.device, finding.rule);
            return self.late_episode(
                patient,
                key,
                priority,
                || message,
                value,
                finding.time_ms,
                worse,
                cleared_ms,
            );
        }
        self.apply(patient, finding).into_iter().collect()
    }

    /// Evaluates the single-parameter rule on one accepted observation
    /// (SpO2 scale 1, on air); see [`AlarmBoard::observe_scored`].
    pub fn observe(&mut self, patient: &PatientId, obs: &Observation) -> Option<AlarmChange> {
        self.observe_scored(patient, obs, news2::parameter_score(obs.vital, obs.value))
    }

    /// The single-parameter rule on an observation and its NEWS2 `score`
    /// (scored on the patient's SpO2 scale and oxygen).
    ///
    /// RCP NEWS2 Chart 2: a score of 3 in any single parameter is a
    /// low-medium risk calling for an urgent ward-based response, below an
    /// aggregate of 5-6 (medium risk, urgent response). So it raises a
    /// medium-priority alarm, ranked after an aggregate alarm of the same
    /// priority ([`AlarmBoard::active`]), that stays active until that
    /// parameter scores below 3 again.
    pub fn observe_scored(
        &mut self,
        patient: &PatientId,
        obs: &Observation,
        score: Option<u8>,
    ) -> Option<AlarmChange> {
        let score = score?;
        let key = (Some(obs.vital), None, RULE_NEWS2_RED);
        if !self.newest(patient, &key, obs.time_ms) {
            return None;
        }
        if score == 3 {
            let message = || {
                let charted = news2::charted(obs.vital, obs.value);
                let value = if obs.vital == VitalSign::Consciousness {
                    let level = medmesh_model::ACVPU.get(charted as usize).copied();
                    format!("{}", level.unwrap_or('?'))
                } else if charted == obs.value {
                    format!("{} {}", obs.value, obs.vital.ucum())
                } else {
                    format!("{} {} (charted {charted})", obs.value, obs.vital.ucum())
                };
                format!(
                    "{} {value} scores 3 on NEWS2: urgent ward-based response",
                    obs.vital.display(),
                )
            };
            self.holds(
                patient,
                key,
                Priority::Medium,
                message,
                obs.value,
                obs.time_ms,
                red_worse(obs.vital, obs.value),
            )
        } else {
            self.cleared(patient, &key, obs.value, obs.time_ms)
        }
    }

    /// The single-parameter rule on a reading that may have arrived late: a
    /// reading newer than every one judged for its vital sign goes through
    /// [`AlarmBoard::observe_scored`]. An older one (within
    /// [`LATE_WINDOW_MS`]) cannot change the present, but if it scored 3 and
    /// no alarm of the condition covered its time, that episode is recorded
    /// as it happened: raised at the reading's time, then resolved at once
    /// because a newer reading already scored below 3. Nothing abnormal a
    /// device measured goes unalarmed because of the order it arrived in.
    pub fn judge_scored(
        &mut self,
        patient: &PatientId,
        obs: &Observation,
        score: Option<u8>,
    ) -> Vec<AlarmChange> {
        let key = (Some(obs.vital), None, RULE_NEWS2_RED);
        let newest = self
            .patients
            .get(patient)
            .and_then(|p| p.judged.get(&key))
            .copied();
        match newest {
            Some(newest) if newest > obs.time_ms => self.late_red(patient, key, obs, score, newest),
            _ => self
                .observe_scored(patient, obs, score)
                .into_iter()
                .collect(),
        }
    }

    /// See [`AlarmBoard::judge_scored`]: a late reading of a condition
    /// judged up to `newest`.
    fn late_red(
        &mut self,
        patient: &PatientId,
        key: Condition,
        obs: &Observation,
        score: Option<u8>,
        newest: TimestampMs,
    ) -> Vec<AlarmChange> {
        if score != Some(3) {
            return Vec::new();
        }
        let message = || {
            format!(
                "{} {} {} scores 3 on NEWS2 (reading arrived late; a newer reading \
                 already scores below 3)",
                obs.vital.display(),
                obs.value,
                obs.vital.ucum()
            )
        };
        // The same priority a single red parameter has in order (RCP:
        // low-medium risk, ranked below an aggregate of 5-6).
        self.late_episode(
            patient,
            key,
            Priority::Medium,
            message,
            obs.value,
            obs.time_ms,
            red_worse(obs.vital, obs.value),
            newest,
        )
    }

    /// A condition held at `time_ms` by a reading that arrived after a newer
    /// one (at `cleared_ms`) was judged clear. The present is judged
    /// already, so nothing changes if an alarm of the condition is active
    /// or its last episode covered that time; otherwise the episode is
    /// recorded as it was: raised at its time, resolved at `cleared_ms`.
    /// Within [`LATE_WINDOW_MS`] of `cleared_ms` only.
    #[allow(clippy::too_many_arguments)]
    fn late_episode(
        &mut self,
        patient: &PatientId,
        key: Condition,
        priority: Priority,
        message: impl FnOnce() -> String,
        value: f64,
        time_ms: TimestampMs,
        worse: Worse,
        cleared_ms: TimestampMs,
    ) -> Vec<AlarmChange> {
        if time_ms < cleared_ms - LATE_WINDOW_MS {
            return Vec::new();
        }
        let akey = alarm_key(&key);
        let alarms = self.patient(patient);
        let covered = alarms.active.contains_key(&akey)
            || alarms
                .episodes
                .get(&akey)
                .is_some_and(|(from, to)| (*from..=*to).contains(&time_ms));
        if covered {
            return Vec::new();
        }
        let raised = self.holds(patient, key, priority, message, value, time_ms, worse);
        // Resolved at once: the newer reading already ended the episode
        // (however long ago), so there is no clear delay to wait out.
        let resolved = self.resolve_cleared(patient, &akey, value, cleared_ms);
        raised.into_iter().chain(resolved).collect()
    }

    /// Evaluates the aggregate rule on the patient's current NEWS2.
    ///
    /// RCP NEWS2 Chart 2: an aggregate of 5-6 is the key threshold for an
    /// urgent response (medium priority here), 7 or more calls for an
    /// emergency response (high). An incomplete set (a parameter missing or
    /// too old) is judged on what it certainly scores: its lower bound
    /// raises (or raises the priority) as soon as it reaches 5 or 7, and its
    /// upper bound (each missing parameter scoring 3) must fall below a
    /// level before the alarm drops below it: absent readings neither raise
    /// nor silence an alarm. Below 5 for certain, the alarm resolves.
    pub fn observe_news2(
        &mut self,
        patient: &PatientId,
        news2: Option<&Aggregate>,
        time_ms: TimestampMs,
    ) -> Option<AlarmChange> {
        let key = (None, None, RULE_NEWS2_AGGREGATE);
        let a = news2?;
        let level = |score: u8| match score {
            7.. => Some(Priority::High),
            5..=6 => Some(Priority::Medium),
            _ => None,
        };
        let current = self
            .patients
            .get(patient)
            .and_then(|p| p.active.get(&key))
            .map(|alarm| alarm.priority);
        // The level it certainly has, or the current one while the missing
        // parameters could still justify it.
        let priority = level(a.score).max(current.min(level(a.score_max)));
        if !self.newest(patient, &key, time_ms) {
            return None;
        }
        let score = f64::from(a.score);
        let message = |response: &str| format!("NEWS2 {}: {response}", a.describe());
        match priority {
            Some(Priority::High) => self.holds(
                patient,
                key,
                Priority::High,
                || message("emergency response (clinical team with critical-care competencies)"),
                score,
                time_ms,
                Worse::Latest,
            ),
            Some(p) => self.holds(
                patient,
                key,
                p,
                || message("urgent response (clinician assessment)"),
                score,
                time_ms,
                Worse::Latest,
            ),
            None => self.cleared(patient, &key, score, time_ms),
        }
    }

    /// A device measuring `patient` went off line without saying goodbye
    /// (`online` false) or came back (`online` true). Losing a monitor means
    /// losing sight of the patient: a medium alarm until it returns.
    pub fn device_status(
        &mut self,
        patient: &PatientId,
        device: &DeviceId,
        online: bool,
        reason: &str,
        time_ms: TimestampMs,
    ) -> Option<AlarmChange> {
        let key = (None, Some(device.clone()), RULE_DEVICE_OFFLINE);
        if online {
            self.cleared(patient, &key, 1.0, time_ms)
        } else {
            let message = || {
                format!(
                    "Device {device} went off line ({reason}): no readings from it until it reconnects"
                )
            };
            self.holds(
                patient,
                key,
                Priority::Medium,
                message,
                0.0,
                time_ms,
                Worse::Latest,
            )
        }
    }

    /// `device` was taken off `patient` by `by` (unassigned, or assigned to
    /// someone else). Its readings no longer reach the patient, so nothing
    /// they show would raise an alarm: a low-priority notice tells the care
    /// team (one per device), until a device is assigned to the patient again
    /// ([`AlarmBoard::monitoring_resumed`]). The device's own alarms on the
    /// patient (off line, battery) resolve: they are about a device the
    /// patient no longer has, and would otherwise never clear.
    pub fn monitoring_stopped(
        &mut self,
        patient: &PatientId,
        device: &DeviceId,
        by: &str,
        time_ms: TimestampMs,
    ) -> Vec<AlarmChange> {
        let mut changes: Vec<AlarmChange> = [RULE_DEVICE_OFFLINE, RULE_BATTERY_LOW]
            .into_iter()
            // At once, without the clear delay: the device is gone, there
            // is nothing left to flap.
            .filter_map(|rule| {
                self.resolve_cleared(patient, &(None, Some(device.clone()), rule), 0.0, time_ms)
            })
            .collect();
        let key = (None, Some(device.clone()), RULE_MONITORING_STOPPED);
        let message = || {
            format!(
                "Monitoring stopped: device {device} was taken off this patient by {by}; \
                 its readings no longer reach them and raise no alarm for them"
            )
        };
        changes.extend(self.holds(
            patient,
            key,
            Priority::Low,
            message,
            0.0,
            time_ms,
            Worse::Latest,
        ));
        changes
    }

    /// A device was assigned to `patient`: every monitoring-stopped notice of
    /// theirs resolves.
    pub fn monitoring_resumed(
        &mut self,
        patient: &PatientId,
        time_ms: TimestampMs,
    ) -> Vec<AlarmChange> {
        let keys: Vec<Condition> = self
            .patients
            .get(patient)
            .map(|p| {
                p.active
                    .keys()
                    .filter(|k| k.2 == RULE_MONITORING_STOPPED)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        keys.iter()
            .filter_map(|k| self.resolve_cleared(patient, k, 1.0, time_ms))
            .collect()
    }

    fn find(&mut self, id: u64) -> Result<&mut Alarm, BoardError> {
        self.patients
            .values_mut()
            .flat_map(|p| p.active.values_mut())
            .find(|a| a.id == id)
            .ok_or(BoardError::NoSuchAlarm(id))
    }

    /// Somebody takes the alarm on (ending any snooze: see `escalation`).
    pub fn acknowledge(
        &mut self,
        id: u64,
        by: &str,
        now: TimestampMs,
    ) -> Result<AlarmChange, BoardError> {
        let alarm = self.find(id)?;
        alarm.state = AlarmState::Acknowledged;
        alarm.snoozed_until_ms = None;
        alarm.acknowledged = Some(Act {
            by: by.into(),
            at_ms: now,
        });
        Ok(AlarmChange::Acknowledged(alarm.clone()))
    }

    /// Holds the alarm's notifications back until `until`; snoozing also
    /// acknowledges (somebody has seen it).
    pub fn snooze(
        &mut self,
        id: u64,
        by: &str,
        now: TimestampMs,
        until: TimestampMs,
    ) -> Result<AlarmChange, BoardError> {
        let alarm = self.find(id)?;
        alarm.state = AlarmState::Acknowledged;
        alarm.acknowledged.get_or_insert(Act {
            by: by.into(),
            at_ms: now,
        });
        alarm.snoozed_until_ms = Some(until);
        Ok(AlarmChange::Snoozed(alarm.clone()))
    }

    /// A clinician closes the alarm. If its condition still holds, the next
    /// observation raises a new one.
    pub fn resolve(
        &mut self,
        id: u64,
        by: &str,
        now: TimestampMs,
    ) -> Result<AlarmChange, BoardError> {
        let mut alarm = self
            .patients
            .values_mut()
            .find_map(|p| {
                let key = p
                    .active
                    .iter()
                    .find(|(_, a)| a.id == id)
                    .map(|(k, _)| k.clone())?;
                // Its reasons go with it: a condition that still holds
                // raises a new alarm at its next reading.
                p.reasons.remove(&key);
                p.clearing.remove(&key);
                p.peaks.remove(&key);
                p.active.remove(&key)
            })
            .ok_or(BoardError::NoSuchAlarm(id))?;
        alarm.state = AlarmState::Resolved;
        alarm.resolved = Some(Act {
            by: by.into(),
            at_ms: now,
        });
        self.remember(alarm.clone());
        Ok(AlarmChange::Resolved(alarm))
    }

    /// Starts the escalation clock, at `now` (medmesh's clock), of every
    /// active alarm that has none yet; returns those alarms, so the caller
    /// can record when their clock started (a restart then keeps it).
    pub fn start_escalation_clocks(&mut self, now: TimestampMs) -> Vec<Alarm> {
        self.patients
            .values_mut()
            .flat_map(|p| p.active.values_mut())
            .filter(|a| a.state == AlarmState::Active && a.escalation_since_ms.is_none())
            .map(|a| {
                a.escalation_since_ms = Some(now);
                a.clone()
            })
            .collect()
    }

    /// Climbs every alarm whose next escalation level is due at `now`
    /// ([`Policy::due`]); a snooze that ran out makes the alarm active again.
    pub fn escalate(&mut self, policy: &Policy, now: TimestampMs) -> Vec<AlarmChange> {
        let mut changes = Vec::new();
        // An alarm waiting out its clear delay climbs no further: its
        // condition has cleared.
        for alarm in self.patients.values_mut().flat_map(|p| {
            let clearing = &p.clearing;
            p.active
                .iter_mut()
                .filter(move |(key, _)| !clearing.contains_key(*key))
                .map(|(_, alarm)| alarm)
        }) {
            if alarm.state == AlarmState::Active && alarm.escalation_since_ms.is_none() {
                // The clock starts when medmesh raised the alarm (this tick,
                // within a second of it), not at the reading's own time,
                // which may be hours old (a cuff uploading its memory).
                alarm.escalation_since_ms = Some(now);
                continue;
            }
            if let Some((level, since)) = policy.due(alarm, now) {
                if alarm.state == AlarmState::Acknowledged {
                    alarm.state = AlarmState::Active;
                    alarm.acknowledged = None;
                    alarm.snoozed_until_ms = None;
                }
                alarm.escalation_level = level;
                alarm.escalation_since_ms = Some(since);
                changes.push(AlarmChange::Escalated(alarm.clone()));
            }
        }
        changes
    }

    /// Active and acknowledged alarms, highest priority first; at equal
    /// priority a NEWS2 aggregate before the others (RCP NEWS2 Chart 2 ranks
    /// an aggregate of 5-6 above a single red parameter, both medium here);
    /// then newest.
    pub fn active(&self) -> Vec<Alarm> {
        let mut v: Vec<_> = self
            .patients
            .values()
            .flat_map(|p| p.active.values().cloned())
            .collect();
        let aggregate_first = |a: &Alarm| a.rule != RULE_NEWS2_AGGREGATE;
        v.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(aggregate_first(a).cmp(&aggregate_first(b)))
                .then(b.raised_ms.cmp(&a.raised_ms))
                .then(b.id.cmp(&a.id))
        });
        v
    }

    /// The active alarm a condition (vital sign, device, rule) belongs to.
    pub fn active_alarm(
        &self,
        patient: &PatientId,
        condition: &(Option<VitalSign>, Option<DeviceId>, &'static str),
    ) -> Option<Alarm> {
        self.patients
            .get(patient)?
            .active
            .get(&alarm_key(condition))
            .cloned()
    }

    pub fn active_for(&self, patient: &PatientId) -> Vec<Alarm> {
        self.active()
            .into_iter()
            .filter(|a| &a.patient_id == patient)
            .collect()
    }

    /// Recently resolved alarms, newest first.
    pub fn history(&self, limit: usize) -> Vec<Alarm> {
        self.history.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::news2::Risk;

    fn hr(t: i64, v: f64) -> Observation {
        Observation {
            vital: VitalSign::HeartRate,
            value: v,
            time_ms: t,
        }
    }

    #[test]
    fn raise_update_resolve_without_duplicates() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        // Pulse 80 (Chart 1 row 51-90): nothing.
        assert_eq!(board.observe(&p, &hr(1, 80.0)), None);
        // Pulse 135 (row >=131, score 3): raised, medium priority (Chart 2:
        // a single red parameter is low-medium risk).
        let raised = board.observe(&p, &hr(2, 135.0)).unwrap();
        assert!(matches!(raised, AlarmChange::Raised(ref a) if a.priority == Priority::Medium));
        // Pulse 140: the same alarm is updated, not raised again.
        let updated = board.observe(&p, &hr(3, 140.0)).unwrap();
        assert!(
            matches!(updated, AlarmChange::Updated(ref a) if a.id == raised.alarm().id && a.value == 140.0)
        );
        assert_eq!(board.active_for(&p).len(), 1);
        // Pulse 120 (row 111-130, score 2): resolved by medmesh.
        let resolved = board.observe(&p, &hr(4, 120.0)).unwrap();
        assert!(
            matches!(resolved, AlarmChange::Resolved(ref a) if a.resolved.as_ref().unwrap().by == SYSTEM)
        );
        assert!(board.active().is_empty());
        assert_eq!(board.history(10).len(), 1);
    }

    #[test]
    fn a_late_older_reading_does_not_overrule_a_newer_one() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        assert!(matches!(
            board.observe(&p, &hr(100, 140.0)),
            Some(AlarmChange::Raised(_))
        ));
        // A normal reading from before arrives late: the alarm stands.
        assert_eq!(board.observe(&p, &hr(50, 80.0)), None);
        assert_eq!(board.active().len(), 1);
        assert!(matches!(
            board.observe(&p, &hr(101, 80.0)),
            Some(AlarmChange::Resolved(_))
        ));
    }

    #[test]
    fn acknowledged_alarms_stay_acknowledged_while_the_condition_lasts() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let id = board.observe(&p, &hr(1, 135.0)).unwrap().alarm().id;
        let ack = board.acknowledge(id, "nurse.jones", 5).unwrap();
        assert_eq!(ack.alarm().state, AlarmState::Acknowledged);
        let next = board.observe(&p, &hr(6, 138.0)).unwrap();
        assert!(matches!(next, AlarmChange::Updated(ref a) if a.state == AlarmState::Acknowledged));
        let snoozed = board.snooze(id, "nurse.jones", 7, 600_007).unwrap();
        assert_eq!(snoozed.alarm().snoozed_until_ms, Some(600_007));
        // A clinician closes it; the condition still holds, so a new one follows.
        let closed = board.resolve(id, "dr.okafor", 8).unwrap();
        assert_eq!(closed.alarm().resolved.as_ref().unwrap().by, "dr.okafor");
        let again = board.observe(&p, &hr(9, 139.0)).unwrap();
        assert!(matches!(again, AlarmChange::Raised(ref a) if a.id != id));
        assert_eq!(
            board.acknowledge(id, "x", 10),
            Err(BoardError::NoSuchAlarm(id))
        );
    }

    /// An aggregate of `score` (complete when `score_max` equals it).
    fn agg(score: u8, score_max: u8) -> Option<Aggregate> {
        Some(Aggregate {
            score,
            score_max,
            risk: Risk::Low,
            complete: score == score_max,
            missing: if score == score_max {
                vec![]
            } else {
                vec![VitalSign::BodyTemperature]
            },
            stale: vec![],
            components: vec![],
            assumed_air: true,
            assumed_alert: true,
        })
    }

    /// Chart 2: aggregate 5-6 medium, 7+ high (priority rises), below 5 resolves.
    #[test]
    fn chart_2_aggregate_bands() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        assert_eq!(board.observe_news2(&p, agg(4, 4).as_ref(), 1), None);
        let a = board.observe_news2(&p, agg(5, 5).as_ref(), 2).unwrap();
        assert!(
            matches!(a, AlarmChange::Raised(ref x) if x.priority == Priority::Medium && x.vital.is_none())
        );
        assert_eq!(
            a.alarm().message,
            "NEWS2 5 (consciousness assumed alert): urgent response (clinician assessment)"
        );
        board.acknowledge(a.alarm().id, "nurse", 3).unwrap();
        let worse = board.observe_news2(&p, agg(8, 8).as_ref(), 4).unwrap();
        assert!(
            matches!(worse, AlarmChange::Raised(ref x) if x.priority == Priority::High && x.state == AlarmState::Active)
        );
        assert!(matches!(
            board.observe_news2(&p, agg(3, 3).as_ref(), 5),
            Some(AlarmChange::Resolved(_))
        ));
        // No aggregate (no fresh parameter): nothing changes.
        assert_eq!(board.observe_news2(&p, None, 6), None);
    }

    /// Chart 2 on a partial set: raised as soon as the lower bound reaches
    /// 5 or 7; lowered or resolved only once the upper bound says so.
    #[test]
    fn chart_2_aggregate_bands_on_a_partial_set() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        // At least 4, at most 7: nothing known to trigger yet.
        assert_eq!(board.observe_news2(&p, agg(4, 7).as_ref(), 1), None);
        // At least 8, temperature missing: high at once.
        let a = board.observe_news2(&p, agg(8, 11).as_ref(), 2).unwrap();
        assert!(matches!(a, AlarmChange::Raised(ref x) if x.priority == Priority::High));
        assert!(
            a.alarm()
                .message
                .starts_with("NEWS2 at least 8 (Body temperature missing; consciousness assumed alert): emergency"),
            "{}",
            a.alarm().message
        );
        // A parameter went stale: at least 4, up to 10. It could still be
        // 7 or more, so it stays high.
        let held = board.observe_news2(&p, agg(4, 10).as_ref(), 3).unwrap();
        assert!(matches!(held, AlarmChange::Updated(ref x) if x.priority == Priority::High));
        // At least 4, at most 6: no longer possibly high, possibly medium.
        let lower = board.observe_news2(&p, agg(4, 6).as_ref(), 4).unwrap();
        assert!(matches!(lower, AlarmChange::Updated(ref x) if x.priority == Priority::Medium));
        // At most 4: below 5 whatever the missing parameter says.
        assert!(matches!(
            board.observe_news2(&p, agg(1, 4).as_ref(), 5),
            Some(AlarmChange::Resolved(_))
        ));
    }

    /// RCP NEWS2 Chart 2 ranks an aggregate of 5-6 (medium) above a single
    /// red parameter (low-medium): both medium, the aggregate listed first.
    #[test]
    fn chart_2_single_red_parameter_ranks_below_aggregate_5_to_6() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        board.observe_news2(&p, agg(5, 5).as_ref(), 1).unwrap();
        // The red pulse is newer, yet listed second.
        board.observe(&p, &hr(2, 135.0)).unwrap();
        let active = board.active();
        assert_eq!(active.len(), 2);
        assert!(active.iter().all(|a| a.priority == Priority::Medium));
        assert_eq!(active[0].rule, RULE_NEWS2_AGGREGATE);
        assert_eq!(active[1].rule, RULE_NEWS2_RED);
    }

    /// Chart 1 pulse row <=40: 40.4/min is charted 40 and scores 3; the
    /// message shows both.
    #[test]
    fn chart_1_pulse_row_le_40_takes_40_4() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let a = board.observe(&p, &hr(1, 40.4)).unwrap();
        assert_eq!(
            a.alarm().message,
            "Heart rate 40.4 /min (charted 40) scores 3 on NEWS2: urgent ward-based response"
        );
    }

    #[test]
    fn a_device_off_line_raises_a_medium_alarm_until_it_returns() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let (a, b) = (
            DeviceId::new("mon-a").unwrap(),
            DeviceId::new("cuff-b").unwrap(),
        );
        let raised = board
            .device_status(&p, &a, false, "keep-alive expired", 1)
            .unwrap();
        assert!(
            matches!(raised, AlarmChange::Raised(ref x) if x.priority == Priority::Medium && x.device_id.as_ref() == Some(&a))
        );
        board.device_status(&p, &b, false, "closed", 2).unwrap();
        assert_eq!(board.active().len(), 2, "one alarm per device");
        assert!(matches!(
            board.device_status(&p, &a, true, "connected", 3),
            Some(AlarmChange::Resolved(_))
        ));
        assert_eq!(board.active().len(), 1);
        assert_eq!(board.device_status(&p, &a, true, "connected", 4), None);
    }

    #[test]
    fn escalation_climbs_until_acknowledged_and_a_raise_starts_over() {
        use crate::escalation::Step;
        let mut policy = Policy::default();
        let step = |after_ms, role: &str| Step {
            after_ms,
            roles: vec![role.into()],
            users: vec![],
        };
        policy.ladders.insert(
            Priority::Medium,
            vec![step(0, "nurse"), step(120_000, "physician")],
        );
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        // The reading is from long ago: the clock starts at the first tick.
        let id = board
            .observe_news2(&p, agg(5, 5).as_ref(), -9_999_999)
            .unwrap()
            .alarm()
            .id;
        assert!(board.escalate(&policy, 0).is_empty());
        assert!(board.escalate(&policy, 119_999).is_empty());
        let up = board.escalate(&policy, 120_000);
        assert!(matches!(&up[..], [AlarmChange::Escalated(a)] if a.escalation_level == 1));
        assert!(
            board.escalate(&policy, 999_999).is_empty(),
            "top of the ladder"
        );
        // Snoozed: quiet until the snooze ends, then active again at the top.
        board.snooze(id, "nurse", 130_000, 400_000).unwrap();
        assert!(board.escalate(&policy, 399_999).is_empty());
        let back = board.escalate(&policy, 400_000);
        assert!(matches!(&back[..], [AlarmChange::Escalated(a)]
            if a.state == AlarmState::Active && a.snoozed_until_ms.is_none() && a.acknowledged.is_none()));
        // Acknowledging (even after a snooze) stops it for good.
        board.snooze(id, "nurse", 410_000, 500_000).unwrap();
        board.acknowledge(id, "nurse", 420_000).unwrap();
        assert!(board.escalate(&policy, 9_999_999).is_empty());
        // Worse (NEWS2 7, high): raised again at level 0.
        let worse = board
            .observe_news2(&p, agg(7, 7).as_ref(), 430_000)
            .unwrap();
        assert!(
            matches!(worse, AlarmChange::Raised(ref a) if a.escalation_level == 0
            && a.escalation_since_ms.is_none())
        );
        assert!(
            board.escalate(&policy, 440_000).is_empty(),
            "clock restarts"
        );
        assert!(
            board.escalate(&policy, 9_999_999).is_empty(),
            "high has no ladder"
        );
    }

    #[test]
    fn restore_rebuilds_state_from_the_log() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let raised = board.observe(&p, &hr(1, 135.0)).unwrap().alarm().clone();
        let acked = board
            .acknowledge(raised.id, "n", 2)
            .unwrap()
            .alarm()
            .clone();
        let mut fresh = AlarmBoard::default();
        fresh.restore(raised);
        fresh.restore(acked.clone());
        assert_eq!(fresh.active(), vec![acked]);
        // Ids continue after the restored ones.
        let other = fresh
            .observe(&PatientId::new("p2").unwrap(), &hr(3, 30.0))
            .unwrap();
        assert!(other.alarm().id > 1);
    }

    /// Pulse 140 scores 3 (RCP NEWS2 2017 Chart 1, pulse >= 131); 80 scores 0.
    #[test]
    fn a_red_reading_that_arrives_late_is_recorded_as_the_episode_it_was() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let judge = |board: &mut AlarmBoard, o: Observation| {
            let score = news2::parameter_score(o.vital, o.value);
            board
                .judge_scored(&p, &o, score)
                .into_iter()
                .map(|c| (c.kind(), c.alarm().raised_ms, c.alarm().updated_ms))
                .collect::<Vec<_>>()
        };
        let t = 10 * LATE_WINDOW_MS;
        assert!(judge(&mut board, hr(t, 80.0)).is_empty());
        // The dip at t+1 s arrives after the recovery at t+2 s.
        assert!(judge(&mut board, hr(t + 2_000, 80.0)).is_empty());
        assert_eq!(
            judge(&mut board, hr(t + 1_000, 140.0)),
            vec![
                ("raised", t + 1_000, t + 1_000),
                ("resolved", t + 1_000, t + 2_000)
            ]
        );
        assert!(board.active().is_empty());
        // A resend of it, or another reading of that episode: nothing new.
        assert!(judge(&mut board, hr(t + 1_000, 140.0)).is_empty());
        // A late normal reading changes nothing.
        assert!(judge(&mut board, hr(t + 1_500, 80.0)).is_empty());
        // Older than the late window: stored by the caller, not judged now.
        assert!(judge(&mut board, hr(t + 2_000 - LATE_WINDOW_MS - 1, 140.0)).is_empty());
        // In order, the rule works as before.
        assert_eq!(judge(&mut board, hr(t + 3_000, 140.0))[0].0, "raised");
        // While that alarm is active, a late red reading from before it is
        // a separate, earlier episode only if nothing covered it: here the
        // alarm now active stands for the present; nothing is added.
        assert!(judge(&mut board, hr(t + 2_500, 140.0)).is_empty());
        assert_eq!(board.active().len(), 1);
    }

    fn threshold(t: i64, value: f64, holds: bool, priority: Priority) -> Finding {
        Finding {
            vital: Some(VitalSign::HeartRate),
            device: None,
            rule: RULE_THRESHOLD,
            time_ms: t,
            verdict: if holds {
                Verdict::Holds {
                    priority,
                    message: format!("Heart rate {value} /min above the limit 120 /min"),
                    value,
                    worse: Worse::Higher,
                }
            } else {
                Verdict::Clears { value }
            },
        }
    }

    /// One alarm per patient and vital sign: a profile limit and a NEWS2
    /// red on the heart rate merge; the higher priority shows first and the
    /// message names both; each leaving is an update, the last a resolve.
    #[test]
    fn a_news2_red_and_a_limit_on_one_vital_sign_are_one_alarm() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        // Pulse 125: above the profile's 120 (high priority), NEWS2 2.
        let raised = board
            .apply(&p, threshold(1, 125.0, true, Priority::High))
            .unwrap();
        assert!(matches!(raised, AlarmChange::Raised(ref a) if a.rule == RULE_THRESHOLD));
        assert_eq!(board.observe(&p, &hr(1, 125.0)), None);
        // Pulse 135 (Chart 1 row >=131, score 3): the same alarm, now both.
        let both = board.observe(&p, &hr(2, 135.0)).unwrap();
        let a = both.alarm();
        assert!(matches!(both, AlarmChange::Updated(_)), "{both:?}");
        assert_eq!((a.id, a.priority), (raised.alarm().id, Priority::High));
        assert_eq!(
            a.message,
            "Heart rate 125 /min above the limit 120 /min Also: Heart rate 135 /min scores 3 on NEWS2: urgent ward-based response"
        );
        board.apply(&p, threshold(2, 135.0, true, Priority::High));
        assert_eq!(board.active().len(), 1, "one alarm per vital sign");
        // The limit clears first: the alarm stays, for NEWS2, medium now.
        let lower = board
            .apply(&p, threshold(3, 118.0, false, Priority::High))
            .unwrap();
        assert!(matches!(lower, AlarmChange::Updated(ref a)
            if a.priority == Priority::Medium && a.rule == RULE_NEWS2_RED));
        // Pulse 80: nothing holds; resolved (no clear delay on this board).
        assert!(matches!(
            board.observe(&p, &hr(4, 80.0)),
            Some(AlarmChange::Resolved(_))
        ));
        assert!(board.active().is_empty());
    }

    /// The alarm shows the worst reading of its episode, and a repeat that
    /// changes nothing a viewer sees is no change (the live stream and the
    /// sinks hear nothing).
    #[test]
    fn the_worst_reading_is_shown_and_repeats_are_silent() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        board.observe(&p, &hr(1, 135.0)).unwrap();
        let worse = board.observe(&p, &hr(2, 150.0)).unwrap();
        assert!(matches!(worse, AlarmChange::Updated(ref a) if a.worst == Some(150.0)));
        // Better, still red: the message keeps 150, no change reported.
        assert_eq!(board.observe(&p, &hr(3, 140.0)), None);
        assert_eq!(board.observe(&p, &hr(4, 150.0)), None);
        let shown = &board.active()[0];
        assert!(
            shown.message.starts_with("Heart rate 150 /min scores 3"),
            "{}",
            shown.message
        );
        assert_eq!((shown.value, shown.worst), (150.0, Some(150.0)));
        // Low side: SpO2 (scale 1) is worse lower.
        board.observe(&p, &spo2(5, 90.0)).unwrap();
        let lower = board.observe(&p, &spo2(6, 86.0)).unwrap();
        assert_eq!(lower.alarm().worst, Some(86.0));
        assert_eq!(board.observe(&p, &spo2(7, 88.0)), None);
    }

    fn spo2(t: i64, v: f64) -> Observation {
        Observation {
            vital: VitalSign::OxygenSaturation,
            value: v,
            time_ms: t,
        }
    }

    /// With a clear delay, a reading that dips in and out keeps one alarm;
    /// it resolves once clear for the delay by the readings' time.
    #[test]
    fn an_alarm_resolves_only_after_staying_clear_for_its_delay() {
        let mut board = AlarmBoard::default();
        board.set_default_clear_delay(30_000);
        let p = PatientId::new("p1").unwrap();
        let id = board.observe(&p, &hr(0, 135.0)).unwrap().alarm().id;
        // Clear at 1 s, red again at 5 s: the same alarm, no change at all.
        assert_eq!(board.observe(&p, &hr(1_000, 80.0)), None);
        assert_eq!(board.observe(&p, &hr(5_000, 133.0)), None);
        assert_eq!(board.active()[0].id, id);
        // Clear from 6 s: still active at 35.999 s, resolved at 36 s.
        assert_eq!(board.observe(&p, &hr(6_000, 80.0)), None);
        assert_eq!(board.observe(&p, &hr(35_999, 81.0)), None);
        let resolved = board.observe(&p, &hr(36_000, 82.0)).unwrap();
        assert!(matches!(resolved, AlarmChange::Resolved(ref a)
            if a.id == id && a.resolved.as_ref().unwrap().at_ms == 36_000));
        assert_eq!(board.history(10).len(), 1, "one episode, one alarm");
    }

    /// No reading comes after the clear one (a home patient, a limit that
    /// says it once): medmesh's clock settles it, from when the timer
    /// first saw it clearing. While clearing it does not escalate.
    #[test]
    fn the_timer_settles_an_alarm_no_reading_clears() {
        use crate::escalation::Step;
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        board.set_clear_delay(&p, 60_000);
        board
            .apply(&p, threshold(0, 125.0, true, Priority::Medium))
            .unwrap();
        assert_eq!(
            board.apply(&p, threshold(1_000, 110.0, false, Priority::Medium)),
            None
        );
        let mut policy = Policy::default();
        policy.ladders.insert(
            Priority::Medium,
            vec![Step {
                after_ms: 0,
                roles: vec!["nurse".into()],
                users: vec![],
            }],
        );
        assert!(board.settle(1_000_000).is_empty(), "first seen");
        assert!(board.escalate(&policy, 1_000_000).is_empty());
        assert!(board.settle(1_059_999).is_empty());
        let settled = board.settle(1_060_000);
        assert!(matches!(&settled[..], [AlarmChange::Resolved(a)]
            if a.resolved.as_ref().unwrap().at_ms == 61_000 && a.value == 110.0));
        assert!(board.active().is_empty());
        // A condition back before the delay ran out cancels the clearing.
        board
            .apply(&p, threshold(70_000, 125.0, true, Priority::Medium))
            .unwrap();
        board.apply(&p, threshold(71_000, 110.0, false, Priority::Medium));
        assert!(board.settle(2_000_000).is_empty());
        board.apply(&p, threshold(72_000, 126.0, true, Priority::Medium));
        assert!(board.settle(9_000_000).is_empty());
        assert_eq!(board.active().len(), 1);
    }

    /// RCP NEWS2 Chart 2 bands on an aggregate hovering at 6 and 7: raised
    /// high once; acknowledged; back to 6 (medium) and up to 7 again is the
    /// same alarm, still acknowledged, not a new high alarm each time. Above
    /// anything it had been, it would be raised again.
    #[test]
    fn an_aggregate_hovering_between_bands_is_not_raised_again() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let a = board.observe_news2(&p, agg(7, 7).as_ref(), 1).unwrap();
        assert!(matches!(a, AlarmChange::Raised(ref x) if x.priority == Priority::High));
        board.acknowledge(a.alarm().id, "nurse", 2).unwrap();
        for (t, score) in [(3, 6), (4, 7), (5, 6), (6, 7)] {
            let change = board
                .observe_news2(&p, agg(score, score).as_ref(), t)
                .unwrap();
            assert!(
                matches!(change, AlarmChange::Updated(ref x) if x.state == AlarmState::Acknowledged),
                "NEWS2 {score}: {change:?}"
            );
        }
        // From a medium alarm never high before, high is news.
        let q = PatientId::new("p2").unwrap();
        board.observe_news2(&q, agg(5, 5).as_ref(), 1).unwrap();
        assert!(matches!(
            board.observe_news2(&q, agg(7, 7).as_ref(), 2),
            Some(AlarmChange::Raised(ref x)) if x.priority == Priority::High
        ));
    }
}
