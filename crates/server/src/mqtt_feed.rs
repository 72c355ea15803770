//! The alarm feed over MQTT for integration accounts (nurse-call systems,
//! pagers): the MQTT listener's [`Accounts`], answered from the access
//! directory and the one policy.
//!
//! An account signs in with its username as the MQTT user name and an API
//! token holding the `alarm-feed` scope as the password. Each alarm routed
//! to it is put to `Access::may` with `SeeAlarm` (care teams, consents, the
//! escalation steps that name it) at the moment it is sent, with the
//! patient's ward as the registry has it then, and only while the token
//! still holds: a care-team change, a revoked token or a disabled user takes
//! effect from the next message, and revoking or disabling also closes the
//! connection (`Broker::close_account`, called by the routes that do it).
//! Sign-ins, refusals, subscriptions, refused publishes and closings are
//! audited; single deliveries are not (as the live stream's events are not).

use medmesh_access::{Access, AlarmReach, Event, Outcome, PatientRight, Principal};
use medmesh_pipeline::{Pipeline, Refusal};
use medmesh_sources::mqtt::{Account, Accounts, AlarmSubject, Login};
use std::sync::Arc;

pub struct FeedAccounts {
    pub access: Arc<Access>,
    pub pipeline: Arc<Pipeline>,
}

impl Accounts for FeedAccounts {
    fn sign_in(&self, login: &Login<'_>) -> Option<Result<Arc<dyn Account>, Refusal>> {
        // A device's token is no API token: the listener takes it as the
        // device's login. One digest lookup, so devices pay nothing for it.
        let owner = self.access.directory.api_token_owner(login.password)?;
        let from = format!(
            "user name {:?}, client {:?} from {}",
            login.username, login.client_id, login.peer
        );
        let directory = &self.access.directory;
        match directory.alarm_feed_principal(login.username, login.password) {
            // Audited by the listener once the connection is accepted (a
            // will, say, can still refuse it).
            Ok((who, token)) => Some(Ok(Arc::new(FeedAccount {
                who,
                token_id: token.id,
                access: self.access.clone(),
                pipeline: self.pipeline.clone(),
            }))),
            Err(why) => {
                // The token's owner is known (it is a token medmesh issued):
                // the refusal goes on their record, whatever name was sent.
                self.access.audit.record(Event {
                    actor: &owner,
                    role: directory.user(&owner).map(|u| u.role),
                    action: "MQTT alarm feed connect",
                    patient: None,
                    outcome: Outcome::Denied,
                    detail: format!("{from}: {why}"),
                });
                Some(Err(if why.is_not_authorized() {
                    Refusal::NotAuthorized(why.to_string())
                } else {
                    Refusal::BadCredentials(why.to_string())
                }))
            }
        }
    }
}

/// An account signed in to the alarm feed on one connection.
struct FeedAccount {
    who: Principal,
    token_id: String,
    access: Arc<Access>,
    pipeline: Arc<Pipeline>,
}

impl Account for FeedAccount {
    fn username(&self) -> &str {
        &self.who.username
    }

    fn token_id(&self) -> &str {
        &self.token_id
    }

    fn may_receive(&self, alarm: &AlarmSubject) -> bool {
        // The token still holds, for the same principal (not disabled,
        // not revoked), whatever closed or failed to close the connection.
        if self
            .access
            .directory
            .alarm_feed_holder(&self.token_id)
            .as_ref()
            != Some(&self.who)
        {
            return false;
        }
        let right = PatientRight::SeeAlarm(AlarmReach {
            priority: alarm.priority,
            level: alarm.level,
        });
        // As the live stream decides: a patient the registry does not know
        // has no ward to be covered by.
        self.pipeline
            .registry
            .patient(&alarm.patient)
            .is_some_and(|p| self.access.may(&self.who, right, &p.id, &p.ward))
    }

    fn audit(&self, action: &str, allowed: bool, detail: &str) {
        self.access.audit.record(Event {
            actor: &self.who.username,
            role: Some(self.who.role),
            action,
            patient: None,
            outcome: if allowed {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            detail: detail.to_string(),
        });
    }
}
