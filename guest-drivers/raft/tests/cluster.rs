//! Deterministic simulation of a cluster of the raft driver core (3 nodes,
//! more when a test adds some), on the SDK's simulated cluster
//! (`tsohost_guest_sdk::sim::cluster`): in-memory storage and network, one
//! virtual clock, 1 ms message latency.

use std::rc::Rc;

use tsohost_driver_raft::core::RaftDriver;
use tsohost_guest_sdk::sim::cluster::{
    DriverFns, SimCluster, config, options, peers, request_frames,
};
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{DriverError, NodeId, Role};

type Cluster = SimCluster<RaftDriver>;

const FNS: DriverFns<RaftDriver> = tsohost_driver_raft::SIM;

/// Nodes 1, 2 and 3 (1 bootstraps), counting the request frames each node
/// delivers to each other.
fn new_cluster(opts: &[(&str, &str)]) -> Cluster {
    let mut c = SimCluster::new(FNS, &[1, 2, 3], opts);
    c.count_message = request_frames;
    c
}

/// The high water node `id`'s live instance has applied.
fn high_water(c: &Cluster, id: NodeId) -> u64 {
    c.driver(id).state().high_water
}

/// Request frames `from` has delivered to `to` so far.
fn requests(c: &Cluster, from: NodeId, to: NodeId) -> u64 {
    c.delivered(from, to)
}

#[test]
fn elects_a_leader_with_a_lease_and_persists() {
    let mut c = new_cluster(&[]);
    let (leader, report) = c.wait_leader();
    assert_eq!(report.leader, Some(leader));
    assert!(report.epoch.hi >= 1);
    assert_eq!(report.epoch.lo, leader);
    // The lease is bounded: at most ¾ of the election timeout from now.
    assert!(report.lease_until_ms <= c.clock.now() + 750);

    c.check_leader_basics(leader, report.epoch);

    // Leases keep being extended while the cluster is healthy.
    let before = c.last_report(leader).unwrap().lease_until_ms;
    c.run_for(2_000);
    let after = c.last_report(leader).unwrap();
    assert_eq!(after.epoch, report.epoch);
    assert!(after.lease_until_ms > before + 1_500);
    c.assert_single_serving_leader_host_model();
}

#[test]
fn fails_over_fences_the_old_epoch_and_rejoins() {
    let mut c = new_cluster(&[]);
    c.check_failover(high_water);
    c.assert_single_serving_leader_host_model();
}

#[test]
fn partitioned_leader_lease_expires_before_the_new_one_begins() {
    let mut c = new_cluster(&[]);
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
    c.assert_single_serving_leader_host_model();
    assert_eq!(
        c.serving_leader().map(|l| l.1.epoch),
        Some(new_report.epoch)
    );
}

#[test]
fn snapshots_bound_the_log_and_a_node_resumes_from_them() {
    let mut c = new_cluster(&[("snapshot-every", "10")]);
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
    assert_eq!(high_water(&c, follower), 600);
    c.kill(leader);
    let (_, r) = c.wait_leader();
    assert!(r.epoch > report.epoch);
    c.assert_single_serving_leader_host_model();
}

