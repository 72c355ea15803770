//! The write-ahead log: an append-only file of checksummed frames.
//!
//! Frame layout (little endian):
//!
//! ```text
//! u32 payload length | u32 CRC-32 of payload | payload
//! payload = 1 (define series) u32 id, u16 len + subject, u8 len + LOINC code
//!         | 2 (samples)       u32 count, count x (u32 series id, i64 time ms, f64 value)
//! ```
//!
//! One thread owns the log. It takes every append request waiting in its
//! queue, writes them with a single `write`, makes them durable with a single
//! `fdatasync` (group commit), applies them to the head and only then answers
//! the callers. A crash can therefore only tear the last, unacknowledged
//! write; replay stops at the first frame that is short or fails its checksum
//! and truncates it away.
//!
//! The log is a sequence of segment files `wal/{seq}.wal`. Each segment starts
//! with the definitions of every known series, so it can be replayed on its
//! own. When a segment reaches its size limit the writer opens the next one and
//! hands a snapshot of the head to the checkpoint thread (see
//! [`crate::checkpoint`]), which deletes the segments the checkpoint covers.

use crate::head::{Head, Point, Snapshot};
use crate::retention::{self, Retention};
use crate::{StoreError, checkpoint};
use medmesh_model::now_ms;
use medmesh_model::{Observation, VitalSign};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

const FRAME_HEADER: usize = 8;
/// No frame we write is near this; a larger length means a corrupt header.
const MAX_FRAME: usize = 64 << 20;
/// Upper bound on requests folded into one group commit, so one fsync never
/// waits on an unbounded amount of writing.
const MAX_GROUP: usize = 1024;
const KIND_DEFINE: u8 = 1;
const KIND_SAMPLES: u8 = 2;
const SAMPLE_BYTES: usize = 4 + 8 + 8;
const NO_ID: u32 = u32::MAX;

pub(crate) struct AppendRequest {
    pub subject: String,
    pub observations: Vec<Observation>,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) enum WalRequest {
    Append(AppendRequest),
    /// Start a new segment and checkpoint everything before it now.
    Checkpoint(oneshot::Sender<Result<(), StoreError>>),
}

/// What opening found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub checkpoints: usize,
    pub segments: usize,
    pub samples: u64,
    /// Bytes of a torn final write cut off the end of the log.
    pub discarded_bytes: u64,
}

