//! The roles a user can hold. A role says what kind of access a user may
//! have; which patients it reaches is decided by care teams (clinicians), the
//! patient link (patients) and consents (caregivers, insurers, researchers).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, care teams, devices; reads the audit log. Sees every
    /// patient (each read is audited).
    Admin,
    Physician,
    Nurse,
    /// Sees their own record and decides who else may.
    Patient,
    /// A family member or carer: what the patient granted them.
    Caregiver,
    /// Only consented, scoped data.
    Insurer,
    /// Only consented, scoped data.
    Researcher,
    /// Runs the platform: devices, metrics, health; no health data.
    Operations,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::Physician,
        Role::Nurse,
        Role::Patient,
        Role::Caregiver,
        Role::Insurer,
        Role::Researcher,
        Role::Operations,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Patient => "patient",
            Role::Caregiver => "caregiver",
            Role::Insurer => "insurer",
            Role::Researcher => "researcher",
            Role::Operations => "operations",
        }
    }

    /// Clinicians reach the patients of their care teams.
    pub fn is_clinician(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse)
    }

    /// Roles whose access to a patient comes only from that patient's consent.
    pub fn needs_consent(self) -> bool {
        matches!(self, Role::Caregiver | Role::Insurer | Role::Researcher)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?}; use one of {}", names.join(", "))
            })
    }
}
