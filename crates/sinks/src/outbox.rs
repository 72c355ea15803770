//! The outbox: notifications to people (webhook POSTs, e-mails) from the
//! moment a sink takes them on until they are delivered or given up, on
//! disk, so that neither one held by quiet hours nor one whose receiver is
//! down is lost to a restart.
//!
//! `outbox.jsonl` in the data directory is a [`Journal`]: a `queued` line
//! (the delivery id, channel, target, due time, change and alarm) is fsynced
//! before the first attempt; a `done` line follows delivery or giving up
//! (queued only: if a crash loses it, the notification is sent again with the
//! same id, which receivers de-duplicate on). At start the queued entries
//! without a `done` are handed back to their sinks with their original id
//! and due time. The file is compacted (rewritten atomically with only the
//! pending entries) at start and whenever it holds many more lines than
//! pending entries.

use medmesh_model::{Alarm, TimestampMs};
use medmesh_storage::Journal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

/// File name under the data directory.
pub const FILE: &str = "outbox.jsonl";
/// Compaction waits until the file has at least this many lines...
const COMPACT_MIN_LINES: usize = 1_000;
/// ...and this many times as many lines as pending entries.
const COMPACT_RATIO: usize = 4;

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Delivery id (`X-Medmesh-Delivery` for webhooks), the same on every
    /// attempt and across restarts.
    pub id: String,
    /// The sink that delivers it: "webhook" or "email".
    pub channel: String,
    /// Where to (the webhook's URL; empty for e-mail, whose recipients are
    /// resolved when it is sent).
    pub target: String,
    /// Not before then (the end of quiet hours, or when it was queued).
    pub due_ms: TimestampMs,
    /// Held by quiet hours: when they end it is sent only if it still holds
    /// (see `crate::still_holds`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// The alarm change ("raised", "escalated", ...) and the alarm as it was.
    pub change: String,
    /// The change's number in the alarm log: a receiver puts one alarm's
    /// changes in order by it (absent in entries queued by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub alarm: Alarm,
    /// Recipients already served (e-mail: user names whose message was
    /// delivered or given up), so a notification resumed after a restart
    /// goes only to the others.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sent: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Queued(Box<Entry>),
    /// One recipient of entry `id` served.
    Sent {
        id: String,
        to: String,
    },
    Done {
        id: String,
    },
    /// Sink `channel` has taken on every alarm change numbered up to and
    /// including `seq` (queued its notifications, or found they concern
    /// nobody it serves). The last one for a channel counts.
    Taken {
        channel: String,
        seq: u64,
    },
    /// Sink `channel` is no longer configured: if it comes back, it starts
    /// afresh rather than sending everything since.
    Forgotten {
        channel: String,
    },
}

struct State {
    /// Pending entries by their order of queueing.
    pending: BTreeMap<u64, Entry>,
    /// Sequence number of each pending entry, by id.
    seq: std::collections::HashMap<String, u64>,
    next_seq: u64,
    /// Lines in the file now.
    lines: usize,
    /// How far each sink has taken alarm changes on.
    taken: BTreeMap<String, u64>,
}

impl State {
    fn insert(&mut self, entry: Entry) {
        if self.seq.contains_key(&entry.id) {
            return;
        }
        self.seq.insert(entry.id.clone(), self.next_seq);
        self.pending.insert(self.next_seq, entry);
        self.next_seq += 1;
    }

    /// Notes `to` as served for pending entry `id`; false if there is none.
    fn served(&mut self, id: &str, to: String) -> bool {
        let Some(seq) = self.seq.get(id) else {
            return false;
        };
        self.pending
            .get_mut(seq)
            .is_some_and(|entry| entry.sent.insert(to))
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.seq.remove(id) {
            Some(s) => self.pending.remove(&s).is_some(),
            None => false,
        }
    }

