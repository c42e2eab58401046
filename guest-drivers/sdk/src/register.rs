//! The durable high-water register on local storage: the whole of a
//! single-node driver.
//!
//! Invariants, each kept across instances because all state is in host
//! storage:
//! - the stored high water never decreases;
//! - every instance takes a new generation, stored synced before it reports
//!   leadership, so epochs of later instances are strictly greater;
//! - a persist completes only after a synced write of a value >= `at-least`.

use crate::{
    DriverError, Epoch, Leadership, NodeId, Role, host,
    rules::{check_epoch, check_range},
    storage::{get_u64, put_u64s_synced},
};

const HIGH_WATER: &[u8] = b"high-water";
const GENERATION: &[u8] = b"generation";

/// A single node that always leads, with an unbounded lease: nothing else can
/// ever lead its storage.
#[derive(Debug)]
pub struct SingleNode {
    node: NodeId,
    epoch: Epoch,
    floor: u64,
}

impl SingleNode {
    /// Open the register, take the next generation (durably) and report
    /// leadership to the host.
    pub fn open(node: NodeId, floor: u64) -> Result<Self, DriverError> {
        let generation = get_u64(GENERATION)?.unwrap_or(0) + 1;
        put_u64s_synced(&[(GENERATION, generation)])?;
        let register = SingleNode {
            node,
            epoch: Epoch {
                hi: generation,
                lo: 0,
            },
            floor,
        };
        host::report_leadership(Leadership {
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

    /// The durable high water, never below the configured floor.
    pub fn load(&self) -> Result<u64, DriverError> {
        Ok(get_u64(HIGH_WATER)?.unwrap_or(0).max(self.floor))
    }

    /// Raise the high water to at least `at_least`, synced before returning.
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
        put_u64s_synced(&[(HIGH_WATER, at_least)])?;
        Ok(at_least)
    }
}

std::thread_local! {
    static INSTANCE: std::cell::RefCell<Option<SingleNode>> = const { std::cell::RefCell::new(None) };
}

/// The `init` of a single-node driver: a config naming other nodes is refused
/// (a single-node register cannot be shared), then the register is opened.
pub fn init(cfg: &crate::Config) -> Result<(), DriverError> {
    if let Some(other) = cfg.peers.iter().find(|p| p.id != cfg.node_id) {
        return Err(DriverError::InvalidConfig(format!(
            "peers: this is a single-node driver, but node {} ({}) is configured; use a \
             replicated driver (raft, paxos) for a cluster",
            other.id, other.address
        )));
    }
    open_instance(cfg.node_id, cfg.floor)
}

/// Open the register as this instance's (what `init` does after its checks),
/// for drivers that decide themselves that this node owns its storage.
pub fn open_instance(node: NodeId, floor: u64) -> Result<(), DriverError> {
    let register = SingleNode::open(node, floor)?;
    INSTANCE.with_borrow_mut(|slot| *slot = Some(register));
    Ok(())
}

/// The `load-high-water` of a single-node driver.
pub fn load_high_water(request: u64) {
    crate::complete(request, with_instance(|r| r.load()));
}

/// The `persist-high-water` of a single-node driver.
pub fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
    crate::complete(request, with_instance(|r| r.persist(at_least, epoch)));
}

/// `change-membership` and `transfer-leadership` of a single-node driver:
/// there is no one to change to or hand over to.
pub fn refuse_cluster_operation(request: u64, operation: &str) {
    crate::complete(
        request,
        Err(DriverError::InvalidConfig(format!(
            "{operation}: this is a single-node driver; use a replicated driver (raft)"
        ))),
    );
}

/// The epoch of this instance's register, once `init` opened it.
pub fn epoch() -> Option<Epoch> {
    INSTANCE.with_borrow(|slot| slot.as_ref().map(SingleNode::epoch))
}

fn with_instance(
    f: impl FnOnce(&mut SingleNode) -> Result<u64, DriverError>,
) -> Result<u64, DriverError> {
    INSTANCE.with_borrow_mut(|slot| match slot {
        Some(register) => f(register),
        None => Err(DriverError::Internal("called before init".into())),
    })
}
