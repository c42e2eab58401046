//! One node: the allocator, the driver, and the coordinator between them.
//!
//! The coordinator turns driver events into allocator transitions
//! (DESIGN §3): on becoming leader it (1) asks the driver for a linearizable
//! read of the high water, (2) persists `max(now, high water) + window`,
//! (3) only then serves; it keeps the window ahead of the clock with
//! background persists; it stops serving at once on any sign of lost
//! leadership (a report, a fenced persist, a crashed driver, an expired
//! lease). Requests never wait for consensus unless the window is exhausted.

use crate::allocator::{Allocator, Grant, GrantError, Term};
use crate::clock::Clock;
use crate::driver::actor::ActorConfig;
use crate::driver::bindings::Peer;
use crate::driver::bindings::{DriverInfo, describe};
use crate::driver::{
    Command, DriverError, DriverHandle, Epoch, Event, Leadership, LoadedDriver, Role, Spawner,
};
use crate::metrics::Metrics;
use crate::migration::DriverRecord;
use crate::peer::Network;
use crate::storage::Db;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};

/// After a failed load or start-up persist, wait this long and try again.
const RETRY_DELAY: Duration = Duration::from_millis(200);

/// What operators see of the driver in `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DriverStatus {
    pub name: String,
    pub version: String,
    pub source: String,
    pub digest: String,
    pub wit_version: String,
    /// Unix ms when the component was loaded.
    pub loaded_at_ms: u64,
    /// False from a crash until the next instance has started.
    pub healthy: bool,
    pub crashes: u64,
    pub last_crash: Option<String>,
    /// Hot swaps and migrations since the node started.
    pub swaps: u64,
}

impl DriverStatus {
    /// The status of a freshly loaded component (name and version come from
    /// the instance once it starts).
    pub fn loaded(driver: &LoadedDriver) -> DriverStatus {
        DriverStatus {
            name: String::new(),
            version: String::new(),
            source: driver.source.clone(),
            digest: driver.digest.clone(),
            wit_version: driver.wit_version.clone(),
            loaded_at_ms: unix_ms(driver.loaded_at),
            healthy: false,
            crashes: 0,
            last_crash: None,
            swaps: 0,
        }
    }
}

