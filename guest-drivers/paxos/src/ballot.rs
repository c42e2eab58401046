//! The lossless encoding of an omnipaxos [`Ballot`] into a tsohost
//! [`Epoch`], and the limits it puts on node ids.
//!
//! # Encoding
//!
//! ```text
//! epoch.hi = config_id (32 bits) << 32 | n        (32 bits)
//! epoch.lo = priority  (32 bits) << 32 | pid      (32 bits)
//! ```
//!
//! Every field of the ballot is kept, so [`ballot_of`] inverts
//! [`epoch_of`] exactly.
//!
//! # Order
//!
//! Epochs compare `(hi, lo)` lexicographically, that is by
//! `(config_id, n, priority, pid)`. omnipaxos orders ballots by
//! `(n, priority, pid)` and ignores `config_id` (`impl Ord for Ballot`),
//! because ballots of different configurations never meet inside one
//! omnipaxos instance. Within a configuration both orders agree. Across a
//! reconfiguration they must not: the new configuration's instance starts
//! its ballots again at `n = 1`, so omnipaxos's order would make the new
//! leader's ballot *smaller* than the old one. Putting `config_id` first
//! makes every ballot of configuration `c + 1` greater than every ballot of
//! `c` (configuration ids only grow, see [`crate::core`]), so a later
//! leadership always has a strictly greater epoch, which fencing and the
//! host rely on.
//!
//! # Limits
//!
//! The pid must fit 32 bits to be encoded. omnipaxos further indexes its
//! leader state by pid in dense vectors (`pid - 1`), so a large id would
//! allocate per-pid state for every smaller id. Node ids are therefore
//! limited to `1..=`[`MAX_NODE_ID`]; `0` is omnipaxos's "no node". `init`
//! and `change-membership` reject other ids with `invalid-config`.

use omnipaxos::ballot_leader_election::Ballot;
use tsohost_guest_sdk::{DriverError, Epoch, NodeId};

/// The largest node id this driver accepts (see the module docs).
pub const MAX_NODE_ID: NodeId = 4096;

const LOW32: u64 = 0xffff_ffff;

/// The epoch of a ballot. `Ballot::default()` (no ballot) maps to the zero
/// epoch, below every real one.
pub fn epoch_of(b: Ballot) -> Epoch {
    debug_assert!(b.pid <= LOW32, "pid {} does not fit 32 bits", b.pid);
    Epoch {
        hi: u64::from(b.config_id) << 32 | u64::from(b.n),
        lo: u64::from(b.priority) << 32 | (b.pid & LOW32),
    }
}

/// The ballot an epoch encodes; the inverse of [`epoch_of`].
pub fn ballot_of(e: Epoch) -> Ballot {
    Ballot {
        config_id: (e.hi >> 32) as u32,
        n: (e.hi & LOW32) as u32,
        priority: (e.lo >> 32) as u32,
        pid: e.lo & LOW32,
    }
}

/// An epoch as a serializable pair (the WIT record is not serde).
pub fn pair(e: Epoch) -> (u64, u64) {
    (e.hi, e.lo)
}

/// The epoch of a pair made by [`pair`].
pub fn unpair((hi, lo): (u64, u64)) -> Epoch {
    Epoch { hi, lo }
}

/// `id` is usable as an omnipaxos pid and encodable in an epoch.
pub fn check_node_id(id: NodeId, what: &str) -> Result<(), DriverError> {
    if id == 0 || id > MAX_NODE_ID {
        Err(DriverError::InvalidConfig(format!(
            "{what}: node id {id} is out of range; the paxos driver needs ids in 1..={MAX_NODE_ID} \
             (omnipaxos reserves 0 and keeps per-id state up to the largest id)"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(config_id: u32, n: u32, priority: u32, pid: u64) -> Ballot {
        Ballot::with(config_id, n, priority, pid)
    }

    #[test]
    fn round_trips() {
        for ballot in [
            Ballot::default(),
            b(1, 1, 0, 1),
            b(u32::MAX, u32::MAX, u32::MAX, LOW32),
            b(7, 3, 9, MAX_NODE_ID),
        ] {
            assert_eq!(ballot_of(epoch_of(ballot)), ballot);
        }
        assert_eq!(epoch_of(Ballot::default()), Epoch { hi: 0, lo: 0 });
    }

    #[test]
    fn orders_like_omnipaxos_within_a_configuration_and_by_configuration_across() {
        let ballots = [
            b(1, 1, 0, 1),
            b(1, 1, 0, 3),
            b(1, 1, 5, 2),
            b(1, 2, 0, 1),
            b(1, 9, 9, 9),
            b(2, 1, 0, 1),
            b(2, 1, 0, 2),
        ];
        for x in ballots {
            for y in ballots {
                if x.config_id == y.config_id {
                    assert_eq!(x.cmp(&y), epoch_of(x).cmp(&epoch_of(y)), "{x:?} {y:?}");
                } else {
                    assert_eq!(
                        x.config_id.cmp(&y.config_id),
                        epoch_of(x).cmp(&epoch_of(y)),
                        "{x:?} {y:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_unencodable_ids() {
        assert!(check_node_id(0, "node-id").is_err());
        assert!(check_node_id(MAX_NODE_ID + 1, "node-id").is_err());
        assert!(check_node_id(1 << 40, "node-id").is_err());
        assert!(check_node_id(1, "node-id").is_ok());
    }
}
