//! Access control for medmesh: who may see and do what, and a record of
//! everything they did.
//!
//! - [`Directory`]: users with a [`Role`], API tokens, care teams and
//!   [`Consent`]s, persisted in `access.json`.
//! - [`Sessions`]: browser sign-ins (in memory).
//! - [`LoginThrottle`]: slows password guessing without locking anyone out.
//! - [`AuditLog`]: append-only, hash-chained record of reads, writes, logins.
//! - [`Access::may`]: the one place that decides whether a principal may
//!   exercise a right on a patient. Every route of the server asks it.
//!
//! The policy, in one table (a right not listed is refused):
//!
//! | role | patients reached | rights | alarm load report |
//! |---|---|---|---|
//! | admin | all | read observations and alarms, care, revoke consents | every ward |
//! | physician, nurse | patients of their care teams (by ward or by name) | read observations and alarms, care, chart | their care teams' wards |
//! | patient | their own record | read observations and alarms, manage consents | - |
//! | caregiver, insurer, researcher | patients whose consent in force names them | read the consented scopes only | - |
//! | operations | none | (devices, metrics and health only) | every ward, figures only |
//! | anyone an escalation step names | one alarm, once it reached that step | see it (with the patient's name, ward and bed) and acknowledge it | - |
//!
//! "Care" covers acting on alarms, admitting, recording readings (FHIR) and
//! assigning devices to the patient. "Chart" is recording observations one
//! took oneself (a set charted by hand, under one's own name): clinicians of
//! the care team only, not an administrator, who runs the system but does
//! not observe patients. Readings of a device assigned to nobody
//! ("unassigned readings") are health data of whoever wore it: only an
//! administrator sees them; operations sees devices' status and battery.
//! The alarm load report ([`Access::alarm_load_wards`]) is aggregate
//! figures per ward; it names a patient (in its top list) only to a reader
//! who may read that patient's alarms.
//!
//! Escalation: a user named in a step of an alarm priority's ladder (the
//! charge nurse) is told of an alarm that climbs to that step, so they may
//! also see that alarm and acknowledge it ([`PatientRight::SeeAlarm`],
//! [`PatientRight::AcknowledgeAlarm`]) from then on, even outside the
//! patient's care team; nothing else of the patient (no readings, no other
//! alarm). Only clinicians (and administrators) may be named:
//! [`Access::set_escalation`] refuses any other account (an unknown name
//! grants nothing).

mod audit;
mod consent;
mod directory;
mod role;
pub mod secret;
mod session;
mod throttle;

pub use audit::{AuditEntry, AuditLog, Event, Filter, Outcome, verify_chain};
pub use consent::{Consent, Scope};
pub use directory::{
    ApiToken, Directory, DirectoryError, FeedRefusal, MIN_PASSWORD_CHARS, Principal, Team,
    TokenScope, User, validate_email, validate_username,
};
pub use role::Role;
pub use session::{MAX_AGE as SESSION_MAX_AGE, Sessions};
pub use throttle::{
    FREE_PER_ACCOUNT as LOGIN_FREE_PER_ACCOUNT, FREE_PER_ADDRESS as LOGIN_FREE_PER_ADDRESS,
    LoginThrottle, MAX_WAIT as LOGIN_MAX_WAIT,
};

use medmesh_model::{PatientId, Priority};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

/// The alarm a right is about: its priority and how far up its escalation
/// ladder it has climbed (`Alarm::escalation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmReach {
    pub priority: Priority,
    pub level: u32,
}

/// The users each escalation step names outright, per priority and level
/// (from `[alarms.escalation]`): a step's `users`, not its care-team roles
/// (those already reach the patient through their team).
pub type EscalationNames = BTreeMap<Priority, Vec<Vec<String>>>;

/// A right over one patient's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientRight {
    ReadObservations,
    ReadAlarms,
    /// Act on alarms, admit, record readings, assign devices.
    Care,
    /// Chart observations one took at the bedside (clinicians only).
    Chart,
    /// Grant consents (the patient only) and list them.
    ManageConsents,
    /// Revoke a consent (the patient, or an administrator on their behalf).
    RevokeConsents,
    /// See one alarm (and the patient's name, ward and bed): whoever may
    /// read the patient's alarms, and whoever an escalation step the alarm
    /// reached names.
    SeeAlarm(AlarmReach),
    /// Acknowledge one alarm: whoever cares for the patient, and whoever an
    /// escalation step the alarm reached names. Snoozing and resolving stay
    /// with `Care` (they are judgements at the bedside).
    AcknowledgeAlarm(AlarmReach),
}

