//! What devices report about themselves (battery) and events they detect
//! (falls): kept with the device and judged for the device's patient.

use crate::{DeviceActivity, Pipeline};
use medmesh_model::{DeviceId, DeviceReport, now_ms};
use medmesh_rules::RULE_FALL;

impl Pipeline {
    /// Applies a message's device reports, after its readings were stored.
    /// A report belongs to the patient the device was assigned to at the
    /// report's time; an unassigned device's reports raise nothing.
    pub(crate) fn device_reports(&self, device: &DeviceId, reports: &[DeviceReport]) {
        for report in reports {
            if let DeviceReport::Battery { percent, .. } = report {
                let mut activity = self.activity.lock().expect("activity lock");
                let a = activity.entry(device.clone()).or_insert(DeviceActivity {
                    last_seen_ms: now_ms(),
                    messages: 1,
                    online: None,
                    battery_percent: None,
                });
                a.battery_percent = Some(*percent);
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
            let change = self
                .alarms
                .lock()
                .expect("alarm board lock")
                .apply(&patient, finding);
            let Some(change) = change else { continue };
            if fall && change.is_lifecycle() {
                // The alarm is the only record of a fall: on disk before the
                // device's message is acknowledged.
                if let Err(e) = self.alarm_log.append_durable(change.alarm()) {
                    self.metrics.storage_error();
                    tracing::error!(%device, error = %e, "fall alarm not recorded");
                }
            } else {
                self.record(std::slice::from_ref(&change));
            }
            self.publish_alarm(change);
        }
    }
}
