//! The alarm changes a notifying sink takes on: every change the alarm log
//! numbered, at least once, even across a crash or a stream the sink fell
//! behind on.
//!
//! Changes come live from `Pipeline::subscribe_alarms`, each with its number
//! in the alarm log (`seq`). The sink takes a change on (queues its
//! notifications in the outbox, fsynced, or finds they concern nobody) and
//! then calls [`Feed::taken`]; the outbox keeps how far the sink got, as
//! the highest number up to which every change is taken on. At start, and
//! whenever the numbers show a gap that does not close by itself (the live
//! stream dropped changes for a sink that fell behind), the missing changes
//! are read back from the alarm log. Numbers can arrive out of order (a
//! clinician's action is published after its fsync, a rule's at once), so
//! taken changes above the gap are remembered rather than skipped.

use crate::outbox::Outbox;
use medmesh_model::Alarm;
use medmesh_pipeline::{AlarmSubscription, LiveEvent, LoggedChange, Pipeline};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A gap in the numbers this old is looked for in the alarm log (a change
/// published late, after its fsync, closes the gap well before).
const GAP_WAIT: Duration = Duration::from_secs(2);
/// A gap the alarm log has not filled for this long is given up: those
/// changes never reached the log (lines a long disk failure cost, or an
/// unreadable line). Should one still turn up, it is taken on then.
const HOLE_WAIT: Duration = Duration::from_secs(60);

/// One alarm change to take on.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub seq: u64,
    /// "raised", "updated", "acknowledged", "snoozed", "escalated" or "resolved".
    pub change: String,
    pub alarm: Alarm,
}

/// Which changes are taken on: all up to `to`, and those in `above`.
#[derive(Debug, Default)]
struct Taken {
    to: u64,
    above: BTreeSet<u64>,
}

impl Taken {
    fn contains(&self, seq: u64) -> bool {
        seq <= self.to || self.above.contains(&seq)
    }

    /// Notes `seq` as taken; true if `to` moved.
    fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        self.above.insert(seq);
        let before = self.to;
        while self.above.remove(&(self.to + 1)) {
            self.to += 1;
        }
        self.to != before
    }
}

type Read = JoinHandle<std::io::Result<Vec<LoggedChange>>>;

pub struct Feed {
    channel: &'static str,
    pipeline: Arc<Pipeline>,
    events: broadcast::Receiver<LiveEvent>,
    outbox: Arc<Outbox>,
    taken: Taken,
    /// Changes read back from the log, to hand out before live ones.
    backlog: VecDeque<Change>,
    /// A read of the alarm log in progress, kept across a cancelled `next`.
    reading: Option<Read>,
    /// When the oldest open gap in the numbers opened, and when to look for
    /// it in the log next.
    gap_opened: Option<Instant>,
    gap_check: Option<Instant>,
    /// Numbers given up as never logged, handed out after all if they come.
    given_up: BTreeSet<u64>,
}

impl Feed {
    /// Starts where the outbox says sink `channel` left off, with the
    /// changes it had not taken on read back from the alarm log. A sink that
    /// never ran with this data directory starts where `alarms` begins.
    pub async fn open(
        channel: &'static str,
        pipeline: Arc<Pipeline>,
        alarms: AlarmSubscription,
        outbox: Arc<Outbox>,
    ) -> Feed {
        let logged = pipeline.alarm_seq_at_start();
        let to = match outbox.taken_to(channel) {
            // The numbers after the log's end are being given again, to
            // new changes: take them on.
            Some(to) if to > logged => {
                tracing::warn!(
                    channel,
                    taken_to = to,
                    log_ends_at = logged,
                    "the alarm log ends before where this sink got (a crash took its last lines): the changes numbered after its end are new"
                );
                outbox.reset_taken(channel, logged);
                logged
            }
            Some(to) => to,
            None => {
                outbox.mark_taken(channel, alarms.after);
                alarms.after
            }
        };
        let flushed = {
            let outbox = outbox.clone();
            tokio::task::spawn_blocking(move || outbox.flush()).await
        };
        if let Ok(Err(e)) = flushed {
            tracing::error!(channel, error = %e, "where the sink starts is not recorded");
        }
        let mut feed = Feed {
            channel,
            pipeline,
            events: alarms.events,
            outbox,
            taken: Taken {
                to,
                above: BTreeSet::new(),
            },
            backlog: VecDeque::new(),
            reading: None,
            gap_opened: None,
            gap_check: None,
            given_up: BTreeSet::new(),
        };
        feed.start_read();
        feed.finish_read().await;
        if !feed.backlog.is_empty() {
            tracing::info!(
                channel,
                changes = feed.backlog.len(),
                "alarm changes not taken on before the restart read back from the alarm log"
            );
        }
        feed
    }

