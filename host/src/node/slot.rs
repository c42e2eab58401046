//! The driver slot: which component runs on this node, and the operations
//! that replace it (docs/architecture.md §5).
//!
//! - A **swap** replaces the driver by a new build of the same driver, on
//!   the same storage namespace.
//! - A **migration** replaces a sealed driver by another driver on a fresh
//!   namespace (the next generation), serving above a floor.
//! - A **seal** stops this node serving under its driver, durably, until it
//!   is migrated or unsealed.
//!
//! Invariants:
//! - at most one actor runs at a time: the old one is stopped (between two
//!   events) before the next starts;
//! - the node's [`DriverRecord`] is durable before the driver it names
//!   starts, and is put back if that driver refuses to start;
//! - a component that is refused leaves the running driver serving; a swap
//!   whose new build fails `init` starts the previous build again and is
//!   answered once that build has settled (see [`RefusedSwap`]).
//!
//! The slot knows nothing of terms: what a change means for serving (stop at
//! a seal, the new floor after a migration) is the coordinator's to apply.

use super::{DriverStatus, Node};
use crate::driver::actor::ActorConfig;
use crate::driver::bindings::{DriverInfo, Peer};
use crate::driver::{Command, DriverHandle, LoadedDriver, Spawner};
use crate::migration::DriverRecord;
use crate::storage::Db;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long the answer to a refused swap waits for the restarted previous
/// build to settle (serve again, or report that another node leads).
const REFUSED_SWAP_SETTLE: Duration = Duration::from_secs(10);

/// Why a swap or a migration did not happen.
pub enum Refusal {
    /// Refused before the running driver was touched: answer now.
    Now(String),
    /// The new build did not start and the previous one was started again:
    /// answer once it has settled.
    Restarted(String),
    /// Neither the new build nor the previous one starts: this node has no
    /// driver (and cannot serve) until restarted. Answer now.
    NoDriver(String),
}

/// The answer to a refused swap, held until the previous build, started
/// again, has settled: a script that gets the refusal can use the node at
/// once instead of meeting a 503 while the old build starts a new term.
pub struct RefusedSwap {
    reply: oneshot::Sender<Result<DriverStatus, String>>,
    error: String,
    until: Instant,
}

impl RefusedSwap {
    fn answer(self) {
        let _ = self.reply.send(Err(self.error));
    }
}

/// A seal's outcome.
pub struct Sealed {
    /// The highest high water this node held, ms: above every timestamp it
    /// issued in this process.
    pub held_ms: u64,
    /// This call sealed the node (it was not sealed before).
    pub now_sealed: bool,
}

/// The running driver and what replacing it takes.
pub struct DriverSlot {
    node: Arc<Node>,
    spawner: Spawner,
    /// Where the node's [`DriverRecord`] is kept.
    db: Db,
    /// The running actor; `None` only if a failed swap could not restart the
    /// previous driver either.
    driver: Option<DriverHandle>,
    /// The component `driver` runs, to restart it if a swap fails.
    loaded: LoadedDriver,
    refused_swap: Option<RefusedSwap>,
}

impl DriverSlot {
    pub fn new(
        node: Arc<Node>,
        spawner: Spawner,
        db: Db,
        driver: DriverHandle,
        loaded: LoadedDriver,
    ) -> DriverSlot {
        DriverSlot {
            node,
            spawner,
            db,
            driver: Some(driver),
            loaded,
            refused_swap: None,
        }
    }

    /// Queue a command for the running driver (dropped, and logged, if none
    /// runs).
    pub fn send(&self, command: Command) {
        match &self.driver {
            Some(driver) => driver.send(command),
            None => tracing::error!("no driver is running: {command:?} dropped"),
        }
    }

    /// Stop the running driver for good.
    pub fn shutdown(&mut self) {
        self.settle_refused_swap();
        if let Some(driver) = self.driver.take() {
            driver.shutdown();
        }
    }

    /// The node's driver record, as last stored.
    pub fn record(&self) -> DriverRecord {
        self.node.migration.lock().unwrap().clone()
    }

    pub fn sealed(&self) -> bool {
        self.node.migration.lock().unwrap().sealed
    }

