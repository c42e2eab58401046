//! A deterministic simulated cluster of driver instances (feature `sim`):
//! one virtual clock, in-memory storage per node that outlives instances,
//! a network with a fixed latency that can isolate nodes, and the checks
//! every replicated driver must pass (a single serving leader at any
//! instant).
//!
//! The harness is generic over the driver `D`, any [`Driver`]: it calls the
//! same methods the component exports call, with a [`SimHost`] instead of
//! the real imports.
//!
//! Nodes can join later ([`SimCluster::add_node`]), and the harness drives
//! membership changes and leadership transfers, counts what each node
//! delivered to each other ([`SimCluster::delivered`]), and offers two
//! single-serving-leader checks: a conservative one
//! ([`assert_single_serving_leader`]) and one that models how the host
//! serves ([`assert_single_serving_leader_host_model`]).
//!
//! Time advances in steps of one millisecond: due messages are delivered
//! first (in send order), then every live node whose requested wake-up time
//! has come is ticked. Everything is a function of the configuration and the
//! seeds, so two runs of the same test produce the same reports.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::{MemStorage, SimClock, SimDriver, SimHost};
use crate::frame::{self, Frame};
use crate::{Config, Driver, DriverError, Epoch, Leadership, NodeId, Peer, Role};

/// One node of the simulated cluster.
pub struct SimNode<D> {
    /// The host of the current (or last) instance.
    pub host: Rc<SimHost>,
    /// The live instance, `None` after [`SimCluster::kill`].
    pub driver: Option<D>,
    /// When the instance asked to be ticked next.
    pub next_tick: u64,
    /// Leadership reports of every instance of this node, in order, with the
    /// time they were made.
    pub reports: Vec<(u64, Leadership)>,
}

/// A message on the simulated network: `(deliver_at, from, to, payload)`.
pub type InFlight = (u64, NodeId, NodeId, Vec<u8>);

/// A simulated cluster.
pub struct SimCluster<D> {
    /// The cluster's clock.
    pub clock: SimClock,
    /// The nodes started so far, in order.
    pub ids: Vec<NodeId>,
    /// The peers given to instances in `config.peers`.
    pub peers: Vec<NodeId>,
    /// Each node's storage; survives instances.
    pub storages: BTreeMap<NodeId, MemStorage>,
    /// The nodes.
    pub nodes: BTreeMap<NodeId, SimNode<D>>,
    /// Messages sent and not yet delivered.
    pub in_flight: Vec<InFlight>,
    /// Nodes cut off from everyone: messages to and from them are lost.
    pub isolated: BTreeSet<NodeId>,
    /// Driver options for every instance.
    pub options: Vec<(String, String)>,
    /// `config.floor` of every instance started from now on (0 by default).
    pub floor: u64,
    /// One-way message latency, in ms.
    pub latency_ms: u64,
    /// The next request id.
    pub next_request: u64,
    /// Instances created so far (part of each instance's seed).
    pub instances: u64,
    /// How much a delivered payload adds to [`SimCluster::delivered`]: by
    /// default 1 (messages); [`request_frames`] counts request frames.
    pub count_message: fn(&[u8]) -> u64,
    /// What [`SimCluster::count_message`] counted of the payloads delivered
    /// to a live, connected instance, by `(from, to)`.
    pub delivered_counts: BTreeMap<(NodeId, NodeId), u64>,
}

/// The peers `ids`, each at address `node-{id}` (as [`config`] gives them).
pub fn peers(ids: &[NodeId]) -> Vec<Peer> {
    ids.iter()
        .map(|&id| Peer {
            id,
            address: format!("node-{id}"),
        })
        .collect()
}

/// One per message: the default of [`SimCluster::count_message`].
pub fn one_per_message(_payload: &[u8]) -> u64 {
    1
}

