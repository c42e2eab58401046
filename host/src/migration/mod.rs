//! Moving a cluster from one driver to another (docs/architecture.md §5): file → raft,
//! raft → paxos, and back.
//!
//! A swap replaces a build of a driver by another build of the same driver,
//! on the same storage. A migration cannot: the new driver knows nothing of
//! the old one's high water. So it goes in three steps, driven by
//! `tsohost cluster migrate` ([`crate::tools::migrate`]) through the admin
//! API:
//!
//! 1. **seal** every node: it stops serving and will not serve again under
//!    the old driver, restarts included ([`DriverRecord::sealed`]), and
//!    reports the highest high water it held;
//! 2. **read** the old driver's high water linearizably (its leader answers,
//!    sealed or not, as long as a majority runs it); the floor is the
//!    maximum of that and every node's report, so above every timestamp
//!    issued;
//! 3. **switch** every node to the new driver, on a fresh storage namespace
//!    (a new generation) with that floor: its first term starts above it.
//!
//! Invariant: from the first seal until the last switch, no node serves
//! under the old driver, and a node serves under the new one only from the
//! floor up. Each node's [`DriverRecord`] is durable before the driver it
//! names touches storage, so a node restarted half-way refuses to start
//! with the wrong driver, and a re-run of the command ([`plan`]) knows
//! which nodes are done and which floor they used.
//!
//! Rolling back a migration that stopped part-way is a migration back: the
//! nodes still on the old driver (sealed) move to a fresh generation of it
//! like the others, and the floor is read from every driver that a
//! majority runs (only such a driver can have served since the seal) and
//! taken above every floor a node was switched with.

use crate::storage::{Db, StorageError};
use serde::{Deserialize, Serialize};

/// The host record key of [`DriverRecord`].
const RECORD_KEY: &str = "driver";

/// Which driver a node's data belongs to, kept by the host (`h/driver`).
/// Absent on a node that was never sealed: it runs what `--driver` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRecord {
    /// The driver's name (as its `info` reports it).
    pub driver: String,
    /// Its storage namespace's generation: 0 at first, +1 per migration.
    pub generation: u64,
    /// Every timestamp this node's driver serves lies above this (ms).
    pub floor: u64,
    /// Sealed for a migration: not serving, and not to serve again under
    /// this driver.
    pub sealed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "the host record h/{RECORD_KEY} in the data directory is not valid ({0}); the data \
         directory is damaged or from an incompatible tsohost"
    )]
    Corrupt(String),
    #[error(
        "this node's data directory was migrated to the driver {expected:?} (generation \
         {generation}); start it with that driver (a new build of it is fine), not {found:?}, \
         whose state here is out of date. `tsohost cluster migrate` moves a cluster to another \
         driver"
    )]
    WrongDriver {
        expected: String,
        found: String,
        generation: u64,
    },
}

impl DriverRecord {
    /// The record of a node that was never sealed, running `driver`.
    pub fn first(driver: &str) -> DriverRecord {
        DriverRecord {
            driver: driver.to_string(),
            generation: 0,
            floor: 0,
            sealed: false,
        }
    }

    pub fn load(db: &Db) -> Result<Option<DriverRecord>, RecordError> {
        db.host_record(RECORD_KEY)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| RecordError::Corrupt(e.to_string()))
            })
            .transpose()
    }

    /// Durably, before anything depends on it.
    pub fn store(&self, db: &Db) -> Result<(), RecordError> {
        let bytes = serde_json::to_vec(self).expect("a record serializes");
        Ok(db.put_host_record(RECORD_KEY, &bytes)?)
    }

    /// A node may start `driver` on this data directory only if it is the
    /// one recorded (or nothing is recorded).
    pub fn admits(record: Option<&DriverRecord>, driver: &str) -> Result<(), RecordError> {
        match record {
            Some(r) if r.driver != driver => Err(RecordError::WrongDriver {
                expected: r.driver.clone(),
                found: driver.to_string(),
                generation: r.generation,
            }),
            _ => Ok(()),
        }
    }
}

/// One node as `tsohost cluster migrate` sees it (from `/v1/status`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: u64,
    pub url: String,
    /// Name of the driver it runs.
    pub driver: String,
    /// SHA-256 of the component it runs.
    pub digest: String,
    pub record: DriverRecord,
}

impl NodeView {
    /// Runs the target and serves under it: this node is done.
    fn switched(&self, target_digest: &str) -> bool {
        self.digest == target_digest && !self.record.sealed
    }
}

/// What a (re-)run of a migration does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Every node runs the target and none is sealed.
    Done,
    /// Every node runs the target, these sealed (a migration stopped after
    /// sealing): the target is still the cluster's driver, so unseal them.
    Unseal(Vec<u64>),
    /// Seal `seal` (all nodes not yet switched), then switch them. With
    /// `floor` known (an earlier run switched some nodes already, with this
    /// floor) there is nothing to read; without it, read the old driver's
    /// high water and take the maximum with the seal reports.
    Migrate { seal: Vec<u64>, floor: Option<u64> },
}

