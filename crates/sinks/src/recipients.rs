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
use medmesh_model::{Alarm, Patient, PatientId, Priority, TimestampMs};
use medmesh_rules::escalation::{Policy, Step};
use std::collections::{BTreeMap, BTreeSet};

/// Level 0 when the policy has no ladder for the alarm's priority.
fn default_step() -> Step {
    Step {
        after_ms: 0,
        roles: vec!["nurse".into()],
        users: vec![],
    }
}

/// Who a message is for, which decides its wording: staff are asked to act
/// (acknowledge in the dashboard), followers (family, consented carers) are
/// only told the care team has been alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Staff,
    Follower,
}

/// The staff the alarm's current escalation level names.
pub fn staff(
    directory: &Directory,
    policy: &Policy,
    alarm: &Alarm,
    ward: &str,
) -> BTreeSet<String> {
    staff_at(
        directory,
        policy,
        alarm.priority,
        alarm.escalation_level,
        &alarm.patient_id,
        ward,
    )
}

/// The enabled users level `level` of `priority`'s ladder names for a
/// patient: the care team members with one of the step's roles, and the
/// step's named users.
fn staff_at(
    directory: &Directory,
    policy: &Policy,
    priority: Priority,
    level: u32,
    patient: &PatientId,
    ward: &str,
) -> BTreeSet<String> {
    let fallback = default_step();
    let step = policy.step(priority, level).unwrap_or(&fallback);
    let team = directory.care_team_members(patient, ward);
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

/// Whether `change` is one the staff of the alarm's level must hear of (so
/// reaching none of them is a failure, not a quiet day).
pub fn tells_staff(change: &str) -> bool {
    matches!(change, "raised" | "escalated")
}

/// Everyone to tell about `change` (a change kind: "raised", ...), with how
/// each reads it. Someone who is both staff and a follower reads it as staff.
pub fn for_change(
    directory: &Directory,
    policy: &Policy,
    change: &str,
    alarm: &Alarm,
    ward: &str,
    now: TimestampMs,
) -> BTreeMap<String, Reader> {
    let to_followers = matches!(change, "raised" | "resolved");
    let mut names = BTreeMap::new();
    if to_followers {
        for name in directory.alarm_followers(&alarm.patient_id, now) {
            names.insert(name, Reader::Follower);
        }
    }
    if tells_staff(change) {
        for name in staff(directory, policy, alarm, ward) {
            names.insert(name, Reader::Staff);
        }
    }
    names
}

/// One way the configuration keeps an alarm notification from someone it
/// names, found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// "unknown_user", "disabled_user", "no_email" or "nobody_at_level"
    /// (the metric's label).
    pub reason: &'static str,
    /// One line for the operator, naming the key or the user to fix.
    pub text: String,
}

/// Every reason [`Unreachable::reason`] takes.
pub const REASONS: [&str; 4] = [
    "unknown_user",
    "disabled_user",
    "no_email",
    "nobody_at_level",
];

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Medium => "medium",
        Priority::Low => "low",
    }
}

