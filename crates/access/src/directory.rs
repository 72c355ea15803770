//! The directory: users, API tokens, care teams and consents, kept in
//! `access.json` under the data directory and rewritten whole (atomically,
//! fsynced) on every change. Changes are rare next to reads, and a whole
//! rewrite keeps the file trivially consistent.
//!
//! Secrets are never stored: passwords as argon2id hashes, API tokens as
//! SHA-256 digests.

use crate::consent::{Consent, Scope};
use crate::role::Role;
use crate::secret;
use medmesh_model::{PatientId, TimestampMs, now_ms};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("cannot save the access directory: {0}")]
    Save(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// For the patient role: whose record this account is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientId>,
    pub disabled: bool,
    pub created_ms: TimestampMs,
    /// Where alarm notifications for this user are e-mailed (escalation
    /// steps that name them, consents that let them follow a patient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The part of a user that travels with each request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub username: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<PatientId>,
}

/// What an API token may be used for. A token holds only the scopes it was
/// created with, so the credential a pager or nurse-call system keeps
/// (`alarm-feed`) cannot read the REST API if it leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// The REST API and the live stream, as the owner could.
    Api,
    /// The alarm feed over MQTT (`medmesh/v1/alarms/...`): the token is the
    /// CONNECT password, the owner's username the user name; the owner's
    /// patients' alarms only.
    AlarmFeed,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Api => "api",
            TokenScope::AlarmFeed => "alarm-feed",
        }
    }
}

/// Why a token does not sign its user in to the alarm feed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedRefusal {
    #[error("unknown API token")]
    Unknown,
    #[error("the token is not {0:?}'s (a token signs in only its owner)")]
    NotOwner(String),
    #[error("token {0} is revoked")]
    Revoked(String),
    #[error("token {0} has no alarm-feed scope (create one with scopes [\"alarm-feed\"])")]
    NoScope(String),
    #[error("user {0:?} is disabled")]
    Disabled(String),
}

impl FeedRefusal {
    /// The credential is good but not for this (rather than wrong).
    pub fn is_not_authorized(&self) -> bool {
        matches!(self, FeedRefusal::NoScope(_) | FeedRefusal::Disabled(_))
    }
}

/// Tokens created before scopes existed were API tokens.
fn api_scope() -> Vec<TokenScope> {
    vec![TokenScope::Api]
}

/// An API token as listed (the token itself is shown once, when created).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub username: String,
    /// What the owner calls it ("EHR interface", "Prometheus").
    pub name: String,
    pub created_ms: TimestampMs,
    pub revoked_ms: Option<TimestampMs>,
    /// What it may be used for (`api`, `alarm-feed`).
    #[serde(default = "api_scope")]
    pub scopes: Vec<TokenScope>,
}

/// A care team: its members (clinicians) see the patients it covers, by
/// ward or by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub members: BTreeSet<String>,
    /// Every patient whose `ward` is one of these.
    #[serde(default)]
    pub wards: BTreeSet<String>,
    #[serde(default)]
    pub patients: BTreeSet<PatientId>,
}

#[derive(Default, Serialize, Deserialize)]
struct Contents {
    users: BTreeMap<String, StoredUser>,
    tokens: BTreeMap<String, StoredToken>,
    teams: BTreeMap<String, Team>,
    consents: Vec<Consent>,
}

/// Users and tokens as stored, with their secrets' hashes.
#[derive(Clone, Serialize, Deserialize)]
struct StoredUser {
    #[serde(flatten)]
    user: User,
    password_hash: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    token: ApiToken,
    digest: String,
}

pub struct Directory {
    path: PathBuf,
    contents: RwLock<Contents>,
}

/// A username: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_username(name: &str) -> Result<(), DirectoryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "username {name:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// An e-mail address, checked for shape only (`local@domain`, no spaces);
/// whether it exists is for the mail server to say.
pub fn validate_email(email: &str) -> Result<(), DirectoryError> {
    let ok = email.len() <= 254
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "email {email:?}: expected an address like name@example.org"
        )))
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

