//! The leader lease and the promise gate, as pure bookkeeping on host
//! milliseconds (the argument is in [`crate::core`]).
//!
//! - The **gate**: until `gate_until`, this node refuses to promise any
//!   ballot but `gate_ballot` and higher ballots of the same node in the
//!   same configuration (it drops Prepare messages of other ballots,
//!   received or its own). The lease it protects is that node's, so a new
//!   ballot of that node cannot overlap another node's leadership: the node
//!   stops serving the old ballot when it leaves omnipaxos's Accept phase to
//!   prepare the new one. The next configuration's ballots wait even when
//!   the same node leads both: the lease of the old configuration then ends
//!   before the new one serves (not only at the step-down the host sees),
//!   at the cost of a pause of at most `W` per membership change. A
//!   follower raises it to `receipt + W` on each
//!   lease heartbeat of the leader it promised; a leader raises it to
//!   `A + W` each time its lease base `A` advances; a fresh instance with
//!   state starts gated for `W`.
//! - The **lease** of a leader: it numbers its heartbeats, remembers when it
//!   sent each, and takes as lease base `A` the newest send time that a
//!   quorum of the configuration (itself included, at its latest send) has
//!   acknowledged. The lease runs until `A + L`.

use std::collections::BTreeMap;

use omnipaxos::ballot_leader_election::Ballot;
use tsohost_guest_sdk::NodeId;

/// Heartbeats remembered for matching acknowledgements.
const SENT_KEPT: usize = 64;

/// The state of one leadership's lease.
#[derive(Debug, Clone)]
struct Leading {
    ballot: Ballot,
    next_seq: u64,
    /// Send time of recent heartbeats, by number.
    sent: BTreeMap<u64, u64>,
    /// Per follower, the send time of the newest heartbeat it acknowledged.
    acked: BTreeMap<NodeId, u64>,
    /// The send time of this leader's newest heartbeat.
    last_sent: Option<u64>,
    /// The lease base `A`, once a quorum acknowledged.
    base: Option<u64>,
}

/// Who counts towards a lease: this node and the voters of its
/// configuration (itself included), and how many make a quorum.
#[derive(Debug, Clone, Copy)]
pub struct Voters<'a> {
    /// This node.
    pub me: NodeId,
    /// The configuration's voters.
    pub members: &'a [NodeId],
    /// Votes needed for a quorum.
    pub quorum: usize,
}

/// Gate and lease of one node.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    gate_until: u64,
    gate_ballot: Ballot,
    leading: Option<Leading>,
}

impl Lease {
    /// Whether a Prepare of `ballot` must be dropped at `now`.
    pub fn gated(&self, now: u64, ballot: Ballot) -> bool {
        let same_leader = ballot.pid == self.gate_ballot.pid
            && ballot.config_id == self.gate_ballot.config_id
            && ballot >= self.gate_ballot;
        now < self.gate_until && !same_leader
    }

    /// When the gate opens.
    pub fn gate_until(&self) -> u64 {
        self.gate_until
    }

    /// Refuse ballots other than `ballot` until `until` (never shortens the
    /// gate).
    pub fn close_gate(&mut self, until: u64, ballot: Ballot) {
        self.gate_until = self.gate_until.max(until);
        self.gate_ballot = ballot;
    }

    /// The ballot this node leads a lease for.
    pub fn leading(&self) -> Option<Ballot> {
        self.leading.as_ref().map(|l| l.ballot)
    }

    /// Start the lease bookkeeping of a new leadership (forgetting any
    /// previous one).
    pub fn start_leading(&mut self, ballot: Ballot) {
        self.leading = Some(Leading {
            ballot,
            next_seq: 1,
            sent: BTreeMap::new(),
            acked: BTreeMap::new(),
            last_sent: None,
            base: None,
        });
    }

    /// Forget the leadership: no lease from now on.
    pub fn stop_leading(&mut self) {
        self.leading = None;
    }

    /// Record a heartbeat sent at `now`; its number, if leading.
    pub fn heartbeat_sent(&mut self, now: u64) -> Option<(Ballot, u64)> {
        let l = self.leading.as_mut()?;
        let seq = l.next_seq;
        l.next_seq += 1;
        l.sent.insert(seq, now);
        while l.sent.len() > SENT_KEPT {
            l.sent.pop_first();
        }
        l.last_sent = Some(now);
        Some((l.ballot, seq))
    }

