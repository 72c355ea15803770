//! Embedded storage for medmesh: observations and the device/patient registry.
//!
//! The write path is the product's core promise: [`Store::append`] returns
//! only once the samples are on disk (written to the write-ahead log and
//! fsynced). Concurrent appends share one fsync (group commit), so the cost of
//! durability is paid per batch, not per message. After a crash, [`Store::open`]
//! replays the log, so every sample that was acknowledged is readable again.
//!
//! Reads are served from an in-memory head that holds every series, sorted by
//! time; a sample becomes visible to readers only after it is durable.

mod aggregate;
mod alarm_log;
mod battery_log;
mod checkpoint;
pub mod credentials;
mod data_dir;
mod gorilla;
mod head;
mod journal;
mod registry;
mod retention;
mod wal;

pub use aggregate::Bucket;
pub use alarm_log::{AlarmLog, LoggedAlarm, LoggedChange, ResolvedQuery};
pub use battery_log::{BatteryLevel, BatteryLog};
pub use data_dir::{
    DIR_MODE, DataDirLock, FILE_MODE, LockError, create_private_dir, private_file, tighten,
};
pub use head::Point;
pub use journal::{Durable, Journal};
pub use registry::{Registry, RegistryError};
pub use retention::Retention;

use head::Head;
use medmesh_model::{Observation, TimestampMs, VitalSign};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Bound on queued, not yet written append requests. When the disk falls
/// behind, callers wait here instead of buffering without limit.
const APPEND_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write-ahead log I/O error, samples not stored: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage is shutting down")]
    Closed,
}

/// Counts describing what the store holds, for metrics and the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub series: u64,
    pub samples: u64,
    /// Size of the write-ahead log segments not yet checkpointed.
    pub wal_bytes: u64,
    /// Size of the compressed checkpoint files.
    pub chunk_bytes: u64,
}

/// Whether the store can currently make samples durable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StorageHealth {
    pub healthy: bool,
    /// The last write error while unhealthy (e.g. "No space left on device").
    pub error: Option<String>,
    /// When writes started failing, epoch milliseconds.
    pub failing_since_ms: Option<i64>,
}

/// Shared between the writer thread (which sets it) and readers.
#[derive(Default)]
pub(crate) struct HealthState(std::sync::Mutex<Option<(String, i64)>>);

impl HealthState {
    pub(crate) fn fail(&self, e: &std::io::Error) {
        let mut state = self.0.lock().expect("health lock");
        let since = state
            .as_ref()
            .map_or_else(medmesh_model::now_ms, |(_, t)| *t);
        *state = Some((e.to_string(), since));
    }

    /// Marks writes as working again; true if they had been failing.
    pub(crate) fn recover(&self) -> bool {
        let mut state = self.0.lock().expect("health lock");
        state.take().is_some()
    }

    fn get(&self) -> StorageHealth {
        match &*self.0.lock().expect("health lock") {
            None => StorageHealth {
                healthy: true,
                error: None,
                failing_since_ms: None,
            },
            Some((e, t)) => StorageHealth {
                healthy: false,
                error: Some(e.clone()),
                failing_since_ms: Some(*t),
            },
        }
    }
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// A WAL segment this large is closed and checkpointed into compressed
    /// chunks. Bounds the uncompressed part of the data on disk.
    pub wal_segment_bytes: u64,
    /// How long each kind of data is kept.
    pub retention: Retention,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            wal_segment_bytes: 64 << 20,
            retention: Retention::forever(),
        }
    }
}

