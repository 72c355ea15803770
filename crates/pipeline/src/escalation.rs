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
        // Logged under the board's lock (numbered in the order the board
        // made them); the fsync is waited for after it is released.
        let (noted, escalated) = {
            let mut board = self.alarms.lock().expect("alarm board lock");
            // When each new alarm's clock started is noted, so a restart
            // does not start it again and delay the first climb.
            let started = board.start_escalation_clocks(now);
            for alarm in &started {
                self.alarm_log.append_note(alarm);
            }
            let escalated: Vec<_> = board
                .escalate(policy, now)
                .into_iter()
                .map(|change| {
                    let (seq, durable) = self
                        .alarm_log
                        .append_change_waiting(change.kind(), change.alarm());
                    (change, seq, durable)
                })
                .collect();
            (!started.is_empty(), escalated)
        };
        // One fsync covers the notes and the escalations.
        if noted
            && escalated.is_empty()
            && let Err(e) = self.alarm_log.flush()
        {
            self.metrics.storage_error();
            tracing::error!(error = %e, "escalation clocks not recorded");
        }
        let n = escalated.len();
        for (change, seq, durable) in escalated {
            let alarm = change.alarm();
            if let Err(e) = durable.wait() {
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
