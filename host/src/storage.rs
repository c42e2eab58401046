//! Durable key-value storage for drivers, namespaced per driver.
//!
//! The host keeps one RocksDB per data directory. Each driver sees only the
//! keys under its own namespace (`d/<driver name>/`, or `d/<name>#<g>/` in
//! migration generation `g` > 0), so two drivers on one node — during a
//! migration, say — cannot read or clobber each other, and a driver migrated
//! back to starts from empty storage rather than from its stale state. The
//! host's own records live under `h/`, out of every driver's reach.
//! [`MemStorage`] is an in-memory twin with the same semantics, for testing
//! the driver actor without a disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "cannot open the RocksDB store in {path}: {source}. Is another tsohost using this --data-dir?"
    )]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error(
        "cannot open the RocksDB store in {path} read-only: {source}. Is it the db/ folder of a \
         tsohost data directory, and readable by this user?"
    )]
    OpenReadOnly {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("RocksDB {op} failed: {source}")]
    Rocks {
        op: &'static str,
        source: rocksdb::Error,
    },
    #[error(
        "storage write failed by fault injection (PUT /v1/admin/faults \
         fail_storage_writes); nothing was written"
    )]
    Injected,
    #[error("storage read failed by fault injection (PUT /v1/admin/faults fail_storage_reads)")]
    InjectedRead,
}

/// Injected storage failures, for fault injection through the admin API:
/// the next `n` writes (or reads: gets and scans) of any namespace fail
/// before reaching RocksDB, as a failing disk's would; a failed write writes
/// nothing.
#[derive(Debug, Default)]
pub struct Failpoint {
    writes: AtomicU64,
    reads: AtomicU64,
}

impl Failpoint {
    /// Fail the next `n` writes (0 heals).
    pub fn fail_writes(&self, n: u64) {
        self.writes.store(n, Relaxed);
    }

    /// Fail the next `n` reads (0 heals).
    pub fn fail_reads(&self, n: u64) {
        self.reads.store(n, Relaxed);
    }

    /// Writes still to fail.
    pub fn pending(&self) -> u64 {
        self.writes.load(Relaxed)
    }

    /// Reads still to fail.
    pub fn pending_reads(&self) -> u64 {
        self.reads.load(Relaxed)
    }

    /// Whether this write is to fail (consuming one).
    fn trip(&self) -> bool {
        Self::take(&self.writes)
    }

    /// Whether this read is to fail (consuming one).
    fn trip_read(&self) -> bool {
        Self::take(&self.reads)
    }

    fn take(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Key-value pairs in key order, as a scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One atomic write: puts, then deletes.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub deletes: Vec<Vec<u8>>,
}

/// What a driver's storage namespace offers. Keys and values are raw bytes;
/// implementations prefix keys with the namespace.
pub trait Storage: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Apply `batch` atomically; with `sync`, durable before returning.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError>;
    /// Up to `limit` entries with `start <= key < end` (`end` empty: no
    /// bound), in key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError>;
}

/// The node's RocksDB.
#[derive(Clone)]
pub struct Db {
    db: Arc<rocksdb::DB>,
    failpoint: Arc<Failpoint>,
}

