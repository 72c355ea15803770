//! Checkpoint files: the compressed, durable form of the series.
//!
//! When the write-ahead log reaches its segment size, the writer starts a new
//! segment and takes a [`Snapshot`] of the head. A checkpoint thread writes it
//! to `chunks/{n}.chk` (covering WAL segments up to `n`): every sealed chunk
//! no earlier checkpoint holds, plus the open buffers as provisional chunks.
//! Once the file is fsynced and renamed into place, segments up to `n` are
//! deleted. On start, sealed chunks come from every checkpoint, provisional
//! ones from the newest only (later checkpoints supersede them), and the WAL
//! segments after the newest checkpoint are replayed on top.
//!
//! File layout (little endian): `MMCHK001`, u64 n, entries, u32 CRC-32 of
//! everything before it, `MMCHKEND`. An entry is u8 kind (1 sealed, 2
//! provisional), u16 len + subject, u8 len + LOINC code, i64 min time, i64 max
//! time, u32 points, u32 len + Gorilla chunk.

use crate::aggregate::Summary;
use crate::gorilla;
use crate::head::{Chunk, Snapshot};
use medmesh_model::VitalSign;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

const MAGIC: &[u8; 8] = b"MMCHK001";
const END: &[u8; 8] = b"MMCHKEND";
const KIND_SEALED: u8 = 1;
const KIND_PROVISIONAL: u8 = 2;

pub(crate) struct Entry {
    pub provisional: bool,
    pub subject: String,
    pub vital: VitalSign,
    pub chunk: Chunk,
}

fn file_name(n: u64) -> String {
    format!("{n:020}.chk")
}

fn put_entry(buf: &mut Vec<u8>, kind: u8, subject: &str, vital: VitalSign, chunk: &Chunk) {
    buf.push(kind);
    buf.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    buf.extend_from_slice(subject.as_bytes());
    let code = vital.loinc();
    buf.push(code.len() as u8);
    buf.extend_from_slice(code.as_bytes());
    buf.extend_from_slice(&chunk.min_ts.to_le_bytes());
    buf.extend_from_slice(&chunk.max_ts.to_le_bytes());
    buf.extend_from_slice(&chunk.count.to_le_bytes());
    buf.extend_from_slice(&(chunk.data.len() as u32).to_le_bytes());
    buf.extend_from_slice(&chunk.data);
}

/// Writes checkpoint `n` durably: temporary file, fsync, rename, fsync dir.
pub(crate) fn write(dir: &Path, n: u64, snap: &Snapshot) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&n.to_le_bytes());
    for (subject, vital, chunk) in &snap.sealed {
        put_entry(&mut buf, KIND_SEALED, subject, *vital, chunk);
    }
    for (subject, vital, points) in &snap.open {
        put_entry(
            &mut buf,
            KIND_PROVISIONAL,
            subject,
            *vital,
            &Chunk::seal(points),
        );
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(END);

    let path = dir.join(file_name(n));
    let tmp = path.with_extension("chk.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    crate::sync_dir(dir)?;
    Ok(buf.len() as u64)
}

/// Checkpoint files in `dir`, oldest first. Leftover temporary files (from a
/// crash while writing) are removed: their WAL segments were never deleted.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".chk.tmp") {
            std::fs::remove_file(&path)?;
        } else if let Some(n) = name.strip_suffix(".chk").and_then(|s| s.parse().ok()) {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and verifies a checkpoint file.
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let bad = |why: &str| format!("checkpoint {} is damaged: {why}", path.display());
    if data.len() < 28 || &data[..8] != MAGIC || &data[data.len() - 8..] != END {
        return Err(bad("not a medmesh checkpoint"));
    }
    let body_end = data.len() - 12;
    let crc = u32::from_le_bytes(data[body_end..body_end + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&data[..body_end]) != crc {
        return Err(bad("checksum mismatch"));
    }
    let mut r = crate::wal::Reader(&data[16..body_end]);
    let mut entries = Vec::new();
    while !r.0.is_empty() {
        let entry = (|| {
            let kind = r.u8()?;
            let subject_len = r.u16()? as usize;
            let subject = std::str::from_utf8(r.take(subject_len)?).ok()?.to_string();
            let code_len = r.u8()? as usize;
            let vital = VitalSign::lookup(std::str::from_utf8(r.take(code_len)?).ok()?)?;
            let min_ts = r.i64()?;
            let max_ts = r.i64()?;
            let count = r.u32()?;
            let len = r.u32()? as usize;
            let chunk_data = r.take(len)?.to_vec();
            // Verify now, so reads never meet an undecodable chunk.
            let points = gorilla::decode(&chunk_data)?;
            if points.len() != count as usize || (kind != KIND_SEALED && kind != KIND_PROVISIONAL) {
                return None;
            }
            Some(Entry {
                provisional: kind == KIND_PROVISIONAL,
                subject,
                vital,
                chunk: Chunk {
                    min_ts,
                    max_ts,
                    count,
                    data: chunk_data,
                    summary: Summary::of(&points),
                    checkpoint: AtomicU64::new(0),
                },
            })
        })()
        .ok_or_else(|| bad("malformed entry"))?;
        entries.push(entry);
    }
    Ok(entries)
}
