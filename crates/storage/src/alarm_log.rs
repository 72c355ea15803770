//! The alarm log: every lifecycle change of every alarm (raised,
//! acknowledged, snoozed, resolved, with who and when), one JSON line each,
//! append-only, fsynced (a [`Journal`]). Replaying it rebuilds the alarm
//! board after a restart.
//!
//! Clinicians' actions use [`AlarmLog::append_durable`], which returns once
//! the line is on disk; changes made by rules use [`AlarmLog::append`], which
//! only queues (a crash can lose the last few, and the rules raise them again
//! from the stored samples).

use crate::journal::Journal;
use medmesh_model::Alarm;
use std::path::Path;

pub struct AlarmLog {
    journal: Journal<Alarm>,
}

impl AlarmLog {
    /// Opens (creating) `alarms.jsonl` under `dir`; returns the log and every
    /// recorded alarm state, oldest first.
    pub fn open(dir: &Path) -> std::io::Result<(AlarmLog, Vec<Alarm>)> {
        let (journal, alarms) = Journal::open(dir, "alarms.jsonl")?;
        Ok((AlarmLog { journal }, alarms))
    }

    /// Queues an alarm's new state for the log.
    pub fn append(&self, alarm: &Alarm) {
        self.journal.append(alarm);
    }

    /// Returns once everything appended so far is on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        self.journal.flush()
    }

    /// Every recorded alarm state, oldest first, once everything appended so
    /// far is on disk (so the newest changes are included). Reads the whole
    /// file: for history queries, not for the ingest path.
    pub fn read_all(&self) -> std::io::Result<Vec<Alarm>> {
        self.journal.flush()?;
        self.journal.read_all()
    }

    /// Records an alarm's new state and returns once it is on disk.
    pub fn append_durable(&self, alarm: &Alarm) -> std::io::Result<()> {
        self.journal.append_durable(alarm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{AlarmState, PatientId, Priority, VitalSign};
    use std::io::Write;

    fn alarm(id: u64, state: AlarmState) -> Alarm {
        Alarm {
            id,
            patient_id: PatientId::new("p1").unwrap(),
            vital: Some(VitalSign::HeartRate),
            device_id: None,
            rule: "news2-single-parameter-3".into(),
            priority: Priority::High,
            state,
            message: "m".into(),
            value: 135.0,
            raised_ms: 1,
            updated_ms: 2,
            acknowledged: None,
            snoozed_until_ms: None,
            resolved: None,
            escalation_level: 0,
            escalation_since_ms: None,
        }
    }

    #[test]
    fn replays_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, old) = AlarmLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            log.append(&alarm(1, AlarmState::Active));
            // A durable append also makes everything queued before it durable.
            log.append_durable(&alarm(1, AlarmState::Acknowledged))
                .unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("alarms.jsonl"))
            .unwrap()
            .write_all(br#"{"id":2,"pat"#)
            .unwrap();
        let (log, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(
            alarms.iter().map(|a| a.state).collect::<Vec<_>>(),
            [AlarmState::Active, AlarmState::Acknowledged]
        );
        log.append_durable(&alarm(2, AlarmState::Resolved)).unwrap();
        drop(log);
        let (_, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(alarms.len(), 3);
    }

    #[test]
    fn logs_written_before_escalation_still_load() {
        let dir = tempfile::tempdir().unwrap();
        // A line as this version's predecessor wrote it: no escalation fields.
        let old = r#"{"id":7,"patient_id":"p1","vital":"heart_rate","device_id":null,"rule":"news2-single-parameter-3","priority":"high","state":"active","message":"m","value":135.0,"raised_ms":1,"updated_ms":1,"acknowledged":null,"snoozed_until_ms":null,"resolved":null}"#;
        std::fs::write(dir.path().join("alarms.jsonl"), format!("{old}\n")).unwrap();
        let (_, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(alarms.len(), 1);
        assert_eq!(
            (alarms[0].escalation_level, alarms[0].escalation_since_ms),
            (0, None)
        );
    }
}
