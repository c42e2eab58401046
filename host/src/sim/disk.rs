//! A node's disk in the simulator and in check-driver: in memory, with
//! **power loss**.
//!
//! Semantics are those of a write-ahead log synced on demand (RocksDB's
//! `sync` writes): a synced write makes itself and every write before it
//! durable; a power loss keeps exactly what was durable and drops every write
//! made without `sync` since the last synced one. `kill -9` keeps the page
//! cache, so only a model like this one catches a driver that completes a
//! persist, or stores a vote, without syncing.
//!
//! Reads and writes can be made to fail ([`Disk::fail_writes`],
//! [`Disk::fail_reads`]), as the node's RocksDB failpoint does.

use crate::storage::{Entries, Storage, StorageError, WriteBatch};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct Inner {
    /// What reads see: everything written.
    current: Map,
    /// What survives a power loss.
    durable: Map,
    /// Written since the last sync, oldest first: made durable by the next
    /// synced write, dropped by a power loss.
    unsynced: Vec<WriteBatch>,
    fail_writes: u64,
    fail_reads: u64,
    synced_writes: u64,
}

/// One node's disk; clones share it.
#[derive(Clone, Default)]
pub struct Disk(Arc<Mutex<Inner>>);

fn apply(map: &mut Map, batch: &WriteBatch) {
    for (k, v) in &batch.puts {
        map.insert(k.clone(), v.clone());
    }
    for k in &batch.deletes {
        map.remove(k);
    }
}

impl Disk {
    /// The power goes: every write since the last synced one is lost.
    pub fn power_loss(&self) {
        let mut inner = self.0.lock().unwrap();
        inner.unsynced.clear();
        inner.current = inner.durable.clone();
    }

    /// Whether writes were made since the last sync (a power loss now would
    /// lose them).
    pub fn has_unsynced(&self) -> bool {
        !self.0.lock().unwrap().unsynced.is_empty()
    }

    /// How many synced writes succeeded so far.
    pub fn synced_writes(&self) -> u64 {
        self.0.lock().unwrap().synced_writes
    }

    /// The next `n` writes fail and write nothing.
    pub fn fail_writes(&self, n: u64) {
        self.0.lock().unwrap().fail_writes = n;
    }

    /// The next `n` reads (gets and scans) fail.
    pub fn fail_reads(&self, n: u64) {
        self.0.lock().unwrap().fail_reads = n;
    }

    /// Keys held, durable or not.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read<T>(&self, f: impl FnOnce(&Map) -> T) -> Result<T, StorageError> {
        let mut inner = self.0.lock().unwrap();
        if inner.fail_reads > 0 {
            inner.fail_reads -= 1;
            return Err(StorageError::InjectedRead);
        }
        Ok(f(&inner.current))
    }
}

impl Storage for Disk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.read(|map| map.get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut inner = self.0.lock().unwrap();
        if inner.fail_writes > 0 {
            inner.fail_writes -= 1;
            return Err(StorageError::Injected);
        }
        apply(&mut inner.current, &batch);
        if sync {
            let Inner {
                durable, unsynced, ..
            } = &mut *inner;
            for earlier in unsynced.drain(..) {
                apply(durable, &earlier);
            }
            apply(durable, &batch);
            inner.synced_writes += 1;
        } else {
            inner.unsynced.push(batch);
        }
        Ok(())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Entries, StorageError> {
        self.read(|map| {
            let upper = if end.is_empty() {
                std::ops::Bound::Unbounded
            } else {
                std::ops::Bound::Excluded(end.to_vec())
            };
            map.range((std::ops::Bound::Included(start.to_vec()), upper))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> WriteBatch {
        WriteBatch {
            puts: vec![(k.into(), v.into())],
            deletes: vec![],
        }
    }

    #[test]
    fn power_loss_keeps_what_a_sync_covered() {
        let disk = Disk::default();
        disk.write(put("a", "1"), false).unwrap();
        disk.write(put("b", "1"), true).unwrap();
        disk.write(put("a", "2"), false).unwrap();
        disk.write(
            WriteBatch {
                puts: vec![],
                deletes: vec![b"b".to_vec()],
            },
            false,
        )
        .unwrap();
        assert_eq!(disk.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert!(disk.has_unsynced());
        disk.power_loss();
        // The synced write made the unsynced one before it durable too.
        assert_eq!(disk.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(disk.get(b"b").unwrap(), Some(b"1".to_vec()));
        assert!(!disk.has_unsynced());
        assert_eq!(disk.synced_writes(), 1);
    }

    #[test]
    fn failed_operations_change_nothing_and_say_so() {
        let disk = Disk::default();
        disk.fail_writes(1);
        assert!(matches!(
            disk.write(put("a", "1"), true),
            Err(StorageError::Injected)
        ));
        assert!(disk.is_empty());
        disk.write(put("a", "1"), true).unwrap();
        disk.fail_reads(2);
        assert!(disk.get(b"a").is_err());
        assert!(disk.scan(b"", b"", 10).is_err());
        assert_eq!(disk.scan(b"", b"", 10).unwrap().len(), 1);
    }
}