/// The request frames ([`Frame::Request`]) in a payload framed with
/// [`crate::frame`]; 0 if it does not decode. For
/// [`SimCluster::count_message`].
pub fn request_frames(payload: &[u8]) -> u64 {
    frame::decode(payload)
        .unwrap_or_default()
        .iter()
        .filter(|f| matches!(f, Frame::Request { .. }))
        .count() as u64
}

/// A config for node `id` among `peers`.
pub fn config(
    id: NodeId,
    peers: &[NodeId],
    bootstrap: bool,
    seed: u64,
    options: &[(String, String)],
) -> Config {
    Config {
        node_id: id,
        peers: self::peers(peers),
        bootstrap,
        floor: 0,
        seed,
        options: options.to_vec(),
    }
}

/// Owned `(key, value)` options from string pairs.
pub fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl<D: Driver> SimCluster<D> {
    /// Nodes `ids`, started at time 1000; the first one bootstraps the
    /// cluster (`config.bootstrap`), the others start with empty storage.
    pub fn new(ids: &[NodeId], opts: &[(&str, &str)]) -> Self {
        Self::with_floor(ids, opts, 0)
    }

    /// As [`SimCluster::new`], with `config.floor` = `floor` for every
    /// instance.
    pub fn with_floor(ids: &[NodeId], opts: &[(&str, &str)], floor: u64) -> Self {
        let mut c = SimCluster {
            clock: SimClock::default(),
            ids: Vec::new(),
            peers: ids.to_vec(),
            storages: BTreeMap::new(),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
            options: options(opts),
            floor,
            latency_ms: 1,
            next_request: 1,
            instances: 0,
            count_message: one_per_message,
            delivered_counts: BTreeMap::new(),
        };
        c.clock.set(1_000);
        for (i, &id) in ids.iter().enumerate() {
            c.start(id, i == 0);
        }
        c
    }

    /// Start a new instance of node `id` on its storage (creating the node
    /// with empty storage if it is new). Panics if `init` fails.
    pub fn start(&mut self, id: NodeId, bootstrap: bool) {
        self.try_start(id, bootstrap).expect("init");
    }

    /// Start a new instance of node `id`, returning `init`'s error.
    pub fn try_start(&mut self, id: NodeId, bootstrap: bool) -> Result<(), DriverError> {
        self.instances += 1;
        let storage = self.storages.entry(id).or_default().clone();
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
        let host = Rc::new(SimHost::new(id, storage, self.clock.clone()));
        let mut cfg = config(
            id,
            &self.peers,
            bootstrap,
            id * 1000 + self.instances,
            &self.options,
        );
        cfg.floor = self.floor;
        let driver = D::init(host.clone(), &cfg)?;
        let mut node = SimNode {
            host,
            driver: Some(driver),
            next_tick: self.clock.now(),
            reports: Vec::new(),
        };
        if let Some(old) = self.nodes.remove(&id) {
            node.reports = old.reports;
        }
        self.nodes.insert(id, node);
        self.collect(id);
        Ok(())
    }

    /// A new node `id` with empty storage, not bootstrapped, started with the
    /// current peers and itself as `config.peers` (the host's `--peers`);
    /// instances started later get it among their peers too.
    pub fn add_node(&mut self, id: NodeId) {
        assert!(!self.ids.contains(&id), "node {id} exists");
        if !self.peers.contains(&id) {
            self.peers.push(id);
        }
        self.start(id, false);
    }

    /// Drop the instance, keep the storage (a crash).
    pub fn kill(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.driver = None;
        node.host.outbox.borrow_mut().clear();
    }

    /// Drop the instance and lose what it wrote since its last synced write
    /// (a power cut of the node).
    pub fn power_cut(&mut self, id: NodeId) {
        self.kill(id);
        self.storages[&id].lose_unsynced();
    }

    /// The live instance of `id`.
    pub fn driver(&self, id: NodeId) -> &D {
        self.nodes[&id].driver.as_ref().expect("live instance")
    }

    /// Move what `id` emitted (messages, reports) into the simulation.
    pub fn collect(&mut self, id: NodeId) {
        let now = self.clock.now();
        let node = self.nodes.get_mut(&id).expect("known node");
        for (to, payload) in node.host.outbox.borrow_mut().drain(..) {
            self.in_flight
                .push((now + self.latency_ms, id, to, payload));
        }
        node.reports
            .extend(node.host.reports.borrow_mut().drain(..));
    }

    /// One millisecond of simulated time.
    pub fn step(&mut self) {
        let now = self.clock.now() + 1;
        self.clock.set(now);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|m| m.0 <= now);
        self.in_flight = later;
        for (_, from, to, payload) in due {
            if self.isolated.contains(&from) || self.isolated.contains(&to) {
                continue;
            }
            if let Some(d) = self.nodes.get_mut(&to).and_then(|n| n.driver.as_mut()) {
                *self.delivered_counts.entry((from, to)).or_default() +=
                    (self.count_message)(&payload);
                d.on_message(from, &payload);
                self.collect(to);
            }
        }
        for id in self.ids.clone() {
            let node = self.nodes.get_mut(&id).expect("known node");
            if node.next_tick <= now
                && let Some(d) = node.driver.as_mut()
            {
                node.next_tick = d.on_tick(now);
                assert!(
                    node.next_tick > now,
                    "node {id}: next tick {} not after {now}",
                    node.next_tick
                );
                self.collect(id);
            }
        }
    }

    /// `ms` steps.
    pub fn run_for(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Step until `done`, at most `max_ms` steps; panics if never done.
    pub fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..max_ms {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(done(self), "condition not reached within {max_ms} ms");
    }

    /// The last leadership report of `id`, if any.
    pub fn last_report(&self, id: NodeId) -> Option<Leadership> {
        self.nodes[&id].reports.last().map(|(_, r)| *r)
    }

    /// A live, non-isolated node that leads with a lease valid now.
    pub fn serving_leader(&self) -> Option<(NodeId, Leadership)> {
        let now = self.clock.now();
        self.ids.iter().find_map(|&id| {
            let n = &self.nodes[&id];
            let r = self.last_report(id)?;
            (n.driver.is_some()
                && !self.isolated.contains(&id)
                && r.role == Role::Leader
                && r.lease_until_ms > now)
                .then_some((id, r))
        })
    }

    /// Run until some node serves (at most 20 s); that node and its report.
    pub fn wait_leader(&mut self) -> (NodeId, Leadership) {
        self.run_until(20_000, |c| c.serving_leader().is_some());
        self.serving_leader().expect("a serving leader")
    }

    /// Kill the serving leader `rounds` times, each after a quiet second
    /// (a few ms longer every round, so kills fall at different points of
    /// the heartbeat cycle) and `before_kill(self, leader, round)`; restart
    /// it once another node serves. The times from kill to a new serving
    /// leader, in ms, sorted: what a failover bound is checked against.
    pub fn failover_times(
        &mut self,
        rounds: usize,
        mut before_kill: impl FnMut(&mut Self, NodeId, usize),
    ) -> Vec<u64> {
        let (mut leader, _) = self.wait_leader();
        let mut took = Vec::with_capacity(rounds);
        for round in 0..rounds {
            self.run_for(1_000 + round as u64 * 7);
            before_kill(self, leader, round);
            let killed_at = self.clock.now();
            self.kill(leader);
            let (new, _) = self.wait_leader();
            took.push(self.clock.now() - killed_at);
            self.start(leader, false);
            leader = new;
        }
        took.sort_unstable();
        took
    }

    /// Call `f` on `id`'s instance with a fresh request id; returns the id.
    pub fn request(&mut self, id: NodeId, f: impl FnOnce(&mut D, u64)) -> u64 {
        let req = self.next_request;
        self.next_request += 1;
        f(
            self.nodes
                .get_mut(&id)
                .and_then(|n| n.driver.as_mut())
                .expect("live instance"),
            req,
        );
        self.collect(id);
        req
    }

    /// Step until request `req` of `id` completes (at most 30 s of
    /// simulated time: a hand-over may take five election timeouts).
    pub fn wait(&mut self, id: NodeId, req: u64) -> Result<u64, DriverError> {
        let host = self.nodes[&id].host.clone();
        for _ in 0..30_000 {
            if let Some(outcome) = host.take_completion(req) {
                return outcome;
            }
            self.step();
        }
        panic!("request {req} on node {id} not completed");
    }

    /// `persist-high-water` on `id`, waited for.
    pub fn persist(&mut self, id: NodeId, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.persist_high_water(r, at_least, epoch));
        self.wait(id, req)
    }

    /// `load-high-water` on `id`, waited for.
    pub fn load(&mut self, id: NodeId) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.load_high_water(r));
        self.wait(id, req)
    }

    /// `change-membership` on `id` to `members`, waited for.
    pub fn change(&mut self, id: NodeId, members: &[Peer]) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.change_membership(r, members));
        self.wait(id, req)
    }

    /// `change-membership` on `id` to the nodes `members` (see [`peers`]),
    /// waited for.
    pub fn change_to(&mut self, id: NodeId, members: &[NodeId]) -> Result<u64, DriverError> {
        self.change(id, &peers(members))
    }

    /// `transfer-leadership` on `id` to `to`, waited for.
    pub fn transfer(&mut self, id: NodeId, to: Option<NodeId>) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.transfer_leadership(r, to));
        self.wait(id, req)
    }

    /// The ids of the membership `id` reported last, checking that every
    /// member has the address the harness gave it (`node-{id}`).
    pub fn member_ids(&self, id: NodeId) -> Option<Vec<NodeId>> {
        let members = self.nodes[&id].host.last_membership()?;
        for p in &members {
            assert_eq!(
                p.address,
                format!("node-{}", p.id),
                "address of node {}",
                p.id
            );
        }
        Some(members.iter().map(|p| p.id).collect())
    }

    /// What [`SimCluster::count_message`] counted of the payloads `from`
    /// delivered to `to` so far.
    pub fn delivered(&self, from: NodeId, to: NodeId) -> u64 {
        self.delivered_counts.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Every leadership report of every node, oldest first per node.
    pub fn all_reports(&self) -> Vec<(u64, Leadership)> {
        self.nodes
            .values()
            .flat_map(|n| n.reports.iter().copied())
            .collect()
    }

    /// See [`assert_single_serving_leader`].
    pub fn assert_single_serving_leader(&self) {
        assert_single_serving_leader(&self.all_reports());
    }

    /// See [`assert_single_serving_leader_host_model`].
    pub fn assert_single_serving_leader_host_model(&self) {
        let per_node: Vec<&[(u64, Leadership)]> =
            self.nodes.values().map(|n| n.reports.as_slice()).collect();
        assert_single_serving_leader_host_model(&per_node);
    }
}