#[test]
fn rejects_bad_configuration() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let ids = [1, 2, 3];
    let bad = |opts: &[(&str, &str)]| {
        let opts = options(opts);
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
    let mut c = new_cluster(&[]);
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
        let mut c = new_cluster(&[]);
        let (l, r) = c.wait_leader();
        c.persist(l, 1, r.epoch).unwrap();
        c.kill(l);
        let (l, _) = c.wait_leader();
        c.transfer(l, None).unwrap();
        c.run_for(500);
        c.ids
            .iter()
            .map(|id| c.nodes[id].reports.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// The other nodes of the original three, in id order.
fn others(c: &Cluster, id: u64) -> Vec<u64> {
    c.ids
        .iter()
        .copied()
        .filter(|&i| i != id && i <= 3)
        .collect()
}

#[test]
fn reports_the_membership_once_known_and_only_on_change() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    assert_eq!(c.persist(leader, 1, r.epoch), Ok(1));
    c.run_for(2_000);
    for id in [1, 2, 3] {
        assert_eq!(
            *c.nodes[&id].host.memberships.borrow(),
            vec![peers(&[1, 2, 3])],
            "node {id}"
        );
    }
}

#[test]
fn a_new_node_joins_catches_up_from_a_snapshot_and_can_lead() {
    let mut c = new_cluster(&[("snapshot-every", "10")]);
    let (leader, r) = c.wait_leader();
    for i in 1..=30 {
        assert_eq!(c.persist(leader, i * 10, r.epoch), Ok(i * 10));
    }
    c.run_for(200);
    assert!(c.storages[&leader].count_prefix(b"log/") < 30, "log purged");

    // Empty storage, no bootstrap: it starts and waits, reporting no
    // membership and never campaigning.
    c.add_node(4);
    assert_eq!(c.member_ids(4), None);
    c.run_for(3_000);
    assert_eq!(c.member_ids(4), None);
    assert_eq!(
        c.last_report(4).map(|r| (r.role, r.leader)),
        Some((Role::Follower, None))
    );
    assert_eq!(
        c.serving_leader(),
        Some((leader, c.last_report(leader).unwrap()))
    );
    assert_eq!((1..=3).map(|id| requests(&c, 4, id)).sum::<u64>(), 0);

    assert_eq!(c.change_to(leader, &[1, 2, 3, 4]), Ok(0));
    assert_eq!(c.member_ids(leader), Some(vec![1, 2, 3, 4]));
    assert_eq!(c.persist(leader, 1_000, r.epoch), Ok(1_000));
    c.run_until(1_000, |c| {
        high_water(c, 4) == 1_000 && c.member_ids(4) == Some(vec![1, 2, 3, 4])
    });
    let first_entry = [b"log/".as_slice(), &1u64.to_be_bytes()].concat();
    assert_eq!(
        c.storages[&4].count_prefix(&first_entry),
        0,
        "node 4 started from the leader's snapshot, not from the first entry"
    );

    // The same membership again changes nothing and reports nothing.
    let reported = c.nodes[&leader].host.memberships.borrow().len();
    assert_eq!(c.change_to(leader, &[4, 3, 2, 1]), Ok(0));
    assert_eq!(c.nodes[&leader].host.memberships.borrow().len(), reported);

    // A voter now: it can lead, above everything persisted before it joined.
    assert_eq!(c.transfer(leader, Some(4)), Ok(4));
    let (new, r4) = c.wait_leader();
    assert_eq!(new, 4);
    assert!(r4.epoch > r.epoch);
    assert_eq!(c.load(4), Ok(1_000));
    assert_eq!(c.persist(4, 1_100, r4.epoch), Ok(1_100));
    c.run_for(1_000);
    c.assert_single_serving_leader_host_model();
}

#[test]
fn a_removed_follower_is_no_longer_contacted_nor_counted() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    let [keep, gone] = others(&c, leader)[..] else {
        unreachable!()
    };
    assert_eq!(c.persist(leader, 10, r.epoch), Ok(10));
    let mut remaining = vec![leader, keep];
    remaining.sort();
    assert_eq!(c.change_to(leader, &remaining), Ok(0));
    assert_eq!(c.member_ids(leader), Some(remaining.clone()));
    c.run_until(1_000, |c| c.member_ids(keep) == Some(remaining.clone()));
    assert_eq!(c.persist(leader, 20, r.epoch), Ok(20));

    // Nobody sends it requests any more (no replication, no votes).
    c.run_for(300);
    let sent = (requests(&c, leader, gone), requests(&c, keep, gone));
    assert!(sent.0 > 0);
    c.run_for(3_000);
    assert_eq!((requests(&c, leader, gone), requests(&c, keep, gone)), sent);

    // The leader and `keep` are the whole quorum: cut `keep` off and the
    // lease lapses, although `gone` is alive and connected.
    c.isolated.insert(keep);
    c.run_for(2_000);
    assert_eq!(c.serving_leader(), None);
    c.isolated.clear();
    let (back, _) = c.wait_leader();
    assert_ne!(back, gone);
    assert!(
        c.nodes[&gone]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader || rep.epoch < r.epoch)
    );
    c.assert_single_serving_leader_host_model();
}

