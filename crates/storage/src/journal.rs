//! A journal: records of one type, one JSON line each, append-only, fsynced.
//! Used for the alarm log (replayed to rebuild the alarm board) and the audit
//! log (queried by administrators).
//!
//! Opening reads every recorded line; a torn last line (a crash mid-write)
//! is cut off, and an unreadable line ends the replay (what follows it
//! cannot be trusted to be in order) and is reported.
//!
//! One thread owns the file and writes in batches with one fsync each, so
//! callers on the ingest path never wait for the disk. [`Journal::append`]
//! only queues (a crash can lose the last few lines); [`Journal::append_waiting`]
//! gives a [`Durable`] whose `wait` returns once the line, and everything
//! queued before it, is on disk. While
//! the disk fails (full), lines wait in memory and are written, in order, once
//! it works again: a full disk delays the record instead of leaving a gap.
//! [`Journal::rewrite`] replaces the whole file atomically (compaction), in
//! order with the appends around it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Done = mpsc::Sender<std::io::Result<()>>;

/// What the writer thread is asked to do.
enum Line {
    /// Append these bytes (none: only report when what is queued is on disk).
    Append(Vec<u8>, Option<Done>),
    /// Replace the file's contents with these bytes.
    Rewrite(Vec<u8>, Done),
}

pub struct Journal<T> {
    lines: mpsc::Sender<Line>,
    path: PathBuf,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens (creating) the journal `name` under `dir`; returns it and every
    /// recorded record, oldest first.
    pub fn open(dir: &Path, name: &str) -> std::io::Result<(Journal<T>, Vec<T>)> {
        crate::create_private_dir(dir)?;
        let path = dir.join(name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (records, good) = parse(&path, &data);
        let file = crate::private_file()
            .create(true)
            .append(true)
            .open(&path)?;
        if good < data.len() {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let (lines, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("medmesh-journal-{name}"))
            .spawn({
                let path = path.clone();
                let len = good as u64;
                move || write_batches(&path, file, len, queue)
            })?;
        Ok((
            Journal {
                lines,
                path,
                _record: PhantomData,
            },
            records,
        ))
    }

    /// Reads back every record on disk now (queued ones may be missing).
    pub fn read_all(&self) -> std::io::Result<Vec<T>> {
        let data = std::fs::read(&self.path)?;
        Ok(parse(&self.path, &data).0)
    }

    fn line(record: &T) -> Vec<u8> {
        let mut line = serde_json::to_vec(record).expect("a journal record serialises");
        line.push(b'\n');
        line
    }

    /// Queues a record.
    pub fn append(&self, record: &T) {
        if self
            .lines
            .send(Line::Append(Self::line(record), None))
            .is_err()
        {
            tracing::error!(path = %self.path.display(), "journal writer is gone; record lost");
        }
    }

    /// Queues `record` now; [`Durable::wait`] returns once it is on disk.
    /// For callers that must queue in some order under a lock but not wait
    /// for the disk while holding it.
    pub fn append_waiting(&self, record: &T) -> Durable {
        let (done, wait) = mpsc::channel();
        let queued = self
            .lines
            .send(Line::Append(Self::line(record), Some(done)))
            .is_ok();
        Durable {
            wait: queued.then_some(wait),
            path: self.path.clone(),
        }
    }

    /// Replaces everything recorded with `records` (compaction): the file is
    /// rewritten atomically, after every record appended before this call and
    /// before any appended after it. Returns once the new file is on disk.
    pub fn rewrite(&self, records: &[T]) -> std::io::Result<()> {
        let bytes: Vec<u8> = records.iter().flat_map(Self::line).collect();
        let (done, wait) = mpsc::channel();
        let gone = || std::io::Error::other(format!("{} writer is gone", self.path.display()));
        self.lines
            .send(Line::Rewrite(bytes, done))
            .map_err(|_| gone())?;
        wait.recv().map_err(|_| gone())?
    }
}

/// A record queued by [`Journal::append_waiting`].
pub struct Durable {
    /// None: the writer was gone before the record could be queued.
    wait: Option<mpsc::Receiver<std::io::Result<()>>>,
    path: PathBuf,
}

impl Durable {
    /// Returns once the record is on disk, or why it is not.
    pub fn wait(self) -> std::io::Result<()> {
        let gone = || std::io::Error::other(format!("{} writer is gone", self.path.display()));
        let wait = self.wait.ok_or_else(gone)?;
        wait.recv().map_err(|_| gone())?
    }
}

impl<T> Journal<T> {
    /// Returns once everything appended so far is on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        let (done, wait) = mpsc::channel();
        let gone = || std::io::Error::other(format!("{} writer is gone", self.path.display()));
        self.lines
            .send(Line::Append(Vec::new(), Some(done)))
            .map_err(|_| gone())?;
        wait.recv().map_err(|_| gone())?
    }
}

/// Dropping a journal waits until what was queued is on disk, so a journal
/// reopened after it sees every record.
impl<T> Drop for Journal<T> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The records in `data` and the length of the intact prefix they came from.
fn parse<T: DeserializeOwned>(path: &Path, data: &[u8]) -> (Vec<T>, usize) {
    let mut records = Vec::new();
    let mut good = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break; // torn final write
        }
        match serde_json::from_slice::<T>(line) {
            Ok(r) => records.push(r),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable journal line; later lines ignored");
                break;
            }
        }
        good += line.len();
    }
    (records, good)
}

