//! The checker: everything the cluster promised, verified as it happens, in
//! simulated real time.
//!
//! - **Unique**: no timestamp is issued twice.
//! - **Real-time order**: a timestamp issued at a later simulated instant
//!   than another, by any node, is greater. Grants are made at one instant
//!   each, so this is the order a client would observe with zero latency,
//!   the strictest one.
//! - **Leases never overlap**: once a serving term of one node has been
//!   followed by a grant of another term (another node, or the same node
//!   after it lost and regained leadership), the earlier term never grants
//!   again. And, whether or not a client happens to ask the old leader in
//!   time: no two nodes serve under leases that have not run out, each
//!   lease taken as its driver last vouched for it (converted from the
//!   node's monotonic clock to simulated time). A lease one election
//!   timeout too long shows here on nearly every failover that beats it,
//!   where a broken real-time order needs a client at the old leader in
//!   that gap.
//! - **The durable high water never decreases**: a persist answers at least
//!   what it was asked and at least every persist completed before it was
//!   made; a load answers at least every persist completed before it was
//!   made (it is linearizable).
//! - **Epochs grow**: each driver instance's first report of leading in an
//!   epoch, with a lease that has not run out, names an epoch greater than every epoch reported as leading
//!   before, by any node; only a new instance of the node that leads in
//!   the greatest epoch may resume it.
//! - **Liveness**: once the faults stop, some node serves again within a
//!   bound.
//!
//! A violation is returned as text naming what broke; the caller stops the
//! run and prints it with the trace.

use crate::driver::Epoch;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// One serving term: the node, and the host's count of terms it served
/// (kept across restarts, so that a term is never confused with a later one).
pub type ServingTerm = (u64, u64);

#[derive(Debug, Default)]
pub struct History {
    /// The instant of the latest grant, and the largest timestamp issued at
    /// earlier instants and at that one.
    instant_us: u64,
    max_before: Option<u64>,
    max_at_instant: Option<u64>,
    /// Every range issued, first → last.
    issued: BTreeMap<u64, u64>,
    /// The term that granted last, and every term a later one followed.
    serving: Option<ServingTerm>,
    superseded: BTreeSet<ServingTerm>,
    /// Nodes whose host serves: the epoch and the end (simulated µs,
    /// exclusive) of the lease their driver vouched for last.
    leases: BTreeMap<u64, (Epoch, u64)>,
    /// The largest high water a completed persist answered.
    durable: u64,
    /// (node, instance) pairs that reported leading, with the epoch.
    leaderships: BTreeSet<(u64, u64, Epoch)>,
    max_epoch: Option<(Epoch, u64)>,
    /// Counts for the summary.
    pub grants: u64,
    pub timestamps: u64,
    pub leaderships_seen: u64,
    pub persists: u64,
    /// Liveness: when the faults stopped, and the first grant after.
    quiet_since_us: Option<u64>,
    pub first_grant_after_quiet_us: Option<u64>,
}

/// What was durable when a request was handed to the driver: its answer is
/// checked against it.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    durable: u64,
}

/// Simulated µs as seconds, or "ever" for an unbounded lease.
fn secs(us: u64) -> String {
    if us == u64::MAX {
        "ever".into()
    } else {
        format!("{:.3}s", us as f64 / 1e6)
    }
}

fn ts(t: u64) -> String {
    let t = Timestamp(t);
    format!("{t} ({} ms + {})", t.physical_ms(), t.logical())
}

