//! The medmesh domain model, shared by every other crate.
//!
//! Nothing here does I/O. It names the things medmesh deals with (patients,
//! devices, observations, alarms) and the clinical vocabulary they use: LOINC
//! codes for *what* was measured and UCUM units for *how much*.

mod alarm;
mod ids;
mod observation;
mod telemetry;
mod vitals;

pub use alarm::{Act, Alarm, AlarmState, Priority};
pub use ids::{DeviceId, IdError, MAX_ID_LEN, PatientId};
pub use observation::{Observation, ObservationError, TimestampMs, now_ms};
pub use telemetry::DeviceReport;
pub use vitals::{ACVPU, ACVPU_LOINC_ANSWERS, UnitError, VitalSign};

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

/// A device that publishes observations, and whom it measures over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    /// The patient this device is assigned to now; `None` while unassigned.
    pub patient_id: Option<PatientId>,
    /// Every assignment, oldest first. A reading belongs to the assignment in
    /// force at the reading's own time, so readings a device stored while
    /// with one patient and uploads after moving to the next stay with the
    /// first: moving a device never mixes two patients' data.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub patient_id: Option<PatientId>,
    /// From when (epoch ms) the assignment holds.
    pub from_ms: i64,
}

impl Device {
    pub fn new(id: DeviceId) -> Device {
        Device {
            id,
            patient_id: None,
            assignments: Vec::new(),
        }
    }

    /// Assigns the device to `patient` from `now_ms` on (no-op if unchanged).
    pub fn assign(&mut self, patient: Option<PatientId>, now_ms: i64) {
        if self.patient_id == patient && !self.assignments.is_empty() {
            return;
        }
        self.assignments.push(Assignment {
            patient_id: patient.clone(),
            from_ms: now_ms,
        });
        self.patient_id = patient;
    }

    /// The patient a reading taken at `time_ms` belongs to. Readings from
    /// before the first assignment (a home device's stored memory, synced
    /// on first use) belong to the first patient.
    pub fn patient_at(&self, time_ms: i64) -> Option<&PatientId> {
        let later = self.assignments.partition_point(|a| a.from_ms <= time_ms);
        match later.checked_sub(1) {
            Some(i) => self.assignments[i].patient_id.as_ref(),
            None => self
                .assignments
                .first()
                .map_or(self.patient_id.as_ref(), |a| a.patient_id.as_ref()),
        }
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn readings_follow_the_assignment_of_their_time() {
        let (a, b) = (PatientId::new("a").unwrap(), PatientId::new("b").unwrap());
        let mut d = Device::new(DeviceId::new("cuff").unwrap());
        d.assign(Some(a.clone()), 1_000);
        d.assign(Some(a.clone()), 1_500); // unchanged: no new entry
        d.assign(Some(b.clone()), 2_000);
        d.assign(None, 3_000);
        assert_eq!(d.assignments.len(), 3);
        assert_eq!(
            d.patient_at(500),
            Some(&a),
            "stored memory goes to the first patient"
        );
        assert_eq!(d.patient_at(1_999), Some(&a));
        assert_eq!(d.patient_at(2_000), Some(&b));
        assert_eq!(d.patient_at(3_500), None);
        assert_eq!(d.patient_id, None);
    }
}
