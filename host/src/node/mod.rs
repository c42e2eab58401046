//! One node: the allocator, the driver, and the coordinator between them
//! (docs/architecture.md §3).
//!
//! - [`Node`]: what the HTTP handlers and the coordinator share: the
//!   allocator (the hot path), the views of leadership and of the driver
//!   for `/v1/status`, and the wake-ups between requests and the
//!   coordinator.
//! - [`term`]: the term state machine, sans IO: when this node may serve.
//! - [`slot`]: the running driver and the operations that replace it
//!   (swap, migration, seal).
//! - [`coordinator`]: the task that wires both machines to the driver's
//!   events, the admin API, timers and shutdown.
//!
//! Requests never wait for consensus unless the window is exhausted.

pub mod coordinator;
pub mod slot;
pub mod term;

pub use coordinator::{Control, Coordinator};

use crate::allocator::{Allocator, Grant, GrantError};
use crate::clock::Clock;
use crate::driver::{Leadership, LoadedDriver, Role, StatsProbe};
use crate::metrics::{BuildInfo, Metrics};
use crate::migration::DriverRecord;
use crate::peer::Network;
use crate::timestamp::Timestamp;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// The typed `/v1/status` answer and its parts have one definition, in the
/// client crate, shared with everything that reads them.
pub use tsohost_client::status::{
    DriverStatus, LeadershipStatus, Member, MigrationStatus, Role as StatusRole, Status,
};

/// The status of a freshly loaded component, not started yet.
impl From<&LoadedDriver> for DriverStatus {
    fn from(driver: &LoadedDriver) -> DriverStatus {
        DriverStatus {
            name: driver.info.name.clone(),
            version: driver.info.version.clone(),
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

/// The driver's latest leadership report, as `/v1/status` shows it.
impl From<&Leadership> for LeadershipStatus {
    fn from(report: &Leadership) -> LeadershipStatus {
        LeadershipStatus {
            role: match report.role {
                Role::Leader => StatusRole::Leader,
                Role::Follower => StatusRole::Follower,
                Role::Candidate => StatusRole::Candidate,
            },
            leader: report.leader,
            epoch: Some(report.epoch.to_string()),
        }
    }
}

/// The host's record of a node's driver, as `/v1/status` shows it (the
/// stored record and the API are separate types, so neither format can
/// change the other by accident).
impl From<&DriverRecord> for MigrationStatus {
    fn from(record: &DriverRecord) -> MigrationStatus {
        MigrationStatus {
            driver: record.driver.clone(),
            floor: record.floor,
            generation: record.generation,
            sealed: record.sealed,
        }
    }
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
    /// Asks the running driver its statistics; set once, when serving starts.
    stats_probe: OnceLock<StatsProbe>,
}

/// How long a scrape waits for the driver's statistics.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);

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
                role: StatusRole::Follower,
                leader: None,
                epoch: None,
            }),
            driver: Mutex::new(driver),
            migration: Mutex::new(record),
            exhausted_wait: window.clamp(Duration::from_millis(100), Duration::from_secs(2)),
            stats_probe: OnceLock::new(),
        })
    }

    /// Let scrapes ask the running driver its statistics through `probe`.
    pub fn attach_stats_probe(&self, probe: StatsProbe) {
        let _ = self.stats_probe.set(probe);
    }

    /// Ask the running driver its statistics and publish them (see
    /// [`crate::metrics::driver`]); one that does not answer within
    /// [`STATS_TIMEOUT`] publishes none rather than stale values.
    pub async fn refresh_driver_stats(&self) {
        let Some(probe) = self.stats_probe.get() else {
            return;
        };
        let name = self.driver.lock().unwrap().name.clone();
        match probe.ask(STATS_TIMEOUT).await {
            Some(stats) => self.metrics.driver_stats.set(&name, stats),
            None => self.metrics.driver_stats.clear(),
        }
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
                    self.metrics.timestamps_issued_total.inc_by(count);
                    return Ok(grant);
                }
                Err(e @ GrantError::BadCount(_)) => return Err(ServeError::BadRequest(e)),
                Err(GrantError::WindowExhausted) => {
                    self.metrics.window_exhausted_total.inc();
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

    /// Set the metrics that are a view of this node's state: serving,
    /// window headroom, leader, build information (see [`crate::metrics`]).
    pub fn refresh_metrics(&self) {
        let m = &self.metrics;
        let now = self.clock.now();
        let (serving, headroom_ms) = {
            let allocator = self.allocator.lock().unwrap();
            let serving = allocator.is_serving(now);
            let headroom = match serving {
                true => allocator.high_water().saturating_sub(now.wall_ms),
                false => 0,
            };
            (serving, headroom)
        };
        m.serving.set(i64::from(serving));
        m.window_headroom_seconds.set(headroom_ms as f64 / 1e3);
        let leads = self.leadership.lock().unwrap().role == StatusRole::Leader;
        m.leader.set(i64::from(leads));
        let driver = self.driver.lock().unwrap();
        m.set_build_info(BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            wit_version: driver.wit_version.clone(),
            driver: driver.name.clone(),
            driver_version: driver.version.clone(),
            driver_digest: driver.digest.clone(),
        });
    }

    fn unavailable(&self, reason: &str) -> ServeError {
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

    /// This node's answer to `GET /v1/status` (also the answer of some
    /// admin operations).
    pub fn status(&self) -> Status {
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
        let blocked_peers = self.network.as_ref().map(|n| n.faults.blocked());
        let members = self.network.as_ref().map(|n| {
            n.members()
                .into_iter()
                .map(|(id, address)| {
                    let url = if id == self.node_id {
                        None
                    } else {
                        n.url_of(id)
                    };
                    Member { address, id, url }
                })
                .collect()
        });
        Status {
            blocked_peers,
            driver: self.driver.lock().unwrap().clone(),
            high_water_ms: high_water,
            last_issued: Timestamp(last),
            leadership: self.leadership.lock().unwrap().clone(),
            members,
            migration: MigrationStatus::from(&*self.migration.lock().unwrap()),
            node_id: self.node_id,
            serving,
            window_ms: window,
        }
    }

    pub fn driver_status(&self) -> DriverStatus {
        self.driver.lock().unwrap().clone()
    }
}

/// Unix ms of a system time, for status output.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
