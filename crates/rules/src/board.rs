//! The alarm board: active alarms and their changes.

use crate::news2;
use medmesh_model::{Alarm, AlarmState, Observation, PatientId, Priority, VitalSign};
use std::collections::HashMap;

/// Name of the rule that fires on a NEWS2 parameter score of 3.
pub const RULE_NEWS2_RED: &str = "news2-single-parameter-3";

/// What an observation did to the board.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmChange {
    Raised(Alarm),
    /// An active alarm saw another out-of-range value.
    Updated(Alarm),
    Resolved(Alarm),
}

impl AlarmChange {
    pub fn alarm(&self) -> &Alarm {
        match self {
            AlarmChange::Raised(a) | AlarmChange::Updated(a) | AlarmChange::Resolved(a) => a,
        }
    }
}

/// Active alarms, one per (patient, vital sign, rule).
#[derive(Default)]
pub struct AlarmBoard {
    active: HashMap<(PatientId, VitalSign, &'static str), Alarm>,
    next_id: u64,
}

impl AlarmBoard {
    /// Evaluates the rules on one accepted observation of `patient`.
    ///
    /// RCP NEWS2 Chart 2: a score of 3 in any single parameter calls for an
    /// urgent ward-based response, so it raises a high-priority alarm that
    /// stays active until that parameter scores below 3 again.
    pub fn observe(&mut self, patient: &PatientId, obs: &Observation) -> Option<AlarmChange> {
        let score = news2::parameter_score(obs.vital, obs.value)?;
        let key = (patient.clone(), obs.vital, RULE_NEWS2_RED);
        if score == 3 {
            if let Some(alarm) = self.active.get_mut(&key) {
                alarm.value = obs.value;
                alarm.updated_ms = obs.time_ms;
                return Some(AlarmChange::Updated(alarm.clone()));
            }
            self.next_id += 1;
            let alarm = Alarm {
                id: self.next_id,
                patient_id: patient.clone(),
                vital: obs.vital,
                rule: RULE_NEWS2_RED,
                priority: Priority::High,
                state: AlarmState::Active,
                message: format!(
                    "{} {} {} scores 3 on NEWS2: urgent ward-based response",
                    obs.vital.display(),
                    obs.value,
                    obs.vital.ucum()
                ),
                value: obs.value,
                raised_ms: obs.time_ms,
                updated_ms: obs.time_ms,
            };
            self.active.insert(key, alarm.clone());
            Some(AlarmChange::Raised(alarm))
        } else {
            let mut alarm = self.active.remove(&key)?;
            alarm.state = AlarmState::Resolved;
            alarm.value = obs.value;
            alarm.updated_ms = obs.time_ms;
            Some(AlarmChange::Resolved(alarm))
        }
    }

    /// Active alarms, newest first.
    pub fn active(&self) -> Vec<Alarm> {
        let mut v: Vec<_> = self.active.values().cloned().collect();
        v.sort_by(|a, b| b.raised_ms.cmp(&a.raised_ms).then(b.id.cmp(&a.id)));
        v
    }

    pub fn active_for(&self, patient: &PatientId) -> Vec<Alarm> {
        self.active()
            .into_iter()
            .filter(|a| &a.patient_id == patient)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Pulse 135 (row >=131, score 3): raised, high priority.
        let raised = board.observe(&p, &hr(2, 135.0)).unwrap();
        assert!(matches!(raised, AlarmChange::Raised(ref a) if a.priority == Priority::High));
        // Pulse 140: the same alarm is updated, not raised again.
        let updated = board.observe(&p, &hr(3, 140.0)).unwrap();
        assert!(
            matches!(updated, AlarmChange::Updated(ref a) if a.id == raised.alarm().id && a.value == 140.0)
        );
        assert_eq!(board.active_for(&p).len(), 1);
        // Pulse 120 (row 111-130, score 2): resolved.
        let resolved = board.observe(&p, &hr(4, 120.0)).unwrap();
        assert!(
            matches!(resolved, AlarmChange::Resolved(ref a) if a.state == AlarmState::Resolved)
        );
        assert!(board.active().is_empty());
    }

    #[test]
    fn non_news2_vitals_never_alarm() {
        let mut board = AlarmBoard::default();
        let p = PatientId::new("p1").unwrap();
        let dbp = Observation {
            vital: VitalSign::DiastolicBloodPressure,
            value: 20.0,
            time_ms: 1,
        };
        assert_eq!(board.observe(&p, &dbp), None);
    }
}