/// A checkpoint for the checkpoint thread to write.
struct Job {
    /// Covers WAL segments up to and including this one.
    n: u64,
    generation: u64,
    snapshot: Snapshot,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

pub(crate) struct WalWriter {
    pub(crate) health: Arc<crate::HealthState>,
    wal_dir: PathBuf,
    seq: u64,
    file: File,
    /// Length of the current segment up to the last durable frame.
    len: u64,
    segment_bytes: u64,
    /// Series ids by subject, indexed by `VitalSign as usize` (`NO_ID` = none):
    /// looked up by `&str`, so the hot path allocates nothing.
    ids: HashMap<String, [u32; VitalSign::ALL.len()]>,
    series: Vec<(String, VitalSign)>,
    jobs: std::sync::mpsc::Sender<Job>,
    /// A checkpoint is being written; automatic rotation waits for it.
    busy: Arc<AtomicBool>,
    /// Bumped when a checkpoint fails: queued jobs from before are void.
    generation: Arc<AtomicU64>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// WAL segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if let Some(seq) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|s| s.parse().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn io_other(e: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

impl WalWriter {
    /// Loads checkpoints, replays the WAL segments after them into `head`,
    /// starts a fresh segment and the checkpoint thread.
    pub(crate) fn open(
        data_dir: &Path,
        head: &Arc<RwLock<Head>>,
        segment_bytes: u64,
        retention: Arc<Retention>,
    ) -> std::io::Result<(WalWriter, Replayed)> {
        let wal_dir = data_dir.join("wal");
        let chunks_dir = data_dir.join("chunks");
        crate::create_private_dir(&wal_dir)?;
        crate::create_private_dir(&chunks_dir)?;
        let mut stats = Replayed::default();

        let checkpoints = checkpoint::list(&chunks_dir)?;
        let newest = checkpoints.last().map_or(0, |(n, _)| *n);
        {
            let mut head = head.write().expect("head lock");
            for (n, path) in &checkpoints {
                for entry in checkpoint::read(path, false).map_err(io_other)? {
                    entry.chunk.checkpoint.store(*n, Ordering::Relaxed);
                    head.add_sealed(&entry.subject, entry.vital, Arc::new(entry.chunk));
                }
            }
            if newest > 0 {
                // The open buffers as of the newest checkpoint; older ones are superseded.
                for entry in checkpoint::read(&checkpoint::open_path(&chunks_dir, newest), true)
                    .map_err(io_other)?
                {
                    for p in entry.chunk.points() {
                        head.insert(&entry.subject, entry.vital, p);
                    }
                }
            }
            stats.checkpoints = checkpoints.len();
        }

        let mut writer = WalWriter {
            health: Arc::default(),
            wal_dir: wal_dir.clone(),
            seq: 0,
            file: File::open(data_dir)?, // replaced below by the new segment
            len: 0,
            segment_bytes,
            ids: HashMap::new(),
            series: Vec::new(),
            jobs: std::sync::mpsc::channel().0,
            busy: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
        };
        let existing = segments(&wal_dir)?;
        let last_seq = existing.last().map_or(0, |(s, _)| *s);
        for (seq, path) in &existing {
            if *seq <= newest {
                // Covered by a checkpoint whose clean-up was interrupted.
                std::fs::remove_file(path)?;
                continue;
            }
            let data = std::fs::read(path)?;
            let good = {
                let mut head = head.write().expect("head lock");
                writer.replay(&data, &mut head, &mut stats)
            };
            stats.segments += 1;
            if good < data.len() {
                stats.discarded_bytes += (data.len() - good) as u64;
                if *seq == last_seq {
                    tracing::warn!(
                        path = %path.display(),
                        discarded = data.len() - good,
                        "write-ahead log ends in a torn write (never acknowledged); truncating it"
                    );
                } else {
                    tracing::error!(
                        path = %path.display(),
                        discarded = data.len() - good,
                        "damaged frame inside an older write-ahead log segment; data after it is lost"
                    );
                }
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(good as u64)?;
                f.sync_all()?;
            }
        }

        retention::enforce(head, &chunks_dir, &retention, now_ms(), newest)?;
        writer.start_segment(last_seq.max(newest) + 1)?;
        let (jobs, queue) = std::sync::mpsc::channel();
        writer.jobs = jobs;
        let thread = CheckpointThread {
            jobs: queue,
            chunks_dir,
            wal_dir,
            busy: writer.busy.clone(),
            generation: writer.generation.clone(),
            head: head.clone(),
            retention,
        };
        std::thread::Builder::new()
            .name("medmesh-checkpoint".into())
            .spawn(move || thread.run())?;
        Ok((writer, stats))
    }

    /// Creates segment `seq`, starting with the definitions of every series.
    fn start_segment(&mut self, seq: u64) -> std::io::Result<()> {
        let path = self.wal_dir.join(segment_name(seq));
        let mut file = crate::private_file()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        let mut buf = Vec::new();
        for (id, (subject, vital)) in self.series.iter().enumerate() {
            write_frame(&mut buf, &define_payload(id as u32, subject, *vital));
        }
        file.write_all(&buf)?;
        file.sync_all()?;
        crate::sync_dir(&self.wal_dir)?;
        self.file = file;
        self.seq = seq;
        self.len = buf.len() as u64;
        Ok(())
    }

    /// Applies every intact frame to `head`; returns the length of the intact prefix.
    fn replay(&mut self, data: &[u8], head: &mut Head, stats: &mut Replayed) -> usize {
        let mut pos = 0;
        while let Some((payload, next)) = read_frame(data, pos) {
            if self.apply_payload(payload, head, stats).is_none() {
                break;
            }
            pos = next;
        }
        pos
    }

    fn apply_payload(
        &mut self,
        payload: &[u8],
        head: &mut Head,
        stats: &mut Replayed,
    ) -> Option<()> {
        let mut r = Reader(payload);
        match r.u8()? {
            KIND_DEFINE => {
                let id = r.u32()? as usize;
                let subject_len = r.u16()? as usize;
                let subject = std::str::from_utf8(r.take(subject_len)?).ok()?.to_string();
                let code_len = r.u8()? as usize;
                let code = std::str::from_utf8(r.take(code_len)?).ok()?;
                let Some(vital) = VitalSign::lookup(code) else {
                    tracing::error!(
                        code,
                        "write-ahead log names a LOINC code this version does not know"
                    );
                    return None;
                };
                let key = (subject, vital);
                match self.series.get(id) {
                    // Every segment repeats the definitions before it.
                    Some(known) if *known == key => {}
                    None if id == self.series.len() => {
                        self.ids
                            .entry(key.0.clone())
                            .or_insert([NO_ID; VitalSign::ALL.len()])[vital as usize] = id as u32;
                        self.series.push(key);
                    }
                    _ => return None,
                }
            }
            KIND_SAMPLES => {
                let count = r.u32()? as usize;
                for _ in 0..count {
                    let id = r.u32()? as usize;
                    let time_ms = r.i64()?;
                    let value = r.f64()?;
                    let (subject, vital) = self.series.get(id)?;
                    head.insert(subject, *vital, Point { time_ms, value });
                    stats.samples += 1;
                }
            }
            _ => return None,
        }
        Some(())
    }

