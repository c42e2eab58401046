//! A deterministic simulated cluster of driver instances (feature `sim`):
//! one virtual clock, in-memory storage per node that outlives instances,
//! a network with a fixed latency that can isolate nodes, and the checks
//! every replicated driver must pass (a single serving leader at any
//! instant).
//!
//! The harness is generic over the driver's sans-IO core `D`; a driver
//! supplies its entry points as plain functions ([`DriverFns`]), so that no
//! driver crate has to implement an SDK trait outside its tests.
//!
//! Time advances in steps of one millisecond: due messages are delivered
//! first (in send order), then every live node whose requested wake-up time
//! has come is ticked. Everything is a function of the configuration and the
//! seeds, so two runs of the same test produce the same reports.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::{MemStorage, SimClock, SimHost};
use crate::{Config, DriverError, Epoch, Leadership, NodeId, Peer, Role};

/// The entry points of a driver core the harness calls.
pub struct DriverFns<D> {
    /// Create an instance (`init`).
    pub init: fn(Rc<SimHost>, &Config) -> Result<D, DriverError>,
    /// `on-message`.
    pub on_message: fn(&mut D, NodeId, &[u8]),
    /// `on-tick`; returns the next wake-up time.
    pub on_tick: fn(&mut D, u64) -> u64,
    /// `load-high-water`.
    pub load: fn(&mut D, u64),
    /// `persist-high-water`.
    pub persist: fn(&mut D, u64, u64, Epoch),
}

impl<D> Clone for DriverFns<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for DriverFns<D> {}

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
    /// The entry points of the driver under test.
    pub fns: DriverFns<D>,
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
    /// One-way message latency, in ms.
    pub latency_ms: u64,
    /// The next request id.
    pub next_request: u64,
    /// Instances created so far (part of each instance's seed).
    pub instances: u64,
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
        peers: peers
            .iter()
            .map(|&p| Peer {
                id: p,
                address: format!("node-{p}"),
            })
            .collect(),
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

impl<D> SimCluster<D> {
    /// Nodes `ids`, started at time 1000; the first one bootstraps the
    /// cluster (`config.bootstrap`), the others start with empty storage.
    pub fn new(fns: DriverFns<D>, ids: &[NodeId], opts: &[(&str, &str)]) -> Self {
        let mut c = SimCluster {
            fns,
            clock: SimClock::default(),
            ids: Vec::new(),
            peers: ids.to_vec(),
            storages: BTreeMap::new(),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
            options: options(opts),
            latency_ms: 1,
            next_request: 1,
            instances: 0,
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
        let cfg = config(
            id,
            &self.peers,
            bootstrap,
            id * 1000 + self.instances,
            &self.options,
        );
        let driver = (self.fns.init)(host.clone(), &cfg)?;
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

    /// Drop the instance, keep the storage (a crash).
    pub fn kill(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("known node");
        node.driver = None;
        node.host.outbox.borrow_mut().clear();
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
                (self.fns.on_message)(d, from, &payload);
                self.collect(to);
            }
        }
        for id in self.ids.clone() {
            let node = self.nodes.get_mut(&id).expect("known node");
            if node.next_tick <= now
                && let Some(d) = node.driver.as_mut()
            {
                node.next_tick = (self.fns.on_tick)(d, now);
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

    /// Step until request `req` of `id` completes (at most 10 s).
    pub fn wait(&mut self, id: NodeId, req: u64) -> Result<u64, DriverError> {
        let host = self.nodes[&id].host.clone();
        for _ in 0..10_000 {
            if let Some(outcome) = host.take_completion(req) {
                return outcome;
            }
            self.step();
        }
        panic!("request {req} on node {id} not completed");
    }

    /// `persist-high-water` on `id`, waited for.
    pub fn persist(&mut self, id: NodeId, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        let persist = self.fns.persist;
        let req = self.request(id, |d, r| persist(d, r, at_least, epoch));
        self.wait(id, req)
    }

    /// `load-high-water` on `id`, waited for.
    pub fn load(&mut self, id: NodeId) -> Result<u64, DriverError> {
        let load = self.fns.load;
        let req = self.request(id, load);
        self.wait(id, req)
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
