//! The durable high-water register on local storage: the whole of a
//! single-node driver ([`SingleNode`]), sans-IO like every driver core.
//!
//! Invariants, each kept across instances because all state is in host
//! storage (the instance itself holds only what `init` derived from it):
//! - the stored high water never decreases;
//! - every instance takes a new generation, stored synced before it reports
//!   leadership, so epochs of later instances are strictly greater and a
//!   persist from a replaced instance is fenced;
//! - a persist completes only after a synced write of a value >= `at-least`
//!   (or finds one already durable);
//! - a load never answers below the configured floor.

use std::rc::Rc;

use crate::port::Host;
use crate::rules::{check_epoch, check_range};
use crate::stats::{Epochs, counter};
use crate::storage::{get_u64, put_u64s_synced};
use crate::{Config, DriverError, Epoch, Leadership, Metric, NodeId, Peer, Role};

const HIGH_WATER: &[u8] = b"high-water";
const GENERATION: &[u8] = b"generation";

/// A single node that always leads, with an unbounded lease: nothing else can
/// ever lead its storage. Its methods mirror [`Driver`](crate::Driver)'s, so
/// a single-node driver is this register plus its name (and whatever it
/// checks first); it does not implement the trait itself because the name
/// keys the storage and belongs to the driver.
pub struct SingleNode {
    host: Rc<dyn Host>,
    node: NodeId,
    epoch: Epoch,
    floor: u64,
    /// Synced writes of a higher high water by this instance.
    persists: u64,
}

impl std::fmt::Debug for SingleNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleNode")
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl SingleNode {
    /// The `init` of a single-node driver: a config naming other nodes is
    /// refused (a single-node register cannot be shared), then the register
    /// is [opened](SingleNode::open). Options are the driver's to check.
    pub fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        if let Some(other) = cfg.peers.iter().find(|p| p.id != cfg.node_id) {
            return Err(DriverError::InvalidConfig(format!(
                "peers: this is a single-node driver, but node {} ({}) is configured; use a \
                 replicated driver (raft, paxos) for a cluster",
                other.id, other.address
            )));
        }
        Self::open(host, cfg.node_id, cfg.floor)
    }

    /// Open the register on `host`'s storage, take the next generation
    /// (durably) and only then report leadership. For drivers that decide
    /// themselves that this node owns its storage; [`SingleNode::init`]
    /// checks the config first.
    pub fn open(host: Rc<dyn Host>, node: NodeId, floor: u64) -> Result<Self, DriverError> {
        let generation = get_u64(&*host, GENERATION)?.unwrap_or(0) + 1;
        put_u64s_synced(&*host, &[(GENERATION, generation)])?;
        let register = SingleNode {
            host,
            node,
            epoch: Epoch {
                hi: generation,
                lo: 0,
            },
            floor,
            persists: 0,
        };
        register.host.report_leadership(Leadership {
            role: Role::Leader,
            leader: Some(node),
            epoch: register.epoch,
            lease_until_ms: u64::MAX,
        });
        Ok(register)
    }

    /// The epoch this instance leads under.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The node this register runs on.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The host this register was opened on.
    pub fn host(&self) -> &Rc<dyn Host> {
        &self.host
    }

    /// The durable high water, never below the configured floor.
    pub fn load(&self) -> Result<u64, DriverError> {
        Ok(get_u64(&*self.host, HIGH_WATER)?
            .unwrap_or(0)
            .max(self.floor))
    }

    /// Raise the high water to at least `at_least`, synced before returning.
    /// An epoch older than this instance's is fenced; a newer one cannot
    /// exist (only this node issues epochs for its storage) and is refused.
    pub fn persist(&mut self, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        check_range(at_least)?;
        check_epoch(epoch, self.epoch)?;
        if epoch > self.epoch {
            return Err(DriverError::Internal(format!(
                "persist carries epoch {}.{}, newer than this driver's {}.{}: only this node \
                 issues epochs for its storage",
                epoch.hi, epoch.lo, self.epoch.hi, self.epoch.lo
            )));
        }
        let current = self.load()?;
        if at_least <= current {
            return Ok(current);
        }
        put_u64s_synced(&*self.host, &[(HIGH_WATER, at_least)])?;
        self.persists += 1;
        Ok(at_least)
    }

    /// `stats`: the epoch (this instance's generation; each start is an
    /// election) and the high-water writes (the host publishes the high
    /// water itself).
    pub fn stats(&self) -> Vec<Metric> {
        let mut epochs = Epochs::default();
        epochs.observe(self.epoch);
        let mut stats = epochs.metrics().to_vec();
        stats.push(counter(
            "high_water_writes",
            "Synced writes of a higher high water by this instance",
            self.persists,
        ));
        stats
    }

    /// `on-tick`: a register has nothing to do over time.
    pub fn on_tick(&mut self, _now_ms: u64) -> u64 {
        u64::MAX
    }

    /// `load-high-water`: [`SingleNode::load`], completed.
    pub fn load_high_water(&mut self, request: u64) {
        let outcome = self.load();
        self.host.completed(request, outcome);
    }

    /// `persist-high-water`: [`SingleNode::persist`], completed.
    pub fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        let outcome = self.persist(at_least, epoch);
        self.host.completed(request, outcome);
    }

    /// `change-membership`: there is no one to change to.
    pub fn change_membership(&mut self, request: u64, _members: &[Peer]) {
        refuse_cluster_operation(&*self.host, request, "change-membership");
    }

    /// `transfer-leadership`: there is no one to hand over to.
    pub fn transfer_leadership(&mut self, request: u64, _to: Option<NodeId>) {
        refuse_cluster_operation(&*self.host, request, "transfer-leadership");
    }
}

/// Complete `request` of a cluster operation (`operation` names it) with
/// `invalid-config`: what every single-node driver answers, on any node.
pub fn refuse_cluster_operation(host: &dyn Host, request: u64, operation: &str) {
    host.completed(
        request,
        Err(DriverError::InvalidConfig(format!(
            "{operation}: this is a single-node driver; use a replicated driver (raft)"
        ))),
    );
}
