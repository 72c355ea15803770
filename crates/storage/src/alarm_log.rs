//! The alarm log: every lifecycle change of every alarm (raised,
//! acknowledged, snoozed, escalated, resolved, with who and when), one JSON
//! line each, append-only, fsynced (a [`Journal`]). Replaying it rebuilds the
//! alarm board after a restart; an index of where each alarm's lines are
//! (built on the first history query, extended by each later one) answers
//! history queries by reading only the lines they return.
//!
//! Each change carries a sequence number (`seq`, 1, 2, 3... in file order)
//! and its kind (`change`), so that a sink which stopped (a crash, or a
//! stream it fell behind on) can take on every change after the last one it
//! had taken: [`AlarmLog::changes_after`]. Lines that only note something
//! about an alarm (its escalation clock starting) have neither.
//!
//! Clinicians' actions, escalations and falls use
//! [`AlarmLog::append_change_waiting`] and wait until the line is on disk;
//! changes made by rules use [`AlarmLog::append_change`], which only queues (a crash can lose the last
//! few, and the rules raise them again from the stored samples).

use crate::journal::{Durable, Journal};
use medmesh_model::{Alarm, AlarmState, PatientId, TimestampMs};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One line of the log: an alarm's state, and the change that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedAlarm {
    /// Position among the changes (absent on notes, and on lines written
    /// before changes were numbered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// "raised", "updated" (something a viewer sees changed), "acknowledged",
    /// "snoozed", "escalated" or "resolved".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    #[serde(flatten)]
    pub alarm: Alarm,
}

/// A numbered change read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChange {
    pub seq: u64,
    pub change: String,
    pub alarm: Alarm,
}

pub struct AlarmLog {
    journal: Journal<LoggedAlarm>,
    path: PathBuf,
    /// The last sequence number given; the lock also keeps lines in
    /// sequence order on their way to the file.
    last_seq: Mutex<u64>,
    /// The last sequence number in the file when it was opened.
    seq_at_open: u64,
    /// Where each alarm's lines are in the file, so history queries read
    /// only the lines they return. Built on the first query and brought up
    /// to date by each one from what was appended since (the file is only
    /// appended to; a failed write is cut off before anything follows it).
    index: Mutex<Index>,
}

/// One line of the file: where it starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u32,
}

/// A resolved state in the log, with what a query filters on.
struct Resolved {
    at_ms: TimestampMs,
    id: u64,
    patient: PatientId,
    line: Span,
}

#[derive(Default)]
struct Index {
    /// Bytes of the file indexed so far (always at a line's end).
    end: u64,
    lines: HashMap<u64, Vec<Span>>,
    /// Sorted by (resolution time, id).
    resolved: Vec<Resolved>,
    /// Numbered changes in file (and so sequence) order: (seq, alarm id, line).
    changes: Vec<(u64, u64, Span)>,
    /// Every alarm by its raise time (which no later line of it changes),
    /// sorted by (raise time, id): the alarm load report's selection.
    raised: Vec<(TimestampMs, u64)>,
}

/// What a query for resolved alarms wants.
pub struct ResolvedQuery<'a> {
    /// Patients whose alarms may be returned.
    pub patient: &'a dyn Fn(&PatientId) -> bool,
    /// Resolved in this window (inclusive), epoch milliseconds.
    pub since_ms: TimestampMs,
    pub until_ms: TimestampMs,
    pub limit: usize,
}

impl AlarmLog {
    /// Opens (creating) `alarms.jsonl` under `dir`; returns the log and every
    /// recorded alarm state, oldest first.
    pub fn open(dir: &Path) -> std::io::Result<(AlarmLog, Vec<Alarm>)> {
        let (journal, lines) = Journal::<LoggedAlarm>::open(dir, FILE)?;
        let last_seq = lines.iter().filter_map(|l| l.seq).max().unwrap_or(0);
        let log = AlarmLog {
            journal,
            path: dir.join(FILE),
            last_seq: Mutex::new(last_seq),
            seq_at_open: last_seq,
            index: Mutex::default(),
        };
        Ok((log, lines.into_iter().map(|l| l.alarm).collect()))
    }

    /// The sequence number of the last change recorded (0: none yet).
    pub fn last_seq(&self) -> u64 {
        *self.last_seq.lock().expect("alarm log sequence lock")
    }