/// Who the escalation policy cannot reach, by e-mail when `email` is on:
/// users a step names who do not exist or are disabled; named users and
/// care-team members a step's roles select who have no e-mail address; and
/// levels under which a patient's alarm would reach nobody at all (one line
/// per level and ward). Without e-mail only the unknown and disabled names
/// are problems: webhooks do not address people.
pub fn check(
    directory: &Directory,
    policy: &Policy,
    patients: &[Patient],
    email: bool,
) -> Vec<Unreachable> {
    let mut out = Vec::new();
    // The ladders, with every priority without one sharing the default step.
    let mut ladders: Vec<(String, Vec<Step>, Priority)> = Vec::new();
    let laddered: Vec<Priority> = policy.ladders.keys().copied().collect();
    for (priority, steps) in &policy.ladders {
        ladders.push((
            format!("alarms.escalation.{}", priority_name(*priority)),
            steps.clone(),
            *priority,
        ));
    }
    let unladdered: Vec<Priority> = [Priority::High, Priority::Medium, Priority::Low]
        .into_iter()
        .filter(|p| !laddered.contains(p))
        .collect();
    if let Some(first) = unladdered.first() {
        let names: Vec<&str> = unladdered.iter().map(|p| priority_name(*p)).collect();
        ladders.push((
            format!(
                "{} alarms (no escalation ladder: the care team's nurses)",
                names.join(", ")
            ),
            vec![default_step()],
            *first,
        ));
    }

    let mut named_seen = BTreeSet::new();
    for (key, steps, _) in &ladders {
        for (i, step) in steps.iter().enumerate() {
            for user in &step.users {
                let at = format!("{key}[{i}].users");
                match directory.user(user) {
                    None => out.push(Unreachable {
                        reason: "unknown_user",
                        text: format!(
                            "{at}: there is no user {user:?}: nobody is told in their place"
                        ),
                    }),
                    Some(u) if u.disabled => out.push(Unreachable {
                        reason: "disabled_user",
                        text: format!(
                            "{at}: user {user:?} is disabled: nobody is told in their place"
                        ),
                    }),
                    Some(u) if email && u.email.is_none() && named_seen.insert(user.clone()) => {
                        out.push(Unreachable {
                            reason: "no_email",
                            text: format!(
                                "{at}: user {user:?} has no e-mail address: they get no alarm e-mail"
                            ),
                        })
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if !email {
        return out;
    }

    // Care-team members a step's roles select, without an address.
    let roles: BTreeSet<&str> = ladders
        .iter()
        .flat_map(|(_, steps, _)| {
            steps
                .iter()
                .flat_map(|s| s.roles.iter().map(String::as_str))
        })
        .collect();
    for team in directory.teams() {
        for member in &team.members {
            let Some(u) = directory.user(member) else {
                continue;
            };
            if u.disabled || u.email.is_some() || !roles.contains(u.role.as_str()) {
                continue;
            }
            if named_seen.insert(member.clone()) {
                out.push(Unreachable {
                    reason: "no_email",
                    text: format!(
                        "care team {:?}: {} {member:?} has no e-mail address: they get no alarm e-mail",
                        team.id,
                        u.role.as_str()
                    ),
                });
            }
        }
    }

    // Levels that reach nobody, per ward (patients named by a team alone
    // are judged with their ward like the others).
    let mailable = |name: &String| directory.user(name).is_some_and(|u| u.email.is_some());
    let mut nobody: BTreeMap<(String, usize, String), (usize, PatientId)> = BTreeMap::new();
    for (key, steps, priority) in &ladders {
        for (level, _) in steps.iter().enumerate() {
            for p in patients {
                let staff = staff_at(directory, policy, *priority, level as u32, &p.id, &p.ward);
                if !staff.iter().any(mailable) {
                    nobody
                        .entry((key.clone(), level, p.ward.clone()))
                        .or_insert((0, p.id.clone()))
                        .0 += 1;
                }
            }
        }
    }
    for ((key, level, ward), (count, example)) in nobody {
        // The default step has no key of its own to index.
        let at = if key.starts_with("alarms.escalation.") {
            format!("{key}[{level}]")
        } else {
            key
        };
        let whose = if ward.is_empty() {
            "patients without a ward".to_string()
        } else {
            format!("ward {ward:?}")
        };
        out.push(Unreachable {
            reason: "nobody_at_level",
            text: format!(
                "{at}: nobody with an e-mail address for {count} patient(s) of {whose} (e.g. {example}): their alarms at this level are mailed to no one"
            ),
        });
    }
    out
}

/// Runs [`check`], warns once about each problem not reported by the
/// previous run (`before`), notes each one fixed since, and sets
/// `medmesh_alarm_recipients_unreachable` per reason. Returns the problems'
/// texts, to pass as `before` next time.
pub fn report(
    directory: &Directory,
    policy: &Policy,
    patients: &[Patient],
    email: bool,
    metrics: &medmesh_pipeline::Metrics,
    before: &BTreeSet<String>,
) -> BTreeSet<String> {
    let found = check(directory, policy, patients, email);
    for reason in REASONS {
        metrics.unreachable_recipients(reason, found.iter().filter(|u| u.reason == reason).count());
    }
    for u in &found {
        if !before.contains(&u.text) {
            tracing::warn!(reason = u.reason, "alarm recipient unreachable: {}", u.text);
        }
    }
    let now: BTreeSet<String> = found.into_iter().map(|u| u.text).collect();
    for fixed in before.difference(&now) {
        tracing::info!("alarm recipient reachable again: {fixed}");
    }
    now
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
        let to = |change, level| -> BTreeSet<String> {
            for_change(&d, &policy, change, &alarm(level), "Ward A", now)
                .into_keys()
                .collect()
        };
        assert_eq!(to("raised", 0), names(&["nurse.a", "son"]));
        assert_eq!(to("escalated", 1), names(&["charge.kim"]));
        assert_eq!(to("escalated", 2), names(&["dr.b"]));
        assert_eq!(to("resolved", 2), names(&["son"]));
        assert!(to("acknowledged", 0).is_empty());
        // Without a ladder: the care team's nurses.
        let none = Policy::default();
        assert_eq!(staff(&d, &none, &alarm(0), "Ward A"), names(&["nurse.a"]));
    }

    #[test]
    fn unknown_disabled_and_addressless_recipients_and_empty_levels_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(dir.path()).unwrap();
        for (u, role) in [
            ("nurse.mail", Role::Nurse),
            ("nurse.nomail", Role::Nurse),
            ("dr.nomail", Role::Physician),
            ("charge.gone", Role::Nurse),
            ("son", Role::Caregiver),
        ] {
            d.add_user(u, role, None, PW).unwrap();
        }
        d.set_email("nurse.mail", Some("n@h.test")).unwrap();
        d.set_email("charge.gone", Some("c@h.test")).unwrap();
        d.disable_user("charge.gone").unwrap();
        d.put_team(Team {
            id: "a".into(),
            members: names(&["nurse.mail", "nurse.nomail", "dr.nomail"]),
            wards: names(&["Ward A"]),
            ..Team::default()
        })
        .unwrap();
        let patient = |id: &str, ward: &str| Patient {
            id: PatientId::new(id).unwrap(),
            name: id.into(),
            ward: ward.into(),
            bed: String::new(),
        };
        let patients = [
            patient("p1", "Ward A"),
            patient("p2", "Ward B"),
            patient("p3", "Ward B"),
        ];
        let step = |roles: &[&str], users: &[&str]| Step {
            after_ms: if roles.is_empty() && users.is_empty() {
                0
            } else {
                60_000
            },
            roles: roles.iter().map(|r| r.to_string()).collect(),
            users: users.iter().map(|r| r.to_string()).collect(),
        };
        let mut policy = Policy::default();
        policy.ladders.insert(
            Priority::High,
            vec![
                Step {
                    after_ms: 0,
                    ..step(&["nurse"], &[])
                },
                step(&[], &["charge.kym", "charge.gone"]),
                step(&["physician"], &[]),
            ],
        );
        let found = check(&d, &policy, &patients, true);
        let lines: Vec<(&str, &str)> = found.iter().map(|u| (u.reason, u.text.as_str())).collect();
        let has = |reason: &str, words: &[&str]| {
            assert!(
                lines
                    .iter()
                    .any(|(r, t)| *r == reason && words.iter().all(|w| t.contains(w))),
                "{reason} {words:?} not in {lines:#?}"
            )
        };
        has(
            "unknown_user",
            &["alarms.escalation.high[1].users", "\"charge.kym\""],
        );
        has(
            "disabled_user",
            &["alarms.escalation.high[1].users", "\"charge.gone\""],
        );
        has("no_email", &["care team \"a\"", "nurse \"nurse.nomail\""]);
        has("no_email", &["physician \"dr.nomail\""]);
        // Level 1 names nobody who exists and is enabled; level 2 only a
        // physician without an address; Ward B has no team at all.
        has(
            "nobody_at_level",
            &[
                "alarms.escalation.high[1]",
                "1 patient(s) of ward \"Ward A\"",
            ],
        );
        has(
            "nobody_at_level",
            &["alarms.escalation.high[2]", "ward \"Ward A\""],
        );
        has(
            "nobody_at_level",
            &[
                "alarms.escalation.high[0]",
                "2 patient(s) of ward \"Ward B\"",
            ],
        );
        has(
            "nobody_at_level",
            &[
                "medium, low alarms (no escalation ladder",
                "ward \"Ward B\"",
            ],
        );
        assert!(
            !lines
                .iter()
                .any(|(_, t)| t.contains("high[0]") && t.contains("Ward A")),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|(_, t)| t.contains("son")),
            "followers are not checked: {lines:#?}"
        );
        // Without e-mail, addresses do not matter; names still do.
        let reasons: BTreeSet<&str> = check(&d, &policy, &patients, false)
            .iter()
            .map(|u| u.reason)
            .collect();
        assert_eq!(reasons, BTreeSet::from(["unknown_user", "disabled_user"]));

        // Reported once; a fix is noted, and the metric follows.
        let metrics = medmesh_pipeline::Metrics::default();
        let first = report(&d, &policy, &patients, true, &metrics, &BTreeSet::new());
        assert_eq!(first.len(), found.len());
        let gauge = |m: &medmesh_pipeline::Metrics, reason: &str| {
            let line = format!("medmesh_alarm_recipients_unreachable{{reason=\"{reason}\"}} ");
            m.render()
                .lines()
                .find_map(|l| l.strip_prefix(&line).map(|v| v.to_string()))
        };
        assert_eq!(gauge(&metrics, "unknown_user").as_deref(), Some("1"));
        assert_eq!(gauge(&metrics, "no_email").as_deref(), Some("2"));
        d.set_email("dr.nomail", Some("dr@h.test")).unwrap();
        let second = report(&d, &policy, &patients, true, &metrics, &first);
        assert!(second.len() < first.len());
        assert_eq!(gauge(&metrics, "no_email").as_deref(), Some("1"));
    }
}
