//! Events pushed to live subscribers (the dashboard stream).

use crate::Origin;
use medmesh_model::{Alarm, DeviceId, Observation, PatientId, TimestampMs};
use medmesh_rules::AlarmChange;
use medmesh_rules::news2::Aggregate;
use serde::Serialize;

/// One observation as the API and dashboard show it: code, key and unit together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveObservation {
    pub key: &'static str,
    pub code: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub time_ms: TimestampMs,
}

impl From<&Observation> for LiveObservation {
    fn from(o: &Observation) -> Self {
        LiveObservation {
            key: o.vital.key(),
            code: o.vital.loinc(),
            value: o.value,
            unit: o.vital.ucum(),
            time_ms: o.time_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Observations {
        /// `None` while the device is not assigned to a patient.
        patient_id: Option<PatientId>,
        /// The device that measured them; absent for a set charted by hand.
        #[serde(skip_serializing_if = "Option::is_none")]
        device_id: Option<DeviceId>,
        /// Who charted them by hand (a user name); absent for a device's.
        #[serde(skip_serializing_if = "Option::is_none")]
        charted_by: Option<String>,
        observations: Vec<LiveObservation>,
        /// The patient's NEWS2 after these observations from their fresh
        /// readings (`complete` false: a lower bound, with what is missing
        /// or too old), each component with its score, value and age; none
        /// while no parameter has a fresh reading.
        news2: Option<Aggregate>,
    },
    /// A device connected (`online`) or went away, and why.
    DeviceStatus {
        device_id: DeviceId,
        online: bool,
        reason: String,
    },
    /// A device reported its battery level (percent) measured at `time_ms`.
    DeviceBattery {
        device_id: DeviceId,
        percent: f64,
        time_ms: TimestampMs,
    },
    /// medmesh itself failed ("raised") or recovered ("resolved"): for
    /// operations, never about a patient.
    SystemAlarm {
        change: &'static str,
        alarm: crate::SystemAlarm,
    },
    Alarm {
        /// "raised", "updated", "acknowledged", "snoozed", "resolved" or
        /// "escalated".
        change: &'static str,
        alarm: Alarm,
        /// The change's number in the alarm log, which sinks resume from
        /// and a receiver orders one alarm's changes by.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
}

impl LiveEvent {
    pub(crate) fn observations(
        patient: Option<&PatientId>,
        origin: &Origin<'_>,
        obs: &[Observation],
        news2: Option<Aggregate>,
    ) -> Self {
        let (device_id, charted_by) = match origin {
            Origin::Device(d) => (Some((*d).clone()), None),
            Origin::Chart { by, .. } => (None, Some(by.to_string())),
        };
        LiveEvent::Observations {
            patient_id: patient.cloned(),
            device_id,
            charted_by,
            observations: obs.iter().map(LiveObservation::from).collect(),
            news2,
        }
    }

    pub(crate) fn alarm(change: AlarmChange, seq: Option<u64>) -> Self {
        LiveEvent::Alarm {
            change: change.kind(),
            alarm: change.alarm().clone(),
            seq,
        }
    }
}