/// Handle to the embedded store; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Store {
    head: Arc<RwLock<Head>>,
    retention: Arc<Retention>,
    health: Arc<HealthState>,
    requests: mpsc::Sender<wal::WalRequest>,
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store under `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store: loads the checkpoints, replays the write-ahead log
    /// after them, and starts the log writer and checkpoint threads.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let data_dir = |source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(data_dir)?;
        let head = Arc::new(RwLock::new(Head::default()));
        let segment_bytes = options.wal_segment_bytes.max(1 << 16);
        let retention = Arc::new(options.retention);
        let (writer, replayed) =
            wal::WalWriter::open(dir, &head, segment_bytes, retention.clone()).map_err(data_dir)?;
        tracing::info!(
            checkpoints = replayed.checkpoints,
            wal_segments = replayed.segments,
            wal_samples = replayed.samples,
            discarded_bytes = replayed.discarded_bytes,
            "storage opened"
        );
        let (tx, rx) = mpsc::channel(APPEND_QUEUE);
        let head_for_writer = head.clone();
        let health = writer.health.clone();
        std::thread::Builder::new()
            .name("medmesh-wal".into())
            .spawn(move || writer.run(rx, head_for_writer))
            .map_err(StoreError::Io)?;
        Ok(Store {
            head,
            retention,
            health,
            requests: tx,
            dir: dir.to_path_buf(),
        })
    }

    /// Closes the current WAL segment and checkpoints everything up to it
    /// into compressed chunks now; returns once the checkpoint is durable.
    /// (This also happens on its own whenever a segment fills up.)
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.requests
            .send(wal::WalRequest::Checkpoint(done))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends observations of one subject (a patient id, or `device:<id>` for
    /// an unassigned device). Returns once they are durable and readable.
    pub async fn append(
        &self,
        subject: &str,
        observations: Vec<Observation>,
    ) -> Result<(), StoreError> {
        if observations.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let request = wal::AppendRequest {
            subject: subject.to_string(),
            observations,
            done,
        };
        self.requests
            .send(wal::WalRequest::Append(request))
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// The most recent point of every vital sign recorded for `subject`.
    pub fn latest(&self, subject: &str) -> Vec<(VitalSign, Point)> {
        let now = medmesh_model::now_ms();
        let mut latest = self.head.read().expect("head lock").latest(subject);
        latest.retain(|(v, p)| {
            self.retention
                .cutoff(*v, now)
                .is_none_or(|cut| p.time_ms >= cut)
        });
        latest
    }

    /// The oldest time `vital` is kept at `now`, if its retention is limited.
    pub fn retention_cutoff(&self, vital: VitalSign, now: TimestampMs) -> Option<TimestampMs> {
        self.retention.cutoff(vital, now)
    }

    /// `from`, moved forward to the retention cutoff of `vital`.
    fn kept_from(&self, vital: VitalSign, from: TimestampMs) -> TimestampMs {
        self.retention
            .cutoff(vital, medmesh_model::now_ms())
            .map_or(from, |cut| from.max(cut))
    }

    /// Points of one series with `from <= time <= to`, oldest first.
    pub fn range(
        &self,
        subject: &str,
        vital: VitalSign,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<Point> {
        let from = self.kept_from(vital, from);
        self.head
            .read()
            .expect("head lock")
            .range(subject, vital, from, to)
    }

    /// Whether writes currently succeed. While they fail (disk full, I/O
    /// error) appends return errors and nothing is acknowledged; every new
    /// append retries, so the store recovers on its own once space returns.
    pub fn health(&self) -> StorageHealth {
        self.health.get()
    }

    /// Min, max, mean and count per bucket of `width_ms` over `[from, to]`.
    pub fn aggregate(
        &self,
        subject: &str,
        vital: VitalSign,
        from: TimestampMs,
        to: TimestampMs,
        width_ms: i64,
    ) -> Vec<Bucket> {
        let from = self.kept_from(vital, from);
        self.head
            .read()
            .expect("head lock")
            .aggregate(subject, vital, from, to, width_ms)
    }

    pub fn stats(&self) -> StoreStats {
        let head = self.head.read().expect("head lock");
        let (series, samples) = (head.series_count(), head.sample_count());
        drop(head);
        StoreStats {
            series,
            samples,
            wal_bytes: dir_bytes(&self.dir.join("wal")),
            chunk_bytes: dir_bytes(&self.dir.join("chunks")),
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Replaces the file at `path` with `bytes` atomically and durably: written
/// to a temporary file, fsynced, renamed over the old one, directory fsynced.
/// A crash leaves either the old or the new contents, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
