//! The alarm log: every lifecycle change of every alarm (raised,
//! acknowledged, snoozed, resolved, with who and when), one JSON line each,
//! fsynced, append-only. Replaying it rebuilds the alarm board after a
//! restart; a torn last line (a crash mid-write) is cut off.

use medmesh_model::Alarm;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

pub struct AlarmLog {
    file: Mutex<File>,
}

impl AlarmLog {
    /// Opens (creating) `alarms.jsonl` under `dir`; returns the log and every
    /// recorded alarm state, oldest first.
    pub fn open(dir: &Path) -> std::io::Result<(AlarmLog, Vec<Alarm>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("alarms.jsonl");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut alarms = Vec::new();
        let mut good = 0;
        for line in data.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break; // torn final write
            }
            match serde_json::from_slice::<Alarm>(line) {
                Ok(a) => alarms.push(a),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable alarm log line; later lines ignored");
                    break;
                }
            }
            good += line.len();
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if good < data.len() {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        Ok((
            AlarmLog {
                file: Mutex::new(file),
            },
            alarms,
        ))
    }

    /// Records an alarm's new state durably.
    pub fn append(&self, alarm: &Alarm) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(alarm).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().expect("alarm log lock");
        file.write_all(&line)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{AlarmState, PatientId, Priority, VitalSign};

    fn alarm(id: u64, state: AlarmState) -> Alarm {
        Alarm {
            id,
            patient_id: PatientId::new("p1").unwrap(),
            vital: Some(VitalSign::HeartRate),
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
        }
    }

    #[test]
    fn replays_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, old) = AlarmLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            log.append(&alarm(1, AlarmState::Active)).unwrap();
            log.append(&alarm(1, AlarmState::Acknowledged)).unwrap();
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
        log.append(&alarm(2, AlarmState::Resolved)).unwrap();
        drop(log);
        let (_, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(alarms.len(), 3);
    }
}