    /// The sequence number of the last change the file held when opened:
    /// numbers after it were given by this process.
    pub fn seq_at_open(&self) -> u64 {
        self.seq_at_open
    }

    /// Queues a note about an alarm (not a change: no sequence number).
    pub fn append_note(&self, alarm: &Alarm) {
        self.journal.append(&LoggedAlarm {
            seq: None,
            change: None,
            alarm: alarm.clone(),
        });
    }

    /// Queues an alarm's change for the log; returns its sequence number.
    pub fn append_change(&self, change: &str, alarm: &Alarm) -> u64 {
        let mut last = self.last_seq.lock().expect("alarm log sequence lock");
        *last += 1;
        self.journal.append(&numbered(*last, change, alarm));
        *last
    }

    /// Queues an alarm's change for the log; returns its sequence number and
    /// a [`Durable`] to wait on (after releasing any lock held) until the
    /// line is on disk.
    pub fn append_change_waiting(&self, change: &str, alarm: &Alarm) -> (u64, Durable) {
        let mut last = self.last_seq.lock().expect("alarm log sequence lock");
        *last += 1;
        let durable = self.journal.append_waiting(&numbered(*last, change, alarm));
        (*last, durable)
    }

    /// Returns once everything appended so far is on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        self.journal.flush()
    }

    /// Every recorded state of alarm `id`, oldest first (empty if there is
    /// no such alarm), including everything appended so far. Reads only
    /// that alarm's lines (and whatever was appended since the last query).
    pub fn record(&self, id: u64) -> std::io::Result<Vec<Alarm>> {
        let lines = self.read_indexed(|index| {
            let spans = index.lines.get(&id).cloned().unwrap_or_default();
            spans.into_iter().map(|s| (s, id)).collect()
        })?;
        Ok(lines.into_iter().map(|l| l.alarm).collect())
    }

    /// Alarm `id`'s recorded changes, oldest first, each with its kind
    /// and number (the escalation clocks' notes, which change nothing
    /// anyone sees, left out). Blocks on the disk.
    pub fn changes_of(&self, id: u64) -> std::io::Result<Vec<LoggedChange>> {
        let lines = self.read_indexed(|index| {
            let spans = index.lines.get(&id).cloned().unwrap_or_default();
            spans.into_iter().map(|s| (s, id)).collect()
        })?;
        Ok(lines
            .into_iter()
            .filter_map(|l| {
                Some(LoggedChange {
                    seq: l.seq.unwrap_or(0),
                    change: l.change?,
                    alarm: l.alarm,
                })
            })
            .collect())
    }

    /// Resolved alarms that `query` wants, newest resolution first, at most
    /// `query.limit`. Patient and time are judged from the index: only the
    /// lines returned are read.
    pub fn resolved(&self, query: &ResolvedQuery<'_>) -> std::io::Result<Vec<Alarm>> {
        let lines = self.read_indexed(|index| {
            let first_after = index
                .resolved
                .partition_point(|r| r.at_ms <= query.until_ms);
            index.resolved[..first_after]
                .iter()
                .rev()
                .take_while(|r| r.at_ms >= query.since_ms)
                .filter(|r| (query.patient)(&r.patient))
                .take(query.limit)
                .map(|r| (r.line, r.id))
                .collect()
        })?;
        Ok(lines.into_iter().map(|l| l.alarm).collect())
    }

    /// Every change numbered after `seq`, in order (as far as it is on disk:
    /// what waits for a failing disk comes later).
    pub fn changes_after(&self, seq: u64) -> std::io::Result<Vec<LoggedChange>> {
        let lines = self.read_indexed(|index| {
            let first = index.changes.partition_point(|(s, _, _)| *s <= seq);
            index.changes[first..]
                .iter()
                .map(|(_, id, span)| (*span, *id))
                .collect()
        })?;
        Ok(lines
            .into_iter()
            .filter_map(|l| {
                Some(LoggedChange {
                    seq: l.seq?,
                    change: l.change?,
                    alarm: l.alarm,
                })
            })
            .collect())
    }

    /// Every alarm raised in `since_ms..until_ms` (raise time at or after
    /// `since_ms`, before `until_ms`), in raise-time order, each given to
    /// `summarise` as all its recorded lines, oldest first: its changes and
    /// the notes about it, including whatever happened to it after
    /// `until_ms`. Reads only those alarms' lines, one alarm at a time, so
    /// memory holds the summaries, not the lines. Blocks on the disk (and
    /// holds up history queries meanwhile).
    pub fn raised_between<T>(
        &self,
        since_ms: TimestampMs,
        until_ms: TimestampMs,
        mut summarise: impl FnMut(Vec<LoggedAlarm>) -> T,
    ) -> std::io::Result<Vec<T>> {
        let mut index = self.index.lock().expect("alarm index lock");
        for rebuilt in [false, true] {
            let file = self.catch_up(&mut index)?;
            let first = index.raised.partition_point(|(t, _)| *t < since_ms);
            let end = index.raised.partition_point(|(t, _)| *t < until_ms);
            let mut out = Vec::with_capacity(end.saturating_sub(first));
            let read: std::io::Result<()> = index.raised[first..end.max(first)]
                .iter()
                .try_for_each(|(_, id)| {
                    let spans = index.lines.get(id).map_or(&[][..], Vec::as_slice);
                    let lines = spans
                        .iter()
                        .map(|span| read_line(&file, *span, *id))
                        .collect::<std::io::Result<Vec<_>>>()?;
                    out.push(summarise(lines));
                    Ok(())
                });
            match read {
                // As in `read_indexed`: the file changed under the index.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData && !rebuilt => {
                    tracing::warn!(path = %self.path.display(), error = %e, "alarm log changed under its index; rebuilding it");
                    *index = Index::default();
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(out),
            }
        }
        unreachable!("the second pass returns")
    }

    /// Reads the lines `pick` chooses from the index (with the alarm id each
    /// must hold). A line that does not hold its alarm means the file
    /// changed under the index (records given up after a long disk failure,
    /// or an edit by hand): the index is rebuilt and the query asked again.
    fn read_indexed(
        &self,
        pick: impl Fn(&Index) -> Vec<(Span, u64)>,
    ) -> std::io::Result<Vec<LoggedAlarm>> {
        let mut index = self.index.lock().expect("alarm index lock");
        for rebuilt in [false, true] {
            let file = self.catch_up(&mut index)?;
            let lines: std::io::Result<Vec<LoggedAlarm>> = pick(&index)
                .into_iter()
                .map(|(span, id)| read_line(&file, span, id))
                .collect();
            match lines {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData && !rebuilt => {
                    tracing::warn!(path = %self.path.display(), error = %e, "alarm log changed under its index; rebuilding it");
                    *index = Index::default();
                }
                other => return other,
            }
        }
        unreachable!("the second pass returns")
    }

    /// Indexes the lines appended since the last call; returns the file, open
    /// for reading lines from it. While the disk fails, what is already on
    /// disk is answered from (history stays readable; lines held in memory
    /// show up once they are written).
    fn catch_up(&self, index: &mut Index) -> std::io::Result<std::fs::File> {
        if let Err(e) = self.journal.flush() {
            tracing::warn!(path = %self.path.display(), error = %e, "alarm history read while its newest lines wait for the disk");
        }
        let mut file = std::fs::File::open(&self.path)?;
        let len = file.metadata()?.len();
        if len < index.end {
            // Never happens while the file is only appended to; if it was
            // cut (by hand), index it afresh.
            *index = Index::default();
        }
        file.seek(SeekFrom::Start(index.end))?;
        let mut new = Vec::new();
        file.by_ref().take(len - index.end).read_to_end(&mut new)?;
        let mut added_resolved = false;
        let mut added_raised = false;
        for line in new.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break; // being written: indexed next time
            }
            let span = Span {
                offset: index.end,
                len: line.len() as u32,
            };
            index.end += line.len() as u64;
            let Ok(logged) = serde_json::from_slice::<LoggedAlarm>(line) else {
                tracing::error!(path = %self.path.display(), offset = span.offset, "unreadable alarm log line left out of history");
                continue;
            };
            let alarm = logged.alarm;
            let spans = index.lines.entry(alarm.id).or_default();
            if spans.is_empty() {
                index.raised.push((alarm.raised_ms, alarm.id));
                added_raised = true;
            }
            spans.push(span);
            if let (Some(seq), Some(_)) = (logged.seq, logged.change) {
                index.changes.push((seq, alarm.id, span));
            }
            if alarm.state == AlarmState::Resolved {
                index.resolved.push(Resolved {
                    at_ms: alarm
                        .resolved
                        .as_ref()
                        .map_or(alarm.updated_ms, |r| r.at_ms),
                    id: alarm.id,
                    patient: alarm.patient_id,
                    line: span,
                });
                added_resolved = true;
            }
        }
        if added_resolved {
            // Nearly sorted already (appended in time order): cheap.
            index.resolved.sort_by_key(|r| (r.at_ms, r.id));
        }
        if added_raised {
            // Nearly sorted already too (late readings raise a little out
            // of time order).
            index.raised.sort_unstable();
        }
        Ok(file)
    }
}

