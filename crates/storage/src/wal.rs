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
//! One thread owns the file. It takes every append request waiting in its
//! queue, writes them with a single `write`, makes them durable with a single
//! `fdatasync` (group commit), applies them to the head and only then answers
//! the callers. A crash can therefore only tear the last, unacknowledged
//! write; replay stops at the first frame that is short or fails its checksum
//! and truncates it away.

use crate::StoreError;
use crate::head::{Head, Point};
use medmesh_model::{Observation, VitalSign};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
const FILE_NAME: &str = "000001.wal";

pub(crate) struct AppendRequest {
    pub subject: String,
    pub observations: Vec<Observation>,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub samples: u64,
    pub series: u64,
    /// Bytes of a torn final write cut off the end of the log.
    pub discarded_bytes: u64,
}

pub(crate) struct WalWriter {
    file: File,
    /// Length of the log up to the last durable frame.
    len: u64,
    bytes: Arc<AtomicU64>,
    ids: HashMap<(String, VitalSign), u32>,
    series: Vec<(String, VitalSign)>,
}

impl WalWriter {
    pub(crate) fn open(dir: &Path, head: &mut Head) -> std::io::Result<(WalWriter, Replayed)> {
        let path = dir.join(FILE_NAME);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if created {
            crate::sync_dir(dir)?;
        }
        let mut writer = WalWriter {
            file: file.try_clone()?,
            len: 0,
            bytes: Arc::new(AtomicU64::new(0)),
            ids: HashMap::new(),
            series: Vec::new(),
        };
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let (good_len, replayed) = writer.replay(&data, head);
        if (good_len as u64) < data.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                kept = good_len,
                discarded = data.len() - good_len,
                "write-ahead log ends in a torn write (never acknowledged); truncating it"
            );
            file.set_len(good_len as u64)?;
            file.sync_all()?;
        }
        writer.len = good_len as u64;
        writer.bytes.store(writer.len, Ordering::Relaxed);
        Ok((writer, replayed))
    }

    pub(crate) fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    /// Applies every intact frame to `head`; returns the length of the intact prefix.
    fn replay(&mut self, data: &[u8], head: &mut Head) -> (usize, Replayed) {
        let mut pos = 0;
        let mut stats = Replayed::default();
        while let Some((payload, next)) = read_frame(data, pos) {
            if self.apply_payload(payload, head, &mut stats).is_none() {
                break;
            }
            pos = next;
        }
        stats.discarded_bytes = (data.len() - pos) as u64;
        stats.series = self.series.len() as u64;
        (pos, stats)
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
                let id = r.u32()?;
                let subject_len = r.u16()? as usize;
                let subject = std::str::from_utf8(r.take(subject_len)?).ok()?.to_string();
                let code_len = r.u8()? as usize;
                let code = std::str::from_utf8(r.take(code_len)?).ok()?;
                if id as usize != self.series.len() {
                    return None;
                }
                let Some(vital) = VitalSign::lookup(code) else {
                    tracing::error!(
                        code,
                        "write-ahead log names a LOINC code this version does not know"
                    );
                    return None;
                };
                self.ids.insert((subject.clone(), vital), id);
                self.series.push((subject, vital));
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
    pub(crate) fn run(
        mut self,
        mut requests: mpsc::Receiver<AppendRequest>,
        head: Arc<RwLock<Head>>,
    ) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = requests.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            buf.clear();
            let defined_before = self.series.len();
            for req in &group {
                self.encode(req, &mut buf);
            }
            match self.write_durably(&buf) {
                Ok(()) => {
                    let mut head = head.write().expect("head lock");
                    for req in &group {
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
                    for req in group.drain(..) {
                        let _ = req.done.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log write failed; samples refused, not acknowledged");
                    // Series defined in the failed write do not exist on disk.
                    for key in self.series.drain(defined_before..) {
                        self.ids.remove(&key);
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
    }

    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let result = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.bytes.store(self.len, Ordering::Relaxed);
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
        for o in &req.observations {
            let key = (req.subject.clone(), o.vital);
            let id = match self.ids.get(&key) {
                Some(id) => *id,
                None => {
                    let id = self.series.len() as u32;
                    let mut p = vec![KIND_DEFINE];
                    p.extend_from_slice(&id.to_le_bytes());
                    p.extend_from_slice(&(req.subject.len() as u16).to_le_bytes());
                    p.extend_from_slice(req.subject.as_bytes());
                    let code = o.vital.loinc();
                    p.push(code.len() as u8);
                    p.extend_from_slice(code.as_bytes());
                    write_frame(buf, &p);
                    self.ids.insert(key.clone(), id);
                    self.series.push(key);
                    id
                }
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
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
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
