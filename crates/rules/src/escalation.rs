//! Escalation chains: who hears about an alarm that nobody takes on.
//!
//! Each priority has a ladder of steps. Step 0 is notified when the alarm is
//! raised; step `n` when the alarm is still unacknowledged `after` step
//! `n`'s delay (counted from the raise, so `2m` then `5m` means the second
//! climb comes 3 minutes after the first). The rules are:
//!
//! - Only an **active** (unacknowledged) alarm climbs, one level at a time.
//!   Acknowledging stops the climb for good (while the alarm lasts). The
//!   clock is medmesh's: it starts when the escalation timer first sees the
//!   alarm (within a second of its raise), not at the reading's timestamp.
//! - A **snoozed** alarm is quiet until its snooze ends. If it is still on the
//!   board then, nobody dealt with it in the time they asked for: it becomes
//!   active again and climbs one level at once (at the top level it notifies
//!   the top level again), then goes on climbing with the ladder's delays.
//! - A **re-raised** alarm (its priority rose) starts again at level 0.
//! - After a restart the climb resumes where the alarm log left it (the
//!   clock's start is logged, at level 0 too); a level
//!   that fell due while medmesh was down is taken at once, and the next one
//!   counts from when the previous was due, not from when it was taken.
//!
//! This module decides; the pipeline records and publishes, and the sinks
//! resolve a step's roles and users to people.

use medmesh_model::{Alarm, AlarmState, Priority, TimestampMs};
use std::collections::BTreeMap;

/// One rung of a ladder: when, and who (care-team roles, named users).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Delay from the raise after which this level is notified (0 for level 0).
    pub after_ms: i64,
    /// Roles ("nurse", "physician") of the patient's care team members.
    pub roles: Vec<String>,
    /// Users named outright ("charge.kim").
    pub users: Vec<String>,
}

/// Ladders per priority. A priority without one never escalates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub ladders: BTreeMap<Priority, Vec<Step>>,
}

impl Policy {
    /// The step for `level` of an alarm of `priority`, if the ladder has one.
    pub fn step(&self, priority: Priority, level: u32) -> Option<&Step> {
        self.ladders.get(&priority)?.get(level as usize)
    }

    /// The level `alarm` should climb to at `now`, if it should climb now,
    /// and the time that level is counted from.
    pub fn due(&self, alarm: &Alarm, now: TimestampMs) -> Option<(u32, TimestampMs)> {
        let ladder = self.ladders.get(&alarm.priority);
        let top = ladder.map_or(0, |l| l.len().saturating_sub(1) as u32);
        let delay = |level: u32| {
            ladder
                .and_then(|l| l.get(level as usize))
                .map(|s| s.after_ms)
        };
        match alarm.state {
            AlarmState::Resolved => None,
            AlarmState::Acknowledged => {
                let until = alarm.snoozed_until_ms?;
                (now >= until).then(|| ((alarm.escalation_level + 1).min(top), until))
            }
            AlarmState::Active => {
                let next = alarm.escalation_level + 1;
                let gap = delay(next)? - delay(alarm.escalation_level).unwrap_or(0);
                let since = alarm.escalation_since_ms?;
                let at = since + gap.max(0);
                (now >= at).then_some((next, at))
            }
        }
    }
}