    /// The writer thread: group commit until every [`crate::Store`] is dropped.
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<WalRequest>, head: Arc<RwLock<Head>>) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group = Vec::with_capacity(MAX_GROUP);
        let mut checkpoint_requests = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    WalRequest::Append(r) => group.push(r),
                    WalRequest::Checkpoint(done) => checkpoint_requests.push(done),
                }
                if group.len() < MAX_GROUP {
                    next = requests.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(&mut group, &mut buf, &head);
            }
            for done in checkpoint_requests.drain(..) {
                self.rotate(&head, Some(done));
            }
            if self.len >= self.segment_bytes && !self.busy.load(Ordering::Acquire) {
                self.rotate(&head, None);
            }
        }
    }

    fn commit(
        &mut self,
        group: &mut Vec<AppendRequest>,
        buf: &mut Vec<u8>,
        head: &Arc<RwLock<Head>>,
    ) {
        buf.clear();
        let defined_before = self.series.len();
        for req in group.iter() {
            self.encode(req, buf);
        }
        match self.write_durably(buf) {
            Ok(()) => {
                let mut head = head.write().expect("head lock");
                for req in group.iter() {
                    for o in &req.observations {
                        head.insert(
                            &req.subject,
                            o.vital,
                            Point {
                                time_ms: o.time_ms,
                                value: o.value,
                            },
                        );
                    }
                }
                drop(head);
                // Healthy again before anyone hears of the write, so a caller
                // that was acknowledged never reads a stale "failing" health.
                if self.health.recover() {
                    tracing::warn!("write-ahead log writes succeed again; acknowledging resumed");
                }
                for req in group.drain(..) {
                    let _ = req.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "write-ahead log write failed; samples refused, not acknowledged");
                self.health.fail(&e);
                // Series defined in the failed write do not exist on disk.
                for (subject, vital) in self.series.drain(defined_before..) {
                    if let Some(ids) = self.ids.get_mut(&subject) {
                        ids[vital as usize] = NO_ID;
                    }
                }
                for req in group.drain(..) {
                    let _ = req.done.send(Err(StoreError::Io(std::io::Error::new(
                        e.kind(),
                        e.to_string(),
                    ))));
                }
            }
        }
    }

    /// Starts the next segment and queues a checkpoint of everything before it.
    fn rotate(
        &mut self,
        head: &Arc<RwLock<Head>>,
        done: Option<oneshot::Sender<Result<(), StoreError>>>,
    ) {
        let covered = self.seq;
        if let Err(e) = self.start_segment(covered + 1) {
            tracing::error!(error = %e, "cannot start a new write-ahead log segment; checkpoint postponed");
            if let Some(done) = done {
                let _ = done.send(Err(StoreError::Io(e)));
            }
            return;
        }
        // This thread is the only writer of the head, so the snapshot holds
        // exactly what segments up to `covered` hold.
        let snapshot = head.read().expect("head lock").snapshot(covered);
        self.busy.store(true, Ordering::Release);
        let job = Job {
            n: covered,
            generation: self.generation.load(Ordering::Acquire),
            snapshot,
            done,
        };
        if self.jobs.send(job).is_err() {
            tracing::error!("checkpoint thread is gone; write-ahead log will grow");
        }
    }

    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part of the batch reached the file, so the
                // next successful write follows the last durable frame.
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    fn encode(&mut self, req: &AppendRequest, buf: &mut Vec<u8>) {
        let mut ids = Vec::with_capacity(req.observations.len());
        if !self.ids.contains_key(&req.subject) {
            self.ids
                .insert(req.subject.clone(), [NO_ID; VitalSign::ALL.len()]);
        }
        for o in &req.observations {
            let known = self.ids[&req.subject][o.vital as usize];
            let id = if known != NO_ID {
                known
            } else {
                let id = self.series.len() as u32;
                write_frame(buf, &define_payload(id, &req.subject, o.vital));
                self.ids.get_mut(&req.subject).expect("inserted above")[o.vital as usize] = id;
                self.series.push((req.subject.clone(), o.vital));
                id
            };
            ids.push(id);
        }
        let mut p = Vec::with_capacity(5 + SAMPLE_BYTES * ids.len());
        p.push(KIND_SAMPLES);
        p.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for (id, o) in ids.iter().zip(&req.observations) {
            p.extend_from_slice(&id.to_le_bytes());
            p.extend_from_slice(&o.time_ms.to_le_bytes());
            p.extend_from_slice(&o.value.to_le_bytes());
        }
        write_frame(buf, &p);
    }
}

