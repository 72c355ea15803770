//! The alarm log: every lifecycle change of every alarm (raised,
//! acknowledged, snoozed, resolved, with who and when), one JSON line each,
//! append-only, fsynced. Replaying it rebuilds the alarm board after a
//! restart; a torn last line (a crash mid-write) is cut off.
//!
//! One thread owns the file and writes in batches with one fsync each, so
//! rules raising alarms on the ingest path never wait for the disk.
//! Clinicians' actions use [`AlarmLog::append_durable`], which returns once
//! the line is on disk; changes made by rules use [`AlarmLog::append`], which
//! only queues (a crash can lose the last few, and the rules raise them again
//! from the stored samples).

use medmesh_model::Alarm;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

enum Entry {
    Line(Vec<u8>, Option<mpsc::Sender<std::io::Result<()>>>),
}

pub struct AlarmLog {
    lines: mpsc::Sender<Entry>,
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
        let (lines, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("medmesh-alarm-log".into())
            .spawn(move || write_batches(file, queue))?;
        Ok((AlarmLog { lines }, alarms))
    }

    fn line(alarm: &Alarm) -> Vec<u8> {
        let mut line = serde_json::to_vec(alarm).expect("an alarm serialises");
        line.push(b'\n');
        line
    }

    /// Queues an alarm's new state for the log.
    pub fn append(&self, alarm: &Alarm) {
        if self
            .lines
            .send(Entry::Line(Self::line(alarm), None))
            .is_err()
        {
            tracing::error!(
                alarm = alarm.id,
                "alarm log writer is gone; change not recorded"
            );
        }
    }

    /// Records an alarm's new state and returns once it is on disk.
    pub fn append_durable(&self, alarm: &Alarm) -> std::io::Result<()> {
        let (done, wait) = mpsc::channel();
        self.lines
            .send(Entry::Line(Self::line(alarm), Some(done)))
            .map_err(|_| std::io::Error::other("alarm log writer is gone"))?;
        wait.recv()
            .map_err(|_| std::io::Error::other("alarm log writer is gone"))?
    }
}

/// The writer thread: everything queued, one write, one fsync, then answers.
fn write_batches(mut file: File, queue: mpsc::Receiver<Entry>) {
    let mut buf = Vec::new();
    let mut waiting = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(Entry::Line(line, done)) = next {
            buf.extend_from_slice(&line);
            waiting.extend(done);
            next = queue.try_recv().ok();
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = &result {
            tracing::error!(error = %e, "alarm log write failed");
        }
        for done in waiting.drain(..) {
            let _ = done.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
        buf.clear();
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
}
