//! Alarms in the pipeline: recording lifecycle changes and clinicians'
//! actions. The rules themselves run in `Pipeline::store_for`.

use crate::Pipeline;
use medmesh_model::{Alarm, PatientId, now_ms};
use medmesh_rules::{AlarmBoard, AlarmChange, BoardError};
use medmesh_storage::{LoggedChange, ResolvedQuery};

/// What a clinician does to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmAction {
    Acknowledge,
    Snooze { minutes: u32 },
    Resolve,
}

impl Pipeline {
    /// Queues the changes the rules made for the alarm log (the ingest
    /// path never waits for it); returns each change with its number
    /// there, for [`Pipeline::publish_alarm`]. The board only reports
    /// changes a viewer sees, so every one is recorded. Called with the
    /// board still locked (`_board`), so the log numbers changes in the
    /// order the board made them: a raise never gets a later number than
    /// its resolution.
    pub(crate) fn record(
        &self,
        _board: &AlarmBoard,
        changes: Vec<AlarmChange>,
    ) -> Vec<(AlarmChange, Option<u64>)> {
        changes
            .into_iter()
            .map(|change| {
                let seq = self.alarm_log.append_change(change.kind(), change.alarm());
                (change, Some(seq))
            })
            .collect()
    }

    /// [`Pipeline::record`], then each change to the live streams, in that
    /// order (still under the board's lock).
    pub(crate) fn record_and_publish(&self, board: &AlarmBoard, changes: Vec<AlarmChange>) {
        for (change, seq) in self.record(board, changes) {
            self.publish_alarm(change, seq);
        }
    }

    /// Number of the last alarm change recorded (0: none yet).
    pub fn last_alarm_seq(&self) -> u64 {
        self.alarm_log.last_seq()
    }

    /// Number of the last alarm change in the log when this process
    /// opened it: later numbers are this process's.
    pub fn alarm_seq_at_start(&self) -> u64 {
        self.alarm_log.seq_at_open()
    }

    /// Every alarm change numbered after `seq`, oldest first, from the
    /// alarm log: what a sink that stopped (or fell behind) has not taken.
    /// Blocks on the disk.
    pub fn alarm_changes_after(&self, seq: u64) -> std::io::Result<Vec<LoggedChange>> {
        self.alarm_log.changes_after(seq)
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
        let (change, seq, durable) = {
            let mut board = self.alarms.lock().expect("alarm board lock");
            let change = match action {
                AlarmAction::Acknowledge => board.acknowledge(id, by, now),
                AlarmAction::Snooze { minutes } => {
                    board.snooze(id, by, now, now + i64::from(minutes) * 60_000)
                }
                AlarmAction::Resolve => board.resolve(id, by, now),
            }?;
            // Numbered under the board's lock; the fsync is waited for
            // after it is released.
            let (seq, durable) = self
                .alarm_log
                .append_change_waiting(change.kind(), change.alarm());
            (change, seq, durable)
        };
        // A clinician's action is on disk before it is confirmed. If it
        // cannot be recorded it still stands: acting on the alarm matters
        // more than its record, so the failure is logged and counted.
        if let Err(e) = durable.wait() {
            self.metrics.storage_error();
            tracing::error!(alarm = id, error = %e, "alarm action not recorded yet (held until the disk works again)");
        }
        let alarm = change.alarm().clone();
        self.publish_alarm(change, Some(seq));
        Ok(alarm)
    }

    /// Every recorded state of alarm `id`, oldest first: its whole lifecycle
    /// (raised, escalated, acknowledged, snoozed, resolved) with who and when.
    /// Empty if no alarm has that id. Blocks on the disk.
    pub fn alarm_record(&self, id: u64) -> std::io::Result<Vec<Alarm>> {
        self.alarm_log.record(id)
    }

    /// Alarm `id`'s recorded changes, oldest first, each with its kind and
    /// number. Empty if no alarm has that id. Blocks on the disk.
    pub fn alarm_changes_of(&self, id: u64) -> std::io::Result<Vec<LoggedChange>> {
        self.alarm_log.changes_of(id)
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
