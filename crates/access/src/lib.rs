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
//! | role | patients reached | rights |
//! |---|---|---|
//! | admin | all | read observations and alarms, care, revoke consents |
//! | physician, nurse | patients of their care teams (by ward or by name) | read observations and alarms, care, chart |
//! | patient | their own record | read observations and alarms, manage consents |
//! | caregiver, insurer, researcher | patients whose consent in force names them | read the consented scopes only |
//! | operations | none | (devices, metrics and health only) |
//!
//! "Care" covers acting on alarms, admitting, recording readings (FHIR) and
//! assigning devices to the patient. "Chart" is recording observations one
//! took oneself (a set charted by hand, under one's own name): clinicians of
//! the care team only, not an administrator, who runs the system but does
//! not observe patients.

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
    ApiToken, Directory, DirectoryError, MIN_PASSWORD_CHARS, Principal, Team, User, validate_email,
    validate_username,
};
pub use role::Role;
pub use session::{MAX_AGE as SESSION_MAX_AGE, Sessions};
pub use throttle::{
    FREE_PER_ACCOUNT as LOGIN_FREE_PER_ACCOUNT, FREE_PER_ADDRESS as LOGIN_FREE_PER_ADDRESS,
    LoginThrottle, MAX_WAIT as LOGIN_MAX_WAIT,
};

use medmesh_model::PatientId;
use std::path::Path;
use std::time::Duration;

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
}

impl Access {
    pub fn open(dir: &Path) -> Result<Access, DirectoryError> {
        Ok(Access {
            directory: Directory::open(dir)?,
            sessions: Sessions::default(),
            throttle: LoginThrottle::default(),
            audit: AuditLog::open(dir)?,
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
            && matches!(right, ReadObservations | ReadAlarms | Care | RevokeConsents)
    }

    pub fn may_global(&self, who: &Principal, right: GlobalRight) -> bool {
        match right {
            GlobalRight::ManageUsers | GlobalRight::ReadAudit => who.role == Role::Admin,
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
