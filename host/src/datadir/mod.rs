//! A stopped node's data directory, read offline: `tsohost inspect` and the
//! reading half of `tsohost recover` (docs/operations.md, "Looking inside a
//! data directory").
//!
//! - this module: [`inspect`], the IO (lock, read-only open, scan) and the
//!   [`Report`] it builds;
//! - [`layout`]: the built-in drivers' storage layouts, decoded (pure);
//! - [`lock`]: refusing a directory a node runs on.
//!
//! Nothing here writes to the directory. A read that fails is an error,
//! never an empty answer: a recovery floor computed from a half-read
//! directory could be too low.

pub mod layout;
pub mod lock;

use crate::migration::{DriverRecord, RecordError};
use crate::storage::{Db, Entries, StorageError};
use layout::StoredHighWater;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layout of the host's own records this build writes: `h/driver`, a
/// JSON [`DriverRecord`]. Not stored; printed so that operators can tell
/// which release reads what.
pub const HOST_RECORD_FORMAT: &str = "h/driver: JSON {driver, generation, floor, sealed}";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "{dir} holds no tsohost data ({db} does not exist); pass the --data-dir the node was \
         started with"
    )]
    NotADataDir { dir: PathBuf, db: PathBuf },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{dir}: {source}")]
    Storage { dir: PathBuf, source: StorageError },
    #[error("{dir}: {source}")]
    Record { dir: PathBuf, source: RecordError },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a data directory holds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data_dir: PathBuf,
    /// The host's driver record (`h/driver`); absent on a node never sealed
    /// or migrated (it runs what `--driver` says, generation 0, floor 0).
    pub record: Option<DriverRecord>,
    /// Every driver storage namespace (`d/<name>[#<generation>]/`).
    pub namespaces: Vec<Namespace>,
    /// Components compiled for this node (`component-cache/`), newest first.
    pub compiled_components: Vec<CompiledComponent>,
    pub formats: Formats,
    /// The highest high water stored anywhere in the directory (every
    /// namespace this build can read, and the record's floor), Unix ms.
    pub highest_high_water_ms: u64,
    /// Whether every namespace was read: with an unknown or unreadable one,
    /// [`Report::highest_high_water_ms`] may be too low.
    pub complete: bool,
}

/// One driver's storage namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    /// The key prefix, e.g. `d/raft/` or `d/paxos#1/`.
    pub prefix: String,
    pub driver: String,
    pub generation: u64,
    /// Whether it is the namespace the record (or, without one, the only
    /// generation 0) points at: the one the node's driver uses.
    pub current: bool,
    pub keys: usize,
    pub high_water: HighWater,
}

/// What a namespace says about the durable high water.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HighWater {
    /// Read from a built-in driver's layout.
    Stored(StoredHighWater),
    /// A driver whose layout this tsohost does not know: its high water is
    /// not guessed.
    UnknownDriver,
    /// A built-in driver's key that does not decode.
    Unreadable { error: String },
}

/// A component the node compiled (its SHA-256), and when.
#[derive(Debug, Clone, Serialize)]
pub struct CompiledComponent {
    pub sha256: String,
    /// Unix seconds of the cached file's last change.
    pub modified_unix_s: Option<u64>,
}

/// The storage format versions of the directory.
#[derive(Debug, Clone, Serialize)]
pub struct Formats {
    /// The RocksDB version that last wrote the store (its OPTIONS file).
    pub rocksdb: Option<String>,
    /// The layout of the host's records.
    pub host_records: &'static str,
}

/// Read the data directory `dir` (a node's `--data-dir`), refusing while a
/// node runs on it.
pub fn inspect(dir: &Path) -> Result<Report, DataDirError> {
    let db_dir = dir.join("db");
    if !db_dir.is_dir() {
        return Err(DataDirError::NotADataDir {
            dir: dir.to_path_buf(),
            db: db_dir,
        });
    }
    let _held = lock::lock(dir, &db_dir)?;
    let storage = |source| DataDirError::Storage {
        dir: dir.to_path_buf(),
        source,
    };
    let db = Db::open_read_only(&db_dir).map_err(storage)?;
    let record = DriverRecord::load(&db).map_err(|source| DataDirError::Record {
        dir: dir.to_path_buf(),
        source,
    })?;
    let entries = db.scan_prefix(b"d/").map_err(storage)?;
    let namespaces = namespaces(entries, record.as_ref());
    let highest = namespaces
        .iter()
        .filter_map(|n| match &n.high_water {
            HighWater::Stored(s) => Some(s.high_water_ms),
            _ => None,
        })
        .chain(record.as_ref().map(|r| r.floor))
        .max()
        .unwrap_or(0);
    let complete = namespaces
        .iter()
        .all(|n| matches!(n.high_water, HighWater::Stored(_)));
    Ok(Report {
        data_dir: dir.to_path_buf(),
        record,
        namespaces,
        compiled_components: compiled(&dir.join("component-cache"))?,
        formats: Formats {
            rocksdb: rocksdb_version(&db_dir)?,
            host_records: HOST_RECORD_FORMAT,
        },
        highest_high_water_ms: highest,
        complete,
    })
}