/// While the disk fails, unwritten lines are tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// While the disk fails, the failure is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Unwritten lines held beyond this are given up (and said so in the log):
/// a disk that stays full must not also exhaust memory.
const MAX_UNWRITTEN_BYTES: usize = 64 << 20;

/// The journal file as its writer thread knows it.
struct Appender {
    file: File,
    /// Length of the intact file: whole lines only.
    len: u64,
    /// A failed write left bytes past `len` that could not be cut off yet;
    /// nothing is written after them until they are.
    cut_pending: bool,
    failing: bool,
    last_logged: Option<Instant>,
}

impl Appender {
    /// Appends `bytes` and fsyncs. On failure the file is cut back to its
    /// intact length (a fragment followed by later lines would end the
    /// replay there).
    fn write(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let result = (|| {
            if self.cut_pending {
                self.file.set_len(self.len)?;
                self.cut_pending = false;
            }
            self.file.write_all(bytes)?;
            self.file.sync_data()
        })();
        match &result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                if std::mem::take(&mut self.failing) {
                    self.last_logged = None;
                    tracing::warn!(path = %path.display(), "journal writes succeed again; held records written");
                }
            }
            Err(e) => {
                self.cut_pending = self.file.set_len(self.len).is_err();
                self.failing = true;
                let now = Instant::now();
                if self.last_logged.is_none_or(|t| now - t >= LOG_EVERY) {
                    self.last_logged = Some(now);
                    tracing::error!(path = %path.display(), error = %e, bytes = bytes.len(), cut_pending = self.cut_pending, "journal write failed; records held to be written when it works again");
                }
            }
        }
        result
    }
}

/// The writer thread: everything queued, one write, one fsync, then answers;
/// a rewrite first writes what was queued before it, then swaps the file.
///
/// A failed write (a full disk) loses nothing while memory allows: its lines
/// stay queued, in order, ahead of later ones, and are tried again with the
/// next batch or after [`RETRY_EVERY`]; whoever waits for them is told it
/// failed (their record is written late, not lost).
fn write_batches(path: &Path, file: File, len: u64, queue: mpsc::Receiver<Line>) {
    let mut appender = Appender {
        file,
        len,
        cut_pending: false,
        failing: false,
        last_logged: None,
    };
    let mut unwritten: Vec<u8> = Vec::new();
    let mut waiting = Vec::new();
    let mut closing = false;
    while !closing {
        let mut next = if unwritten.is_empty() {
            match queue.recv() {
                Ok(line) => Some(line),
                Err(mpsc::RecvError) => return,
            }
        } else {
            match queue.recv_timeout(RETRY_EVERY) {
                Ok(line) => Some(line),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Dropped: one last try below, then stop.
                    closing = true;
                    None
                }
            }
        };
        let mut rewrite = None;
        while let Some(line) = next.take() {
            match line {
                Line::Append(line, done) => {
                    unwritten.extend_from_slice(&line);
                    waiting.extend(done);
                    next = queue.try_recv().ok();
                }
                Line::Rewrite(bytes, done) => rewrite = Some((bytes, done)),
            }
        }
        let result = appender.write(path, &unwritten);
        if result.is_ok() {
            unwritten.clear();
        } else if unwritten.len() > MAX_UNWRITTEN_BYTES {
            tracing::error!(path = %path.display(), bytes = unwritten.len(), "journal records given up: the disk has failed for too long");
            unwritten = Vec::new();
        }
        for done in waiting.drain(..) {
            let _ = done.send(copy(&result));
        }
        if let Some((bytes, done)) = rewrite {
            let result = crate::write_atomically(path, &bytes).and_then(|()| {
                appender.file = OpenOptions::new().append(true).open(path)?;
                appender.len = bytes.len() as u64;
                appender.cut_pending = false;
                Ok(())
            });
            match &result {
                // The new contents stand for everything appended before.
                Ok(()) => unwritten.clear(),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "journal rewrite failed")
                }
            }
            let _ = done.send(result);
        }
    }
}

fn copy(result: &std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_replaces_what_came_before_and_keeps_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, old) = Journal::<u32>::open(dir.path(), "j.jsonl").unwrap();
            assert!(old.is_empty());
            for n in 1..=5 {
                j.append(&n);
            }
            // Queued appends are written first, then the file is replaced.
            j.rewrite(&[4, 5]).unwrap();
            assert_eq!(j.read_all().unwrap(), [4, 5]);
            j.append(&6);
        }
        let (_, records) = Journal::<u32>::open(dir.path(), "j.jsonl").unwrap();
        assert_eq!(records, [4, 5, 6]);
        assert!(!dir.path().join("j.jsonl.tmp").exists());
    }
}