/// Requests to the coordinator from the admin API.
pub enum Control {
    /// Make `members` the cluster's voting membership (through the driver).
    ChangeMembership {
        members: Vec<Peer>,
        reply: tokio::sync::oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Hand leadership to `to` (any other node with `None`).
    TransferLeadership {
        to: Option<u64>,
        reply: tokio::sync::oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Replace the running driver with a new build of the same driver.
    Swap {
        driver: Box<LoadedDriver>,
        reply: tokio::sync::oneshot::Sender<Result<DriverStatus, String>>,
    },
    /// Stop serving for a migration, durably; answers the highest high
    /// water this node held (ms).
    Seal {
        reply: tokio::sync::oneshot::Sender<Result<u64, String>>,
    },
    /// Serve again under the sealed driver (a migration given up).
    Unseal {
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// A sealed node's linearizable read of its driver's high water (on the
    /// leader; others answer not-leader).
    ReadHighWater {
        reply: tokio::sync::oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Check that `driver` could replace the running one in a migration
    /// (another driver, instantiable here); answers its name and version.
    /// Nothing changes, but the compiled component is cached for the switch.
    Prepare {
        driver: Box<LoadedDriver>,
        reply: tokio::sync::oneshot::Sender<Result<DriverInfo, String>>,
    },
    /// Replace the sealed driver by another driver, on a fresh namespace,
    /// serving above `floor`.
    Migrate {
        driver: Box<LoadedDriver>,
        floor: u64,
        reply: tokio::sync::oneshot::Sender<Result<DriverStatus, String>>,
    },
}

/// Why a swap did not happen.
enum Refusal {
    /// Refused before the running driver was touched, or the node is left
    /// without a driver: answer now.
    Now(String),
    /// The new build did not start and the previous one was started again:
    /// answer once it has settled.
    Restarted(String),
}

/// The node's view of leadership, for `/v1/status` and redirects.
#[derive(Debug, Clone, Serialize)]
pub struct LeadershipStatus {
    pub role: &'static str,
    pub leader: Option<u64>,
    /// `hi.lo`, as the driver reported it.
    pub epoch: Option<String>,
}

/// Why a timestamp request was not served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    BadRequest(GrantError),
    /// Not serving; the leader, if another node is known to lead.
    #[error("this node is not serving timestamps: {reason}")]
    Unavailable { reason: String, leader: Option<u64> },
}

/// State shared by the HTTP handlers and the coordinator.
pub struct Node {
    pub node_id: u64,
    pub metrics: Arc<Metrics>,
    /// The peer network, in a cluster.
    pub network: Option<Arc<Network>>,
    clock: Arc<dyn Clock>,
    allocator: Mutex<Allocator>,
    /// Signalled whenever serving starts or the high water moves.
    progressed: Notify,
    /// Asks the coordinator to look at the window.
    wake: Notify,
    leadership: Mutex<LeadershipStatus>,
    driver: Mutex<DriverStatus>,
    /// Which driver this node's data belongs to; written by the coordinator
    /// only, after storing it.
    migration: Mutex<DriverRecord>,
    /// How long a request waits for an exhausted window to be extended.
    exhausted_wait: Duration,
}

impl Node {
    pub fn new(
        node_id: u64,
        window: Duration,
        clock: Arc<dyn Clock>,
        driver: DriverStatus,
        record: DriverRecord,
        metrics: Arc<Metrics>,
        network: Option<Arc<Network>>,
    ) -> Arc<Node> {
        Arc::new(Node {
            node_id,
            metrics,
            network,
            clock,
            allocator: Mutex::new(Allocator::new(window.as_millis() as u64)),
            progressed: Notify::new(),
            wake: Notify::new(),
            leadership: Mutex::new(LeadershipStatus {
                role: "follower",
                leader: None,
                epoch: None,
            }),
            driver: Mutex::new(driver),
            migration: Mutex::new(record),
            exhausted_wait: window.clamp(Duration::from_millis(100), Duration::from_secs(2)),
        })
    }

    /// Hand out `count` consecutive timestamps. Waits only when the window is
    /// exhausted, for the extension under way, up to a bound.
    pub async fn timestamps(&self, count: u64) -> Result<Grant, ServeError> {
        let deadline = tokio::time::Instant::now() + self.exhausted_wait;
        loop {
            let progressed = self.progressed.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            let now = self.clock.now();
            let (result, extension_due) = {
                let mut allocator = self.allocator.lock().unwrap();
                let result = allocator.grant(count, now);
                (result, allocator.extension_due(now).is_some())
            };
            if extension_due {
                self.wake.notify_one();
            }
            match result {
                Ok(grant) => {
                    Metrics::inc(&self.metrics.requests_ok_total);
                    Metrics::add(&self.metrics.timestamps_issued_total, count);
                    return Ok(grant);
                }
                Err(e @ GrantError::BadCount(_)) => return Err(ServeError::BadRequest(e)),
                Err(GrantError::WindowExhausted) => {
                    Metrics::inc(&self.metrics.window_exhausted_total);
                    if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                        return Err(self.unavailable(
                            "the timestamp window is exhausted and the driver has not extended \
                             the high water in time",
                        ));
                    }
                }
                Err(e) => return Err(self.unavailable(&e.to_string())),
            }
        }
    }

    fn unavailable(&self, reason: &str) -> ServeError {
        Metrics::inc(&self.metrics.requests_unavailable_total);
        let leader = self
            .leadership
            .lock()
            .unwrap()
            .leader
            .filter(|l| *l != self.node_id);
        ServeError::Unavailable {
            reason: reason.to_string(),
            leader,
        }
    }

    /// The public URL of node `id`, if a peer told it.
    pub fn url_of(&self, id: u64) -> Option<String> {
        self.network.as_ref()?.url_of(id)
    }

    /// Serving now: leading, started, and within the driver's lease.
    pub fn is_serving(&self) -> bool {
        let now = self.clock.now();
        self.allocator.lock().unwrap().is_serving(now)
    }

    pub fn status(&self) -> serde_json::Value {
        let now = self.clock.now();
        let (serving, high_water, last, window) = {
            let a = self.allocator.lock().unwrap();
            (
                a.is_serving(now),
                a.high_water(),
                a.last_issued(),
                a.window_ms(),
            )
        };
        let blocked = self.network.as_ref().map(|n| n.faults.blocked());
        let members: Option<Vec<serde_json::Value>> = self.network.as_ref().map(|n| {
            n.members()
                .into_iter()
                .map(|(id, address)| {
                    let url = if id == self.node_id {
                        None
                    } else {
                        n.url_of(id)
                    };
                    serde_json::json!({"id": id, "address": address, "url": url})
                })
                .collect()
        });
        serde_json::json!({
            "node_id": self.node_id,
            "blocked_peers": blocked,
            "members": members,
            "serving": serving,
            "leadership": *self.leadership.lock().unwrap(),
            "high_water_ms": high_water,
            "last_issued": last.to_string(),
            "window_ms": window,
            "driver": *self.driver.lock().unwrap(),
            "migration": *self.migration.lock().unwrap(),
        })
    }

    pub fn driver_status(&self) -> DriverStatus {
        self.driver.lock().unwrap().clone()
    }

    fn stop_serving(&self) {
        self.allocator.lock().unwrap().stop();
        Metrics::set(&self.metrics.serving, 0);
        Metrics::set(&self.metrics.high_water_ms, 0);
    }
}

/// Where a term is in its start-up sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// Waiting to (re)try the linearizable load.
    Idle,
    Loading,
    Starting(Term),
    Serving(Term),
}

#[derive(Debug)]
struct Leading {
    epoch: Epoch,
    lease_until_ms: u64,
    stage: Stage,
}

/// What a request to the driver was for.
#[derive(Debug)]
enum Pending {
    Load {
        epoch: Epoch,
    },
    Start {
        epoch: Epoch,
        term: Term,
    },
    Extend {
        term: Term,
    },
    /// An operator's request; the outcome goes back to the admin API.
    Admin(tokio::sync::oneshot::Sender<Result<u64, DriverError>>),
    /// Handing leadership off before a graceful shutdown.
    HandOff,
}

/// How long a graceful shutdown waits for leadership to be handed off.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the answer to a refused swap waits for the restarted previous
/// build to settle (serve again, or report that another node leads).
const REFUSED_SWAP_SETTLE: Duration = Duration::from_secs(10);

/// The answer to a refused swap, held until the previous build, started
/// again, has settled: a script that gets the refusal can use the node at
/// once instead of meeting a 503 while the old build starts a new term.
struct RefusedSwap {
    reply: tokio::sync::oneshot::Sender<Result<DriverStatus, String>>,
    error: String,
    until: tokio::time::Instant,
}

impl RefusedSwap {
    fn answer(self) {
        let _ = self.reply.send(Err(self.error));
    }
}

/// Drives a node from its driver's events until the event channel closes.
pub struct Coordinator {
    node: Arc<Node>,
    spawner: Spawner,
    /// Where the node's [`DriverRecord`] is kept.
    db: Db,
    /// The running actor; `None` only if a failed swap could not restart the
    /// previous driver either.
    driver: Option<DriverHandle>,
    /// The component `driver` runs, to restart it if a swap fails.
    loaded: LoadedDriver,
    floor: u64,
    leading: Option<Leading>,
    pending: HashMap<u64, Pending>,
    next_request: u64,
    retry_at: Option<tokio::time::Instant>,
    /// Set once a graceful shutdown may proceed (hand-off done or failed).
    stop_now: bool,
    refused_swap: Option<RefusedSwap>,
    /// The driver's latest leadership report, replayed when a seal is lifted.
    last_report: Option<Leadership>,
}

impl Coordinator {
    /// `floor`, the generation and whether the node is sealed come from
    /// the node's [`DriverRecord`].
    pub fn new(
        node: Arc<Node>,
        spawner: Spawner,
        db: Db,
        driver: DriverHandle,
        loaded: LoadedDriver,
    ) -> Coordinator {
        let floor = node.migration.lock().unwrap().floor;
        Coordinator {
            node,
            spawner,
            db,
            driver: Some(driver),
            loaded,
            floor,
            leading: None,
            pending: HashMap::new(),
            next_request: 1,
            retry_at: None,
            stop_now: false,
            refused_swap: None,
            last_report: None,
        }
    }