/// File name under the data directory.
const FILE: &str = "alarms.jsonl";

fn numbered(seq: u64, change: &str, alarm: &Alarm) -> LoggedAlarm {
    LoggedAlarm {
        seq: Some(seq),
        change: Some(change.to_string()),
        alarm: alarm.clone(),
    }
}

/// The alarm state at `span`, which must be one of alarm `id`'s.
fn read_line(file: &std::fs::File, span: Span, id: u64) -> std::io::Result<LoggedAlarm> {
    let invalid = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("alarm log line at byte {}: {why}", span.offset),
        )
    };
    let mut line = vec![0; span.len as usize];
    match file.read_exact_at(&mut line, span.offset) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(invalid("past the end of the file".into()));
        }
        other => other?,
    }
    let logged: LoggedAlarm = serde_json::from_slice(&line).map_err(|e| invalid(e.to_string()))?;
    if logged.alarm.id != id {
        return Err(invalid(format!(
            "holds alarm {}, not {id}",
            logged.alarm.id
        )));
    }
    Ok(logged)
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
            worst: None,
        }
    }

    #[test]
    fn replays_in_order_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, old) = AlarmLog::open(dir.path()).unwrap();
            assert!(old.is_empty());
            log.append_change("raised", &alarm(1, AlarmState::Active));
            // A durable append also makes everything queued before it durable.
            log.append_change_waiting("acknowledged", &alarm(1, AlarmState::Acknowledged))
                .1
                .wait()
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
        log.append_change_waiting("resolved", &alarm(2, AlarmState::Resolved))
            .1
            .wait()
            .unwrap();
        drop(log);
        let (_, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(alarms.len(), 3);
    }

    fn resolved_at(id: u64, patient: &str, at_ms: i64) -> Alarm {
        let mut a = alarm(id, AlarmState::Resolved);
        a.patient_id = PatientId::new(patient).unwrap();
        a.resolved = Some(medmesh_model::Act {
            by: "nurse".into(),
            at_ms,
        });
        a
    }

    #[test]
    fn history_queries_read_what_they_return_and_see_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AlarmLog::open(dir.path()).unwrap();
        log.append_change("raised", &alarm(1, AlarmState::Active));
        log.append_change("raised", &alarm(2, AlarmState::Active));
        log.append_change("raised", &alarm(1, AlarmState::Acknowledged));
        log.append_change("raised", &resolved_at(1, "p1", 3_000));
        log.append_change("raised", &resolved_at(2, "p2", 2_000));
        let states = |id| {
            log.record(id)
                .unwrap()
                .iter()
                .map(|a| a.state)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(1),
            [
                AlarmState::Active,
                AlarmState::Acknowledged,
                AlarmState::Resolved
            ]
        );
        assert!(states(9).is_empty());
        let any = |_: &PatientId| true;
        let query = |since_ms, until_ms, limit| ResolvedQuery {
            patient: &any,
            since_ms,
            until_ms,
            limit,
        };
        let ids = |q: &ResolvedQuery<'_>| {
            log.resolved(q)
                .unwrap()
                .iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        };
        // Newest resolution first, window inclusive, limit counted after it.
        assert_eq!(ids(&query(i64::MIN, i64::MAX, 10)), [1, 2]);
        assert_eq!(ids(&query(2_000, 2_000, 10)), [2]);
        assert_eq!(ids(&query(i64::MIN, i64::MAX, 1)), [1]);
        // The patient filter is applied before the limit: p2's alarm is
        // found even though a newer one of p1 comes first.
        let only_p2 = |p: &PatientId| p.as_str() == "p2";
        let q = ResolvedQuery {
            patient: &only_p2,
            since_ms: i64::MIN,
            until_ms: i64::MAX,
            limit: 1,
        };
        assert_eq!(ids(&q), [2]);
        // Appends after a query are seen by the next one (resolved out of
        // time order too).
        log.append_change("raised", &alarm(3, AlarmState::Active));
        log.append_change("raised", &resolved_at(3, "p1", 2_500));
        assert_eq!(ids(&query(i64::MIN, i64::MAX, 10)), [1, 3, 2]);
        assert_eq!(states(3), [AlarmState::Active, AlarmState::Resolved]);
        // And after a reopen, from the file alone.
        drop(log);
        let (log, _) = AlarmLog::open(dir.path()).unwrap();
        let all = log
            .resolved(&query(i64::MIN, i64::MAX, 10))
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>();
        assert_eq!(all, [1, 3, 2]);
    }

    #[test]
    fn changes_are_numbered_in_file_order_and_read_back_after_any_of_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = AlarmLog::open(dir.path()).unwrap();
            assert_eq!(log.last_seq(), 0);
            assert_eq!(
                log.append_change("raised", &alarm(1, AlarmState::Active)),
                1
            );
            // A note is no change: no number, never read back as one.
            log.append_note(&alarm(1, AlarmState::Active));
            let (seq, written) =
                log.append_change_waiting("acknowledged", &alarm(1, AlarmState::Acknowledged));
            assert_eq!(seq, 2);
            written.wait().unwrap();
            assert_eq!(
                log.append_change("raised", &alarm(2, AlarmState::Active)),
                3
            );
            let after_1: Vec<_> = log
                .changes_after(1)
                .unwrap()
                .into_iter()
                .map(|c| (c.seq, c.change, c.alarm.id))
                .collect();
            assert_eq!(
                after_1,
                [
                    (2, "acknowledged".to_string(), 1),
                    (3, "raised".to_string(), 2)
                ]
            );
            assert!(log.changes_after(3).unwrap().is_empty());
        }
        // Numbering goes on after a reopen; every line still restores the board.
        let (log, alarms) = AlarmLog::open(dir.path()).unwrap();
        assert_eq!(alarms.len(), 4);
        assert_eq!(log.last_seq(), 3);
        assert_eq!(
            log.append_change("resolved", &alarm(2, AlarmState::Resolved)),
            4
        );
        assert_eq!(log.changes_after(0).unwrap().len(), 4);
    }

    #[test]
    fn alarms_raised_in_a_window_come_whole_with_their_later_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AlarmLog::open(dir.path()).unwrap();
        let raised_at = |id, t| {
            let mut a = alarm(id, AlarmState::Active);
            a.raised_ms = t;
            a
        };
        log.append_change("raised", &raised_at(1, 1_000));
        log.append_change("raised", &raised_at(2, 2_000));
        log.append_note(&raised_at(2, 2_000));
        // Raised late (a gateway's buffer): out of file order.
        log.append_change("raised", &raised_at(3, 1_500));
        let mut resolved = raised_at(2, 2_000);
        resolved.state = AlarmState::Resolved;
        log.append_change("resolved", &resolved);
        let window = |since, until| {
            log.raised_between(since, until, |lines| {
                assert!(lines.iter().all(|l| l.alarm.id == lines[0].alarm.id));
                (lines[0].alarm.id, lines.len())
            })
            .unwrap()
        };
        // Half-open: raised at `since` is in, at `until` out; ordered by
        // raise time; every line of each alarm, the note and the
        // resolution after the window's end included.
        assert_eq!(window(1_000, 2_000), [(1, 1), (3, 1)]);
        assert_eq!(window(1_500, 3_000), [(3, 1), (2, 3)]);
        assert!(window(2_001, 9_000).is_empty());
        assert!(window(3_000, 1_000).is_empty());
        // An alarm raised after a query is found by the next.
        log.append_change("raised", &raised_at(4, 2_500));
        assert_eq!(window(2_000, 3_000), [(2, 3), (4, 1)]);
    }

    #[test]
    fn an_index_that_no_longer_matches_the_file_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AlarmLog::open(dir.path()).unwrap();
        log.append_change("raised", &alarm(1, AlarmState::Active));
        log.append_change("raised", &alarm(2, AlarmState::Active));
        assert_eq!(log.record(1).unwrap().len(), 1);
        // The same lines in another order (as if lines had been given up
        // and others written in their place): the offsets now point at the
        // other alarm.
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[1], lines[0])).unwrap();
        let record = log.record(1).unwrap();
        assert_eq!(record.iter().map(|a| a.id).collect::<Vec<_>>(), [1]);
        assert_eq!(log.record(2).unwrap()[0].id, 2);
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
