//! Deterministic simulation of a 3-node cluster of the raft driver core:
//! in-memory storage and network, one virtual clock, 1 ms message latency.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use tsohost_driver_raft::core::RaftDriver;
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{Config, DriverError, Epoch, Leadership, Peer, Role};

const LATENCY_MS: u64 = 1;

struct Node {
    host: Rc<SimHost>,
    driver: Option<RaftDriver>,
    next_tick: u64,
    /// Reports of every instance of this node, in order.
    reports: Vec<(u64, Leadership)>,
}

struct Cluster {
    clock: SimClock,
    ids: Vec<u64>,
    storages: BTreeMap<u64, MemStorage>,
    nodes: BTreeMap<u64, Node>,
    in_flight: Vec<(u64, u64, u64, Vec<u8>)>,
    /// Nodes cut off from everyone (messages to and from them are lost).
    isolated: BTreeSet<u64>,
    options: Vec<(String, String)>,
    next_request: u64,
    instances: u64,
}

fn config(
    id: u64,
    ids: &[u64],
    bootstrap: bool,
    seed: u64,
    options: &[(String, String)],
) -> Config {
    Config {
        node_id: id,
        peers: ids
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

impl Cluster {
    fn new(options: &[(&str, &str)]) -> Self {
        let mut c = Cluster {
            clock: SimClock::default(),
            ids: vec![1, 2, 3],
            storages: BTreeMap::new(),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            isolated: BTreeSet::new(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            next_request: 1,
            instances: 0,
        };
        c.clock.set(1_000);
        for id in c.ids.clone() {
            c.storages.insert(id, MemStorage::default());
            c.start(id, id == 1);
        }
        c
    }

    fn start(&mut self, id: u64, bootstrap: bool) {
        self.instances += 1;
        let host = Rc::new(SimHost::new(
            id,
            self.storages[&id].clone(),
            self.clock.clone(),
        ));
        let cfg = config(
            id,
            &self.ids,
            bootstrap,
            id * 1000 + self.instances,
            &self.options,
        );
        let driver = RaftDriver::init(host.clone(), &cfg).expect("init");
        let mut node = Node {
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
    }

    /// Drop the instance, keep the storage.
    fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        node.driver = None;
        node.host.outbox.borrow_mut().clear();
    }

    fn collect(&mut self, id: u64) {
        let now = self.clock.now();
        let node = self.nodes.get_mut(&id).unwrap();
        for (to, payload) in node.host.outbox.borrow_mut().drain(..) {
            self.in_flight.push((now + LATENCY_MS, id, to, payload));
        }
        node.reports
            .extend(node.host.reports.borrow_mut().drain(..));
    }

    /// One millisecond of simulated time.
    fn step(&mut self) {
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
                d.on_message(from, &payload);
                self.collect(to);
            }
        }
        for id in self.ids.clone() {
            let node = self.nodes.get_mut(&id).unwrap();
            if node.next_tick <= now
                && let Some(d) = node.driver.as_mut()
            {
                node.next_tick = d.on_tick(now);
                assert!(
                    node.next_tick > now,
                    "next tick {} not after {now}",
                    node.next_tick
                );
                self.collect(id);
            }
        }
    }

    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Cluster) -> bool) {
        for _ in 0..max_ms {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(done(self), "condition not reached within {max_ms} ms");
    }

    fn last_report(&self, id: u64) -> Option<Leadership> {
        self.nodes[&id].reports.last().map(|(_, r)| *r)
    }

    /// A live, non-isolated node that leads with a lease valid now.
    fn serving_leader(&self) -> Option<(u64, Leadership)> {
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

    fn wait_leader(&mut self) -> (u64, Leadership) {
        self.run_until(20_000, |c| c.serving_leader().is_some());
        self.serving_leader().unwrap()
    }

    fn request(&mut self, id: u64, f: impl FnOnce(&mut RaftDriver, u64)) -> u64 {
        let req = self.next_request;
        self.next_request += 1;
        f(
            self.nodes.get_mut(&id).unwrap().driver.as_mut().unwrap(),
            req,
        );
        self.collect(id);
        req
    }

    fn wait(&mut self, id: u64, req: u64) -> Result<u64, DriverError> {
        let host = self.nodes[&id].host.clone();
        for _ in 0..10_000 {
            if let Some(outcome) = host.take_completion(req) {
                return outcome;
            }
            self.step();
        }
        panic!("request {req} on node {id} not completed");
    }

    fn persist(&mut self, id: u64, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.persist_high_water(r, at_least, epoch));
        self.wait(id, req)
    }

    fn load(&mut self, id: u64) -> Result<u64, DriverError> {
        let req = self.request(id, |d, r| d.load_high_water(r));
        self.wait(id, req)
    }

    /// No two leaderships (epochs) ever had overlapping serving intervals:
    /// a leadership serves from a report until its lease.
    fn assert_single_serving_leader(&self) {
        let mut intervals: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
        for n in self.nodes.values() {
            for &(at, r) in &n.reports {
                if r.role == Role::Leader && r.lease_until_ms > at {
                    let e = intervals.entry((r.epoch.hi, r.epoch.lo)).or_insert((at, 0));
                    e.0 = e.0.min(at);
                    e.1 = e.1.max(r.lease_until_ms);
                }
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
}

#[test]
fn elects_a_leader_with_a_lease_and_persists() {
    let mut c = Cluster::new(&[]);
    let (leader, report) = c.wait_leader();
    assert_eq!(report.leader, Some(leader));
    assert!(report.epoch.hi >= 1);
    assert_eq!(report.epoch.lo, leader);
    // The lease is bounded: at most ¾ of the election timeout from now.
    assert!(report.lease_until_ms <= c.clock.now() + 750);

    assert_eq!(c.load(leader), Ok(0));
    assert_eq!(c.persist(leader, 100, report.epoch), Ok(100));
    assert_eq!(c.persist(leader, 200, report.epoch), Ok(200));
    assert_eq!(
        c.persist(leader, 150, report.epoch),
        Ok(200),
        "never decreases"
    );
    assert_eq!(c.load(leader), Ok(200));
    assert_eq!(
        c.persist(leader, 1 << 46, report.epoch),
        Err(DriverError::OutOfRange(1 << 46))
    );

    let follower = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    assert_eq!(
        c.persist(follower, 300, report.epoch),
        Err(DriverError::NotLeader(Some(leader)))
    );
    assert_eq!(c.load(follower), Err(DriverError::NotLeader(Some(leader))));

    // Leases keep being extended while the cluster is healthy.
    let before = c.last_report(leader).unwrap().lease_until_ms;
    c.run_for(2_000);
    let after = c.last_report(leader).unwrap();
    assert_eq!(after.epoch, report.epoch);
    assert!(after.lease_until_ms > before + 1_500);
    c.assert_single_serving_leader();
}

#[test]
fn fails_over_fences_the_old_epoch_and_rejoins() {
    let mut c = Cluster::new(&[]);
    let (old, old_report) = c.wait_leader();
    assert_eq!(c.persist(old, 500, old_report.epoch), Ok(500));
    assert_eq!(c.persist(old, 700, old_report.epoch), Ok(700));

    c.kill(old);
    let (new, new_report) = c.wait_leader();
    assert_ne!(new, old);
    assert!(
        new_report.epoch > old_report.epoch,
        "{new_report:?} vs {old_report:?}"
    );

    assert!(c.load(new).unwrap() >= 700);
    assert_eq!(
        c.persist(new, 900, old_report.epoch),
        Err(DriverError::Fenced(new_report.epoch))
    );
    assert_eq!(c.persist(new, 900, new_report.epoch), Ok(900));

    // The old node restarts from its storage and catches up as a follower.
    c.start(old, false);
    c.run_until(10_000, |c| {
        c.nodes[&old].driver.as_ref().unwrap().state().high_water == 900
            && c.last_report(old).is_some_and(|r| r.leader == Some(new))
    });
    assert_eq!(c.last_report(old).unwrap().role, Role::Follower);
    assert_eq!(c.serving_leader().map(|l| l.0), Some(new));
    c.assert_single_serving_leader();
}

#[test]
fn partitioned_leader_lease_expires_before_the_new_one_begins() {
    let mut c = Cluster::new(&[]);
    let (old, old_report) = c.wait_leader();
    assert_eq!(c.persist(old, 10, old_report.epoch), Ok(10));
    c.isolated.insert(old);
    let cut_at = c.clock.now();
    let (new, new_report) = c.wait_leader();
    assert_ne!(new, old);
    assert!(new_report.epoch > old_report.epoch);

    let old_lease_end = c.nodes[&old]
        .reports
        .iter()
        .filter(|(_, r)| r.epoch == old_report.epoch && r.role == Role::Leader)
        .map(|(_, r)| r.lease_until_ms)
        .max()
        .unwrap();
    let new_serving_from = c.nodes[&new]
        .reports
        .iter()
        .find(|(at, r)| r.epoch == new_report.epoch && r.lease_until_ms > *at)
        .map(|(at, _)| *at)
        .unwrap();
    assert!(
        old_lease_end <= cut_at + 750,
        "old lease not extended after the cut"
    );
    assert!(
        old_lease_end < new_serving_from,
        "old lease until {old_lease_end}, new leader serves from {new_serving_from}"
    );
    // The deposed leader is fenced in the replicated state too.
    assert_eq!(
        c.persist(new, 20, old_report.epoch),
        Err(DriverError::Fenced(new_report.epoch))
    );
    c.isolated.clear();
    c.run_for(3_000);
    c.assert_single_serving_leader();
    assert_eq!(
        c.serving_leader().map(|l| l.1.epoch),
        Some(new_report.epoch)
    );
}

#[test]
fn snapshots_bound_the_log_and_a_node_resumes_from_them() {
    let mut c = Cluster::new(&[("snapshot-every", "10")]);
    let (leader, report) = c.wait_leader();
    for i in 1..=60 {
        assert_eq!(c.persist(leader, i * 10, report.epoch), Ok(i * 10));
    }
    c.run_for(500);
    for id in c.ids.clone() {
        let logs = c.storages[&id].count_prefix(b"log/");
        assert!(logs <= 25, "node {id} keeps {logs} log entries");
    }
    let follower = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    c.kill(follower);
    c.start(follower, false);
    assert_eq!(
        c.nodes[&follower]
            .driver
            .as_ref()
            .unwrap()
            .state()
            .high_water,
        600
    );
    c.kill(leader);
    let (_, r) = c.wait_leader();
    assert!(r.epoch > report.epoch);
    c.assert_single_serving_leader();
}

#[test]
fn rejects_bad_configuration() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let ids = [1, 2, 3];
    let bad = |opts: &[(&str, &str)]| {
        let opts: Vec<_> = opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match RaftDriver::init(host.clone(), &config(1, &ids, true, 0, &opts)) {
            Err(DriverError::InvalidConfig(msg)) => msg,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted {opts:?}"),
        }
    };
    assert!(bad(&[("electon-timeout-ms", "5")]).contains("electon-timeout-ms"));
    assert!(bad(&[("heartbeat-ms", "900")]).contains("heartbeat-ms"));
    assert!(bad(&[("snapshot-every", "x")]).contains("snapshot-every"));
    let err = RaftDriver::init(host.clone(), &config(4, &ids, false, 0, &[]));
    assert!(matches!(err, Err(DriverError::InvalidConfig(m)) if m.contains("peers")));
}

#[test]
fn single_node_cluster_leads_forever() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let mut d = RaftDriver::init(host.clone(), &config(1, &[1], true, 0, &[])).unwrap();
    for t in 1..3_000 {
        host.clock.set(t);
        d.on_tick(t);
    }
    let r = host.last_report().unwrap();
    assert_eq!((r.role, r.lease_until_ms), (Role::Leader, u64::MAX));
    d.persist_high_water(1, 42, r.epoch);
    for t in 3_000..3_100 {
        host.clock.set(t);
        d.on_tick(t);
    }
    assert_eq!(host.take_completion(1), Some(Ok(42)));
}

#[test]
fn a_new_leader_accepts_writes_before_its_first_quorum_ack_by_retrying() {
    let mut c = Cluster::new(&[]);
    let (old, old_report) = c.wait_leader();
    assert_eq!(c.persist(old, 5, old_report.epoch), Ok(5));
    c.kill(old);
    // Ask the moment openraft says Leader, before any quorum acknowledged it.
    c.run_until(20_000, |c| {
        c.ids.iter().any(|&id| {
            id != old
                && c.last_report(id)
                    .is_some_and(|r| r.role == Role::Leader && r.lease_until_ms == 0)
        })
    });
    let (new, r) = c
        .ids
        .iter()
        .filter(|&&id| id != old)
        .find_map(|&id| {
            c.last_report(id)
                .filter(|r| r.role == Role::Leader)
                .map(|r| (id, r))
        })
        .unwrap();
    assert_eq!(r.lease_until_ms, 0, "asked before the first quorum ack");
    assert_ne!(new, old);
    assert_eq!(c.persist(new, 6, r.epoch), Ok(6));
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut c = Cluster::new(&[]);
        let (l, r) = c.wait_leader();
        c.persist(l, 1, r.epoch).unwrap();
        c.kill(l);
        c.wait_leader();
        c.run_for(500);
        c.ids
            .iter()
            .map(|id| c.nodes[id].reports.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
