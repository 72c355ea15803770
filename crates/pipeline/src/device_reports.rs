//! What devices report about themselves (battery) and events they detect
//! (falls): kept with the device and judged for the device's patient.
//!
//! Battery levels go to the live stream on every report and to the battery
//! journal (`device_battery.jsonl`) when their whole percent changes, so
//! `GET /api/v1/devices` shows them after a restart.

use crate::{IngestError, LiveEvent, Pipeline};
use medmesh_model::{DeviceId, DeviceReport};
use medmesh_rules::{AlarmChange, RULE_FALL};
use medmesh_storage::{BatteryLevel, BatteryLog, StoreError};
use std::collections::HashMap;
use std::path::Path;

impl Pipeline {
    /// Keeps battery levels in `data_dir` and restores the recorded ones.
    pub fn with_battery_log(mut self, data_dir: &Path) -> std::io::Result<Pipeline> {
        let (log, levels) = BatteryLog::open(data_dir)?;
        self.batteries = std::sync::Mutex::new(levels);
        self.battery_log = Some(log);
        Ok(self)
    }

    /// Each device's last reported battery level.
    pub fn device_batteries(&self) -> HashMap<DeviceId, BatteryLevel> {
        self.batteries.lock().expect("batteries lock").clone()
    }

    fn battery(&self, device: &DeviceId, level: BatteryLevel) {
        let changed = {
            let mut batteries = self.batteries.lock().expect("batteries lock");
            let old = batteries.insert(device.clone(), level);
            old.is_none_or(|o| o.percent.round() != level.percent.round())
        };
        if changed && let Some(log) = &self.battery_log {
            log.record(device, level);
        }
        let _ = self.live.send(LiveEvent::DeviceBattery {
            device_id: device.clone(),
            percent: level.percent,
            time_ms: level.time_ms,
        });
    }

    /// Applies a message's device reports, after its readings were stored.
    /// A report belongs to the patient the device was assigned to at the
    /// report's time; an unassigned device's reports raise nothing.
    ///
    /// `Err` when a fall alarm could not be written to disk: the message must
    /// not be acknowledged, so the device sends it again. The alarm stands on
    /// the board and the live stream meanwhile (care comes before the record),
    /// and its next change (acknowledge, resolve) is written durably.
    pub(crate) fn device_reports(
        &self,
        device: &DeviceId,
        reports: &[DeviceReport],
    ) -> Result<(), IngestError> {
        let mut unrecorded = None;
        for report in reports {
            if let DeviceReport::Battery { percent, time_ms } = *report {
                self.battery(device, BatteryLevel { percent, time_ms });
            }
            let patient = self
                .registry
                .device(device)
                .and_then(|d| d.patient_at(report.time_ms()).cloned());
            let Some(patient) = patient else {
                if matches!(report, DeviceReport::Fall { .. }) {
                    tracing::warn!(%device, "fall reported by a device assigned to nobody: no alarm");
                }
                continue;
            };
            let finding = self
                .rules
                .lock()
                .expect("rules lock")
                .device_report(device, report);
            let Some(finding) = finding else { continue };
            let fall = finding.rule == RULE_FALL;
            let condition = (finding.vital, finding.device.clone(), finding.rule);
            let mut board = self.alarms.lock().expect("alarm board lock");
            let change = board.apply(&patient, finding);
            // A fall sent again changes nothing anyone sees, but its alarm
            // is still written below: the first may never have reached the disk.
            let change = match change {
                Some(change) => change,
                None if fall => match board.active_alarm(&patient, &condition) {
                    Some(alarm) => AlarmChange::Updated(alarm),
                    None => continue,
                },
                None => continue,
            };
            if !fall {
                self.record_and_publish(&board, vec![change]);
                continue;
            }
            // The alarm is the only record of a fall: its state is on disk
            // before the device's message is acknowledged. That holds for a
            // fall sent again while its alarm is active too (the device
            // resending what a full disk refused), whose raise may not have
            // reached the disk: the alarm as it is now is written, whatever
            // became of the raise. Numbered under the board's lock, waited
            // for after it.
            let (seq, durable) = self
                .alarm_log
                .append_change_waiting(change.kind(), change.alarm());
            drop(board);
            if let Err(e) = durable.wait() {
                self.metrics.storage_error();
                tracing::error!(%device, error = %e, "fall alarm not recorded; message not acknowledged");
                unrecorded = Some(e);
            }
            self.publish_alarm(change, Some(seq));
        }
        match unrecorded {
            Some(e) => Err(StoreError::Io(e).into()),
            None => Ok(()),
        }
    }
}
