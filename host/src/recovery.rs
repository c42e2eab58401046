//! Recovery after quorum loss (docs/operations.md, "Recovery after quorum
//! loss"): `tsohost recover --from DIR... --to NEWDIR...`.
//!
//! A cluster that lost a majority of its data directories for good cannot
//! elect a leader again, and a new cluster knows nothing of the old one's
//! high water: started plainly, its first timestamps follow its wall
//! clocks, which may be below what the old cluster served (its high water
//! runs a window ahead of the clock, and further with a clock that was
//! ahead). So the new cluster's nodes start from data directories seeded
//! with a [`DriverRecord`] whose floor is at or above the highest high water
//! any surviving directory or backup holds; every term of the new cluster
//! then serves above it (docs/architecture.md §5, the same floor a
//! migration uses), restarts included, since the record is durable.
//!
//! Why seeding directories rather than a `serve` flag: the floor is then
//! checked against the old data once, when it is chosen, and stays with the
//! node; a flag repeated in a unit file could later be edited, or forgotten
//! on one node of three.
//!
//! [`plan`] is the decision (pure); [`seed`] writes a new directory.

use crate::datadir::{HighWater, Report};
use crate::migration::{DriverRecord, RecordError};
use crate::storage::Db;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(
        "nothing to take the floor from: give the surviving nodes' and backups' data \
         directories with --from DIR (repeatable), or a floor with --floor-ms MS"
    )]
    NoEvidence,
    #[error(
        "--floor-ms {floor} is below the high water {held} ms stored in {dir}: the new cluster \
         could hand out timestamps the old one already did. Leave --floor-ms out (the floor is \
         then {held}) or give one of at least {held}"
    )]
    FloorTooLow { floor: u64, held: u64, dir: PathBuf },
    #[error(
        "cannot tell the whole high water of {dir}: {what}. If you know a value above every \
         timestamp that driver served (a backup of `tsohost status --json`'s high_water_ms, \
         say), pass it with --floor-ms MS"
    )]
    Incomplete { dir: PathBuf, what: String },
    #[error(
        "which driver will the new cluster run? The data directories hold {found}; pass \
         --driver NAME (the record names it, and `serve` refuses any other)"
    )]
    WhichDriver { found: String },
    #[error(
        "{dir} is not empty: recover seeds a new node's data directory and never changes an \
         existing one. Pass a new path with --to"
    )]
    TargetNotEmpty { dir: PathBuf },
    #[error("cannot create the data directory {dir}: {source}")]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: {source}")]
    Storage {
        dir: PathBuf,
        source: crate::storage::StorageError,
    },
    #[error("{dir}: {source}")]
    Record { dir: PathBuf, source: RecordError },
}

/// What a recovery will seed the new directories with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Every timestamp of the new cluster lies above this (Unix ms).
    pub floor_ms: u64,
    /// The driver the new cluster runs.
    pub driver: String,
    /// The high water each `--from` directory holds.
    pub evidence: Vec<Evidence>,
    /// Namespaces whose high water could not be read, accepted because
    /// `--floor-ms` was given.
    pub unchecked: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub data_dir: PathBuf,
    pub highest_high_water_ms: u64,
}

/// Choose the floor and driver from the `--from` reports, an optional
/// `--floor-ms` and an optional `--driver`. The floor is the highest high
/// water any report holds, or `requested` if that is higher; a lower
/// `requested` is refused, and so is a directory whose high water cannot
/// be read in full unless `requested` is given.
pub fn plan(
    reports: &[Report],
    requested: Option<u64>,
    driver: Option<&str>,
) -> Result<Plan, RecoveryError> {
    if reports.is_empty() && requested.is_none() {
        return Err(RecoveryError::NoEvidence);
    }
    let mut unchecked = Vec::new();
    for r in reports {
        for n in &r.namespaces {
            let what = match &n.high_water {
                HighWater::Stored(_) => continue,
                HighWater::UnknownDriver => format!(
                    "{} belongs to the driver {:?}, whose storage layout this tsohost does not \
                     know",
                    n.prefix, n.driver
                ),
                HighWater::Unreadable { error } => format!("{} is unreadable ({error})", n.prefix),
            };
            if requested.is_none() {
                return Err(RecoveryError::Incomplete {
                    dir: r.data_dir.clone(),
                    what,
                });
            }
            unchecked.push(format!("{}: {what}", r.data_dir.display()));
        }
    }
    let held = reports
        .iter()
        .max_by_key(|r| r.highest_high_water_ms)
        .map(|r| (r.highest_high_water_ms, r.data_dir.clone()));
    let floor_ms = match (requested, held) {
        (Some(floor), Some((held, dir))) if floor < held => {
            return Err(RecoveryError::FloorTooLow { floor, held, dir });
        }
        (Some(floor), _) => floor,
        (None, Some((held, _))) => held,
        (None, None) => unreachable!("checked above: reports or a requested floor"),
    };
    let driver = match driver {
        Some(d) => d.to_string(),
        None => the_driver(reports)?,
    };
    Ok(Plan {
        floor_ms,
        driver,
        evidence: reports
            .iter()
            .map(|r| Evidence {
                data_dir: r.data_dir.clone(),
                highest_high_water_ms: r.highest_high_water_ms,
            })
            .collect(),
        unchecked,
    })
}

