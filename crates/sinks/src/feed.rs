//! The alarm changes a notifying sink takes on: every change the alarm log
//! numbered, at least once, even across a crash or a stream the sink fell
//! behind on.
//!
//! Changes come live from `Pipeline::subscribe_alarms`, each with its number
//! in the alarm log (`seq`). The sink takes a change on (queues its
//! notifications in the outbox, fsynced, or finds they concern nobody) and
//! then calls [`Feed::taken`]; the outbox keeps how far the sink got, as
//! the highest number below which every change is taken on. At start, and
//! whenever the numbers show a gap that does not close by itself (the live
//! stream dropped changes for a sink that fell behind), the missing changes
//! are read back from the alarm log. Numbers can arrive out of order (a
//! clinician's action is published after its fsync, a rule's at once), so
//! taken changes above the gap are remembered rather than skipped.

use crate::outbox::Outbox;
use medmesh_model::Alarm;
use medmesh_pipeline::{LiveEvent, LoggedChange, Pipeline};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// A gap in the numbers this old is filled from the alarm log (a change
/// published late, after its fsync, closes the gap well before).
const GAP_WAIT: Duration = Duration::from_secs(2);

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

pub struct Feed {
    channel: &'static str,
    pipeline: Arc<Pipeline>,
    events: broadcast::Receiver<LiveEvent>,
    outbox: Arc<Outbox>,
    taken: Taken,
    /// Changes read back from the log, to hand out before live ones.
    backlog: VecDeque<Change>,
    /// When the oldest open gap in the numbers was first seen.
    gap_since: Option<Instant>,
}

impl Feed {
    /// Starts where the outbox says sink `channel` left off, with the
    /// changes it had not taken on read back from the alarm log. A sink that
    /// never ran with this data directory starts at the log's current end.
    /// `events` is subscribed before the call, so nothing falls between.
    pub async fn open(
        channel: &'static str,
        pipeline: Arc<Pipeline>,
        events: broadcast::Receiver<LiveEvent>,
        outbox: Arc<Outbox>,
    ) -> Feed {
        let to = match outbox.taken_to(channel) {
            Some(to) => to,
            None => {
                let to = pipeline.last_alarm_seq();
                outbox.mark_taken(channel, to);
                let flushed = {
                    let outbox = outbox.clone();
                    tokio::task::spawn_blocking(move || outbox.flush()).await
                };
                if let Ok(Err(e)) = flushed {
                    tracing::error!(channel, error = %e, "where the sink starts is not recorded");
                }
                to
            }
        };
        let mut feed = Feed {
            channel,
            pipeline,
            events,
            outbox,
            taken: Taken {
                to,
                above: BTreeSet::new(),
            },
            backlog: VecDeque::new(),
            gap_since: None,
        };
        feed.read_back().await;
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
    /// Cancel-safe (a `select!` may drop it): nothing is lost if it is.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            if let Some(change) = self.backlog.pop_front() {
                if !self.taken.contains(change.seq) {
                    return Some(change);
                }
                continue;
            }
            let gap_check = self.gap_since.map(|since| since + GAP_WAIT);
            let event = tokio::select! {
                event = self.events.recv() => event,
                () = sleep_until(gap_check), if gap_check.is_some() => {
                    tracing::warn!(channel = self.channel, after = self.taken.to, "alarm changes missing from the stream; reading them from the alarm log");
                    self.read_back().await;
                    continue;
                }
            };
            match event {
                Ok(LiveEvent::Alarm {
                    change,
                    alarm,
                    seq: Some(seq),
                }) if !self.taken.contains(seq) => {
                    return Some(Change {
                        seq,
                        change: change.to_string(),
                        alarm,
                    });
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        channel = self.channel,
                        missed,
                        "sink fell behind the alarm stream; reading the changes it missed from the alarm log"
                    );
                    self.read_back().await;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Notes that change `seq` is taken on: its notifications are in the
    /// outbox (on disk), or it concerns nobody this sink serves.
    pub fn taken(&mut self, seq: u64) {
        if self.taken.insert(seq) {
            self.outbox.mark_taken(self.channel, self.taken.to);
        }
        self.gap_since = match self.taken.above.is_empty() {
            true => None,
            false => self.gap_since.or_else(|| Some(Instant::now())),
        };
    }

    /// Replaces the backlog with every change after those taken on, from
    /// the alarm log. On a read error the sink goes on with the live stream.
    async fn read_back(&mut self) {
        let (pipeline, after) = (self.pipeline.clone(), self.taken.to);
        let read = tokio::task::spawn_blocking(move || pipeline.alarm_changes_after(after)).await;
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
        // Looked for: check again only if the gap is still open later.
        if self.gap_since.is_some() {
            self.gap_since = Some(Instant::now());
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
        let p = Pipeline::new(store, registry, Arc::new(Metrics::default()), log, recorded);
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
                    1.8e9 + f64::from(i)
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