impl Db {
    pub fn open(dir: &Path) -> Result<Db, StorageError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, dir).map_err(|source| StorageError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Db {
            db: Arc::new(db),
            failpoint: Arc::default(),
        })
    }

    /// Open an existing store without writing to it, for `tsohost inspect`
    /// and `tsohost recover`. RocksDB replays its write-ahead log in memory
    /// (so writes a killed node made are seen) but takes no lock: the caller
    /// holds [`crate::datadir::lock`] so that no node runs meanwhile.
    pub fn open_read_only(dir: &Path) -> Result<Db, StorageError> {
        let opts = rocksdb::Options::default();
        let db = rocksdb::DB::open_for_read_only(&opts, dir, false).map_err(|source| {
            StorageError::OpenReadOnly {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        Ok(Db {
            db: Arc::new(db),
            failpoint: Arc::default(),
        })
    }

    /// Every key starting with `prefix` (whole keys, prefix included) and
    /// its value, in key order: what an offline reader of the data
    /// directory sees across namespaces.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StorageError> {
        let mut out = Vec::new();
        let iter = self.db.iterator(rocksdb::IteratorMode::From(
            prefix,
            rocksdb::Direction::Forward,
        ));
        for item in iter {
            let (k, v) = item.map_err(rocks("scan"))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The storage of driver `name` in migration generation `generation`.
    pub fn namespace(&self, name: &str, generation: u64) -> Namespace {
        let prefix = match generation {
            0 => format!("d/{name}/"),
            g => format!("d/{name}#{g}/"),
        };
        Namespace {
            db: self.db.clone(),
            prefix: prefix.into_bytes(),
            failpoint: self.failpoint.clone(),
        }
    }

    /// The host's record `key` (under `h/`).
    pub fn host_record(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get(format!("h/{key}").as_bytes())
            .map_err(rocks("get"))
    }

    /// Write the host's record `key` durably. Injected faults do not apply:
    /// they stand for a driver's failing disk, not the host's.
    pub fn put_host_record(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_opt(format!("h/{key}").as_bytes(), value, &opts)
            .map_err(rocks("write"))
    }

    /// The failures injected into every namespace's writes.
    pub fn failpoint(&self) -> Arc<Failpoint> {
        self.failpoint.clone()
    }
}

/// One driver's keys in the node's RocksDB.
pub struct Namespace {
    db: Arc<rocksdb::DB>,
    prefix: Vec<u8>,
    failpoint: Arc<Failpoint>,
}

impl Namespace {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        [self.prefix.as_slice(), key].concat()
    }

    /// The first key after every key of this namespace.
    fn prefix_end(&self) -> Vec<u8> {
        let mut end = self.prefix.clone();
        *end.last_mut().expect("prefix ends in '/'") += 1;
        end
    }
}

fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StorageError {
    move |source| StorageError::Rocks { op, source }
}

impl Storage for Namespace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if self.failpoint.trip_read() {
            return Err(StorageError::InjectedRead);
        }
        self.db.get(self.key(key)).map_err(rocks("get"))
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        if self.failpoint.trip() {
            return Err(StorageError::Injected);
        }
        let mut wb = rocksdb::WriteBatch::default();
        for (k, v) in &batch.puts {
            wb.put(self.key(k), v);
        }
        for k in &batch.deletes {
            wb.delete(self.key(k));
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts).map_err(rocks("write"))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        if self.failpoint.trip_read() {
            return Err(StorageError::InjectedRead);
        }
        let upper = if end.is_empty() {
            self.prefix_end()
        } else {
            self.key(end)
        };
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(upper);
        let from = self.key(start);
        let iter = self.db.iterator_opt(
            rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward),
            opts,
        );
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(rocks("scan"))?;
            out.push((k[self.prefix.len()..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// In-memory storage with the semantics of [`Namespace`]; `sync` is a no-op.
#[derive(Default, Clone)]
pub struct MemStorage {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl Storage for MemStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<(), StorageError> {
        let mut map = self.map.lock().unwrap();
        map.extend(batch.puts);
        for k in batch.deletes {
            map.remove(&k);
        }
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        let map = self.map.lock().unwrap();
        let upper = if end.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(end.to_vec())
        };
        Ok(map
            .range((std::ops::Bound::Included(start.to_vec()), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Storage) {
        s.write(
            WriteBatch {
                puts: vec![
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec()),
                    (b"c".to_vec(), b"3".to_vec()),
                ],
                deletes: vec![],
            },
            true,
        )
        .unwrap();
        s.write(
            WriteBatch {
                puts: vec![],
                deletes: vec![b"b".to_vec()],
            },
            false,
        )
        .unwrap();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), None);
        let all: Vec<_> = s.scan(b"", b"", 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(s.scan(b"a", b"c", 10).unwrap().len(), 1);
        assert_eq!(s.scan(b"", b"", 1).unwrap()[0].0, b"a".to_vec());
    }

    #[test]
    fn rocksdb_namespaces_are_isolated_and_match_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        exercise(&db.namespace("one", 0));
        for other in [db.namespace("two", 0), db.namespace("one", 1)] {
            assert_eq!(other.get(b"a").unwrap(), None);
            assert!(other.scan(b"", b"", 10).unwrap().is_empty());
        }
        db.put_host_record("r", b"x").unwrap();
        assert_eq!(db.host_record("r").unwrap(), Some(b"x".to_vec()));
        assert!(db.namespace("one", 0).get(b"r").unwrap().is_none());
        exercise(&MemStorage::default());
    }

    #[test]
    fn injected_failures_fail_that_many_writes_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let ns = db.namespace("one", 0);
        let put = |v: &[u8]| WriteBatch {
            puts: vec![(b"k".to_vec(), v.to_vec())],
            deletes: vec![],
        };
        db.failpoint().fail_writes(2);
        assert!(matches!(
            ns.write(put(b"1"), true),
            Err(StorageError::Injected)
        ));
        assert!(matches!(
            ns.write(put(b"2"), true),
            Err(StorageError::Injected)
        ));
        assert_eq!(ns.get(b"k").unwrap(), None);
        assert_eq!(db.failpoint().pending(), 0);
        ns.write(put(b"3"), true).unwrap();
        assert_eq!(ns.get(b"k").unwrap(), Some(b"3".to_vec()));

        db.failpoint().fail_reads(2);
        assert!(matches!(ns.get(b"k"), Err(StorageError::InjectedRead)));
        assert!(matches!(
            ns.scan(b"", b"", 10),
            Err(StorageError::InjectedRead)
        ));
        assert_eq!(db.failpoint().pending_reads(), 0);
        assert_eq!(ns.get(b"k").unwrap(), Some(b"3".to_vec()));
    }
}