/// Validation of a ladder as configured: delays must not go down, and the
/// first step is level 0 (notified at once).
pub fn check_ladder(steps: &[Step]) -> Result<(), String> {
    if let Some(first) = steps.first()
        && first.after_ms != 0
    {
        return Err("the first step is level 0, notified when the alarm is raised: its `after` must be 0s or left out".into());
    }
    for (i, pair) in steps.windows(2).enumerate() {
        if pair[1].after_ms <= pair[0].after_ms {
            return Err(format!(
                "step {} must come after step {} (its `after` must be longer)",
                i + 1,
                i
            ));
        }
    }
    for (i, s) in steps.iter().enumerate() {
        if s.roles.is_empty() && s.users.is_empty() {
            return Err(format!("step {i} names nobody: give `roles` or `users`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{Act, PatientId};

    fn step(after_ms: i64, role: &str) -> Step {
        Step {
            after_ms,
            roles: vec![role.into()],
            users: vec![],
        }
    }

    /// Nurses at once, the charge nurse after 2 min, physicians after 5.
    fn policy() -> Policy {
        let mut p = Policy::default();
        p.ladders.insert(
            Priority::High,
            vec![
                step(0, "nurse"),
                Step {
                    after_ms: 120_000,
                    roles: vec![],
                    users: vec!["charge.kim".into()],
                },
                step(300_000, "physician"),
            ],
        );
        p
    }

    fn alarm(priority: Priority) -> Alarm {
        Alarm {
            id: 1,
            patient_id: PatientId::new("p1").unwrap(),
            vital: None,
            device_id: None,
            rule: "r".into(),
            priority,
            state: AlarmState::Active,
            message: "m".into(),
            value: 0.0,
            worst: None,
            raised_ms: 1_000,
            updated_ms: 1_000,
            acknowledged: None,
            snoozed_until_ms: None,
            resolved: None,
            escalation_level: 0,
            escalation_since_ms: Some(1_000),
        }
    }

    #[test]
    fn an_unacknowledged_alarm_climbs_one_level_per_delay() {
        let p = policy();
        let mut a = alarm(Priority::High);
        assert_eq!(p.due(&a, 120_999), None);
        assert_eq!(p.due(&a, 121_000), Some((1, 121_000)));
        a.escalation_level = 1;
        a.escalation_since_ms = Some(121_000);
        // Level 2 is 5 min after the raise: 3 min after level 1.
        assert_eq!(p.due(&a, 300_999), None);
        assert_eq!(p.due(&a, 301_000), Some((2, 301_000)));
        a.escalation_level = 2;
        a.escalation_since_ms = Some(301_000);
        assert_eq!(p.due(&a, 10_000_000), None, "the top level stays");
    }

    #[test]
    fn downtime_catches_up_one_level_at_a_time_on_the_schedule() {
        let p = policy();
        let mut a = alarm(Priority::High);
        // Found an hour late: level 1, counted from when it was due.
        let (level, since) = p.due(&a, 3_600_000).unwrap();
        assert_eq!((level, since), (1, 121_000));
        a.escalation_level = level;
        a.escalation_since_ms = Some(since);
        assert_eq!(p.due(&a, 3_600_000), Some((2, 301_000)));
    }

    #[test]
    fn acknowledged_and_resolved_alarms_and_unladdered_priorities_never_climb() {
        let p = policy();
        let mut a = alarm(Priority::High);
        a.escalation_since_ms = None;
        assert_eq!(p.due(&a, i64::MAX / 2), None, "clock not started");
        a.escalation_since_ms = Some(1_000);
        a.state = AlarmState::Acknowledged;
        a.acknowledged = Some(Act {
            by: "n".into(),
            at_ms: 2_000,
        });
        assert_eq!(p.due(&a, i64::MAX / 2), None);
        a.state = AlarmState::Resolved;
        assert_eq!(p.due(&a, i64::MAX / 2), None);
        assert_eq!(p.due(&alarm(Priority::Medium), i64::MAX / 2), None);
    }

    #[test]
    fn a_snooze_that_ends_on_a_standing_alarm_climbs_at_once() {
        let p = policy();
        let mut a = alarm(Priority::High);
        a.state = AlarmState::Acknowledged;
        a.snoozed_until_ms = Some(50_000);
        assert_eq!(p.due(&a, 49_999), None);
        assert_eq!(p.due(&a, 50_000), Some((1, 50_000)));
        // At the top of the ladder the top level hears again.
        a.escalation_level = 2;
        assert_eq!(p.due(&a, 60_000), Some((2, 50_000)));
        // A priority without a ladder re-notifies level 0.
        let mut m = alarm(Priority::Medium);
        m.state = AlarmState::Acknowledged;
        m.snoozed_until_ms = Some(5);
        assert_eq!(p.due(&m, 5), Some((0, 5)));
    }

    #[test]
    fn ladders_are_checked() {
        assert!(check_ladder(&[step(0, "nurse"), step(60_000, "physician")]).is_ok());
        assert!(
            check_ladder(&[step(10, "nurse")])
                .unwrap_err()
                .contains("level 0")
        );
        assert!(
            check_ladder(&[step(0, "nurse"), step(0, "physician")])
                .unwrap_err()
                .contains("step 1")
        );
        let nobody = Step {
            after_ms: 0,
            ..Step::default()
        };
        assert!(
            check_ladder(&[nobody])
                .unwrap_err()
                .contains("names nobody")
        );
    }
}