impl PatientRight {
    pub fn as_str(self) -> &'static str {
        match self {
            PatientRight::ReadObservations => "read observations",
            PatientRight::ReadAlarms => "read alarms",
            PatientRight::Care => "care",
            PatientRight::Chart => "chart observations",
            PatientRight::ManageConsents => "manage consents",
            PatientRight::RevokeConsents => "revoke consents",
            PatientRight::SeeAlarm(_) => "see this alarm",
            PatientRight::AcknowledgeAlarm(_) => "acknowledge this alarm",
        }
    }
}

/// A right that is not about one patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalRight {
    /// Users, care teams.
    ManageUsers,
    ReadAudit,
    /// List every device, provision and revoke device credentials.
    ManageDevices,
    /// Prometheus metrics.
    ReadMetrics,
    /// Readings kept under a device assigned to nobody (in the device list
    /// and the live stream): health data of whoever wore the device.
    ReadUnassignedReadings,
}

/// Wards a principal reaches (see [`Access::alarm_load_wards`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wards {
    All,
    /// These only (none when empty).
    Only(std::collections::BTreeSet<String>),
}

impl Wards {
    pub fn contains(&self, ward: &str) -> bool {
        match self {
            Wards::All => true,
            Wards::Only(wards) => wards.contains(ward),
        }
    }

    /// Whether no ward at all.
    pub fn is_none(&self) -> bool {
        matches!(self, Wards::Only(w) if w.is_empty())
    }
}

/// Why a login was refused.
#[derive(Debug, PartialEq)]
pub enum LoginError {
    /// Too many failures: try again after this long.
    Throttled(Duration),
    /// Unknown user, wrong password or disabled account (deliberately not
    /// told apart).
    Invalid,
}

pub struct Access {
    pub directory: Directory,
    pub sessions: Sessions,
    pub throttle: LoginThrottle,
    pub audit: AuditLog,
    /// Who each escalation step names ([`Access::set_escalation`]).
    escalation: RwLock<EscalationNames>,
}

impl Access {
    pub fn open(dir: &Path) -> Result<Access, DirectoryError> {
        Ok(Access {
            directory: Directory::open(dir)?,
            sessions: Sessions::default(),
            throttle: LoginThrottle::default(),
            audit: AuditLog::open(dir)?,
            escalation: RwLock::default(),
        })
    }

    /// Takes the users the escalation ladders name, who from then on may see
    /// and acknowledge the alarms that reach their step. Refused (with the
    /// reason, naming the step) when a name is an account whose role may not
    /// see clinical alarms: it would be told of patients it may not see, and
    /// the grant would hand an operations, patient or consent-holder account
    /// clinical alarms. A name that is no user (yet), or a disabled one, is
    /// accepted and grants nothing until such a clinician exists: the
    /// server's recipient check warns about it at start and counts it
    /// (`medmesh_alarm_recipients_unreachable`), and a leaver or a
    /// misspelling must not stop monitoring from starting.
    pub fn set_escalation(&self, names: EscalationNames) -> Result<(), String> {
        for (priority, ladder) in &names {
            let priority = format!("{priority:?}").to_lowercase();
            for (level, users) in ladder.iter().enumerate() {
                for name in users {
                    let Some(user) = self.directory.user(name) else {
                        continue;
                    };
                    if !(user.role.is_clinician() || user.role == Role::Admin) {
                        return Err(format!(
                            "alarms.escalation.{priority}[{level}].users: {name:?} is a {} \
                             account; only nurses, physicians and administrators may be named, \
                             since whoever is told of an alarm may see and acknowledge it",
                            user.role
                        ));
                    }
                }
            }
        }
        *self.escalation.write().expect("escalation lock") = names;
        Ok(())
    }

