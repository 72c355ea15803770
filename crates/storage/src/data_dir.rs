//! The data directory at rest: one owner at a time, readable by nobody else.
//!
//! - [`DataDirLock`]: the running server holds an exclusive lock on
//!   `LOCK` in its data directory, so a second server, or an offline
//!   `medmesh user` command, cannot write the same files at the same time
//!   (the second writer's changes would be lost, or break the audit chain).
//!   The kernel drops the lock when the process dies, even by `SIGKILL`, so
//!   a crash never leaves a stale lock behind.
//! - Private modes: every file the server writes is created `0600` and every
//!   directory `0700` (the directory holds health data and `access.json`
//!   with password hashes), set explicitly rather than left to the umask.
//!   [`tighten`] brings files written by older versions to the same modes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Mode of every file in the data directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data directory and every directory in it.
pub const DIR_MODE: u32 = 0o700;

const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {path} is in use by another medmesh process ({holder}); stop it first, or, while it runs, manage accounts through its API (POST /api/v1/users)"
    )]
    InUse { path: PathBuf, holder: String },
    #[error("cannot lock data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The exclusive lock on a data directory; released when dropped (or when
/// the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (creating it, private, if missing) for this process, or
    /// says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            path: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut file = private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::InUse {
                    path: dir.to_path_buf(),
                    holder: if pid.is_empty() {
                        "process id not yet written".into()
                    } else {
                        format!("process id {pid}")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: record who holds it, for the message above.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Options that create a file readable and writable by its owner only.
pub fn private_file() -> OpenOptions {
    #[allow(unused_mut)]
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    o
}

/// Creates `dir` and any missing parents; `dir` itself ends `0700` whatever
/// the umask (parents created on the way are the operator's business).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, DIR_MODE)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
        if current != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Makes `dir` and everything under it private (`0700` directories, `0600`
/// files): run at start, for data written before modes were set or copied in
/// with looser ones. Symbolic links are left alone, not followed.
pub fn tighten(dir: &Path) -> std::io::Result<()> {
    set_mode(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            tighten(&entry.path())?;
        } else if kind.is_file() {
            set_mode(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_locked_directory_names_its_holder_and_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let lock = DataDirLock::acquire(&data).unwrap();
        assert_eq!(mode(&data), DIR_MODE);
        assert_eq!(mode(&data.join(LOCK_FILE)), FILE_MODE);
        // flock locks belong to the open file, so a second open in this
        // process is refused like another process would be.
        let err = DataDirLock::acquire(&data).unwrap_err().to_string();
        assert!(
            err.contains(&format!("process id {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        DataDirLock::acquire(&data).unwrap();
    }

    #[test]
    fn tighten_makes_old_files_private() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("wal");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = sub.join("x");
        std::fs::write(&f, b"1").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten(dir.path()).unwrap();
        assert_eq!(mode(dir.path()), DIR_MODE);
        assert_eq!(mode(&sub), DIR_MODE);
        assert_eq!(mode(&f), FILE_MODE);
    }
}
