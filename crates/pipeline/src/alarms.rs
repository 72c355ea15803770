//! Alarms in the pipeline: recording lifecycle changes and clinicians'
//! actions. The rules themselves run in `Pipeline::store_for`.

use crate::Pipeline;
use medmesh_model::{Alarm, PatientId, now_ms};
use medmesh_rules::{AlarmChange, BoardError};
use medmesh_storage::ResolvedQuery;

/// What a clinician does to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmAction {
    Acknowledge,
    Snooze { minutes: u32 },
    Resolve,
}

impl Pipeline {
    /// Queues the lifecycle changes the rules made for the alarm log (the
    /// ingest path never waits for it).
    pub(crate) fn record(&self, changes: &[AlarmChange]) {
        for change in changes.iter().filter(|c| c.is_lifecycle()) {
            self.alarm_log.append(change.alarm());
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
        // A clinician's action is on disk before it is confirmed. If it
        // cannot be recorded it still stands: acting on the alarm matters
        // more than its record, so the failure is logged and counted.
        if let Err(e) = self.alarm_log.append_durable(change.alarm()) {
            self.metrics.storage_error();
            tracing::error!(alarm = id, error = %e, "alarm action not recorded yet (held until the disk works again)");
        }
        let alarm = change.alarm().clone();
        self.publish_alarm(change);
        Ok(alarm)
    }

    /// Every recorded state of alarm `id`, oldest first: its whole lifecycle
    /// (raised, escalated, acknowledged, snoozed, resolved) with who and when.
    /// Empty if no alarm has that id. Blocks on the disk.
    pub fn alarm_record(&self, id: u64) -> std::io::Result<Vec<Alarm>> {
        self.alarm_log.record(id)
    }

    /// Resolved alarms from the alarm log (the whole record, not only what
    /// memory keeps) that `query` wants, newest resolution first. Blocks on
    /// the disk.
    pub fn resolved_alarms(&self, query: &ResolvedQuery<'_>) -> std::io::Result<Vec<Alarm>> {
        self.alarm_log.resolved(query)
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
