//! The medmesh domain model, shared by every other crate.
//!
//! Nothing here does I/O. It names the things medmesh deals with (patients,
//! devices, observations, alarms) and the clinical vocabulary they use: LOINC
//! codes for *what* was measured and UCUM units for *how much*.

mod alarm;
mod ids;
mod observation;
mod vitals;

pub use alarm::{Act, Alarm, AlarmState, Priority};
pub use ids::{DeviceId, IdError, MAX_ID_LEN, PatientId};
pub use observation::{Observation, ObservationError, TimestampMs, now_ms};
pub use vitals::{UnitError, VitalSign};

use serde::{Deserialize, Serialize};

/// A person whose observations medmesh records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    pub id: PatientId,
    /// Display name as the ward knows the patient.
    pub name: String,
    /// Ward or programme the patient belongs to (e.g. "Ward A", "Home COPD").
    #[serde(default)]
    pub ward: String,
    /// Bed or location label; empty for home patients.
    #[serde(default)]
    pub bed: String,
}

/// A device that publishes observations, and whom it currently measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    /// The patient this device is assigned to now; `None` while unassigned.
    /// Observations are attributed to the patient at the time they are
    /// accepted, so reassigning a device never moves past data.
    pub patient_id: Option<PatientId>,
}