/// No two leaderships (epochs) ever had overlapping serving intervals. A
/// leadership serves from its first report with an unexpired lease until the
/// largest lease it reported: a conservative reading, since the host stops
/// serving earlier on a later non-leader report.
pub fn assert_single_serving_leader(reports: &[(u64, Leadership)]) {
    let mut intervals: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for &(at, r) in reports {
        if r.role == Role::Leader && r.lease_until_ms > at {
            let e = intervals.entry((r.epoch.hi, r.epoch.lo)).or_insert((at, 0));
            e.0 = e.0.min(at);
            e.1 = e.1.max(r.lease_until_ms);
        }
    }
    let list: Vec<_> = intervals.into_iter().collect();
    for w in list.windows(2) {
        let ((e1, (_, end1)), (e2, (start2, _))) = (w[0], w[1]);
        assert!(
            end1 < start2 || end1 == u64::MAX && e1 == e2,
            "leadership {e1:?} serves until {end1}, {e2:?} from {start2}"
        );
    }
}

/// When the leadership `epoch` (reported by any node) first served and the
/// largest lease it reported.
pub fn serving_interval(reports: &[(u64, Leadership)], epoch: Epoch) -> Option<(u64, u64)> {
    let mut out: Option<(u64, u64)> = None;
    for &(at, r) in reports {
        if r.role == Role::Leader && r.epoch == epoch && r.lease_until_ms > at {
            let e = out.get_or_insert((at, 0));
            e.0 = e.0.min(at);
            e.1 = e.1.max(r.lease_until_ms);
        }
    }
    out
}