    /// `from` acknowledged heartbeat `seq` of `ballot`. Recomputes the lease
    /// base over `voters`; on progress, closes the gate until `A + gate_ms`.
    /// Returns whether the base advanced.
    pub fn acked(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        seq: u64,
        voters: Voters<'_>,
        gate_ms: u64,
    ) -> bool {
        let Voters {
            me,
            members,
            quorum,
        } = voters;
        let Some(l) = self.leading.as_mut() else {
            return false;
        };
        if l.ballot != ballot || from == me || !members.contains(&from) {
            return false;
        }
        let Some(&sent_at) = l.sent.get(&seq) else {
            return false;
        };
        let e = l.acked.entry(from).or_insert(sent_at);
        *e = (*e).max(sent_at);
        let mut times: Vec<u64> = members
            .iter()
            .filter_map(|m| {
                if *m == me {
                    l.last_sent
                } else {
                    l.acked.get(m).copied()
                }
            })
            .collect();
        if times.len() < quorum {
            return false;
        }
        times.sort_unstable_by(|a, b| b.cmp(a));
        let base = times[quorum - 1];
        if l.base.is_some_and(|b| b >= base) {
            return false;
        }
        l.base = Some(base);
        let ballot = l.ballot;
        self.close_gate(base + gate_ms, ballot);
        true
    }

    /// The lease of the current leadership: `A + lease_ms`, 0 before a
    /// quorum acknowledged.
    pub fn lease_until(&self, lease_ms: u64) -> u64 {
        self.leading
            .as_ref()
            .and_then(|l| l.base)
            .map_or(0, |a| a + lease_ms)
    }

    /// Test-only (`--cfg tsohost_mutants`, the `unacked-lease` mutant of
    /// `crate::core`): a lease from this leader's latest heartbeat, as if
    /// every heartbeat were acknowledged by a quorum.
    #[cfg(tsohost_mutants)]
    pub fn lease_from_last_heartbeat(&self, lease_ms: u64) -> u64 {
        self.leading
            .as_ref()
            .and_then(|l| l.last_sent)
            .map_or(0, |s| s + lease_ms)
    }

    /// The follower that acknowledged most recently, other than `me`.
    pub fn freshest_follower(&self) -> Option<NodeId> {
        let l = self.leading.as_ref()?;
        l.acked
            .iter()
            .max_by_key(|(id, t)| (**t, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_base_is_the_quorum_acknowledged_send_time() {
        let b = Ballot::with(1, 1, 0, 1);
        let members = [1, 2, 3];
        let v = Voters {
            me: 1,
            members: &members,
            quorum: 2,
        };
        let mut l = Lease::default();
        l.start_leading(b);
        assert_eq!(l.lease_until(500), 0);
        let (_, s1) = l.heartbeat_sent(100).unwrap();
        let (_, s2) = l.heartbeat_sent(200).unwrap();
        // A stale ballot or an unknown heartbeat counts for nothing.
        assert!(!l.acked(2, Ballot::with(1, 0, 0, 1), s1, v, 1000));
        assert!(!l.acked(2, b, 99, v, 1000));
        assert!(l.acked(2, b, s1, v, 1000));
        assert_eq!(l.lease_until(500), 600);
        assert!(l.gated(1099, Ballot::with(1, 2, 0, 3)));
        assert!(!l.gated(1099, b));
        // The lease holder itself may re-prepare under a higher ballot, not
        // a lower one.
        assert!(!l.gated(1099, Ballot::with(1, 2, 0, 1)));
        assert!(l.gated(1099, Ballot::with(1, 0, 0, 1)));
        // Not under the next configuration: its leadership waits for this
        // lease to end even when the same node leads both.
        assert!(l.gated(1099, Ballot::with(2, 1, 0, 1)));
        assert!(!l.gated(1100, Ballot::with(1, 2, 0, 3)));
        // A late ack of an older heartbeat does not move the base back.
        assert!(l.acked(3, b, s2, v, 1000));
        assert_eq!(l.lease_until(500), 700);
        assert!(!l.acked(2, b, s1, v, 1000));
        assert_eq!(l.lease_until(500), 700);
        assert_eq!(l.freshest_follower(), Some(3));
        l.stop_leading();
        assert_eq!(l.lease_until(500), 0);
    }
}