impl History {
    /// Node `node` granted `count` timestamps from `first`, in `term`.
    pub fn grant(
        &mut self,
        now_us: u64,
        term: ServingTerm,
        first: u64,
        count: u64,
    ) -> Result<(), String> {
        let last = first + count - 1;
        let (node, serial) = term;
        if now_us > self.instant_us {
            self.max_before = self.max_before.max(self.max_at_instant.take());
            self.instant_us = now_us;
        }
        if let Some(max) = self.max_before
            && first <= max
        {
            return Err(format!(
                "real-time order broken: node {node} issued {} after {} had been issued at an \
                 earlier instant",
                ts(first),
                ts(max)
            ));
        }
        if let Some((&f, &l)) = self.issued.range(..=last).next_back()
            && l >= first
        {
            return Err(format!(
                "timestamp issued twice: node {node} issued {}..={}, overlapping {}..={} issued \
                 before",
                ts(first),
                ts(last),
                ts(f),
                ts(l)
            ));
        }
        if self.superseded.contains(&term) {
            return Err(format!(
                "leases overlap: node {node} served again in its serving term #{serial} after \
                 another term had begun serving; a leader must stop before its lease ends, and \
                 no other node may serve before it has"
            ));
        }
        if let Some(previous) = self.serving.replace(term)
            && previous != term
        {
            self.superseded.insert(previous);
        }
        self.issued.insert(first, last);
        self.max_at_instant = self.max_at_instant.max(Some(last));
        self.grants += 1;
        self.timestamps += count;
        if let Some(quiet) = self.quiet_since_us
            && now_us >= quiet
            && self.first_grant_after_quiet_us.is_none()
        {
            self.first_grant_after_quiet_us = Some(now_us);
        }
        Ok(())
    }

    /// Node `node`'s host serves (or goes on serving) in `epoch` under a
    /// lease its driver vouched for until `until_us` (simulated,
    /// exclusive): no other serving node may hold a lease still running.
    pub fn serves_under(
        &mut self,
        now_us: u64,
        node: u64,
        epoch: Epoch,
        until_us: u64,
    ) -> Result<(), String> {
        let live = |until: u64| until > now_us;
        if live(until_us)
            && let Some((other, (e, until))) = self
                .leases
                .iter()
                .find(|&(&other, &(_, until))| other != node && live(until))
        {
            return Err(format!(
                "leases overlap: node {node} serves in epoch {epoch} under a lease until {}, while \
                 node {other}'s driver still vouches for its lease in epoch {e} until {}; a lease \
                 must run out before any other node can be elected and serve",
                secs(until_us),
                secs(*until)
            ));
        }
        self.leases.insert(node, (epoch, until_us));
        Ok(())
    }

    /// Node `node`'s host stopped serving (a step-down, a lost instance, a
    /// power loss): its lease no longer lets it serve.
    pub fn stopped_serving(&mut self, node: u64) {
        self.leases.remove(&node);
    }

    /// Instance `instance` of `node` reported leading in `epoch`.
    pub fn leading(&mut self, node: u64, instance: u64, epoch: Epoch) -> Result<(), String> {
        if !self.leaderships.insert((node, instance, epoch)) {
            return Ok(());
        }
        self.leaderships_seen += 1;
        // A new instance of the node that leads in the greatest epoch may
        // resume that leadership (a Raft leader whose vote is committed
        // does): nothing else led since, and its predecessor is gone.
        if let Some((max, by)) = self.max_epoch
            && (epoch < max || (epoch == max && by != node))
        {
            return Err(format!(
                "epoch did not grow: node {node} reported leading in epoch {epoch}, but node {by} \
                 had already reported leading in epoch {max}; every new leadership needs an epoch \
                 greater than all earlier ones (or stale persists cannot be fenced)"
            ));
        }
        self.max_epoch = Some((epoch, node));
        Ok(())
    }

    /// A load or persist is handed to a driver now.
    pub fn issue(&self) -> Issued {
        Issued {
            durable: self.durable,
        }
    }

    /// A persist of at least `at_least`, issued at `issued`, answered `value`.
    pub fn persisted(
        &mut self,
        node: u64,
        issued: Issued,
        at_least: u64,
        value: u64,
    ) -> Result<(), String> {
        self.persists += 1;
        if value < at_least {
            return Err(format!(
                "persist answered less than asked: node {node}'s driver completed a persist of \
                 at least {at_least} with {value}"
            ));
        }
        if value < issued.durable {
            return Err(format!(
                "durable high water went backwards: node {node}'s driver completed a persist \
                 with {value}, but {} had been durably persisted before the persist was made",
                issued.durable
            ));
        }
        self.durable = self.durable.max(value);
        Ok(())
    }