fn define_payload(id: u32, subject: &str, vital: VitalSign) -> Vec<u8> {
    let mut p = vec![KIND_DEFINE];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    p.extend_from_slice(subject.as_bytes());
    let code = vital.loinc();
    p.push(code.len() as u8);
    p.extend_from_slice(code.as_bytes());
    p
}

/// The checkpoint thread: writes queued checkpoints in order, deletes the
/// WAL segments each one covers, then removes expired data.
struct CheckpointThread {
    jobs: std::sync::mpsc::Receiver<Job>,
    chunks_dir: PathBuf,
    wal_dir: PathBuf,
    busy: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    head: Arc<RwLock<Head>>,
    retention: Arc<Retention>,
}

impl CheckpointThread {
    fn run(self) {
        let generation = &self.generation;
        for job in self.jobs.iter() {
            let result = if job.generation != generation.load(Ordering::Acquire) {
                // An earlier checkpoint failed after this snapshot was taken, so
                // this one may lack chunks that one claimed: skip it; the next
                // snapshot will include them.
                Err("superseded by a failed earlier checkpoint".to_string())
            } else {
                checkpoint::write(&self.chunks_dir, job.n, &job.snapshot).map_err(|e| e.to_string())
            };
            match result {
                Ok(bytes) => {
                    tracing::info!(
                        checkpoint = job.n,
                        bytes,
                        chunks = job.snapshot.sealed.len(),
                        "checkpoint written"
                    );
                    if let Err(e) = delete_segments_up_to(&self.wal_dir, job.n) {
                        tracing::warn!(error = %e, "cannot delete checkpointed WAL segments; will retry at next start");
                    }
                    if let Err(e) = retention::enforce(
                        &self.head,
                        &self.chunks_dir,
                        &self.retention,
                        now_ms(),
                        job.n,
                    ) {
                        tracing::warn!(error = %e, "cannot remove expired data now; will retry after the next checkpoint");
                    }
                    if let Some(done) = job.done {
                        let _ = done.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(checkpoint = job.n, error = %e, "checkpoint not written; the WAL keeps the data");
                    generation.fetch_add(1, Ordering::AcqRel);
                    for (_, _, chunk) in &job.snapshot.sealed {
                        let _ = chunk.checkpoint.compare_exchange(
                            job.n,
                            0,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                    }
                    if let Some(done) = job.done {
                        let _ = done.send(Err(StoreError::Io(std::io::Error::other(e))));
                    }
                }
            }
            self.busy.store(false, Ordering::Release);
        }
    }
}

fn delete_segments_up_to(wal_dir: &Path, n: u64) -> std::io::Result<()> {
    for (seq, path) in segments(wal_dir)? {
        if seq <= n {
            std::fs::remove_file(path)?;
        }
    }
    crate::sync_dir(wal_dir)
}

fn write_frame(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The payload of the intact frame at `pos` and where the next one starts.
fn read_frame(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = data.get(pos..pos + FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let payload = data.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some((payload, pos + FRAME_HEADER + len))
}

/// Bounds-checked little-endian reader over a frame payload.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello");
        write_frame(&mut buf, b"world!");
        let (a, next) = read_frame(&buf, 0).unwrap();
        assert_eq!(a, b"hello");
        let (b, end) = read_frame(&buf, next).unwrap();
        assert_eq!((b, end), (&b"world!"[..], buf.len()));
        // A torn tail (any prefix of a frame) is not a frame.
        for cut in next..buf.len() {
            assert!(read_frame(&buf[..cut], next).is_none(), "cut at {cut}");
        }
        // A flipped bit fails the checksum.
        let mut bad = buf.clone();
        bad[next + FRAME_HEADER + 2] ^= 0x10;
        assert!(read_frame(&bad, next).is_none());
    }
}