    /// Run until `events` closes or `shutdown` fires; then stop the driver.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
        shutdown: Arc<Notify>,
    ) {
        let node = self.node.clone();
        let check_every =
            Duration::from_millis((node.allocator.lock().unwrap().window_ms() / 6).clamp(5, 1000));
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_by: Option<tokio::time::Instant> = None;
        while !self.stop_now {
            let retry = async {
                match self.retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let give_up = async {
                match stop_by {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(control) = control.recv() => self.on_control(control),
                _ = node.wake.notified() => self.maybe_extend(),
                _ = check.tick() => {
                    self.expire_refused_swap();
                    self.maybe_extend();
                }
                _ = retry => {
                    self.retry_at = None;
                    self.start_load();
                }
                _ = shutdown.notified(), if stop_by.is_none() => {
                    stop_by = Some(tokio::time::Instant::now() + HAND_OFF_TIMEOUT);
                    self.hand_off();
                }
                _ = give_up => {
                    tracing::warn!("leadership was not handed off in {HAND_OFF_TIMEOUT:?}; stopping anyway");
                    break;
                }
            }
        }
        self.node.stop_serving();
        self.settle_refused_swap();
        if let Some(driver) = self.driver.take() {
            driver.shutdown();
        }
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Swap { driver, reply } => match self.swap(*driver) {
                Err(Refusal::Restarted(error)) => {
                    if let Some(earlier) = self.refused_swap.take() {
                        earlier.answer();
                    }
                    self.refused_swap = Some(RefusedSwap {
                        reply,
                        error,
                        until: tokio::time::Instant::now() + REFUSED_SWAP_SETTLE,
                    });
                }
                Err(Refusal::Now(error)) => {
                    let _ = reply.send(Err(error));
                }
                Ok(status) => {
                    let _ = reply.send(Ok(status));
                }
            },
            Control::ChangeMembership { members, reply } => {
                let request = self.request_id(Pending::Admin(reply));
                self.send(Command::ChangeMembership { request, members });
            }
            Control::TransferLeadership { to, reply } => {
                let request = self.request_id(Pending::Admin(reply));
                self.send(Command::TransferLeadership { request, to });
            }
            Control::Seal { reply } => {
                let _ = reply.send(self.seal());
            }
            Control::Unseal { reply } => {
                let _ = reply.send(self.unseal());
            }
            Control::ReadHighWater { reply } => {
                if !self.sealed() {
                    let _ = reply.send(Err(DriverError::Internal(
                        "this node is not sealed: a read for a migration comes after the seal"
                            .into(),
                    )));
                    return;
                }
                let request = self.request_id(Pending::Admin(reply));
                self.send(Command::LoadHighWater { request });
            }
            Control::Prepare { driver, reply } => {
                let _ = reply.send(self.prepare(&driver));
            }
            Control::Migrate {
                driver,
                floor,
                reply,
            } => {
                let _ = reply.send(self.migrate(*driver, floor));
            }
        }
    }

    fn record(&self) -> DriverRecord {
        self.node.migration.lock().unwrap().clone()
    }

    fn sealed(&self) -> bool {
        self.node.migration.lock().unwrap().sealed
    }

    /// Store `record` durably, then make it the node's.
    fn save_record(&self, record: DriverRecord) -> Result<(), String> {
        record
            .store(&self.db)
            .map_err(|e| format!("cannot write the node's driver record: {e}"))?;
        *self.node.migration.lock().unwrap() = record;
        Ok(())
    }

    /// Stop serving until unsealed or migrated, durably (a restart stays
    /// sealed). Answers the highest high water this node held: above every
    /// timestamp it issued in this process.
    fn seal(&mut self) -> Result<u64, String> {
        let (high_water, last) = {
            let a = self.node.allocator.lock().unwrap();
            (a.high_water(), a.last_issued())
        };
        let held = high_water.max(crate::timestamp::Timestamp(last).physical_ms() + 1);
        if !self.sealed() {
            let mut record = self.record();
            record.driver = self.node.driver_status().name;
            record.sealed = true;
            self.save_record(record)?;
            self.lose_leadership();
            tracing::warn!(
                "sealed for a migration: not serving under this driver until \
                 `tsohost cluster migrate` switches it (or --abort unseals it)"
            );
        }
        Ok(held)
    }

    fn unseal(&mut self) -> Result<(), String> {
        if !self.sealed() {
            return Ok(());
        }
        let mut record = self.record();
        record.sealed = false;
        self.save_record(record)?;
        tracing::info!("unsealed: serving again under this driver");
        if let Some(report) = self.last_report {
            self.on_leadership(report);
        }
        Ok(())
    }

    /// Before a graceful shutdown: a leader of a cluster hands leadership to
    /// another node so that the cluster does not wait for an election; any
    /// other node stops at once.
    fn hand_off(&mut self) {
        if self.leading.is_none() || self.node.network.is_none() {
            self.stop_now = true;
            return;
        }
        tracing::info!("handing leadership off before shutting down");
        self.lose_leadership();
        let request = self.request_id(Pending::HandOff);
        self.send(Command::TransferLeadership { request, to: None });
    }

    fn send(&self, command: Command) {
        match &self.driver {
            Some(driver) => driver.send(command),
            None => tracing::error!("no driver is running: {command:?} dropped"),
        }
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
    fn swap(&mut self, driver: LoadedDriver) -> Result<DriverStatus, Refusal> {
        let info = self.spawner.probe_info(&driver).map_err(Refusal::Now)?;
        let running = self.node.driver_status();
        if info.name != running.name {
            return Err(Refusal::Now(format!(
                "{} is the driver {:?}, but this node runs {:?}: replacing a driver by another \
                 is a migration (floor above the old high water), not a swap",
                driver.source, info.name, running.name
            )));
        }
        let started = std::time::Instant::now();
        let status = self.replace_driver(driver, &info, None)?;
        Metrics::inc(&self.node.metrics.driver_swaps_total);
        tracing::info!(
            "swapped driver {} {} for {} ({}) in {:.1?}",
            info.name,
            info.version,
            &self.loaded.digest[..12],
            self.loaded.source,
            started.elapsed()
        );
        Ok(status)
    }

    /// Stop the running actor and start `driver` (whose `info` is `info`)
    /// with the spawner's config. If it does not start, start the previous
    /// component again (with `previous_config`, if the config was changed
    /// for `driver`) and say so.
    fn replace_driver(
        &mut self,
        driver: LoadedDriver,
        info: &DriverInfo,
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
                    name: info.name.clone(),
                    version: info.version.clone(),
                    healthy: true,
                    crashes: d.crashes,
                    swaps: d.swaps + 1,
                    ..DriverStatus::loaded(&self.loaded)
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
                        self.lose_leadership();
                        tracing::error!(
                            "the previous driver does not start again either: {again}; this \
                             node cannot serve until restarted"
                        );
                        Err(Refusal::Now(e.to_string()))
                    }
                }
            }
        }
    }

    /// `driver`'s info, if a migration may move this node to it: another
    /// driver, or (on a sealed node) the same driver on fresh storage, as
    /// when a cluster part-way through a migration is moved back.
    fn prepare(&self, driver: &LoadedDriver) -> Result<DriverInfo, String> {
        let info = self.spawner.probe_info(driver)?;
        let running = self.node.driver_status().name;
        if info.name == running && !self.sealed() {
            return Err(format!(
                "{} is the driver {:?}, which this node runs already: a migration moves to \
                 another driver (a sealed node is unsealed with `tsohost cluster migrate \
                 --abort`; a new build is swapped in with PUT /v1/admin/driver)",
                driver.source, info.name
            ));
        }
        Ok(info)
    }

    /// Replace the sealed driver by `driver` (see [`Self::prepare`]) on a
    /// fresh namespace (the next generation) of this node's storage, with `floor`
    /// (at least the record's), bootstrapping with the membership the
    /// peer network knows. The record naming it is durable before the new
    /// driver starts; if it refuses to start, the old record and driver are
    /// put back, still sealed.
    fn migrate(&mut self, driver: LoadedDriver, floor: u64) -> Result<DriverStatus, String> {
        let before = self.record();
        if !before.sealed {
            return Err(
                "this node is not sealed: every node is sealed before any switches \
                 (`tsohost cluster migrate` does both)"
                    .into(),
            );
        }
        let info = self.prepare(&driver)?;
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
        self.save_record(next.clone())?;
        let started = std::time::Instant::now();
        match self.replace_driver(driver, &info, Some(old_config)) {
            Ok(status) => {
                self.floor = next.floor;
                Metrics::inc(&self.node.metrics.driver_migrations_total);
                tracing::info!(
                    "migrated from driver {} to {} {} ({}, generation {}, floor {} ms) in {:.1?}",
                    before.driver,
                    info.name,
                    info.version,
                    self.loaded.source,
                    next.generation,
                    next.floor,
                    started.elapsed()
                );
                // The old driver's view of leadership is void.
                self.last_report = None;
                Ok(status)
            }
            Err(Refusal::Now(e) | Refusal::Restarted(e)) => {
                if let Err(again) = self.save_record(before) {
                    tracing::error!("{again}");
                }
                Err(format!("migration refused: {e}"))
            }
        }
    }

    fn request_id(&mut self, pending: Pending) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, pending);
        id
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Started(info) => self.on_started(info),
            Event::Leadership(report) => self.on_leadership(report),
            Event::Completed { request, outcome } => {
                if let Some(pending) = self.pending.remove(&request) {
                    self.on_completed(pending, outcome);
                }
            }
            Event::Send { to, payload } => match &self.node.network {
                Some(network) => network.send(to, payload),
                None => {
                    Metrics::inc(&self.node.metrics.peer_messages_dropped_total);
                    tracing::debug!("dropped a driver message to node {to}: no peer network");
                }
            },
            Event::SendDropped => Metrics::inc(&self.node.metrics.peer_messages_dropped_total),
            Event::Membership(members) => {
                if let Some(network) = &self.node.network {
                    tracing::info!(
                        "membership: {}",
                        members
                            .iter()
                            .map(|p| format!("{}={}", p.id, p.address))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    network.set_members(members.into_iter().map(|p| (p.id, p.address)).collect());
                }
            }
            Event::Crashed { reason } => {
                self.lose_leadership();
                Metrics::inc(&self.node.metrics.driver_crashes_total);
                let mut d = self.node.driver.lock().unwrap();
                d.healthy = false;
                d.crashes += 1;
                d.last_crash = Some(reason);
            }
        }
    }

    fn on_started(&mut self, info: DriverInfo) {
        Metrics::inc(&self.node.metrics.driver_starts_total);
        let mut d = self.node.driver.lock().unwrap();
        d.healthy = true;
        d.name = info.name;
        d.version = info.version;
    }

    fn on_leadership(&mut self, report: Leadership) {
        {
            let mut view = self.node.leadership.lock().unwrap();
            view.role = match report.role {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
            };
            view.leader = report.leader;
            view.epoch = Some(report.epoch.to_string());
        }
        self.last_report = Some(report);
        let leads = report.role == Role::Leader && report.leader == Some(self.node.node_id);
        if !leads || self.sealed() {
            self.lose_leadership();
            if report.leader.is_some() {
                self.settle_refused_swap();
            }
            return;
        }
        match &mut self.leading {
            Some(leading) if leading.epoch == report.epoch => {
                leading.lease_until_ms = report.lease_until_ms;
                if let Stage::Serving(term) = leading.stage {
                    self.node
                        .allocator
                        .lock()
                        .unwrap()
                        .renew_lease(term, report.lease_until_ms);
                    self.settle_refused_swap();
                }
            }
            _ => {
                self.lose_leadership();
                tracing::info!("leading in epoch {}: loading the high water", report.epoch);
                self.leading = Some(Leading {
                    epoch: report.epoch,
                    lease_until_ms: report.lease_until_ms,
                    stage: Stage::Idle,
                });
                self.start_load();
            }
        }
    }

    fn lose_leadership(&mut self) {
        if self.leading.take().is_some() {
            tracing::info!("no longer leading: stopped serving");
        }
        self.retry_at = None;
        self.node.stop_serving();
    }

    /// Step (1): the linearizable read of the durable high water.
    fn start_load(&mut self) {
        let Some(leading) = &self.leading else { return };
        if leading.stage != Stage::Idle {
            return;
        }
        let epoch = leading.epoch;
        let request = self.request_id(Pending::Load { epoch });
        self.leading.as_mut().unwrap().stage = Stage::Loading;
        self.send(Command::LoadHighWater { request });
    }

    fn current_epoch(&self) -> Option<Epoch> {
        self.leading.as_ref().map(|l| l.epoch)
    }

    fn on_completed(&mut self, pending: Pending, outcome: Result<u64, DriverError>) {
        let pending = match pending {
            Pending::Admin(reply) => {
                let _ = reply.send(outcome);
                return;
            }
            Pending::HandOff => {
                match &outcome {
                    Ok(leader) => tracing::info!("handed leadership to node {leader}"),
                    Err(e) => tracing::warn!("could not hand leadership off: {}", describe(e)),
                }
                self.stop_now = true;
                return;
            }
            other => other,
        };
        if outcome.is_ok() {
            if !matches!(pending, Pending::Load { .. }) {
                Metrics::inc(&self.node.metrics.persists_total);
            }
        } else {
            Metrics::inc(&self.node.metrics.persist_failures_total);
        }
        match (pending, outcome) {
            (Pending::Load { epoch }, Ok(loaded)) if self.current_epoch() == Some(epoch) => {
                // Step (2): persist a window above everything issued before.
                let loaded = loaded.max(self.floor);
                let now = self.node.clock.now();
                let (term, target) = self.node.allocator.lock().unwrap().start_term(loaded, now);
                let request = self.request_id(Pending::Start { epoch, term });
                self.leading.as_mut().unwrap().stage = Stage::Starting(term);
                self.send(Command::PersistHighWater {
                    request,
                    at_least: target,
                    epoch,
                });
            }
            (Pending::Start { epoch, term }, Ok(persisted))
                if self.current_epoch() == Some(epoch) =>
            {
                // Step (3): serve.
                let leading = self.leading.as_mut().unwrap();
                let serving = self.node.allocator.lock().unwrap().serve(
                    term,
                    persisted,
                    leading.lease_until_ms,
                );
                if serving {
                    leading.stage = Stage::Serving(term);
                    Metrics::inc(&self.node.metrics.terms_started_total);
                    Metrics::set(&self.node.metrics.serving, 1);
                    Metrics::set(&self.node.metrics.high_water_ms, persisted);
                    tracing::info!("serving timestamps; high water {persisted} ms");
                    self.node.progressed.notify_waiters();
                    self.settle_refused_swap();
                }
            }
            (Pending::Load { epoch } | Pending::Start { epoch, .. }, Err(error))
                if self.current_epoch() == Some(epoch) =>
            {
                tracing::warn!(
                    "could not start serving in epoch {epoch}: {}; retrying in {RETRY_DELAY:?}",
                    describe(&error)
                );
                self.leading.as_mut().unwrap().stage = Stage::Idle;
                self.retry_at = Some(tokio::time::Instant::now() + RETRY_DELAY);
            }
            (Pending::Extend { term }, Ok(persisted)) => {
                let mut allocator = self.node.allocator.lock().unwrap();
                allocator.extended(term, persisted);
                if allocator.term() == Some(term) {
                    Metrics::set(&self.node.metrics.high_water_ms, allocator.high_water());
                }
                drop(allocator);
                self.node.progressed.notify_waiters();
            }
            (Pending::Extend { term }, Err(error)) => {
                tracing::warn!("extending the high water failed: {}", describe(&error));
                if matches!(error, DriverError::Fenced(_) | DriverError::NotLeader(_)) {
                    self.lose_leadership();
                } else {
                    self.node.allocator.lock().unwrap().extension_failed(term);
                }
            }
            // A completion for a term this node no longer leads in.
            _ => {}
        }
    }

    /// The previous build serves again, or follows a known leader: answer
    /// the refused swap.
    fn settle_refused_swap(&mut self) {
        if let Some(refused) = self.refused_swap.take() {
            refused.answer();
        }
    }

    /// Answer a refused swap whose previous build has not settled in time.
    fn expire_refused_swap(&mut self) {
        if self
            .refused_swap
            .as_ref()
            .is_some_and(|r| tokio::time::Instant::now() >= r.until)
        {
            self.settle_refused_swap();
        }
    }

    fn maybe_extend(&mut self) {
        let now = self.node.clock.now();
        let serving = self.node.allocator.lock().unwrap().is_serving(now);
        Metrics::set(&self.node.metrics.serving, u64::from(serving));
        let Some(epoch) = self.current_epoch() else {
            return;
        };
        let Some((term, target)) = self.node.allocator.lock().unwrap().begin_extension(now) else {
            return;
        };
        let request = self.request_id(Pending::Extend { term });
        self.send(Command::PersistHighWater {
            request,
            at_least: target,
            epoch,
        });
    }
}

/// Unix ms of a system time, for status output.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
