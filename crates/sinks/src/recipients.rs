//! Who is told about an alarm change, as user names:
//!
//! | change | staff (the escalation step's roles and users) | followers |
//! |---|---|---|
//! | raised | level 0 | yes |
//! | escalated | the level reached | no |
//! | resolved | no | yes |
//! | acknowledged, snoozed | no | no |
//!
//! A step's roles are matched against the members of the care teams that
//! cover the patient (by ward or by name); its users are named outright
//! (e.g. the charge nurse, who is a nurse account named in the
//! configuration). A priority without a configured ladder tells the care
//! team's nurses at level 0. Followers are the users who hold a consent in
//! force from the patient covering the `alarms` scope, checked when the
//! notification is sent. Disabled accounts are never told.

use medmesh_access::Directory;
use medmesh_model::{Alarm, TimestampMs};
use medmesh_rules::escalation::{Policy, Step};
use std::collections::BTreeSet;

/// Level 0 when the policy has no ladder for the alarm's priority.
fn default_step() -> Step {
    Step {
        after_ms: 0,
        roles: vec!["nurse".into()],
        users: vec![],
    }
}

/// The staff the alarm's current escalation level names.
pub fn staff(
    directory: &Directory,
    policy: &Policy,
    alarm: &Alarm,
    ward: &str,
) -> BTreeSet<String> {
    let fallback = default_step();
    let step = policy
        .step(alarm.priority, alarm.escalation_level)
        .unwrap_or(&fallback);
    let team = directory.care_team_members(&alarm.patient_id, ward);
    let by_role = team.into_iter().filter(|name| {
        directory
            .user(name)
            .is_some_and(|u| step.roles.iter().any(|r| r == u.role.as_str()))
    });
    by_role
        .chain(step.users.iter().cloned())
        .filter(|name| directory.user(name).is_some_and(|u| !u.disabled))
        .collect()
}

/// Everyone to tell about `change` (a change kind: "raised", ...).
pub fn for_change(
    directory: &Directory,
    policy: &Policy,
    change: &str,
    alarm: &Alarm,
    ward: &str,
    now: TimestampMs,
) -> BTreeSet<String> {
    let (to_staff, to_followers) = match change {
        "raised" => (true, true),
        "escalated" => (true, false),
        "resolved" => (false, true),
        _ => (false, false),
    };
    let mut names = BTreeSet::new();
    if to_staff {
        names.extend(staff(directory, policy, alarm, ward));
    }
    if to_followers {
        names.extend(directory.alarm_followers(&alarm.patient_id, now));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_access::{Role, Scope, Team};
    use medmesh_model::{AlarmState, PatientId, Priority};

    const PW: &str = "a long enough password";

    fn alarm(level: u32) -> Alarm {
        Alarm {
            id: 1,
            patient_id: PatientId::new("p1").unwrap(),
            vital: None,
            device_id: None,
            rule: "r".into(),
            priority: Priority::High,
            state: AlarmState::Active,
            message: "m".into(),
            value: 0.0,
            raised_ms: 0,
            updated_ms: 0,
            acknowledged: None,
            snoozed_until_ms: None,
            resolved: None,
            escalation_level: level,
            escalation_since_ms: None,
            worst: None,
        }
    }

    fn names(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn levels_name_care_team_roles_and_users_and_followers_hear_raise_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(dir.path()).unwrap();
        for (u, role) in [
            ("nurse.a", Role::Nurse),
            ("nurse.other-ward", Role::Nurse),
            ("nurse.gone", Role::Nurse),
            ("dr.b", Role::Physician),
            ("charge.kim", Role::Nurse),
            ("son", Role::Caregiver),
        ] {
            d.add_user(u, role, None, PW).unwrap();
        }
        let team = |id: &str, members: &[&str], ward: &str| Team {
            id: id.into(),
            members: names(members),
            wards: names(&[ward]),
            ..Team::default()
        };
        d.put_team(team("a", &["nurse.a", "nurse.gone", "dr.b"], "Ward A"))
            .unwrap();
        d.put_team(team("b", &["nurse.other-ward"], "Ward B"))
            .unwrap();
        d.disable_user("nurse.gone").unwrap();
        let p1 = PatientId::new("p1").unwrap();
        d.grant_consent(p1, "son", vec![Scope::Alarms], "family", None, "p1")
            .unwrap();

        let step = |roles: &[&str], users: &[&str]| Step {
            after_ms: 0,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            users: users.iter().map(|r| r.to_string()).collect(),
        };
        let mut policy = Policy::default();
        policy.ladders.insert(
            Priority::High,
            vec![
                step(&["nurse"], &[]),
                step(&[], &["charge.kim"]),
                step(&["physician"], &[]),
            ],
        );
        let now = medmesh_model::now_ms();
        let to = |change, level| for_change(&d, &policy, change, &alarm(level), "Ward A", now);
        assert_eq!(to("raised", 0), names(&["nurse.a", "son"]));
        assert_eq!(to("escalated", 1), names(&["charge.kim"]));
        assert_eq!(to("escalated", 2), names(&["dr.b"]));
        assert_eq!(to("resolved", 2), names(&["son"]));
        assert!(to("acknowledged", 0).is_empty());
        // Without a ladder: the care team's nurses.
        let none = Policy::default();
        assert_eq!(staff(&d, &none, &alarm(0), "Ward A"), names(&["nurse.a"]));
    }
}