    /// Hold the answer to a refused swap until [`Self::settle_refused_swap`]
    /// (or its deadline); an earlier one still held is answered now.
    pub fn hold_refusal(
        &mut self,
        reply: oneshot::Sender<Result<DriverStatus, String>>,
        error: String,
    ) {
        self.settle_refused_swap();
        self.refused_swap = Some(RefusedSwap {
            reply,
            error,
            until: Instant::now() + REFUSED_SWAP_SETTLE,
        });
    }

    /// The previous build serves again, or follows a known leader: answer
    /// the refused swap.
    pub fn settle_refused_swap(&mut self) {
        if let Some(refused) = self.refused_swap.take() {
            refused.answer();
        }
    }

    /// Answer a refused swap whose previous build has not settled in time.
    pub fn expire_refused_swap(&mut self) {
        if self
            .refused_swap
            .as_ref()
            .is_some_and(|r| Instant::now() >= r.until)
        {
            self.settle_refused_swap();
        }
    }

    /// Store `record` durably, then make it the node's.
    fn save_record(&self, record: DriverRecord) -> Result<(), String> {
        record
            .store(&self.db)
            .map_err(|e| format!("cannot write the node's driver record: {e}"))?;
        *self.node.migration.lock().unwrap() = record;
        Ok(())
    }

    /// Record durably that this node does not serve until unsealed or
    /// migrated (a restart stays sealed).
    pub fn seal(&mut self) -> Result<Sealed, String> {
        let (high_water, last) = {
            let a = self.node.allocator.lock().unwrap();
            (a.high_water(), a.last_issued())
        };
        let held_ms = high_water.max(crate::timestamp::Timestamp(last).physical_ms() + 1);
        if self.sealed() {
            return Ok(Sealed {
                held_ms,
                now_sealed: false,
            });
        }
        let mut record = self.record();
        record.driver = self.loaded.info.name.clone();
        record.sealed = true;
        self.save_record(record)?;
        tracing::warn!(
            "sealed for a migration: not serving under this driver until \
             `tsohost cluster migrate` switches it (or --abort unseals it)"
        );
        Ok(Sealed {
            held_ms,
            now_sealed: true,
        })
    }

    /// Lift the seal durably; true if the node was sealed.
    pub fn unseal(&mut self) -> Result<bool, String> {
        if !self.sealed() {
            return Ok(false);
        }
        let mut record = self.record();
        record.sealed = false;
        self.save_record(record)?;
        tracing::info!("unsealed: serving again under this driver");
        Ok(true)
    }

    /// Replace the driver with `driver`, a new build of the same driver, on
    /// the same storage namespace.
    ///
    /// The old actor is stopped between two events (its open requests fail
    /// and are retried), then the new one starts. Until the new instance
    /// reports leadership the node keeps serving from the old window: those
    /// timestamps lie below a high water that is already durable in the same
    /// storage, and the new term starts above it. If the new build refuses
    /// to start, the old one is started again and the error returned.
    pub fn swap(&mut self, driver: LoadedDriver) -> Result<DriverStatus, Refusal> {
        if driver.info.name != self.loaded.info.name {
            return Err(Refusal::Now(format!(
                "{} is the driver {:?}, but this node runs {:?}: replacing a driver by another \
                 is a migration (floor above the old high water), not a swap",
                driver.source, driver.info.name, self.loaded.info.name
            )));
        }
        let started = std::time::Instant::now();
        let status = self.replace(driver, None)?;
        self.node.metrics.driver_swaps_total.inc();
        tracing::info!(
            event = "swap",
            node = self.node.node_id,
            driver = self.loaded.info.name,
            digest = self.loaded.digest,
            "swapped driver {} {} for {} ({}) in {:.1?}",
            self.loaded.info.name,
            self.loaded.info.version,
            &self.loaded.digest[..12],
            self.loaded.source,
            started.elapsed()
        );
        Ok(status)
    }

    /// `driver`'s info, if a migration may move this node to it: another
    /// driver, or (on a sealed node) the same driver on fresh storage, as
    /// when a cluster part-way through a migration is moved back.
    pub fn prepare(&self, driver: &LoadedDriver) -> Result<DriverInfo, String> {
        if driver.info.name == self.loaded.info.name && !self.sealed() {
            return Err(format!(
                "{} is the driver {:?}, which this node runs already: a migration moves to \
                 another driver (a sealed node is unsealed with `tsohost cluster migrate \
                 --abort`; a new build is swapped in with PUT /v1/admin/driver)",
                driver.source, driver.info.name
            ));
        }
        Ok(driver.info.clone())
    }