    /// A load issued at `issued` answered `value`.
    pub fn loaded(&self, node: u64, issued: Issued, value: u64) -> Result<(), String> {
        if value < issued.durable {
            return Err(format!(
                "load-high-water is not linearizable: node {node}'s driver loaded {value}, but \
                 {} had been durably persisted before the load was made",
                issued.durable
            ));
        }
        Ok(())
    }

    /// The faults stopped now: liveness is measured from here.
    pub fn quiet_from(&mut self, now_us: u64) {
        self.quiet_since_us = Some(now_us);
    }

    pub fn durable(&self) -> u64 {
        self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1 << 18;

    #[test]
    fn real_time_order_and_uniqueness() {
        let mut h = History::default();
        h.grant(10, (1, 1), 100 * MS, 5).unwrap();
        // The same instant: only uniqueness applies.
        h.grant(10, (1, 1), 100 * MS + 5, 5).unwrap();
        assert!(
            h.grant(10, (1, 1), 100 * MS + 7, 1)
                .unwrap_err()
                .contains("twice")
        );
        // A later instant must be above everything earlier.
        assert!(
            h.grant(11, (1, 1), 99 * MS, 1)
                .unwrap_err()
                .contains("real-time")
        );
        h.grant(12, (1, 1), 101 * MS, 1).unwrap();
    }

    #[test]
    fn a_superseded_term_never_grants_again() {
        let mut h = History::default();
        h.grant(1, (1, 1), 10 * MS, 1).unwrap();
        h.grant(2, (2, 1), 20 * MS, 1).unwrap();
        assert!(
            h.grant(3, (1, 1), 30 * MS, 1)
                .unwrap_err()
                .contains("leases overlap")
        );
        // The same node in a later term may serve again.
        h.grant(4, (1, 2), 40 * MS, 1).unwrap();
    }

    #[test]
    fn two_live_leases_never_serve_at_once() {
        let mut h = History::default();
        let (e1, e2) = (Epoch { hi: 1, lo: 1 }, Epoch { hi: 2, lo: 2 });
        h.serves_under(0, 1, e1, 1_000).unwrap();
        // Node 1's lease runs until 1 ms: node 2 may not serve before.
        let err = h.serves_under(999, 2, e2, 5_000).unwrap_err();
        assert!(err.contains("leases overlap"), "{err}");
        // Once it ran out, or once node 1 stopped, node 2 may.
        h.serves_under(1_000, 2, e2, 5_000).unwrap();
        // An old leader that vouches for a new lease while another serves
        // breaks its promise.
        assert!(h.serves_under(2_000, 1, e1, 3_000).is_err());
        h.stopped_serving(2);
        h.serves_under(2_000, 1, e1, 3_000).unwrap();
    }

    #[test]
    fn the_high_water_never_decreases() {
        let mut h = History::default();
        let before = h.issue();
        h.persisted(1, before, 50, 60).unwrap();
        assert!(
            h.persisted(1, before, 70, 65)
                .unwrap_err()
                .contains("less than asked")
        );
        let after = h.issue();
        assert!(h.loaded(2, after, 59).unwrap_err().contains("linearizable"));
        h.loaded(2, before, 0).unwrap();
        assert!(
            h.persisted(2, after, 10, 20)
                .unwrap_err()
                .contains("backwards")
        );
    }

    #[test]
    fn epochs_grow_with_every_new_leadership() {
        let e = |hi| Epoch { hi, lo: 0 };
        let mut h = History::default();
        h.leading(1, 1, e(1)).unwrap();
        h.leading(1, 1, e(1)).unwrap();
        h.leading(2, 1, e(2)).unwrap();
        assert!(h.leading(3, 1, e(2)).unwrap_err().contains("did not grow"));
        assert!(
            h.leading(1, 2, e(1)).is_err(),
            "a stale epoch is not resumed"
        );
        h.leading(2, 2, e(2)).unwrap();
    }
}
