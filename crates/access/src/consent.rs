//! Consent: a patient's grant to one named user of some of their data, for a
//! purpose, until an expiry or until revoked. A caregiver, insurer or
//! researcher sees a patient's data only through a consent in force, and
//! only the scopes it names.

use medmesh_model::{PatientId, TimestampMs};
use serde::{Deserialize, Serialize};

/// What a consent lets the grantee see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Readings: latest values, trends, NEWS2.
    Observations,
    /// Alarms raised for the patient and their lifecycle.
    Alarms,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub id: String,
    pub patient: PatientId,
    /// The username of the person or organisation account granted access.
    pub grantee: String,
    pub scopes: Vec<Scope>,
    /// Why: e.g. "family care", "insurance claim 2291", "COPD study".
    pub purpose: String,
    pub granted_by: String,
    pub granted_ms: TimestampMs,
    pub expires_ms: Option<TimestampMs>,
    pub revoked_ms: Option<TimestampMs>,
}

impl Consent {
    pub fn in_force(&self, now_ms: TimestampMs) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|e| now_ms < e)
    }

    pub fn covers(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_revocation_end_a_consent() {
        let mut c = Consent {
            id: "c1".into(),
            patient: PatientId::new("p1").unwrap(),
            grantee: "daughter".into(),
            scopes: vec![Scope::Observations],
            purpose: "family care".into(),
            granted_by: "p1".into(),
            granted_ms: 0,
            expires_ms: Some(1000),
            revoked_ms: None,
        };
        assert!(c.in_force(999));
        assert!(!c.in_force(1000));
        assert!(c.covers(Scope::Observations) && !c.covers(Scope::Alarms));
        c.expires_ms = None;
        assert!(c.in_force(i64::MAX));
        c.revoked_ms = Some(5);
        assert!(!c.in_force(6));
    }
}