/// Decide, from every node's state, how to move them all to the component
/// with `target_digest`.
pub fn plan(nodes: &[NodeView], target_digest: &str) -> Plan {
    let pending: Vec<u64> = nodes
        .iter()
        .filter(|n| !n.switched(target_digest))
        .map(|n| n.id)
        .collect();
    if pending.is_empty() {
        return Plan::Done;
    }
    if nodes.iter().all(|n| n.digest == target_digest) {
        return Plan::Unseal(pending);
    }
    let floor = nodes
        .iter()
        .filter(|n| n.switched(target_digest) && n.record.generation > 0)
        .map(|n| n.record.floor)
        .max();
    Plan::Migrate {
        seal: pending,
        floor,
    }
}

/// Which nodes `--abort` unseals: every sealed one, if none has switched to
/// another driver yet (then the old driver is still the cluster's driver);
/// otherwise an error saying how to go on.
pub fn abort(nodes: &[NodeView]) -> Result<Vec<u64>, String> {
    let sealed: Vec<&NodeView> = nodes.iter().filter(|n| n.record.sealed).collect();
    let Some(first) = sealed.first() else {
        return Ok(Vec::new());
    };
    let moved: Vec<String> = nodes
        .iter()
        .filter(|n| !n.record.sealed && n.driver != first.driver)
        .map(|n| format!("node {} runs {}", n.id, n.driver))
        .collect();
    if !moved.is_empty() {
        return Err(format!(
            "cannot abort: {} already; finish with `tsohost cluster migrate --to {}`, or migrate \
             back with `--to {}` (a migration of its own)",
            moved.join(", "),
            nodes
                .iter()
                .find(|n| !n.record.sealed && n.driver != first.driver)
                .map(|n| n.driver.as_str())
                .unwrap_or_default(),
            first.driver
        ));
    }
    Ok(sealed.iter().map(|n| n.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, driver: &str, generation: u64, floor: u64, sealed: bool) -> NodeView {
        NodeView {
            id,
            url: format!("http://n{id}"),
            driver: driver.into(),
            digest: format!("{driver}-digest"),
            record: DriverRecord {
                driver: driver.into(),
                generation,
                floor,
                sealed,
            },
        }
    }

    #[test]
    fn a_fresh_migration_seals_every_node_and_reads_the_floor() {
        let nodes = [node(1, "raft", 0, 0, false), node(2, "raft", 0, 0, false)];
        assert_eq!(
            plan(&nodes, "paxos-digest"),
            Plan::Migrate {
                seal: vec![1, 2],
                floor: None
            }
        );
        assert_eq!(plan(&nodes, "raft-digest"), Plan::Done);
        let sealed = [node(1, "raft", 0, 0, true), node(2, "raft", 0, 0, false)];
        assert_eq!(plan(&sealed, "raft-digest"), Plan::Unseal(vec![1]));
    }

    #[test]
    fn a_rerun_finishes_with_the_floor_the_switched_nodes_use() {
        let nodes = [
            node(1, "paxos", 1, 500, false),
            node(2, "raft", 0, 0, true),
            node(3, "paxos", 1, 500, false),
        ];
        assert_eq!(
            plan(&nodes, "paxos-digest"),
            Plan::Migrate {
                seal: vec![2],
                floor: Some(500)
            }
        );
    }

    #[test]
    fn migrating_back_reads_afresh_even_though_sealed_nodes_run_the_target() {
        // Node 2 still runs raft, sealed: it has not served since the seal,
        // but nodes 1 and 3 have served under paxos above the old floor.
        let nodes = [
            node(1, "paxos", 1, 500, false),
            node(2, "raft", 0, 0, true),
            node(3, "paxos", 1, 500, false),
        ];
        assert_eq!(
            plan(&nodes, "raft-digest"),
            Plan::Migrate {
                seal: vec![1, 2, 3],
                floor: None
            }
        );
    }

    #[test]
    fn abort_unseals_only_while_nobody_switched() {
        let sealed = [node(1, "raft", 0, 0, true), node(2, "raft", 0, 0, true)];
        assert_eq!(abort(&sealed), Ok(vec![1, 2]));
        let half = [node(1, "paxos", 1, 9, false), node(2, "raft", 0, 0, true)];
        let e = abort(&half).unwrap_err();
        assert!(e.contains("node 1 runs paxos"), "{e}");
        assert!(e.contains("--to paxos"), "{e}");
    }

    #[test]
    fn a_record_admits_only_its_driver() {
        let r = DriverRecord::first("paxos");
        assert!(DriverRecord::admits(Some(&r), "paxos").is_ok());
        assert!(DriverRecord::admits(None, "raft").is_ok());
        let e = DriverRecord::admits(Some(&r), "raft").unwrap_err();
        assert!(e.to_string().contains("migrated to the driver \"paxos\""));
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(DriverRecord::load(&db).unwrap(), None);
        let r = DriverRecord {
            driver: "raft".into(),
            generation: 2,
            floor: 77,
            sealed: true,
        };
        r.store(&db).unwrap();
        drop(db);
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(DriverRecord::load(&db).unwrap(), Some(r));
    }
}
