//! Making sure no node runs on a data directory while it is read offline.
//!
//! A running node's RocksDB holds a POSIX record lock (`fcntl` `F_SETLK`,
//! what RocksDB's `LockFile` takes) on `db/LOCK` for as long as it is open.
//! RocksDB's read-only mode takes no lock, so `inspect` and `recover` take
//! that same lock themselves: it fails while a node runs (whose data would
//! change under the reader, and whose in-memory state the reader would
//! not see), and while it is held a node that starts fails to open the
//! store instead of changing it mid-read. The lock is only tested and held,
//! never written: the file is not modified.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "a tsohost node{} is running on {dir} (it holds {lock}); stop it first: reading a \
         running node's data offline would miss what it holds in memory. While it runs, \
         `tsohost status --url URL` shows its high water",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse {
        dir: PathBuf,
        lock: PathBuf,
        holder: Option<i32>,
    },
    #[error("cannot open {lock} to check that no node runs on this data directory: {source}")]
    Open {
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {lock} to check that no node runs on this data directory: {source}")]
    Lock {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// The lock on a store, held until dropped (closing the file releases it).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: `flock` is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// Take the lock of the RocksDB store in `db_dir` (`<data dir>/db`), the
/// one a running node holds; `data_dir` names the directory in messages.
pub fn lock(data_dir: &Path, db_dir: &Path) -> Result<StoreLock, LockError> {
    let lock = db_dir.join("LOCK");
    // Write access is what F_WRLCK needs; nothing is written.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
        .map_err(|source| LockError::Open {
            lock: lock.clone(),
            source,
        })?;
    let fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: a valid descriptor and a valid `flock` for the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } == 0 {
        return Ok(StoreLock { _file: file });
    }
    let source = std::io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(LockError::InUse {
            dir: data_dir.to_path_buf(),
            holder: holder(&file),
            lock,
        }),
        _ => Err(LockError::Lock { lock, source }),
    }
}

/// The pid holding a conflicting lock, if the kernel says.
fn holder(file: &File) -> Option<i32> {
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: a valid descriptor and a valid, writable `flock`.
    let ok = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) } == 0;
    (ok && fl.l_type != libc::F_UNLCK as libc::c_short && fl.l_pid > 0).then_some(fl.l_pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (A store open in another process is refused: tests/operations.rs,
    /// with a real node. Within one process POSIX locks do not conflict.)
    #[test]
    fn a_closed_store_is_locked_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        drop(crate::storage::Db::open(&db_dir).unwrap());
        drop(lock(dir.path(), &db_dir).unwrap());
        let e = lock(dir.path(), &dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent/LOCK"), "{e}");
    }
}
