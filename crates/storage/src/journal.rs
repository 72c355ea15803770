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
//! only queues (a crash can lose the last few lines); [`Journal::append_durable`]
//! returns once the line, and everything queued before it, is on disk.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

struct Line(Vec<u8>, Option<mpsc::Sender<std::io::Result<()>>>);

pub struct Journal<T> {
    lines: mpsc::Sender<Line>,
    path: PathBuf,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens (creating) the journal `name` under `dir`; returns it and every
    /// recorded record, oldest first.
    pub fn open(dir: &Path, name: &str) -> std::io::Result<(Journal<T>, Vec<T>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (records, good) = parse(&path, &data);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if good < data.len() {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let (lines, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("medmesh-journal-{name}"))
            .spawn(move || write_batches(file, queue))?;
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
        if self.lines.send(Line(Self::line(record), None)).is_err() {
            tracing::error!(path = %self.path.display(), "journal writer is gone; record lost");
        }
    }

    /// Records `record` and returns once it is on disk.
    pub fn append_durable(&self, record: &T) -> std::io::Result<()> {
        let (done, wait) = mpsc::channel();
        let gone = || std::io::Error::other(format!("{} writer is gone", self.path.display()));
        self.lines
            .send(Line(Self::line(record), Some(done)))
            .map_err(|_| gone())?;
        wait.recv().map_err(|_| gone())?
    }
}

impl<T> Journal<T> {
    /// Returns once everything appended so far is on disk.
    pub fn flush(&self) -> std::io::Result<()> {
        let (done, wait) = mpsc::channel();
        let gone = || std::io::Error::other(format!("{} writer is gone", self.path.display()));
        self.lines
            .send(Line(Vec::new(), Some(done)))
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

/// The writer thread: everything queued, one write, one fsync, then answers.
fn write_batches(mut file: File, queue: mpsc::Receiver<Line>) {
    let mut buf = Vec::new();
    let mut waiting = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(Line(line, done)) = next {
            buf.extend_from_slice(&line);
            waiting.extend(done);
            next = queue.try_recv().ok();
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = &result {
            tracing::error!(error = %e, "journal write failed");
        }
        for done in waiting.drain(..) {
            let _ = done.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string())),
            );
        }
        buf.clear();
    }
}