    /// Whether any escalation step names `username` (to warn before such a
    /// user is disabled: the step will no longer reach them).
    pub fn named_in_escalation(&self, username: &str) -> bool {
        self.escalation
            .read()
            .expect("escalation lock")
            .values()
            .flatten()
            .any(|users| users.iter().any(|u| u == username))
    }

    /// Whether an escalation step that `alarm` has reached names `who`.
    fn named_by_escalation(&self, who: &Principal, alarm: AlarmReach) -> bool {
        (who.role.is_clinician() || who.role == Role::Admin)
            && self
                .escalation
                .read()
                .expect("escalation lock")
                .get(&alarm.priority)
                .is_some_and(|ladder| {
                    ladder
                        .iter()
                        .take(alarm.level as usize + 1)
                        .any(|users| users.contains(&who.username))
                })
    }

    /// Whether `who` may exercise `right` on `patient` (whose ward is `ward`).
    pub fn may(
        &self,
        who: &Principal,
        right: PatientRight,
        patient: &PatientId,
        ward: &str,
    ) -> bool {
        use PatientRight::*;
        match right {
            SeeAlarm(alarm) => {
                return self.may(who, ReadAlarms, patient, ward)
                    || self.named_by_escalation(who, alarm);
            }
            AcknowledgeAlarm(alarm) => {
                return self.may(who, Care, patient, ward) || self.named_by_escalation(who, alarm);
            }
            _ => {}
        }
        match who.role {
            Role::Admin => matches!(right, ReadObservations | ReadAlarms | Care | RevokeConsents),
            Role::Physician | Role::Nurse => {
                matches!(right, ReadObservations | ReadAlarms | Care | Chart)
                    && self.directory.in_care_team(&who.username, patient, ward)
            }
            Role::Patient => {
                who.patient.as_ref() == Some(patient)
                    && matches!(
                        right,
                        ReadObservations | ReadAlarms | ManageConsents | RevokeConsents
                    )
            }
            Role::Caregiver | Role::Insurer | Role::Researcher => {
                let scope = match right {
                    ReadObservations => Scope::Observations,
                    ReadAlarms => Scope::Alarms,
                    _ => return false,
                };
                self.directory.has_consent(&who.username, patient, scope)
            }
            Role::Operations => false,
        }
    }

    /// Whether `who` holds `right` over every patient, whoever they are
    /// (an administrator's reach). Only such a caller may learn that an id
    /// names nothing: to anyone else an unknown id and a refused one look
    /// the same.
    pub fn reaches_every_patient(&self, who: &Principal, right: PatientRight) -> bool {
        use PatientRight::*;
        who.role == Role::Admin
            && matches!(
                right,
                ReadObservations
                    | ReadAlarms
                    | Care
                    | RevokeConsents
                    | SeeAlarm(_)
                    | AcknowledgeAlarm(_)
            )
    }

    /// Whether `who` holds `right` on the alarm only because an escalation
    /// step named them (for the audit entry to say so).
    pub fn only_by_escalation(
        &self,
        who: &Principal,
        right: PatientRight,
        patient: &PatientId,
        ward: &str,
    ) -> bool {
        let base = match right {
            PatientRight::SeeAlarm(_) => PatientRight::ReadAlarms,
            PatientRight::AcknowledgeAlarm(_) => PatientRight::Care,
            _ => return false,
        };
        !self.may(who, base, patient, ward) && self.may(who, right, patient, ward)
    }

    /// Which wards' alarm load report `who` may read. The report is figures
    /// per ward and rule, which tell a ward's alarm burden, not any
    /// patient's care: administrators and operations (who tune the
    /// system) read every ward, clinicians the wards of their care teams
    /// (a team covering patients by name only gives no ward), everyone
    /// else none.
    pub fn alarm_load_wards(&self, who: &Principal) -> Wards {
        match who.role {
            Role::Admin | Role::Operations => Wards::All,
            Role::Physician | Role::Nurse => Wards::Only(self.directory.wards_of(&who.username)),
            Role::Patient | Role::Caregiver | Role::Insurer | Role::Researcher => {
                Wards::Only(Default::default())
            }
        }
    }

    pub fn may_global(&self, who: &Principal, right: GlobalRight) -> bool {
        match right {
            GlobalRight::ManageUsers
            | GlobalRight::ReadAudit
            | GlobalRight::ReadUnassignedReadings => who.role == Role::Admin,
            GlobalRight::ManageDevices | GlobalRight::ReadMetrics => {
                matches!(who.role, Role::Admin | Role::Operations)
            }
        }
    }