#[test]
fn removing_the_leader_hands_leadership_over() {
    let mut c = new_cluster(&[]);
    let (old, r) = c.wait_leader();
    assert_eq!(c.persist(old, 10, r.epoch), Ok(10));
    let rest = others(&c, old);
    assert_eq!(c.change_to(old, &rest), Ok(0));

    let (new, nr) = c.wait_leader();
    assert!(rest.contains(&new));
    assert!(nr.epoch > r.epoch, "{nr:?} vs {r:?}");
    let stepped = c.last_report(old).unwrap();
    assert_eq!((stepped.role, stepped.lease_until_ms), (Role::Follower, 0));
    assert!(
        c.nodes[&old]
            .host
            .logs
            .borrow()
            .iter()
            .any(|(_, line)| line.contains(&format!("over to node {new}"))),
        "the driver, not openraft, handed over"
    );
    assert!(matches!(
        c.persist(old, 30, r.epoch),
        Err(DriverError::NotLeader(_))
    ));
    c.run_until(1_000, |c| {
        rest.iter()
            .all(|&id| c.member_ids(id) == Some(rest.clone()))
    });
    assert!(c.load(new).unwrap() >= 10);
    assert_eq!(c.persist(new, 20, nr.epoch), Ok(20));

    // The removed node never leads again.
    c.run_for(5_000);
    assert!(
        c.nodes[&old]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader || rep.epoch == r.epoch)
    );
    assert_eq!(c.serving_leader().map(|l| l.0), Some(new));
    c.assert_single_serving_leader_host_model();
}

#[test]
fn transfers_leadership_to_a_named_node_and_to_the_most_up_to_date() {
    let mut c = new_cluster(&[]);
    let (first, r1) = c.wait_leader();
    assert_eq!(c.persist(first, 100, r1.epoch), Ok(100));
    let named = *others(&c, first).last().unwrap();

    let handed_at = c.clock.now();
    assert_eq!(c.transfer(first, Some(named)), Ok(named));
    // It stopped serving in the very call that handed over.
    let (at, stepped) = *c.nodes[&first]
        .reports
        .iter()
        .find(|(at, rep)| *at >= handed_at && rep.role != Role::Leader)
        .unwrap();
    assert_eq!(at, handed_at);
    assert_eq!(
        (stepped.leader, stepped.epoch, stepped.lease_until_ms),
        (None, r1.epoch, 0)
    );
    let (second, r2) = c.wait_leader();
    assert_eq!(second, named);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.last_report(first).unwrap().leader, Some(named));
    assert_eq!(c.load(second), Ok(100));
    assert_eq!(c.persist(second, 200, r2.epoch), Ok(200));
    assert_eq!(
        c.persist(first, 300, r1.epoch),
        Err(DriverError::NotLeader(Some(second)))
    );

    // With `none`: the voter whose log is furthest along, here the one
    // that was not cut off while the leader wrote.
    let [a, b] = others(&c, second)[..] else {
        unreachable!()
    };
    c.isolated.insert(a);
    assert_eq!(c.persist(second, 300, r2.epoch), Ok(300));
    assert_eq!(c.transfer(second, None), Ok(b));
    let (third, r3) = c.wait_leader();
    assert_eq!(third, b);
    assert!(r3.epoch > r2.epoch);
    assert_eq!(c.persist(third, 400, r3.epoch), Ok(400));
    c.isolated.clear();
    c.run_for(3_000);
    assert_eq!(c.serving_leader().map(|l| l.0), Some(third));
    c.assert_single_serving_leader_host_model();
}