/// Group raw `d/...` entries by namespace and read each one's high water.
/// Pure, so that the grouping is tested without a store.
pub fn namespaces(
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    record: Option<&DriverRecord>,
) -> Vec<Namespace> {
    let mut groups: BTreeMap<String, Entries> = BTreeMap::new();
    for (key, value) in entries {
        let rest = &key[2..];
        let Some(slash) = rest.iter().position(|&b| b == b'/') else {
            continue;
        };
        let prefix = String::from_utf8_lossy(&key[..2 + slash + 1]).into_owned();
        let inner = key[2 + slash + 1..].to_vec();
        groups.entry(prefix).or_default().push((inner, value));
    }
    groups
        .into_iter()
        .map(|(prefix, entries)| {
            let name = &prefix[2..prefix.len() - 1];
            let (driver, generation) = match name.rsplit_once('#') {
                Some((d, g)) if g.parse::<u64>().is_ok() => (d.to_string(), g.parse().unwrap()),
                _ => (name.to_string(), 0),
            };
            let current = match record {
                Some(r) => r.driver == driver && r.generation == generation,
                None => generation == 0,
            };
            let high_water = match layout::high_water(&driver, &entries) {
                None => HighWater::UnknownDriver,
                Some(Ok(s)) => HighWater::Stored(s),
                Some(Err(e)) => HighWater::Unreadable {
                    error: e.to_string(),
                },
            };
            Namespace {
                prefix,
                driver,
                generation,
                current,
                keys: entries.len(),
                high_water,
            }
        })
        .collect()
}

/// The digests of `component-cache/<sha256>-<hash>.cwasm`, newest first.
fn compiled(cache: &Path) -> Result<Vec<CompiledComponent>, DataDirError> {
    let io = |source| DataDirError::Io {
        path: cache.to_path_buf(),
        source,
    };
    let read = match std::fs::read_dir(cache) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".cwasm") else {
            continue;
        };
        let sha256 = stem.split('-').next().unwrap_or(stem).to_string();
        let modified_unix_s = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        out.push(CompiledComponent {
            sha256,
            modified_unix_s,
        });
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.modified_unix_s));
    Ok(out)
}

/// `rocksdb_version` from the newest `OPTIONS-<n>` file RocksDB wrote.
fn rocksdb_version(db_dir: &Path) -> Result<Option<String>, DataDirError> {
    let io = |source| DataDirError::Io {
        path: db_dir.to_path_buf(),
        source,
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(db_dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("OPTIONS-").and_then(|n| n.parse().ok())
            && newest.as_ref().is_none_or(|(m, _)| n > *m)
        {
            newest = Some((n, entry.path()));
        }
    }
    let Some((_, path)) = newest else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| DataDirError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("rocksdb_version="))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_grouped_and_the_current_one_marked() {
        let hw = |v: u64| v.to_be_bytes().to_vec();
        let entries = vec![
            (b"d/file/high-water".to_vec(), hw(10)),
            (b"d/file#2/high-water".to_vec(), hw(30)),
            (b"d/mine/anything".to_vec(), hw(99)),
        ];
        let record = DriverRecord {
            driver: "file".into(),
            generation: 2,
            floor: 20,
            sealed: false,
        };
        // Key order: `#` sorts before `/`.
        let ns = namespaces(entries.clone(), Some(&record));
        let prefixes: Vec<&str> = ns.iter().map(|n| n.prefix.as_str()).collect();
        assert_eq!(prefixes, ["d/file#2/", "d/file/", "d/mine/"]);
        assert_eq!((ns[0].driver.as_str(), ns[0].generation), ("file", 2));
        assert_eq!((ns[1].driver.as_str(), ns[1].generation), ("file", 0));
        assert!(ns[0].current && !ns[1].current && !ns[2].current);
        assert!(matches!(&ns[0].high_water, HighWater::Stored(s) if s.high_water_ms == 30));
        assert!(matches!(ns[2].high_water, HighWater::UnknownDriver));
        let ns = namespaces(entries, None);
        assert!(!ns[0].current && ns[1].current);
    }

    #[test]
    fn a_directory_without_a_store_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = inspect(dir.path()).unwrap_err();
        assert!(matches!(e, DataDirError::NotADataDir { .. }), "{e}");
    }

    #[test]
    fn a_stopped_store_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        use crate::storage::{Storage, WriteBatch};
        db.namespace("file", 0)
            .write(
                WriteBatch {
                    puts: vec![(b"high-water".to_vec(), 1234u64.to_be_bytes().to_vec())],
                    deletes: vec![],
                },
                true,
            )
            .unwrap();
        drop(db);
        let r = inspect(dir.path()).unwrap();
        assert_eq!(r.highest_high_water_ms, 1234);
        assert!(r.complete && r.record.is_none());
        assert!(r.formats.rocksdb.is_some());
    }
}
