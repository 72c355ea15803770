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

mod gorilla;
mod head;
mod registry;
mod wal;

pub use head::Point;
pub use registry::{Registry, RegistryError};

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
    pub wal_bytes: u64,
}

/// Handle to the embedded store; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Store {
    head: Arc<RwLock<Head>>,
    appends: mpsc::Sender<wal::AppendRequest>,
    wal_bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Store {
    /// Opens (creating if needed) the store under `dir`, replaying the
    /// write-ahead log, and starts the log writer thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(|source| StoreError::DataDir {
            path: wal_dir.clone(),
            source,
        })?;
        let mut head = Head::default();
        let (writer, replayed) =
            wal::WalWriter::open(&wal_dir, &mut head).map_err(|source| StoreError::DataDir {
                path: wal_dir.clone(),
                source,
            })?;
        tracing::info!(
            samples = replayed.samples,
            series = replayed.series,
            discarded_bytes = replayed.discarded_bytes,
            "write-ahead log replayed"
        );
        let head = Arc::new(RwLock::new(head));
        let wal_bytes = writer.bytes_counter();
        let (tx, rx) = mpsc::channel(APPEND_QUEUE);
        let head_for_writer = head.clone();
        std::thread::Builder::new()
            .name("medmesh-wal".into())
            .spawn(move || writer.run(rx, head_for_writer))
            .map_err(StoreError::Io)?;
        Ok(Store {
            head,
            appends: tx,
            wal_bytes,
        })
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
        self.appends
            .send(request)
            .await
            .map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// The most recent point of every vital sign recorded for `subject`.
    pub fn latest(&self, subject: &str) -> Vec<(VitalSign, Point)> {
        self.head.read().expect("head lock").latest(subject)
    }

    /// Points of one series with `from <= time <= to`, oldest first.
    pub fn range(
        &self,
        subject: &str,
        vital: VitalSign,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Vec<Point> {
        self.head
            .read()
            .expect("head lock")
            .range(subject, vital, from, to)
    }

    pub fn stats(&self) -> StoreStats {
        let head = self.head.read().expect("head lock");
        StoreStats {
            series: head.series_count(),
            samples: head.sample_count(),
            wal_bytes: self.wal_bytes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// fsyncs a directory so that a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