#[test]
fn a_transfer_completes_with_whoever_takes_over_or_fails_if_nobody_can() {
    let mut c = new_cluster(&[]);
    let (first, r1) = c.wait_leader();
    let [a, b] = others(&c, first)[..] else {
        unreachable!()
    };
    // The target is down and the other voter cut off: nobody can take over.
    c.kill(a);
    c.isolated.insert(b);
    let outcome = c.transfer(first, Some(a));
    assert!(
        matches!(&outcome, Err(DriverError::Internal(m)) if m.contains("no leader emerged")),
        "{outcome:?}"
    );
    assert_eq!(c.last_report(first).unwrap().role, Role::Follower);
    // The handed-over leadership never serves again; the others elect.
    c.start(a, false);
    c.isolated.clear();
    let (second, r2) = c.wait_leader();
    assert_ne!(second, first);
    assert!(r2.epoch > r1.epoch);

    // The target is down but another voter is up: the transfer message
    // dropped that voter's lease, it campaigns once the silent leader's
    // heartbeats stop, and the request completes with it.
    let [x, y] = others(&c, second)[..] else {
        unreachable!()
    };
    c.kill(x);
    assert_eq!(c.transfer(second, Some(x)), Ok(y));
    let (third, r3) = c.wait_leader();
    assert_eq!(third, y);
    assert!(r3.epoch > r2.epoch);
    c.assert_single_serving_leader_host_model();
}

#[test]
fn membership_and_transfer_requests_are_checked() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    let follower = others(&c, leader)[0];
    let not_leader = Err(DriverError::NotLeader(Some(leader)));
    assert_eq!(c.change_to(follower, &[1, 2, 3]), not_leader);
    assert_eq!(c.transfer(follower, None), not_leader);

    let invalid = |outcome: Result<u64, DriverError>, needle: &str| match outcome {
        Err(DriverError::InvalidConfig(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("{other:?}"),
    };
    invalid(c.change_to(leader, &[]), "empty");
    invalid(c.change_to(leader, &[1, 2, 2]), "twice");
    let mut moved = peers(&[1, 2, 3]);
    moved[follower as usize - 1].address = "elsewhere".into();
    invalid(c.change(leader, &moved), "address");
    invalid(c.transfer(leader, Some(leader)), "already leads");
    invalid(c.transfer(leader, Some(9)), "not a voter");

    // Nothing changed.
    c.run_for(1_000);
    assert_eq!(
        c.serving_leader().map(|l| (l.0, l.1.epoch)),
        Some((leader, r.epoch))
    );
    assert_eq!(c.member_ids(leader), Some(vec![1, 2, 3]));
    assert_eq!(c.change_to(leader, &[1, 2, 3]), Ok(0));
}

#[test]
fn a_single_voter_has_nobody_to_hand_over_to() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let mut d = RaftDriver::init(host.clone(), &config(1, &[1], true, 0, &[])).unwrap();
    for t in 1..3_000 {
        host.clock.set(t);
        d.on_tick(t);
    }
    d.transfer_leadership(1, None);
    d.transfer_leadership(2, Some(2));
    d.change_membership(3, &peers(&[1]));
    d.change_membership(4, &[]);
    for t in 3_000..3_100 {
        host.clock.set(t);
        d.on_tick(t);
    }
    assert!(matches!(
        host.take_completion(1),
        Some(Err(DriverError::InvalidConfig(m))) if m.contains("only voter")
    ));
    assert!(matches!(
        host.take_completion(2),
        Some(Err(DriverError::InvalidConfig(m))) if m.contains("not a voter")
    ));
    assert_eq!(host.take_completion(3), Some(Ok(0)));
    assert!(matches!(
        host.take_completion(4),
        Some(Err(DriverError::InvalidConfig(_)))
    ));
    let r = host.last_report().unwrap();
    assert_eq!((r.role, r.lease_until_ms), (Role::Leader, u64::MAX));
    assert_eq!(host.last_membership(), Some(peers(&[1])));

    // Started without peers it is a single-node driver: no membership.
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let mut d = RaftDriver::init(host.clone(), &config(1, &[], true, 0, &[])).unwrap();
    for t in 1..3_000 {
        host.clock.set(t);
        d.on_tick(t);
    }
    assert_eq!(host.last_report().map(|r| r.role), Some(Role::Leader));
    assert_eq!(host.last_membership(), None);
}