impl Directory {
    pub fn open(dir: &Path) -> Result<Directory, DirectoryError> {
        medmesh_storage::create_private_dir(dir)?;
        let path = dir.join("access.json");
        let contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DirectoryError::Load {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::default(),
            Err(e) => {
                return Err(DirectoryError::Load {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Directory {
            path,
            contents: RwLock::new(contents),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Contents> {
        self.contents.read().expect("directory lock")
    }

    /// Applies `change` and saves; if saving fails the change is undone, so
    /// memory never says something the disk does not.
    fn change<R>(
        &self,
        change: impl FnOnce(&mut Contents) -> Result<R, DirectoryError>,
    ) -> Result<R, DirectoryError> {
        let mut c = self.contents.write().expect("directory lock");
        let before = serde_json::to_vec(&*c).expect("directory serialises");
        let result = change(&mut c)?;
        let bytes = serde_json::to_vec_pretty(&*c).expect("directory serialises");
        if let Err(e) = medmesh_storage::write_atomically(&self.path, &bytes) {
            *c = serde_json::from_slice(&before).expect("directory round-trips");
            return Err(e.into());
        }
        Ok(result)
    }

    pub fn has_users(&self) -> bool {
        !self.read().users.is_empty()
    }

    /// Adds a user with `password` (already checked by the caller for length).
    /// The patient role needs the patient the account belongs to.
    pub fn add_user(
        &self,
        username: &str,
        role: Role,
        patient: Option<PatientId>,
        password: &str,
    ) -> Result<User, DirectoryError> {
        validate_username(username)?;
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(DirectoryError::Invalid(format!(
                "password: use at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        match (role, &patient) {
            (Role::Patient, None) => {
                return Err(DirectoryError::Invalid(
                    "a patient account needs the patient id it belongs to".into(),
                ));
            }
            (r, Some(_)) if r != Role::Patient => {
                return Err(DirectoryError::Invalid(format!(
                    "only patient accounts are linked to a patient, not {r}"
                )));
            }
            _ => {}
        }
        let password_hash = secret::hash_password(password);
        self.change(|c| {
            if c.users.contains_key(username) {
                return Err(DirectoryError::Conflict(format!(
                    "user {username:?} already exists"
                )));
            }
            let user = User {
                username: username.to_string(),
                role,
                patient,
                disabled: false,
                created_ms: now_ms(),
                email: None,
            };
            c.users.insert(
                username.to_string(),
                StoredUser {
                    user: user.clone(),
                    password_hash,
                },
            );
            Ok(user)
        })
    }

    /// Sets a new password (e.g. after a reset by an administrator).
    pub fn set_password(&self, username: &str, password: &str) -> Result<(), DirectoryError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(DirectoryError::Invalid(format!(
                "password: use at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        let hash = secret::hash_password(password);
        self.change(|c| {
            let u = c
                .users
                .get_mut(username)
                .ok_or_else(|| DirectoryError::NotFound(format!("user {username:?}")))?;
            u.password_hash = hash;
            Ok(())
        })
    }

    /// Sets (or with `None` removes) the e-mail address alarm notifications
    /// go to.
    pub fn set_email(&self, username: &str, email: Option<&str>) -> Result<User, DirectoryError> {
        if let Some(e) = email {
            validate_email(e)?;
        }
        self.change(|c| {
            let u = c
                .users
                .get_mut(username)
                .ok_or_else(|| DirectoryError::NotFound(format!("user {username:?}")))?;
            u.user.email = email.map(str::to_string);
            Ok(u.user.clone())
        })
    }

    /// Disables a user and revokes their API tokens. Returns whether the
    /// user was active.
    pub fn disable_user(&self, username: &str) -> Result<bool, DirectoryError> {
        self.change(|c| {
            let u = c
                .users
                .get_mut(username)
                .ok_or_else(|| DirectoryError::NotFound(format!("user {username:?}")))?;
            let was = !u.user.disabled;
            u.user.disabled = true;
            let now = now_ms();
            for t in c.tokens.values_mut() {
                if t.token.username == username && t.token.revoked_ms.is_none() {
                    t.token.revoked_ms = Some(now);
                }
            }
            Ok(was)
        })
    }

    pub fn users(&self) -> Vec<User> {
        self.read().users.values().map(|u| u.user.clone()).collect()
    }

    pub fn user(&self, username: &str) -> Option<User> {
        self.read().users.get(username).map(|u| u.user.clone())
    }

    /// The password hash to verify a login against; `None` for an unknown or
    /// disabled user.
    pub fn password_hash(&self, username: &str) -> Option<String> {
        self.read()
            .users
            .get(username)
            .filter(|u| !u.user.disabled)
            .map(|u| u.password_hash.clone())
    }

    /// The principal of an enabled user.
    pub fn principal(&self, username: &str) -> Option<Principal> {
        self.read()
            .users
            .get(username)
            .filter(|u| !u.user.disabled)
            .map(|u| Principal {
                username: u.user.username.clone(),
                role: u.user.role,
                patient: u.user.patient.clone(),
            })
    }

    /// Creates an API token (scope `api`) for `username`; returns it (shown
    /// once) and its record.
    pub fn create_token(
        &self,
        username: &str,
        name: &str,
    ) -> Result<(String, ApiToken), DirectoryError> {
        self.create_token_with(username, name, &[TokenScope::Api])
    }

    /// Creates a token for `username` holding `scopes` (at least one).
    pub fn create_token_with(
        &self,
        username: &str,
        name: &str,
        scopes: &[TokenScope],
    ) -> Result<(String, ApiToken), DirectoryError> {
        if scopes.is_empty() {
            return Err(DirectoryError::Invalid(
                "a token needs at least one scope (api, alarm-feed)".into(),
            ));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let secret = secret::random_token("mm_");
        let digest = secret::digest(&secret);
        let token = self.change(|c| {
            if c.users.get(username).is_none_or(|u| u.user.disabled) {
                return Err(DirectoryError::NotFound(format!("user {username:?}")));
            }
            let id = format!("tok-{}", &digest[..12]);
            let token = ApiToken {
                id: id.clone(),
                username: username.to_string(),
                name: name.to_string(),
                created_ms: now_ms(),
                revoked_ms: None,
                scopes,
            };
            c.tokens.insert(
                id,
                StoredToken {
                    token: token.clone(),
                    digest,
                },
            );
            Ok(token)
        })?;
        Ok((secret, token))
    }

    /// The principal an API token stands for on the REST API, if the token
    /// is known, not revoked, holds the `api` scope and its user is enabled.
    pub fn principal_for_token(&self, token: &str) -> Option<Principal> {
        let t = self.known_token(token)?;
        if t.revoked_ms.is_some() || !t.scopes.contains(&TokenScope::Api) {
            return None;
        }
        self.principal(&t.username)
    }

    /// The record of the token whose secret is `token`, in force or not.
    fn known_token(&self, token: &str) -> Option<ApiToken> {
        let digest = secret::digest(token);
        let c = self.read();
        // Token ids are derived from the digest, so this is one lookup.
        let t = c.tokens.get(&format!("tok-{}", &digest[..12]))?;
        (t.digest == digest).then(|| t.token.clone())
    }

    /// Whose API token `token` is, if it is any medmesh issued (in force or
    /// not), as opposed to a device's token: the MQTT listener tells an
    /// integration account's login from a device's by it.
    pub fn api_token_owner(&self, token: &str) -> Option<String> {
        self.known_token(token).map(|t| t.username)
    }

    /// Signs `username` in to the alarm feed with `token`: the token must be
    /// theirs, in force and hold `alarm-feed`, the user enabled. Returns the
    /// principal and the token's record, or why not (for the audit log and
    /// the refused client's log line; the client itself is told only "bad
    /// user name or password" or "not authorized").
    pub fn alarm_feed_principal(
        &self,
        username: &str,
        token: &str,
    ) -> Result<(Principal, ApiToken), FeedRefusal> {
        let t = self.known_token(token).ok_or(FeedRefusal::Unknown)?;
        if t.username != username {
            return Err(FeedRefusal::NotOwner(username.to_string()));
        }
        if t.revoked_ms.is_some() {
            return Err(FeedRefusal::Revoked(t.id));
        }
        if !t.scopes.contains(&TokenScope::AlarmFeed) {
            return Err(FeedRefusal::NoScope(t.id));
        }
        let who = self
            .principal(username)
            .ok_or_else(|| FeedRefusal::Disabled(username.to_string()))?;
        Ok((who, t))
    }

    /// The principal token `id` still signs in to the alarm feed: `None`
    /// once it is revoked or its user disabled (checked per message, so a
    /// feed stops at once whatever closes its connection).
    pub fn alarm_feed_holder(&self, id: &str) -> Option<Principal> {
        let username = {
            let c = self.read();
            let t = c.tokens.get(id)?;
            if t.token.revoked_ms.is_some() || !t.token.scopes.contains(&TokenScope::AlarmFeed) {
                return None;
            }
            t.token.username.clone()
        };
        self.principal(&username)
    }

    pub fn tokens_of(&self, username: &str) -> Vec<ApiToken> {
        self.read()
            .tokens
            .values()
            .filter(|t| t.token.username == username)
            .map(|t| t.token.clone())
            .collect()
    }

    pub fn token(&self, id: &str) -> Option<ApiToken> {
        self.read().tokens.get(id).map(|t| t.token.clone())
    }

    /// Revokes a token; returns whether it was in force.
    pub fn revoke_token(&self, id: &str) -> Result<bool, DirectoryError> {
        self.change(|c| {
            let t = c
                .tokens
                .get_mut(id)
                .ok_or_else(|| DirectoryError::NotFound(format!("token {id:?}")))?;
            let was = t.token.revoked_ms.is_none();
            t.token.revoked_ms.get_or_insert_with(now_ms);
            Ok(was)
        })
    }

    pub fn teams(&self) -> Vec<Team> {
        self.read().teams.values().cloned().collect()
    }

    /// Creates or replaces team `team.id`. Members must be clinicians.
    pub fn put_team(&self, team: Team) -> Result<Team, DirectoryError> {
        validate_username(&team.id)
            .map_err(|_| DirectoryError::Invalid(format!("team id {:?} is not valid", team.id)))?;
        self.change(|c| {
            for m in &team.members {
                match c.users.get(m) {
                    None => return Err(DirectoryError::Invalid(format!("no user {m:?}"))),
                    Some(u) if !u.user.role.is_clinician() => {
                        return Err(DirectoryError::Invalid(format!(
                            "{m:?} is a {}; care team members are physicians and nurses",
                            u.user.role
                        )));
                    }
                    Some(_) => {}
                }
            }
            c.teams.insert(team.id.clone(), team.clone());
            Ok(team)
        })
    }

    /// Whether any team `username` belongs to covers the patient (by id or ward).
    pub fn in_care_team(&self, username: &str, patient: &PatientId, ward: &str) -> bool {
        self.read().teams.values().any(|t| {
            t.members.contains(username)
                && (t.patients.contains(patient) || (!ward.is_empty() && t.wards.contains(ward)))
        })
    }

    /// The wards of every care team `username` belongs to.
    pub fn wards_of(&self, username: &str) -> BTreeSet<String> {
        self.read()
            .teams
            .values()
            .filter(|t| t.members.contains(username))
            .flat_map(|t| t.wards.iter().cloned())
            .collect()
    }

    /// Members of every care team that covers the patient (by id or ward).
    pub fn care_team_members(&self, patient: &PatientId, ward: &str) -> BTreeSet<String> {
        self.read()
            .teams
            .values()
            .filter(|t| {
                t.patients.contains(patient) || (!ward.is_empty() && t.wards.contains(ward))
            })
            .flat_map(|t| t.members.iter().cloned())
            .collect()
    }

    /// Enabled users who follow the patient's alarms: each holds a consent
    /// in force at `now` from the patient that covers the `alarms` scope.
    pub fn alarm_followers(&self, patient: &PatientId, now: TimestampMs) -> BTreeSet<String> {
        let c = self.read();
        c.consents
            .iter()
            .filter(|k| &k.patient == patient && k.in_force(now) && k.covers(Scope::Alarms))
            .filter(|k| c.users.get(&k.grantee).is_some_and(|u| !u.user.disabled))
            .map(|k| k.grantee.clone())
            .collect()
    }

    pub fn grant_consent(
        &self,
        patient: PatientId,
        grantee: &str,
        scopes: Vec<Scope>,
        purpose: &str,
        expires_ms: Option<TimestampMs>,
        granted_by: &str,
    ) -> Result<Consent, DirectoryError> {
        if scopes.is_empty() {
            return Err(DirectoryError::Invalid(
                "a consent names at least one scope (observations, alarms)".into(),
            ));
        }
        if purpose.trim().is_empty() {
            return Err(DirectoryError::Invalid(
                "a consent states its purpose".into(),
            ));
        }
        let now = now_ms();
        if expires_ms.is_some_and(|e| e <= now) {
            return Err(DirectoryError::Invalid("the expiry is in the past".into()));
        }
        self.change(|c| {
            match c.users.get(grantee) {
                Some(u) if u.user.role.needs_consent() => {}
                Some(u) => {
                    return Err(DirectoryError::Invalid(format!(
                        "{grantee:?} is a {}; consents are granted to caregivers, insurers and researchers",
                        u.user.role
                    )));
                }
                None => return Err(DirectoryError::Invalid(format!("no user {grantee:?}"))),
            }
            let consent = Consent {
                id: format!("consent-{}", &secret::digest(&secret::random_token(""))[..12]),
                patient,
                grantee: grantee.to_string(),
                scopes,
                purpose: purpose.trim().to_string(),
                granted_by: granted_by.to_string(),
                granted_ms: now,
                expires_ms,
                revoked_ms: None,
            };
            c.consents.push(consent.clone());
            Ok(consent)
        })
    }

    pub fn consent(&self, id: &str) -> Option<Consent> {
        self.read().consents.iter().find(|c| c.id == id).cloned()
    }

    /// Revokes a consent; returns its new state.
    pub fn revoke_consent(&self, id: &str) -> Result<Consent, DirectoryError> {
        self.change(|c| {
            let consent = c
                .consents
                .iter_mut()
                .find(|c| c.id == id)
                .ok_or_else(|| DirectoryError::NotFound(format!("consent {id:?}")))?;
            consent.revoked_ms.get_or_insert_with(now_ms);
            Ok(consent.clone())
        })
    }

    /// Every consent a patient granted, in force or not (their history).
    pub fn consents_of(&self, patient: &PatientId) -> Vec<Consent> {
        self.read()
            .consents
            .iter()
            .filter(|c| &c.patient == patient)
            .cloned()
            .collect()
    }

    /// Consents in force now that `grantee` holds.
    pub fn consents_held_by(&self, grantee: &str) -> Vec<Consent> {
        let now = now_ms();
        self.read()
            .consents
            .iter()
            .filter(|c| c.grantee == grantee && c.in_force(now))
            .cloned()
            .collect()
    }

    /// Whether `grantee` holds a consent in force from `patient` covering `scope`.
    pub fn has_consent(&self, grantee: &str, patient: &PatientId, scope: Scope) -> bool {
        let now = now_ms();
        self.read().consents.iter().any(|c| {
            c.grantee == grantee && &c.patient == patient && c.in_force(now) && c.covers(scope)
        })
    }
}