    /// Moves `channel` up to `seq`; false if it was there already.
    fn take(&mut self, channel: &str, seq: u64) -> bool {
        match self.taken.get_mut(channel) {
            Some(to) if *to >= seq => false,
            Some(to) => {
                *to = seq;
                true
            }
            None => {
                self.taken.insert(channel.to_string(), seq);
                true
            }
        }
    }

    /// What the file must hold: how far each sink got, and what is pending.
    fn records(&self) -> Vec<Record> {
        let taken = self.taken.iter().map(|(channel, seq)| Record::Taken {
            channel: channel.clone(),
            seq: *seq,
        });
        taken
            .chain(
                self.pending
                    .values()
                    .map(|e| Record::Queued(Box::new(e.clone()))),
            )
            .collect()
    }
}

pub struct Outbox {
    journal: Journal<Record>,
    state: Mutex<State>,
    /// [`COMPACT_MIN_LINES`] (lower in tests).
    compact_min_lines: usize,
}

impl Outbox {
    /// Opens (creating) the outbox under `dir`, compacted to its pending
    /// entries, which [`Outbox::pending`] then lists.
    pub fn open(dir: &Path) -> std::io::Result<Outbox> {
        let (journal, records) = Journal::open(dir, FILE)?;
        let mut state = State {
            pending: BTreeMap::new(),
            seq: Default::default(),
            next_seq: 0,
            lines: records.len(),
            taken: BTreeMap::new(),
        };
        for record in records {
            match record {
                Record::Queued(entry) => state.insert(*entry),
                Record::Sent { id, to } => {
                    state.served(&id, to);
                }
                Record::Done { id } => {
                    state.remove(&id);
                }
                Record::Taken { channel, seq } => {
                    state.taken.insert(channel, seq);
                }
                Record::Forgotten { channel } => {
                    state.taken.remove(&channel);
                }
            }
        }
        let needed = state.records();
        if state.lines > needed.len() {
            journal.rewrite(&needed)?;
            state.lines = needed.len();
        }
        Ok(Outbox {
            journal,
            state: Mutex::new(state),
            compact_min_lines: COMPACT_MIN_LINES,
        })
    }

    /// The pending entries of `channel`, oldest first.
    pub fn pending(&self, channel: &str) -> Vec<Entry> {
        let state = self.state.lock().expect("outbox lock");
        state
            .pending
            .values()
            .filter(|e| e.channel == channel)
            .cloned()
            .collect()
    }

    /// Records `entry` and returns once it is on disk (blocks on the fsync,
    /// which is shared with every other entry queued meanwhile).
    pub fn queue(&self, entry: Entry) -> std::io::Result<()> {
        self.queue_all(vec![entry])
    }

    /// Records `entries` and returns once they are on disk (one fsync).
    pub fn queue_all(&self, entries: Vec<Entry>) -> std::io::Result<()> {
        {
            let mut state = self.state.lock().expect("outbox lock");
            for entry in entries {
                self.journal
                    .append(&Record::Queued(Box::new(entry.clone())));
                state.insert(entry);
                state.lines += 1;
            }
        }
        self.journal.flush()
    }

    /// How far sink `channel` has taken alarm changes on (None: never ran
    /// with this data directory).
    pub fn taken_to(&self, channel: &str) -> Option<u64> {
        let state = self.state.lock().expect("outbox lock");
        state.taken.get(channel).copied()
    }

    /// Records that sink `channel` has taken on every change up to and
    /// including `seq` (never backwards). Only queued: a crash can lose it
    /// (those changes are then taken on again). Whatever the sink queued
    /// before is on disk first, in order. Compaction is left to
    /// [`Outbox::done`] (called off the async workers).
    pub fn mark_taken(&self, channel: &str, seq: u64) {
        let mut state = self.state.lock().expect("outbox lock");
        if state.take(channel, seq) {
            self.append_taken(&mut state, channel, seq);
        }
    }

