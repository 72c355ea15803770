//! Checkpoint files: the compressed, durable form of the series.
//!
//! When the write-ahead log reaches its segment size, the writer starts a new
//! segment and takes a [`Snapshot`] of the head. A checkpoint thread writes it
//! (covering WAL segments up to `n`): the open buffers as provisional chunks
//! to `chunks/{n}.open`, then every sealed chunk no earlier checkpoint holds
//! to `chunks/{n}.chk`. Once both are fsynced and renamed into place, segments
//! up to `n` and older `.open` files are deleted. On start, sealed chunks come
//! from every `.chk`, provisional ones from the newest `.open` only, and the
//! WAL segments after the newest checkpoint are replayed on top.
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

fn encode_file(n: u64, entries: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&n.to_le_bytes());
    entries(&mut buf);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(END);
    buf
}

/// Writes `bytes` to `path` durably: temporary file, fsync, rename.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = crate::private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes checkpoint `n` durably. The open buffers go to `{n}.open`, written
/// first; the sealed chunks to `{n}.chk`, whose appearance commits the
/// checkpoint. Older `.open` files are then superseded and removed, so the
/// open buffers, rewritten at every checkpoint, never pile up on disk.
pub(crate) fn write(dir: &Path, n: u64, snap: &Snapshot) -> std::io::Result<u64> {
    let open = encode_file(n, |buf| {
        for (subject, vital, points) in &snap.open {
            put_entry(buf, KIND_PROVISIONAL, subject, *vital, &Chunk::seal(points));
        }
    });
    let sealed = encode_file(n, |buf| {
        for (subject, vital, chunk) in &snap.sealed {
            put_entry(buf, KIND_SEALED, subject, *vital, chunk);
        }
    });
    write_file(&dir.join(open_name(n)), &open)?;
    write_file(&dir.join(file_name(n)), &sealed)?;
    crate::sync_dir(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let older = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.strip_suffix(".open"))
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|m| m < n);
        if older {
            std::fs::remove_file(path)?;
        }
    }
    Ok((open.len() + sealed.len()) as u64)
}

/// The sealed-chunk file of checkpoint `n`.
pub(crate) fn sealed_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(file_name(n))
}

/// Rewrites checkpoint `n`'s sealed chunks as `chunks` (after expiry), atomically.
pub(crate) fn rewrite_sealed(
    dir: &Path,
    n: u64,
    chunks: &[(String, VitalSign, std::sync::Arc<Chunk>)],
) -> std::io::Result<u64> {
    let sealed = encode_file(n, |buf| {
        for (subject, vital, chunk) in chunks {
            put_entry(buf, KIND_SEALED, subject, *vital, chunk);
        }
    });
    write_file(&sealed_path(dir, n), &sealed)?;
    Ok(sealed.len() as u64)
}

/// Checkpoints in `dir`, oldest first: `(n, sealed file, open file)`.
/// Leftovers of a crash while writing (temporary files, an `.open` file
/// whose `.chk` never appeared) are removed: their WAL segments still exist.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let mut opens = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path)?;
        } else if let Some(n) = name.strip_suffix(".chk").and_then(|s| s.parse().ok()) {
            out.push((n, path));
        } else if let Some(n) = name
            .strip_suffix(".open")
            .and_then(|s| s.parse::<u64>().ok())
        {
            opens.push((n, path));
        }
    }
    out.sort();
    let newest = out.last().map_or(0, |(n, _)| *n);
    for (n, path) in opens {
        if n > newest {
            std::fs::remove_file(path)?;
        }
    }
    Ok(out)
}

/// The open-buffer file of checkpoint `n`.
pub(crate) fn open_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(open_name(n))
}

fn open_name(n: u64) -> String {
    format!("{n:020}.open")
}

/// Reads and verifies a checkpoint file: sealed chunks (`.chk`) or, with
/// `provisional`, open buffers (`.open`).
pub(crate) fn read(path: &Path, provisional: bool) -> Result<Vec<Entry>, String> {
    let want_kind = if provisional {
        KIND_PROVISIONAL
    } else {
        KIND_SEALED
    };
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
            if points.len() != count as usize || kind != want_kind {
                return None;
            }
            Some(Entry {
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
