//! The escalation timer's work: climb every alarm whose next level is due
//! (the decision is `medmesh_rules::escalation`), record each climb on disk,
//! then tell the live streams, so sinks notify only escalations that a
//! restart cannot take back (or repeat). When an alarm's clock starts is
//! recorded too, so a restart does not start it again.

use crate::Pipeline;
use medmesh_model::TimestampMs;
use medmesh_rules::escalation::Policy;

impl Pipeline {
    /// Escalates the alarms due at `now` under `policy`; returns how many.
    /// Called by the server's escalation timer (every second).
    pub fn escalate_due(&self, policy: &Policy, now: TimestampMs) -> usize {
        let (started, changes) = {
            let mut board = self.alarms.lock().expect("alarm board lock");
            let started = board.start_escalation_clocks(now);
            (started, board.escalate(policy, now))
        };
        // When each new alarm's clock started is logged (one fsync for all),
        // so a restart does not start it again and delay the first climb.
        if !started.is_empty() {
            for alarm in &started {
                self.alarm_log.append_note(alarm);
            }
            if let Err(e) = self.alarm_log.flush() {
                self.metrics.storage_error();
                tracing::error!(error = %e, "escalation clocks not recorded");
            }
        }
        let n = changes.len();
        for change in changes {
            let alarm = change.alarm();
            let (seq, written) = self.alarm_log.append_change_durable(change.kind(), alarm);
            if let Err(e) = written {
                // As for clinicians' actions: telling people matters more
                // than the record, so the failure is logged and counted.
                self.metrics.storage_error();
                tracing::error!(alarm = alarm.id, error = %e, "escalation not recorded yet (held until the disk works again)");
            }
            tracing::info!(alarm = alarm.id, patient = %alarm.patient_id, level = alarm.escalation_level, "alarm escalated");
            self.publish_alarm(change, Some(seq));
        }
        n
    }
}