/// The one driver the reports' nodes ran: each record's, or without one
/// each current namespace's.
fn the_driver(reports: &[Report]) -> Result<String, RecoveryError> {
    let mut found: Vec<String> = reports
        .iter()
        .flat_map(|r| match &r.record {
            Some(record) => vec![record.driver.clone()],
            None => r
                .namespaces
                .iter()
                .filter(|n| n.current)
                .map(|n| n.driver.clone())
                .collect(),
        })
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(RecoveryError::WhichDriver {
            found: "no driver's data".into(),
        }),
        many => Err(RecoveryError::WhichDriver {
            found: many.join(", "),
        }),
    }
}

/// The record every new node starts from.
pub fn record(plan: &Plan) -> DriverRecord {
    DriverRecord {
        driver: plan.driver.clone(),
        generation: 0,
        floor: plan.floor_ms,
        sealed: false,
    }
}

/// Check that `dir` can be seeded: absent, or an empty directory.
pub fn check_target(dir: &Path) -> Result<(), RecoveryError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(RecoveryError::TargetNotEmpty {
                dir: dir.to_path_buf(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RecoveryError::Create {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// Create the data directory `dir` of a new node holding only `record`
/// (synced), after [`check_target`].
pub fn seed(dir: &Path, record: &DriverRecord) -> Result<(), RecoveryError> {
    check_target(dir)?;
    std::fs::create_dir_all(dir).map_err(|source| RecoveryError::Create {
        dir: dir.to_path_buf(),
        source,
    })?;
    let db = Db::open(&dir.join("db")).map_err(|source| RecoveryError::Storage {
        dir: dir.to_path_buf(),
        source,
    })?;
    record.store(&db).map_err(|source| RecoveryError::Record {
        dir: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::{Formats, Namespace, layout::StoredHighWater};

    fn report(dir: &str, driver: &str, hw: HighWater, highest: u64) -> Report {
        Report {
            data_dir: dir.into(),
            record: None,
            namespaces: vec![Namespace {
                prefix: format!("d/{driver}/"),
                driver: driver.into(),
                generation: 0,
                current: true,
                keys: 1,
                high_water: hw,
            }],
            compiled_components: vec![],
            formats: Formats {
                rocksdb: None,
                host_records: "",
            },
            highest_high_water_ms: highest,
            complete: true,
        }
    }

    fn stored(v: u64) -> HighWater {
        HighWater::Stored(StoredHighWater {
            high_water_ms: v,
            sources: vec![],
            format: None,
        })
    }

    #[test]
    fn the_floor_is_the_highest_held_and_a_lower_one_is_refused() {
        let rs = [
            report("a", "raft", stored(100), 100),
            report("b", "raft", stored(300), 300),
        ];
        let p = plan(&rs, None, None).unwrap();
        assert_eq!((p.floor_ms, p.driver.as_str()), (300, "raft"));
        assert_eq!(plan(&rs, Some(500), None).unwrap().floor_ms, 500);
        assert_eq!(plan(&rs, Some(300), None).unwrap().floor_ms, 300);
        match plan(&rs, Some(299), None) {
            Err(RecoveryError::FloorTooLow { held: 300, dir, .. }) => {
                assert_eq!(dir, Path::new("b"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plan(&[], None, None),
            Err(RecoveryError::NoEvidence)
        ));
        let p = plan(&[], Some(7), Some("paxos")).unwrap();
        assert_eq!((p.floor_ms, p.driver.as_str()), (7, "paxos"));
    }

    #[test]
    fn an_unreadable_high_water_needs_an_explicit_floor() {
        let rs = [report("a", "mine", HighWater::UnknownDriver, 0)];
        assert!(matches!(
            plan(&rs, None, None),
            Err(RecoveryError::Incomplete { .. })
        ));
        let p = plan(&rs, Some(9), None).unwrap();
        assert_eq!(p.unchecked.len(), 1);
        assert_eq!(p.driver, "mine");
    }

    #[test]
    fn two_drivers_need_a_choice() {
        let rs = [
            report("a", "raft", stored(1), 1),
            report("b", "paxos", stored(1), 1),
        ];
        assert!(matches!(
            plan(&rs, None, None),
            Err(RecoveryError::WhichDriver { .. })
        ));
        assert_eq!(plan(&rs, None, Some("raft")).unwrap().driver, "raft");
    }

    #[test]
    fn a_seeded_directory_holds_the_record_and_a_used_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("new");
        let rec = DriverRecord {
            driver: "raft".into(),
            generation: 0,
            floor: 42,
            sealed: false,
        };
        seed(&to, &rec).unwrap();
        let db = Db::open(&to.join("db")).unwrap();
        assert_eq!(DriverRecord::load(&db).unwrap(), Some(rec.clone()));
        drop(db);
        assert!(matches!(
            seed(&to, &rec),
            Err(RecoveryError::TargetNotEmpty { .. })
        ));
    }
}