    /// Replace the sealed driver by `driver` (see [`Self::prepare`]) on a
    /// fresh namespace (the next generation) of this node's storage, with
    /// `floor` (at least the record's), bootstrapping with the membership
    /// the peer network knows. The record naming it is durable before the
    /// new driver starts; if it refuses to start, the old record and driver
    /// are put back, still sealed. Answers the new record.
    pub fn migrate(
        &mut self,
        driver: LoadedDriver,
        floor: u64,
    ) -> Result<(DriverStatus, DriverRecord), Refusal> {
        let before = self.record();
        if !before.sealed {
            return Err(Refusal::Now(
                "this node is not sealed: every node is sealed before any switches \
                 (`tsohost cluster migrate` does both)"
                    .into(),
            ));
        }
        let info = self.prepare(&driver).map_err(Refusal::Now)?;
        let next = DriverRecord {
            driver: info.name.clone(),
            generation: before.generation + 1,
            floor: floor.max(before.floor),
            sealed: false,
        };
        let old_config = self.spawner.config_mut().clone();
        {
            let config = self.spawner.config_mut();
            config.floor = next.floor;
            config.generation = next.generation;
            config.bootstrap = true;
            if let Some(network) = &self.node.network {
                config.peers = network
                    .members()
                    .into_iter()
                    .map(|(id, address)| Peer { id, address })
                    .collect();
            }
        }
        self.save_record(next.clone()).map_err(Refusal::Now)?;
        let started = std::time::Instant::now();
        match self.replace(driver, Some(old_config)) {
            Ok(status) => {
                self.node.metrics.driver_migrations_total.inc();
                tracing::info!(
                    event = "migration",
                    node = self.node.node_id,
                    driver = info.name,
                    digest = self.loaded.digest,
                    "migrated from driver {} to {} {} ({}, generation {}, floor {} ms) in {:.1?}",
                    before.driver,
                    info.name,
                    info.version,
                    self.loaded.source,
                    next.generation,
                    next.floor,
                    started.elapsed()
                );
                Ok((status, next))
            }
            Err(refusal) => {
                if let Err(again) = self.save_record(before) {
                    tracing::error!("{again}");
                }
                Err(match refusal {
                    Refusal::NoDriver(e) => Refusal::NoDriver(format!("migration refused: {e}")),
                    Refusal::Now(e) | Refusal::Restarted(e) => {
                        Refusal::Now(format!("migration refused: {e}"))
                    }
                })
            }
        }
    }

    /// Stop the running actor and start `driver` with the spawner's config.
    /// If it does not start, start the previous component again (with
    /// `previous_config`, if the config was changed for `driver`) and say
    /// so.
    fn replace(
        &mut self,
        driver: LoadedDriver,
        previous_config: Option<ActorConfig>,
    ) -> Result<DriverStatus, Refusal> {
        if let Some(old) = self.driver.take() {
            tokio::task::block_in_place(|| old.shutdown());
        }
        match tokio::task::block_in_place(|| self.spawner.spawn(driver.clone())) {
            Ok(handle) => {
                self.driver = Some(handle);
                self.loaded = driver;
                let mut d = self.node.driver.lock().unwrap();
                *d = DriverStatus {
                    healthy: true,
                    crashes: d.crashes,
                    swaps: d.swaps + 1,
                    ..DriverStatus::from(&self.loaded)
                };
                Ok(d.clone())
            }
            Err(e) => {
                tracing::error!("{e}; restarting the previous driver");
                if let Some(config) = previous_config {
                    *self.spawner.config_mut() = config;
                }
                match tokio::task::block_in_place(|| self.spawner.spawn(self.loaded.clone())) {
                    Ok(handle) => {
                        self.driver = Some(handle);
                        Err(Refusal::Restarted(e.to_string()))
                    }
                    Err(again) => {
                        tracing::error!(
                            "the previous driver does not start again either: {again}; this \
                             node cannot serve until restarted"
                        );
                        Err(Refusal::NoDriver(e.to_string()))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