/// No two leaderships (epochs) ever served at the same instant, and a newer
/// one serves only after every older one stopped, given each node's reports
/// in order (`per_node`). This models the host: each report replaces the
/// previous one, and a node serves from a `leader` report until its lease or
/// its next report, whichever comes first (it stops at once on a report that
/// is not `leader`, and adopts the lease of the latest one). Less
/// conservative than [`assert_single_serving_leader`], which lets every
/// lease run out.
pub fn assert_single_serving_leader_host_model(per_node: &[&[(u64, Leadership)]]) {
    let mut intervals: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for reports in per_node {
        for (i, &(at, r)) in reports.iter().enumerate() {
            let next = reports.get(i + 1).map_or(u64::MAX, |(t, _)| *t);
            let end = r.lease_until_ms.min(next);
            if r.role == Role::Leader && end > at {
                let e = intervals
                    .entry((r.epoch.hi, r.epoch.lo))
                    .or_insert((at, end));
                e.0 = e.0.min(at);
                e.1 = e.1.max(end);
            }
        }
    }
    let list: Vec<_> = intervals.into_iter().collect();
    for w in list.windows(2) {
        let ((e1, (_, end1)), (e2, (start2, _))) = (w[0], w[1]);
        assert!(
            end1 < start2,
            "leadership {e1:?} serves until {end1}, {e2:?} from {start2}"
        );
    }
}