    /// Sets sink `channel` back to `seq`: the alarm log ends before where
    /// the outbox says the sink got (a crash took the log's last lines, or
    /// the log was replaced), and the numbers after `seq` are given again.
    pub fn reset_taken(&self, channel: &str, seq: u64) {
        let mut state = self.state.lock().expect("outbox lock");
        state.taken.insert(channel.to_string(), seq);
        self.append_taken(&mut state, channel, seq);
    }

    fn append_taken(&self, state: &mut State, channel: &str, seq: u64) {
        self.journal.append(&Record::Taken {
            channel: channel.to_string(),
            seq,
        });
        state.lines += 1;
    }

    /// Returns once everything recorded so far is on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        self.journal.flush()
    }

    /// Records that recipient `to` of entry `id` was served (delivered or
    /// given up). Only queued: a crash can lose it, and `to` would then be
    /// sent the notification again.
    pub fn sent(&self, id: &str, to: &str) {
        let mut state = self.state.lock().expect("outbox lock");
        if state.served(id, to.to_string()) {
            self.journal.append(&Record::Sent {
                id: id.to_string(),
                to: to.to_string(),
            });
            state.lines += 1;
        }
    }

    /// Records that entry `id` was delivered or given up; compacts the file
    /// when it has grown well past what is pending.
    pub fn done(&self, id: &str) {
        let mut state = self.state.lock().expect("outbox lock");
        if !state.remove(id) {
            return;
        }
        self.journal.append(&Record::Done { id: id.to_string() });
        state.lines += 1;
        self.compact_if_grown(&mut state);
    }

    /// Rewrites the file with only what it must hold once it has grown well
    /// past that.
    fn compact_if_grown(&self, state: &mut State) {
        let needed = state.pending.len() + state.taken.len();
        if state.lines >= self.compact_min_lines && state.lines >= COMPACT_RATIO * needed.max(1) {
            match self.journal.rewrite(&state.records()) {
                Ok(()) => state.lines = needed,
                Err(e) => {
                    tracing::error!(error = %e, "outbox compaction failed; the file keeps growing")
                }
            }
        }
    }

    /// Gives up every pending entry of `channel` (a sink no longer
    /// configured), with a warning for each, and forgets how far it got.
    pub fn abandon(&self, channel: &str) {
        {
            let mut state = self.state.lock().expect("outbox lock");
            if state.taken.remove(channel).is_some() {
                self.journal.append(&Record::Forgotten {
                    channel: channel.to_string(),
                });
                state.lines += 1;
            }
        }
        for entry in self.pending(channel) {
            tracing::warn!(
                channel,
                delivery = entry.id,
                alarm = entry.alarm.id,
                "notification given up: its sink is no longer configured"
            );
            self.done(&entry.id);
        }
        // Called at start (blocking is fine there): a sink configured
        // again after a crash must not find its old place.
        if let Err(e) = self.journal.flush() {
            tracing::error!(channel, error = %e, "giving up a sink's notifications not recorded");
        }
    }

    /// Lines in the file now (for tests of compaction).
    pub fn lines(&self) -> usize {
        self.state.lock().expect("outbox lock").lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{AlarmState, PatientId, Priority};

    fn entry(id: &str, channel: &str, due_ms: TimestampMs) -> Entry {
        Entry {
            id: id.into(),
            channel: channel.into(),
            target: "http://127.0.0.1:9/hook".into(),
            due_ms,
            held: false,
            change: "raised".into(),
            seq: Some(3),
            alarm: Alarm {
                id: 7,
                patient_id: PatientId::new("p1").unwrap(),
                vital: None,
                device_id: None,
                rule: "battery-low".into(),
                priority: Priority::Low,
                state: AlarmState::Active,
                message: "battery low".into(),
                value: 10.0,
                raised_ms: 1,
                updated_ms: 1,
                acknowledged: None,
                snoozed_until_ms: None,
                resolved: None,
                escalation_level: 0,
                escalation_since_ms: None,
                worst: None,
            },
            sent: BTreeSet::new(),
        }
    }

    #[test]
    fn pending_entries_come_back_after_a_reopen_with_id_and_due_time() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            outbox.queue(entry("a", "webhook", 100)).unwrap();
            outbox.queue(entry("b", "email", 200)).unwrap();
            outbox.queue(entry("c", "webhook", 300)).unwrap();
            outbox.done("a");
        }
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.pending("webhook"), [entry("c", "webhook", 300)]);
        assert_eq!(outbox.pending("email"), [entry("b", "email", 200)]);
        // Compacted at open: only the pending entries are left on disk.
        assert_eq!(outbox.lines(), 2);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        outbox.abandon("email");
        assert!(outbox.pending("email").is_empty());
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.pending("email").is_empty());
        assert_eq!(outbox.pending("webhook").len(), 1);
    }

    #[test]
    fn a_growing_file_is_compacted_to_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.compact_min_lines = 20;
        outbox.queue(entry("kept", "webhook", 1)).unwrap();
        for n in 0..50 {
            let id = format!("d{n}");
            outbox.queue(entry(&id, "webhook", 1)).unwrap();
            outbox.done(&id);
        }
        // 101 lines written, compacted whenever 20 or more held a quarter
        // pending or less.
        let in_memory = outbox.lines();
        assert!(in_memory < 20, "{in_memory}");
        drop(outbox);
        let lines = std::fs::read_to_string(dir.path().join(FILE))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, in_memory);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.pending("webhook"), [entry("kept", "webhook", 1)]);
    }

    #[test]
    fn recipients_served_are_kept_across_a_reopen_and_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            outbox.queue(entry("mail", "email", 1)).unwrap();
            outbox.queue(entry("other", "email", 1)).unwrap();
            outbox.sent("mail", "nurse.ada");
            outbox.sent("mail", "nurse.ada");
            outbox.sent("nobody-such", "nurse.ada");
            outbox.done("other");
            // Queued twice, one sent (the repeat and the unknown add nothing), one done.
            assert_eq!(outbox.lines(), 4);
        }
        let reopened = || {
            let outbox = Outbox::open(dir.path()).unwrap();
            let pending = outbox.pending("email");
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].id, "mail");
            assert_eq!(pending[0].sent, BTreeSet::from(["nurse.ada".to_string()]));
            outbox.lines()
        };
        // Compacted at the first reopen (the served recipient goes into the
        // queued line), then read back from the compacted file.
        assert_eq!(reopened(), 1);
        assert_eq!(reopened(), 1);
    }

    #[test]
    fn how_far_each_sink_got_survives_a_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(dir.path()).unwrap();
            assert_eq!(outbox.taken_to("webhook"), None);
            for seq in 1..=60 {
                outbox.mark_taken("webhook", seq);
            }
            outbox.mark_taken("email", 7);
            // Never backwards, unless reset.
            outbox.mark_taken("email", 3);
            assert_eq!(outbox.taken_to("email"), Some(7));
            outbox.reset_taken("webhook", 58);
            // A sink's start at 0 (an empty log) is recorded too.
            outbox.mark_taken("other", 0);
            outbox.mark_taken("gone", 4);
            outbox.abandon("gone");
        }
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.taken_to("webhook"), Some(58));
        assert_eq!(outbox.taken_to("email"), Some(7));
        assert_eq!(outbox.taken_to("other"), Some(0));
        assert_eq!(outbox.taken_to("gone"), None);
        // Compacted at the reopen: one line per sink is all it needs.
        assert_eq!(outbox.lines(), 3);
    }

    #[test]
    fn done_twice_or_unknown_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.queue(entry("a", "webhook", 1)).unwrap();
        outbox.done("a");
        outbox.done("a");
        outbox.done("zzz");
        assert_eq!(outbox.lines(), 2);
    }
}
