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