impl<D: Driver> SimCluster<D> {
    /// The contract every replicated driver keeps with a healthy leader,
    /// checked the same way for each: a fresh cluster loads 0; persists
    /// complete with at least `at-least` and never lower the high water;
    /// out-of-range is refused; a follower refuses both requests naming the
    /// leader.
    pub fn check_leader_basics(&mut self, leader: NodeId, epoch: Epoch) {
        assert_eq!(self.load(leader), Ok(0));
        assert_eq!(self.persist(leader, 100, epoch), Ok(100));
        assert_eq!(self.persist(leader, 200, epoch), Ok(200));
        assert_eq!(self.persist(leader, 150, epoch), Ok(200), "never decreases");
        assert_eq!(self.load(leader), Ok(200));
        assert_eq!(
            self.persist(leader, 1 << 46, epoch),
            Err(DriverError::OutOfRange(1 << 46))
        );
        let follower = self.ids.iter().copied().find(|&i| i != leader).unwrap();
        assert_eq!(
            self.persist(follower, 300, epoch),
            Err(DriverError::NotLeader(Some(leader)))
        );
        assert_eq!(
            self.load(follower),
            Err(DriverError::NotLeader(Some(leader)))
        );
    }
}

impl<D: SimDriver> SimCluster<D> {
    /// The high water node `id`'s live instance has applied.
    pub fn applied(&self, id: NodeId) -> u64 {
        self.driver(id).applied_high_water()
    }