    /// Checks a password login, throttled per account and address and per
    /// address (never locking an account: see `throttle.rs`), and audited
    /// either way. Slow (argon2): call it off the async
    /// executor. Returns the session cookie value and the principal.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<(String, Principal), LoginError> {
        let audit = |outcome, detail: String, role| {
            self.audit.record(Event {
                actor: username,
                role,
                action: "login",
                patient: None,
                outcome,
                detail,
            })
        };
        if let Err(wait) = self.throttle.check(username, client) {
            audit(
                Outcome::Denied,
                format!("from {client}: throttled for {}s", wait.as_secs().max(1)),
                None,
            );
            return Err(LoginError::Throttled(wait));
        }
        let hash = self.directory.password_hash(username);
        // Verify against a decoy when there is no such user, so both cases
        // take as long.
        let ok = secret::verify_password(hash.as_deref().unwrap_or(secret::decoy_hash()), password)
            && hash.is_some();
        match self.directory.principal(username).filter(|_| ok) {
            Some(principal) => {
                self.throttle.succeeded(username, client);
                audit(
                    Outcome::Allowed,
                    format!("from {client}"),
                    Some(principal.role),
                );
                Ok((self.sessions.start(username), principal))
            }
            None => {
                self.throttle.failed(username, client);
                audit(Outcome::Failed, format!("from {client}"), None);
                Err(LoginError::Invalid)
            }
        }
    }

    /// The principal behind a session cookie or an API token.
    pub fn principal_for_session(&self, token: &str) -> Option<Principal> {
        self.sessions
            .user(token)
            .and_then(|u| self.directory.principal(&u))
    }

    /// Creates the first administrator if there are no users at all; returns
    /// the one-time password to show, or `None` if users exist.
    pub fn bootstrap_admin(&self) -> Result<Option<String>, DirectoryError> {
        if self.directory.has_users() {
            return Ok(None);
        }
        let password = secret::random_password();
        self.directory
            .add_user("admin", Role::Admin, None, &password)?;
        self.audit.record(Event {
            actor: "medmesh",
            role: None,
            action: "bootstrap admin",
            patient: None,
            outcome: Outcome::Allowed,
            detail: "first start: created user admin".into(),
        });
        Ok(Some(password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Access) {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::open(dir.path()).unwrap();
        (dir, a)
    }

    fn pid(s: &str) -> PatientId {
        PatientId::new(s).unwrap()
    }

    const PW: &str = "a long enough password";

    #[test]
    fn alarm_followers_hold_an_alarms_consent_in_force() {
        let (_dir, a) = setup();
        let d = &a.directory;
        for u in ["son", "daughter", "friend", "insurer"] {
            let role = if u == "insurer" {
                Role::Insurer
            } else {
                Role::Caregiver
            };
            d.add_user(u, role, None, PW).unwrap();
        }
        let p1 = pid("p1");
        let alarms = vec![Scope::Alarms, Scope::Observations];
        let son = d
            .grant_consent(p1.clone(), "son", alarms.clone(), "family", None, "p1")
            .unwrap();
        d.grant_consent(
            p1.clone(),
            "daughter",
            vec![Scope::Observations],
            "family",
            None,
            "p1",
        )
        .unwrap();
        let soon = medmesh_model::now_ms() + 60_000;
        d.grant_consent(
            p1.clone(),
            "friend",
            alarms.clone(),
            "care",
            Some(soon),
            "p1",
        )
        .unwrap();
        d.grant_consent(pid("p2"), "insurer", alarms, "claim", None, "p2")
            .unwrap();
        let now = medmesh_model::now_ms();
        let names = |s: &[&str]| {
            s.iter()
                .map(|x| x.to_string())
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(d.alarm_followers(&p1, now), names(&["friend", "son"]));
        assert_eq!(d.alarm_followers(&p1, soon), names(&["son"]), "expired");
        d.revoke_consent(&son.id).unwrap();
        assert_eq!(d.alarm_followers(&p1, now), names(&["friend"]), "revoked");
        d.disable_user("friend").unwrap();
        assert!(d.alarm_followers(&p1, now).is_empty(), "disabled");
        // E-mail addresses: shape-checked, settable and removable.
        assert_eq!(
            d.set_email("son", Some("son@example.org"))
                .unwrap()
                .email
                .as_deref(),
            Some("son@example.org")
        );
        assert!(d.set_email("son", Some("not an address")).is_err());
        assert!(d.set_email("son", Some("a@b@c")).is_err());
        assert!(d.set_email("nobody", Some("x@example.org")).is_err());
        assert_eq!(d.set_email("son", None).unwrap().email, None);
    }

    #[test]
    fn policy_follows_teams_links_and_consents() {
        let (_dir, a) = setup();
        let d = &a.directory;
        d.add_user("nurse1", Role::Nurse, None, PW).unwrap();
        d.add_user("nurse2", Role::Nurse, None, PW).unwrap();
        d.add_user("p1", Role::Patient, Some(pid("p1")), PW)
            .unwrap();
        d.add_user("daughter", Role::Caregiver, None, PW).unwrap();
        d.add_user("ops", Role::Operations, None, PW).unwrap();
        d.put_team(Team {
            id: "ward-a".into(),
            name: "Ward A".into(),
            members: ["nurse1".to_string()].into(),
            wards: ["Ward A".to_string()].into(),
            patients: Default::default(),
        })
        .unwrap();
        let who = |u: &str| d.principal(u).unwrap();
        let (p1, p2) = (pid("p1"), pid("p2"));
        use PatientRight::*;
        assert!(a.may(&who("nurse1"), ReadObservations, &p1, "Ward A"));
        assert!(a.may(&who("nurse1"), Care, &p1, "Ward A"));
        assert!(a.may(&who("nurse1"), Chart, &p1, "Ward A"));
        assert!(!a.may(&who("nurse1"), Chart, &p1, "Ward B"));
        assert!(!a.may(&who("ops"), Chart, &p1, "Ward A"));
        assert!(!a.may(&who("p1"), Chart, &p1, "Ward A"));
        assert!(!a.may(&who("nurse1"), ReadObservations, &p1, "Ward B"));
        assert!(!a.may(&who("nurse2"), ReadObservations, &p1, "Ward A"));
        assert!(a.may(&who("p1"), ReadAlarms, &p1, "Ward A"));
        assert!(!a.may(&who("p1"), ReadAlarms, &p2, "Ward A"));
        assert!(!a.may(&who("p1"), Care, &p1, "Ward A"));
        assert!(!a.may(&who("ops"), ReadObservations, &p1, "Ward A"));
        assert!(!a.may(&who("daughter"), ReadObservations, &p1, "Ward A"));
        let c = d
            .grant_consent(
                p1.clone(),
                "daughter",
                vec![Scope::Observations],
                "family care",
                None,
                "p1",
            )
            .unwrap();
        assert!(a.may(&who("daughter"), ReadObservations, &p1, ""));
        assert!(!a.may(&who("daughter"), ReadAlarms, &p1, ""));
        assert!(!a.may(&who("daughter"), ReadObservations, &p2, ""));
        d.revoke_consent(&c.id).unwrap();
        assert!(!a.may(&who("daughter"), ReadObservations, &p1, ""));
        // Consents go to consent-based roles only.
        assert!(
            d.grant_consent(p1.clone(), "nurse2", vec![Scope::Alarms], "x", None, "p1")
                .is_err()
        );
        // Care teams hold clinicians only.
        assert!(
            d.put_team(Team {
                id: "t".into(),
                members: ["ops".to_string()].into(),
                ..Team::default()
            })
            .is_err()
        );
    }

    #[test]
    fn an_escalation_step_grants_its_named_users_the_alarm_once_reached() {
        let (_dir, a) = setup();
        let d = &a.directory;
        for (u, role) in [
            ("charge.kim", Role::Nurse),
            ("ward.nurse", Role::Nurse),
            ("ops", Role::Operations),
            ("leaver", Role::Nurse),
        ] {
            d.add_user(u, role, None, PW).unwrap();
        }
        d.disable_user("leaver").unwrap();
        let ladder = |users: &[&[&str]]| {
            EscalationNames::from([(
                Priority::High,
                users
                    .iter()
                    .map(|l| l.iter().map(|u| u.to_string()).collect())
                    .collect(),
            )])
        };
        // A role that may not see alarms: refused, naming the step.
        let err = a.set_escalation(ladder(&[&[], &["ops"]])).unwrap_err();
        assert!(
            err.contains("high[1].users") && err.contains("operations"),
            "{err}"
        );
        // A misspelling or a leaver: accepted (the recipient check warns
        // about them), granting nothing.
        a.set_escalation(ladder(&[&[], &["charge.kim", "leaver", "chrage.kim"]]))
            .unwrap();

        let kim = d.principal("charge.kim").unwrap();
        let p1 = pid("p1");
        let reach = |priority, level| AlarmReach { priority, level };
        use PatientRight::*;
        // Before the alarm reaches step 1, and for another priority: nothing.
        for r in [reach(Priority::High, 0), reach(Priority::Medium, 3)] {
            assert!(!a.may(&kim, SeeAlarm(r), &p1, "Ward A"));
            assert!(!a.may(&kim, AcknowledgeAlarm(r), &p1, "Ward A"));
        }
        // At step 1 and above: see and acknowledge that alarm, nothing else.
        for level in [1, 2] {
            let r = reach(Priority::High, level);
            assert!(a.may(&kim, SeeAlarm(r), &p1, "Ward A"));
            assert!(a.may(&kim, AcknowledgeAlarm(r), &p1, "Ward A"));
            assert!(a.only_by_escalation(&kim, SeeAlarm(r), &p1, "Ward A"));
        }
        for right in [ReadObservations, ReadAlarms, Care] {
            assert!(!a.may(&kim, right, &p1, "Ward A"));
        }
        let other = d.principal("ward.nurse").unwrap();
        assert!(!a.may(&other, SeeAlarm(reach(Priority::High, 2)), &p1, "Ward A"));
    }

    #[test]
    fn the_alarm_load_report_reaches_wards_by_role_and_care_team() {
        let (_dir, a) = setup();
        let d = &a.directory;
        for (name, role) in [
            ("admin", Role::Admin),
            ("ops", Role::Operations),
            ("nurse1", Role::Nurse),
            ("dr1", Role::Physician),
            ("nurse2", Role::Nurse),
            ("p1", Role::Patient),
            ("carer", Role::Caregiver),
            ("insurer", Role::Insurer),
            ("researcher", Role::Researcher),
        ] {
            let patient = (role == Role::Patient).then(|| pid("p1"));
            d.add_user(name, role, patient, PW).unwrap();
        }
        d.put_team(Team {
            id: "a".into(),
            members: ["nurse1".to_string(), "dr1".to_string()].into(),
            wards: ["Ward A".to_string(), "ICU".to_string()].into(),
            ..Team::default()
        })
        .unwrap();
        // A team covering a patient by name gives no ward.
        d.put_team(Team {
            id: "named".into(),
            members: ["nurse2".to_string()].into(),
            patients: [pid("p9")].into(),
            ..Team::default()
        })
        .unwrap();
        let wards = |u: &str| a.alarm_load_wards(&d.principal(u).unwrap());
        assert_eq!(wards("admin"), Wards::All);
        assert_eq!(wards("ops"), Wards::All);
        for clinician in ["nurse1", "dr1"] {
            let w = wards(clinician);
            assert!(w.contains("Ward A") && w.contains("ICU"));
            assert!(!w.contains("Ward B") && !w.contains(""));
        }
        for nobody in ["nurse2", "p1", "carer", "insurer", "researcher"] {
            assert!(wards(nobody).is_none(), "{nobody}");
            assert!(!wards(nobody).contains("Ward A"));
        }
    }

    #[test]
    fn an_alarm_feed_token_signs_its_owner_in_to_the_feed_and_nothing_else() {
        let (_dir, a) = setup();
        let d = &a.directory;
        d.add_user("nursecall", Role::Nurse, None, PW).unwrap();
        d.add_user("other", Role::Nurse, None, PW).unwrap();
        let feed_only = [TokenScope::AlarmFeed];
        let (feed, record) = d
            .create_token_with("nursecall", "nurse call", &feed_only)
            .unwrap();
        assert_eq!(record.scopes, feed_only);
        let (api, _) = d.create_token("nursecall", "EHR").unwrap();
        // The feed's credential does not open the REST API, nor the reverse.
        assert!(d.principal_for_token(&feed).is_none());
        assert!(d.principal_for_token(&api).is_some());
        let (who, _) = d.alarm_feed_principal("nursecall", &feed).unwrap();
        assert_eq!(who.username, "nursecall");
        let no_scope = d.alarm_feed_principal("nursecall", &api).unwrap_err();
        assert!(no_scope.is_not_authorized());
        assert!(no_scope.to_string().contains("alarm-feed"), "{no_scope}");
        // Only its owner's name, only a token medmesh issued.
        assert!(d.alarm_feed_principal("other", &feed).is_err());
        assert!(d.alarm_feed_principal("nursecall", "mm_forged").is_err());
        for token in [&feed, &api] {
            assert_eq!(d.api_token_owner(token).as_deref(), Some("nursecall"));
        }
        assert_eq!(d.api_token_owner("a-device-token"), None);
        // Revoked, or the user disabled: gone, also for an open feed's check.
        assert!(d.alarm_feed_holder(&record.id).is_some());
        d.revoke_token(&record.id).unwrap();
        assert!(d.alarm_feed_holder(&record.id).is_none());
        let revoked = d.alarm_feed_principal("nursecall", &feed).unwrap_err();
        assert_eq!(revoked, FeedRefusal::Revoked(record.id.clone()));
        assert!(
            !revoked.is_not_authorized(),
            "a bad password, to the client"
        );
        let (feed, record) = d
            .create_token_with(
                "nursecall",
                "pager",
                &[TokenScope::AlarmFeed, TokenScope::Api],
            )
            .unwrap();
        assert!(
            d.principal_for_token(&feed).is_some(),
            "both scopes asked for"
        );
        d.disable_user("nursecall").unwrap();
        assert!(d.alarm_feed_holder(&record.id).is_none());
        assert!(d.alarm_feed_principal("nursecall", &feed).is_err());
        assert!(d.create_token_with("other", "nothing", &[]).is_err());
        // A token stored before scopes existed is an API token.
        let old: ApiToken = serde_json::from_str(
            r#"{"id":"tok-1","username":"u","name":"n","created_ms":1,"revoked_ms":null}"#,
        )
        .unwrap();
        assert_eq!(old.scopes, [TokenScope::Api]);
    }

    #[test]
    fn login_tokens_and_disabling() {
        let dir = tempfile::tempdir().unwrap();
        {
            let a = Access::open(dir.path()).unwrap();
            let pw = a
                .bootstrap_admin()
                .unwrap()
                .expect("first start creates admin");
            assert_eq!(a.bootstrap_admin().unwrap(), None);
            let (cookie, who) = a.login("admin", &pw, "127.0.0.1").unwrap();
            assert_eq!(who.role, Role::Admin);
            assert_eq!(a.principal_for_session(&cookie), Some(who));
            assert_eq!(
                a.login("admin", "wrong password!", "127.0.0.1"),
                Err(LoginError::Invalid)
            );
            assert_eq!(
                a.login("nobody", &pw, "127.0.0.1"),
                Err(LoginError::Invalid)
            );
            a.directory
                .add_user("dr1", Role::Physician, None, PW)
                .unwrap();
            let (token, _) = a.directory.create_token("dr1", "EHR").unwrap();
            assert_eq!(
                a.directory.principal_for_token(&token).unwrap().username,
                "dr1"
            );
            assert!(a.directory.principal_for_token("mm_forged").is_none());
        }
        // Users and tokens survive a restart; sessions do not.
        let a = Access::open(dir.path()).unwrap();
        let tokens = a.directory.tokens_of("dr1");
        assert_eq!(tokens.len(), 1);
        a.directory.disable_user("dr1").unwrap();
        assert!(a.directory.tokens_of("dr1")[0].revoked_ms.is_some());
        assert!(a.directory.principal("dr1").is_none());
        let logins = a
            .audit
            .query(&Filter {
                action: Some("login".into()),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(logins.len(), 3);
        assert!(
            !std::fs::read_to_string(dir.path().join("access.json"))
                .unwrap()
                .contains(PW)
        );
    }
}