    /// The next change not taken on yet; `None` once the pipeline is gone.
    /// Cancel-safe (a `select!` may drop it): a read of the log in progress
    /// is picked up by the next call.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            if let Some(change) = self.backlog.pop_front() {
                if self.wanted(change.seq) {
                    return Some(change);
                }
                continue;
            }
            if self.reading.is_some() {
                self.finish_read().await;
                continue;
            }
            let gap_check = self.gap_check;
            tokio::select! {
                event = self.events.recv() => match event {
                    Ok(LiveEvent::Alarm { change, alarm, seq: Some(seq) }) if self.wanted(seq) => {
                        return Some(Change { seq, change: change.to_string(), alarm });
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(channel = self.channel, missed, "sink fell behind the alarm stream; reading the changes it missed from the alarm log");
                        self.start_read();
                    }
                    Err(RecvError::Closed) => return None,
                },
                () = sleep_until(gap_check), if gap_check.is_some() => {
                    if self.gap_opened.is_some_and(|t| t.elapsed() >= HOLE_WAIT) {
                        self.give_up_gap();
                    } else {
                        tracing::debug!(channel = self.channel, after = self.taken.to, "alarm changes missing from the stream; looking in the alarm log");
                        self.start_read();
                    }
                    self.gap_check = self.gap_opened.map(|_| Instant::now() + GAP_WAIT);
                }
            }
        }
    }

    /// Notes that change `seq` is taken on: its notifications are in the
    /// outbox (on disk), or it concerns nobody this sink serves.
    pub fn taken(&mut self, seq: u64) {
        let moved = self.taken.insert(seq);
        if moved {
            self.outbox.mark_taken(self.channel, self.taken.to);
        }
        if self.taken.above.is_empty() {
            (self.gap_opened, self.gap_check) = (None, None);
        } else if moved || self.gap_opened.is_none() {
            // A gap opened, or the oldest one closed and the next is
            // timed from now.
            let now = Instant::now();
            (self.gap_opened, self.gap_check) = (Some(now), Some(now + GAP_WAIT));
        }
    }

    /// Whether change `seq` is still to be handed out.
    fn wanted(&mut self, seq: u64) -> bool {
        !self.taken.contains(seq) || self.given_up.remove(&seq)
    }

    /// Gives up the numbers missing below the oldest change taken above the
    /// gap: the log has not had them for [`HOLE_WAIT`].
    fn give_up_gap(&mut self) {
        let Some(&first_above) = self.taken.above.first() else {
            return;
        };
        let missing = self.taken.to + 1..first_above;
        tracing::error!(
            channel = self.channel,
            first = missing.start,
            last = missing.end - 1,
            "alarm changes never found in the alarm log given up; their notifications are not sent"
        );
        self.given_up.extend(missing.clone());
        for seq in missing {
            self.taken.insert(seq);
        }
        self.outbox.mark_taken(self.channel, self.taken.to);
        self.gap_opened = (!self.taken.above.is_empty()).then(Instant::now);
    }

    /// Starts reading every change after those taken on from the alarm log
    /// (unless a read is already under way).
    fn start_read(&mut self) {
        if self.reading.is_none() {
            let (pipeline, after) = (self.pipeline.clone(), self.taken.to);
            self.reading = Some(tokio::task::spawn_blocking(move || {
                pipeline.alarm_changes_after(after)
            }));
        }
    }

    /// Waits for the read under way and makes what it found the backlog.
    /// On a read error the sink goes on with the live stream.
    async fn finish_read(&mut self) {
        let Some(reading) = self.reading.as_mut() else {
            return;
        };
        let read = reading.await;
        self.reading = None;
        match read {
            Ok(Ok(changes)) => {
                self.backlog = changes
                    .into_iter()
                    .map(|LoggedChange { seq, change, alarm }| Change { seq, change, alarm })
                    .collect();
            }
            Ok(Err(e)) => {
                tracing::error!(channel = self.channel, error = %e, "alarm log unreadable; missed changes not read back")
            }
            Err(e) => {
                tracing::error!(channel = self.channel, error = %e, "reading the alarm log failed")
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_model::{DeviceId, Patient, PatientId};
    use medmesh_pipeline::{Metrics, SourceKind};
    use medmesh_storage::{AlarmLog, Registry, Store};

    fn admitted_pipeline(dir: &std::path::Path) -> Arc<Pipeline> {
        let store = Store::open(dir).unwrap();
        let registry = Arc::new(Registry::open(dir).unwrap());
        let (log, recorded) = AlarmLog::open(dir).unwrap();
        // No clear delay: each reading below raises or resolves.
        let rules = medmesh_rules::RulesConfig {
            clear_after_s: 0,
            ..Default::default()
        };
        let p = Pipeline::new(store, registry, Arc::new(Metrics::default()), log, recorded)
            .with_rules(&rules, dir)
            .unwrap();
        let patient = PatientId::new("p1").unwrap();
        p.registry
            .upsert_patient(Patient {
                id: patient.clone(),
                name: "A".into(),
                ward: String::new(),
                bed: String::new(),
            })
            .unwrap();
        p.registry
            .assign_device(DeviceId::new("mon-1").unwrap(), Some(patient))
            .unwrap();
        Arc::new(p)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sink_that_fell_behind_gets_every_change_from_the_alarm_log() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = admitted_pipeline(dir.path());
        let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
        let events = pipeline.subscribe_alarms();
        let mut feed = Feed::open("test", pipeline.clone(), events, outbox.clone()).await;
        // Pulse 135 scores 3 on NEWS2 (RCP Chart 1: raise), 80 scores 0
        // (resolve): thousands of changes, more than the stream holds, while
        // the sink reads nothing.
        let records: Vec<String> = (0..5_000)
            .map(|i| {
                let v = if i % 2 == 0 { 135 } else { 80 };
                format!(
                    r#"{{"n":"heart_rate","u":"/min","v":{v},"t":{}}}"#,
                    1.76544e9 + f64::from(i)
                )
            })
            .collect();
        let pack = format!("[{}]", records.join(","));
        let device = DeviceId::new("mon-1").unwrap();
        pipeline
            .ingest_senml_json(SourceKind::Http, &device, pack.as_bytes())
            .await
            .unwrap();
        let last = pipeline.last_alarm_seq();
        assert!(last > 4_096, "{last} changes do not overflow the stream");
        let mut seqs = Vec::new();
        while seqs.len() < last as usize {
            let change = tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await
                .expect("a change within 10 s")
                .expect("the pipeline is there");
            seqs.push(change.seq);
            feed.taken(change.seq);
        }
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
        assert_eq!(outbox.taken_to("test"), Some(last));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn numbers_given_again_after_a_crash_took_the_log_end_are_taken_on() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = admitted_pipeline(dir.path());
        let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
        // The outbox got further than the log: the log's last lines were
        // queued, not yet fsynced, when the process died.
        outbox.mark_taken("test", 3);
        let mut feed = Feed::open(
            "test",
            pipeline.clone(),
            pipeline.subscribe_alarms(),
            outbox.clone(),
        )
        .await;
        assert_eq!(outbox.taken_to("test"), Some(0));
        let device = DeviceId::new("mon-1").unwrap();
        pipeline
            .ingest_senml_json(
                SourceKind::Http,
                &device,
                br#"[{"n":"heart_rate","u":"/min","v":135,"t":1765440000}]"#,
            )
            .await
            .unwrap();
        let change = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("a change within 10 s")
            .unwrap();
        assert_eq!((change.seq, change.change.as_str()), (1, "raised"));
    }

    #[test]
    fn taken_moves_up_only_over_an_unbroken_run() {
        let mut taken = Taken {
            to: 10,
            above: BTreeSet::new(),
        };
        assert!(taken.contains(3));
        assert!(!taken.insert(10), "already taken");
        // 12 before 11 (a late publish): remembered, `to` waits for 11.
        assert!(!taken.insert(12));
        assert!(taken.contains(12));
        assert!(!taken.contains(11));
        assert_eq!(taken.to, 10);
        assert!(taken.insert(11));
        assert_eq!((taken.to, taken.above.len()), (12, 0));
        // A gap that stays open keeps `to` below it.
        assert!(taken.insert(13));
        assert!(!taken.insert(15));
        assert_eq!(taken.to, 13);
        assert!(!taken.insert(15), "twice is once");
        assert_eq!(taken.above, BTreeSet::from([15]));
    }
}