    /// Failover, checked the same way for each driver: the leader persists
    /// 700 and is killed; another node leads in a greater epoch, loads at
    /// least 700 (linearizable after failover) and fences the old epoch;
    /// the old node restarts from its storage and follows it, applying the
    /// new high water. Returns the old leader, the new one and the new
    /// epoch.
    pub fn check_failover(&mut self) -> (NodeId, NodeId, Epoch) {
        let (old, old_report) = self.wait_leader();
        assert_eq!(self.persist(old, 500, old_report.epoch), Ok(500));
        assert_eq!(self.persist(old, 700, old_report.epoch), Ok(700));
        self.kill(old);
        let (new, new_report) = self.wait_leader();
        assert_ne!(new, old);
        assert!(
            new_report.epoch > old_report.epoch,
            "{new_report:?} vs {old_report:?}"
        );
        let loaded = self.load(new).unwrap();
        assert!(loaded >= 700, "linearizable after failover: {loaded}");
        assert_eq!(
            self.persist(new, 900, old_report.epoch),
            Err(DriverError::Fenced(new_report.epoch))
        );
        assert_eq!(self.persist(new, 900, new_report.epoch), Ok(900));
        self.start(old, false);
        self.run_until(10_000, |c| {
            c.applied(old) == 900 && c.last_report(old).is_some_and(|r| r.leader == Some(new))
        });
        assert_eq!(self.last_report(old).unwrap().role, Role::Follower);
        assert_eq!(self.serving_leader().map(|l| l.0), Some(new));
        (old, new, new_report.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(node: NodeId, hi: u64, lease_until_ms: u64) -> Leadership {
        Leadership {
            role: Role::Leader,
            leader: Some(node),
            epoch: Epoch { hi, lo: node },
            lease_until_ms,
        }
    }

    fn follower(hi: u64, lo: u64) -> Leadership {
        Leadership {
            role: Role::Follower,
            leader: None,
            epoch: Epoch { hi, lo },
            lease_until_ms: 0,
        }
    }

    type Reports = Vec<(u64, Leadership)>;

    /// Node 1 leads with a lease until 200 and hands over at 150 (a
    /// non-leader report); node 2 serves from 160.
    fn handover() -> (Reports, Reports) {
        (
            vec![(100, leader(1, 1, 200)), (150, follower(1, 1))],
            vec![(160, leader(2, 2, 400))],
        )
    }

    #[test]
    fn the_host_model_ends_serving_at_the_next_report() {
        let (one, two) = handover();
        assert_single_serving_leader_host_model(&[&one, &two]);
        let all: Vec<_> = one.iter().chain(&two).copied().collect();
        let conservative = std::panic::catch_unwind(|| assert_single_serving_leader(&all));
        assert!(conservative.is_err(), "the lease until 200 still counts");
    }

    #[test]
    #[should_panic(expected = "serves until")]
    fn the_host_model_rejects_overlapping_leases() {
        let (mut one, two) = handover();
        one.pop();
        assert_single_serving_leader_host_model(&[&one, &two]);
    }

    #[test]
    #[should_panic(expected = "serves until")]
    fn the_host_model_orders_epochs_not_nodes() {
        // An older epoch serving after a newer one stopped is a violation.
        let one = vec![(300, leader(1, 1, 350))];
        let two = vec![(100, leader(2, 2, 200)), (150, follower(2, 2))];
        assert_single_serving_leader_host_model(&[&one, &two]);
    }

    #[test]
    fn request_frames_counts_requests_only() {
        let payload = frame::encode(&[
            Frame::Request {
                id: 1,
                kind: 0,
                body: vec![1],
            },
            Frame::Response {
                id: 7,
                body: vec![],
            },
            Frame::Request {
                id: 2,
                kind: 3,
                body: vec![],
            },
        ]);
        assert_eq!(request_frames(&payload), 2);
        assert_eq!(request_frames(b"garbage"), 0);
        assert_eq!(one_per_message(&payload), 1);
        assert_eq!(
            peers(&[4, 2]),
            vec![
                Peer {
                    id: 4,
                    address: "node-4".into()
                },
                Peer {
                    id: 2,
                    address: "node-2".into()
                }
            ]
        );
    }
}
