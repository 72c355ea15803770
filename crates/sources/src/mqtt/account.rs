//! Accounts on the MQTT listener: users (not devices) that sign in to read
//! the alarm feed, such as a nurse-call system or a pager gateway, with an
//! API token created with the `alarm-feed` scope as the CONNECT password and
//! the account's username as the user name.
//!
//! Who the account is, what it may see and the audit log belong to the
//! access layer above this crate; the listener reaches them through
//! [`Accounts`] and [`Account`], which the server implements. The listener
//! keeps the protocol's side: an account may subscribe only to alarm topics
//! (`topic::may_subscribe_alarm_feed`), publishes nothing and leaves no will,
//! and every alarm routed to it is put to [`Account::may_receive`] first.

use medmesh_model::{PatientId, Priority};
use medmesh_pipeline::Refusal;
use std::net::SocketAddr;
use std::sync::Arc;

/// What an alarm message is about: enough for the policy to decide, per
/// message, whether an account may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmSubject {
    pub patient: PatientId,
    pub priority: Priority,
    /// How far up its escalation ladder the alarm has climbed (a user an
    /// escalation step names sees the alarm once it reached that step).
    pub level: u32,
}

/// A CONNECT's credentials, and where it came from (for the audit log).
#[derive(Debug)]
pub struct Login<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub client_id: &'a str,
    pub peer: SocketAddr,
}

/// Signs accounts in.
pub trait Accounts: Send + Sync {
    /// `None` when `login` is no account's (its password is no API token):
    /// the listener then takes it as a device's. Otherwise the account
    /// signed in (the listener audits the connection once it accepts it),
    /// or why it was refused (already audited): bad credentials
    /// (unknown, revoked, another user's token) or not authorized (a token
    /// without the `alarm-feed` scope).
    fn sign_in(&self, login: &Login<'_>) -> Option<Result<Arc<dyn Account>, Refusal>>;
}

/// An account signed in on one connection.
pub trait Account: Send + Sync {
    fn username(&self) -> &str;
    /// The id of the token it signed in with (revoking it closes the
    /// connection: `Broker::close_account`).
    fn token_id(&self) -> &str;
    /// Whether the account may be sent this alarm now. Asked for every
    /// message, with the broker's sessions locked: it must not call the broker.
    fn may_receive(&self, alarm: &AlarmSubject) -> bool;
    /// Records what the account did or was refused in the audit log.
    fn audit(&self, action: &str, allowed: bool, detail: &str);
}
