//! Alarms in the pipeline: recording lifecycle changes and clinicians'
//! actions. The rules themselves run in `Pipeline::store_for`.

use crate::{LiveEvent, Pipeline};
use medmesh_model::{Alarm, PatientId, now_ms};
use medmesh_rules::{AlarmChange, BoardError};

/// What a clinician does to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmAction {
    Acknowledge,
    Snooze { minutes: u32 },
    Resolve,
}

impl Pipeline {
    /// Writes lifecycle changes to the alarm log. A failure is logged and
    /// counted: the alarm still reaches the clinicians, which matters more
    /// than its record.
    pub(crate) fn record(&self, changes: &[AlarmChange]) {
        for change in changes.iter().filter(|c| c.is_lifecycle()) {
            if let Err(e) = self.alarm_log.append(change.alarm()) {
                self.metrics.storage_error();
                tracing::error!(alarm = change.alarm().id, error = %e, "alarm change not recorded");
            }
        }
    }

    /// Applies a clinician's action to an alarm: records it, tells the
    /// live stream, and returns the alarm's new state.
    pub fn act_on_alarm(
        &self,
        action: AlarmAction,
        id: u64,
        by: &str,
    ) -> Result<Alarm, BoardError> {
        let now = now_ms();
        let change = {
            let mut board = self.alarms.lock().expect("alarm board lock");
            match action {
                AlarmAction::Acknowledge => board.acknowledge(id, by, now),
                AlarmAction::Snooze { minutes } => {
                    board.snooze(id, by, now, now + i64::from(minutes) * 60_000)
                }
                AlarmAction::Resolve => board.resolve(id, by, now),
            }?
        };
        self.record(std::slice::from_ref(&change));
        let alarm = change.alarm().clone();
        let _ = self.live.send(LiveEvent::alarm(change));
        Ok(alarm)
    }

    /// Recently resolved alarms, newest first.
    pub fn alarm_history(&self, limit: usize) -> Vec<Alarm> {
        self.alarms.lock().expect("alarm board lock").history(limit)
    }

    pub fn active_alarms(&self) -> Vec<Alarm> {
        self.alarms.lock().expect("alarm board lock").active()
    }

    pub fn active_alarms_for(&self, patient: &PatientId) -> Vec<Alarm> {
        self.alarms
            .lock()
            .expect("alarm board lock")
            .active_for(patient)
    }
}
