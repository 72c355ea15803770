//! Assigning devices to patients, and what the care team is told when a
//! device is taken off a patient.
//!
//! Taking a device off a patient (unassigning it, or assigning it to
//! someone else) silently ends that patient's monitoring by it: its readings
//! go elsewhere and raise no alarm for them. So it raises a low-priority
//! "monitoring stopped" notice on the patient, naming the device and who
//! took it off, which reaches the care team like any alarm (dashboard, live
//! stream, MQTT, e-mail by the escalation ladder) and resolves when a device
//! is assigned to the patient again. The notice is on disk before the
//! assignment is confirmed, like a clinician's action.

use crate::Pipeline;
use medmesh_model::{Device, DeviceId, PatientId, now_ms};
use medmesh_storage::RegistryError;

/// What an assignment changed.
pub struct Reassigned {
    pub device: Device,
    /// The patient the device measured until now, if it was taken off them.
    pub taken_from: Option<PatientId>,
}

impl Pipeline {
    /// Assigns `device` to `patient` (`None`: to nobody), on behalf of `by`.
    pub fn assign_device(
        &self,
        device: DeviceId,
        patient: Option<PatientId>,
        by: &str,
    ) -> Result<Reassigned, RegistryError> {
        let (before, assigned) = self
            .registry
            .reassign_device(device.clone(), patient.clone())?;
        let gained = patient.clone().filter(|p| before.as_ref() != Some(p));
        let taken_from = before.filter(|b| patient.as_ref() != Some(b));
        let now = now_ms();
        let (changes, durable) = {
            let mut board = self.alarms.lock().expect("alarm board lock");
            let mut changes = Vec::new();
            if let Some(p) = &gained {
                changes.extend(board.monitoring_resumed(p, now));
            }
            if let Some(p) = &taken_from {
                changes.extend(board.monitoring_stopped(p, &device, by, now));
            }
            // Numbered under the board's lock, waited for after it.
            let logged: Vec<_> = changes
                .into_iter()
                .map(|c| {
                    let (seq, durable) = self.alarm_log.append_change_waiting(c.kind(), c.alarm());
                    ((c, seq), durable)
                })
                .collect();
            logged.into_iter().unzip::<_, _, Vec<_>, Vec<_>>()
        };
        for d in durable {
            // As for a clinician's action: the notice stands on the board
            // and the stream even if its record has to wait for the disk.
            if let Err(e) = d.wait() {
                self.metrics.storage_error();
                tracing::error!(%device, error = %e, "monitoring notice not recorded yet");
            }
        }
        for (change, seq) in changes {
            self.publish_alarm(change, Some(seq));
        }
        Ok(Reassigned {
            device: assigned,
            taken_from,
        })
    }
}
