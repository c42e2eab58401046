//! Deterministic simulation of clusters of the paxos driver core, on the
//! SDK's simulated cluster (`tsohost_guest_sdk::sim::cluster`): in-memory
//! storage and network, one virtual clock, 1 ms message latency.

use std::rc::Rc;

use tsohost_driver_paxos::core::PaxosDriver;
use tsohost_guest_sdk::sim::cluster::{
    DriverFns, SimCluster, config, options, peers, serving_interval,
};
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{DriverError, NodeId, Role};

type Cluster = SimCluster<PaxosDriver>;

const FNS: DriverFns<PaxosDriver> = tsohost_driver_paxos::SIM;

fn new_cluster(opts: &[(&str, &str)]) -> Cluster {
    SimCluster::new(FNS, &[1, 2, 3], opts)
}

fn high_water(c: &Cluster, id: NodeId) -> u64 {
    c.driver(id).state().high_water
}

#[test]
fn elects_a_leader_with_a_lease_and_persists() {
    let mut c = new_cluster(&[]);
    let (leader, report) = c.wait_leader();
    assert_eq!(report.leader, Some(leader));
    assert_eq!(report.epoch.hi >> 32, 1, "configuration 1");
    assert_eq!(report.epoch.lo & 0xffff_ffff, leader, "the ballot's pid");
    // The lease is bounded: at most half the election timeout from now.
    assert!(report.lease_until_ms <= c.clock.now() + 500);

    c.check_leader_basics(leader, report.epoch);
    let follower = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    assert_eq!(
        c.last_report(follower).map(|r| (r.role, r.leader)),
        Some((Role::Follower, Some(leader)))
    );

    // Leases keep being extended while the cluster is healthy, and every
    // node applies what was decided.
    let before = c.last_report(leader).unwrap().lease_until_ms;
    c.run_for(2_000);
    let after = c.last_report(leader).unwrap();
    assert_eq!(after.epoch, report.epoch);
    assert!(after.lease_until_ms > before + 1_500);
    for id in c.ids.clone() {
        assert_eq!(high_water(&c, id), 200, "node {id}");
        assert_eq!(
            c.nodes[&id].host.last_membership(),
            Some(peers(&[1, 2, 3])),
            "node {id}"
        );
    }
    c.assert_single_serving_leader();
}

#[test]
fn fails_over_fences_the_old_epoch_and_rejoins() {
    let mut c = new_cluster(&[]);
    let (old, new, epoch) = c.check_failover(high_water);
    assert_eq!(c.persist(new, 1000, epoch), Ok(1000));
    c.run_until(1_000, |c| high_water(c, old) == 1000);
    c.assert_single_serving_leader();
}

#[test]
fn load_is_linearizable_across_repeated_failovers() {
    let mut c = new_cluster(&[]);
    let mut completed = 0;
    for round in 0..3u64 {
        let (leader, r) = c.wait_leader();
        assert!(c.load(leader).unwrap() >= completed, "round {round}");
        for i in 1..=5 {
            let v = (round * 10 + i) * 1000;
            let hw = c.persist(leader, v, r.epoch).unwrap();
            assert!(hw >= v && hw >= completed);
            completed = hw;
        }
        c.kill(leader);
        let (next, _) = c.wait_leader();
        assert_eq!(c.load(next), Ok(completed), "round {round}");
        c.start(leader, false);
    }
    c.run_for(3_000);
    c.assert_single_serving_leader();
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

    let reports = c.all_reports();
    let (_, old_lease_end) = serving_interval(&reports, old_report.epoch).unwrap();
    let (new_serving_from, _) = serving_interval(&reports, new_report.epoch).unwrap();
    eprintln!(
        "cut at {cut_at}, old lease until {old_lease_end}, new leader serves from \
         {new_serving_from}"
    );
    assert!(
        old_lease_end <= cut_at + 500,
        "old lease not extended after the cut"
    );
    assert!(
        old_lease_end < new_serving_from,
        "old lease until {old_lease_end}, new leader serves from {new_serving_from}"
    );
    // The deposed leader cannot persist: no quorum decides its entry.
    let stale = c.request(old, |d, r| d.persist_high_water(r, 20, old_report.epoch));
    assert_eq!(
        c.persist(new, 20, old_report.epoch),
        Err(DriverError::Fenced(new_report.epoch))
    );
    assert_eq!(c.wait(old, stale), Err(DriverError::NotLeader(None)));
    // After healing, the old leader follows the new one.
    c.isolated.clear();
    c.run_until(5_000, |c| {
        c.last_report(old)
            .is_some_and(|r| r.role == Role::Follower && r.leader == Some(new))
    });
    c.run_for(2_000);
    c.assert_single_serving_leader();
    assert_eq!(
        c.serving_leader().map(|l| l.1.epoch),
        Some(new_report.epoch)
    );
    assert_eq!(c.load(new), Ok(10));
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
        let logs = c.storages[&id].count_prefix(b"op/log/");
        assert!(logs <= 12, "node {id} keeps {logs} log entries");
        let (decided, compacted) = c.driver(id).log_indexes().unwrap();
        assert!(
            decided >= 60 && compacted >= 50,
            "node {id}: {decided} {compacted}"
        );
        assert!(
            c.storages[&id].len() < 25,
            "node {id}: {} keys",
            c.storages[&id].len()
        );
    }
    let follower = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    c.kill(follower);
    c.start(follower, false);
    assert_eq!(high_water(&c, follower), 600);
    c.kill(leader);
    let (new, r) = c.wait_leader();
    assert!(r.epoch > report.epoch);
    assert_eq!(c.load(new), Ok(600));
    c.assert_single_serving_leader();
}

#[test]
fn without_compaction_the_log_grows() {
    let mut c = new_cluster(&[("snapshot-every", "0")]);
    let (leader, report) = c.wait_leader();
    for i in 1..=30 {
        c.persist(leader, i, report.epoch).unwrap();
    }
    c.run_for(300);
    assert!(c.storages[&leader].count_prefix(b"op/log/") >= 30);
}

#[test]
fn reconfiguration_adds_a_fourth_node_and_removes_one() {
    let mut c = new_cluster(&[]);
    let (leader, r1) = c.wait_leader();
    assert_eq!(c.persist(leader, 1_000, r1.epoch), Ok(1_000));

    // Node 4 starts empty and waits to be told its configuration.
    c.peers = vec![1, 2, 3, 4];
    c.start(4, false);
    c.run_for(300);
    assert!(c.driver(4).membership().is_none());

    let req = c.request(leader, |d, r| d.change_membership(r, &peers(&[1, 2, 3, 4])));
    assert_eq!(c.wait(leader, req), Ok(0));
    c.run_until(5_000, |c| {
        c.ids
            .iter()
            .all(|id| c.driver(*id).membership().is_some_and(|m| m.config_id == 2))
    });
    assert_eq!(
        high_water(&c, 4),
        1_000,
        "the new node starts from the base state"
    );
    assert_eq!(
        c.nodes[&4].host.last_membership(),
        Some(peers(&[1, 2, 3, 4]))
    );

    let (l2, r2) = c.wait_leader();
    assert!(r2.epoch > r1.epoch, "configuration 2 ballots are greater");
    assert_eq!(r2.epoch.hi >> 32, 2);
    assert_eq!(c.load(l2), Ok(1_000));
    assert_eq!(c.persist(l2, 2_000, r2.epoch), Ok(2_000));
    assert_eq!(
        c.persist(l2, 2_500, r1.epoch),
        Err(DriverError::Fenced(r2.epoch))
    );
    c.run_until(2_000, |c| high_water(c, 4) == 2_000);

    // Remove a node that does not lead.
    let gone = [1, 2, 3, 4].into_iter().find(|&i| i != l2).unwrap();
    let keep: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone).collect();
    let req = c.request(l2, |d, r| d.change_membership(r, &peers(&keep)));
    assert_eq!(c.wait(l2, req), Ok(0));
    let (l3, r3) = c.wait_leader();
    assert!(r3.epoch > r2.epoch);
    assert_ne!(l3, gone);
    assert_eq!(c.load(l3), Ok(2_000));
    assert_eq!(c.persist(l3, 3_000, r3.epoch), Ok(3_000));
    c.run_until(3_000, |c| {
        keep.iter().all(|&id| high_water(c, id) == 3_000)
            && c.driver(gone)
                .membership()
                .is_some_and(|m| m.config_id == 3)
    });
    assert_eq!(c.nodes[&gone].host.last_membership(), Some(peers(&keep)));
    assert_eq!(c.last_report(gone).map(|r| r.role), Some(Role::Follower));
    assert_eq!(c.storages[&gone].count_prefix(b"op/"), 0);

    // The removed node restarts idle; the others survive losing one more.
    c.kill(gone);
    c.start(gone, false);
    c.kill(l3);
    let (l4, r4) = c.wait_leader();
    assert_ne!(l4, gone);
    assert!(r4.epoch > r3.epoch);
    assert_eq!(c.load(l4), Ok(3_000));
    c.run_for(2_000);
    c.assert_single_serving_leader();
}

/// A leader that fails after its followers accepted the stop-sign but
/// before it was decided: the next leader of the old configuration
/// re-syncs logs whose accepted index counts the stop-sign's slot (one past
/// the stored entries), then finishes the reconfiguration.
#[test]
fn a_leader_lost_mid_reconfiguration_is_replaced_and_the_change_completes() {
    let mut c = new_cluster(&[]);
    let (leader, r1) = c.wait_leader();
    assert_eq!(c.persist(leader, 1_000, r1.epoch), Ok(1_000));
    c.peers = vec![1, 2, 3, 4];
    c.start(4, false);
    let _req = c.request(leader, |d, r| d.change_membership(r, &peers(&[1, 2, 3, 4])));
    let followers: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    c.run_until(1_000, |c| {
        followers
            .iter()
            .all(|id| c.storages[id].count_prefix(b"op/stopsign") == 1)
    });
    c.kill(leader);
    c.run_until(10_000, |c| {
        followers
            .iter()
            .chain(&[4])
            .all(|&id| c.driver(id).membership().is_some_and(|m| m.config_id == 2))
    });
    let (l2, r2) = c.wait_leader();
    assert_ne!(l2, leader);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.load(l2), Ok(1_000));
    c.start(leader, false);
    c.run_until(5_000, |c| {
        c.driver(leader)
            .membership()
            .is_some_and(|m| m.config_id == 2)
    });
    c.run_for(1_000);
    c.assert_single_serving_leader();
}

#[test]
fn membership_changes_are_refused_where_they_cannot_be_made() {
    let mut c = new_cluster(&[]);
    let (leader, _) = c.wait_leader();
    let follower = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    let req = c.request(follower, |d, r| d.change_membership(r, &peers(&[1, 2])));
    assert_eq!(
        c.wait(follower, req),
        Err(DriverError::NotLeader(Some(leader)))
    );
    let req = c.request(leader, |d, r| d.change_membership(r, &peers(&[1])));
    assert!(matches!(
        c.wait(leader, req),
        Err(DriverError::InvalidConfig(_))
    ));
    let req = c.request(leader, |d, r| d.change_membership(r, &peers(&[1, 5000])));
    assert!(matches!(
        c.wait(leader, req),
        Err(DriverError::InvalidConfig(_))
    ));
    let req = c.request(leader, |d, r| d.change_membership(r, &peers(&[1, 2, 3])));
    assert_eq!(c.wait(leader, req), Ok(0), "unchanged membership");
}

/// A node that first hears the cluster after a node with a smaller id was
/// elected starts its ballot leader election on its own, higher initial
/// ballot (omnipaxos starts every fresh node as its own leader candidate).
/// The followers' lease gates drop its Prepares while the leader is
/// healthy, so it must not stay a candidate: the leader, told that it is
/// outranked, takes a higher ballot, and the late node follows it.
#[test]
fn a_late_node_with_a_higher_id_follows_the_leader_elected_without_it() {
    let mut c = new_cluster(&[]);
    c.isolated.insert(3);
    let (leader, first) = c.wait_leader();
    assert_ne!(leader, 3);
    assert_eq!(c.persist(leader, 300, first.epoch), Ok(300));
    // Node 3 starts now, bootstrapping configuration 1 like every founder
    // of a real cluster (`--bootstrap` on all of them).
    // It times out on its own before it hears anyone, and takes its own
    // ballot.
    c.kill(3);
    c.start(3, true);
    c.run_for(2_000);
    c.isolated.clear();
    c.run_until(10_000, |c| {
        high_water(c, 3) >= 300 && c.last_report(3).is_some_and(|r| r.role == Role::Follower)
    });
    let (now_leading, report) = c.wait_leader();
    assert_eq!(
        c.last_report(3).map(|r| (r.role, r.leader)),
        Some((Role::Follower, Some(now_leading)))
    );
    assert_eq!(c.load(now_leading), Ok(300));
    assert_eq!(c.persist(now_leading, 400, report.epoch), Ok(400));
    c.run_until(1_000, |c| high_water(c, 3) == 400);
    assert_eq!(high_water(&c, 3), 400);
    // The leader re-prepared under a higher ballot while its old lease
    // still ran: it reported the end of the old leadership first, so its
    // host stopped serving it (the lease-only reading would overlap the two
    // leaderships of the same node).
    c.assert_single_serving_leader_host_model();
}

#[test]
fn transfers_leadership_to_a_named_follower() {
    let mut c = new_cluster(&[]);
    let (old, r1) = c.wait_leader();
    assert_eq!(c.persist(old, 50, r1.epoch), Ok(50));
    let target = c.ids.iter().copied().find(|&i| i != old).unwrap();
    let req = c.request(old, |d, r| d.transfer_leadership(r, Some(target)));
    assert_eq!(c.wait(old, req), Ok(target));
    assert_ne!(c.last_report(old).map(|r| r.role), Some(Role::Leader));
    let (new, r2) = c.wait_leader();
    assert_eq!(new, target);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.load(new), Ok(50));
    c.run_for(2_000);
    assert_eq!(c.serving_leader().map(|l| l.0), Some(target));
    c.assert_single_serving_leader();
}

#[test]
fn rejects_bad_configuration() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let ids = [1, 2, 3];
    let bad = |id: NodeId, ids: &[NodeId], opts: &[(&str, &str)]| {
        let opts = options(opts);
        match PaxosDriver::init(host.clone(), &config(id, ids, true, 0, &opts)) {
            Err(DriverError::InvalidConfig(msg)) => msg,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted {id} {ids:?} {opts:?}"),
        }
    };
    assert!(bad(1, &ids, &[("electon-timeout-ms", "5")]).contains("electon-timeout-ms"));
    assert!(bad(1, &ids, &[("heartbeat-ms", "900")]).contains("heartbeat-ms"));
    assert!(bad(1, &ids, &[("snapshot-every", "x")]).contains("snapshot-every"));
    assert!(bad(4, &ids, &[]).contains("peers"));
    assert!(bad(0, &[0, 1, 2], &[]).contains("node id 0"));
    assert!(bad(1, &[1, 2, 1 << 33], &[]).contains("out of range"));
    assert!(
        host.storage.is_empty(),
        "nothing written by a rejected init"
    );
}

#[test]
fn durable_state_is_synced_before_messages_leave() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    let before: Vec<u64> = c
        .ids
        .iter()
        .map(|id| c.storages[id].synced_writes())
        .collect();
    assert_eq!(c.persist(leader, 7, r.epoch), Ok(7));
    for (i, id) in c.ids.clone().into_iter().enumerate() {
        assert!(
            c.storages[&id].synced_writes() > before[i],
            "node {id} accepted without a synced write"
        );
        assert!(c.nodes[&id].host.storage_get_key(b"op/promise").is_some());
        assert!(c.nodes[&id].host.storage_get_key(b"membership").is_some());
    }
}

#[test]
fn a_single_voter_leads_alone_then_grows_to_three() {
    let mut c = SimCluster::new(FNS, &[1], &[]);
    let (_, r1) = c.wait_leader();
    assert_eq!(r1.lease_until_ms, u64::MAX, "nothing else can lead");
    assert_eq!(c.persist(1, 40, r1.epoch), Ok(40));
    assert_eq!(c.persist(1, 30, r1.epoch), Ok(40));
    assert_eq!(c.load(1), Ok(40));
    let req = c.request(1, |d, r| d.transfer_leadership(r, None));
    assert!(matches!(c.wait(1, req), Err(DriverError::InvalidConfig(_))));

    // A new instance takes a new generation: a greater epoch, the old one
    // fenced, the state kept.
    c.kill(1);
    c.start(1, false);
    let (_, r2) = c.wait_leader();
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.load(1), Ok(40));
    assert_eq!(
        c.persist(1, 50, r1.epoch),
        Err(DriverError::Fenced(r2.epoch))
    );

    c.peers = vec![1, 2, 3];
    c.start(2, false);
    c.start(3, false);
    let req = c.request(1, |d, r| d.change_membership(r, &peers(&[1, 2, 3])));
    assert_eq!(c.wait(1, req), Ok(0));
    assert_ne!(c.last_report(1).map(|r| r.role), Some(Role::Leader));
    let (l, r3) = c.wait_leader();
    assert!(r3.epoch > r2.epoch);
    assert_eq!(c.load(l), Ok(40));
    assert_eq!(c.persist(l, 60, r3.epoch), Ok(60));
    c.run_until(2_000, |c| {
        [1, 2, 3].iter().all(|&id| high_water(c, id) == 60)
    });
}

#[test]
fn runs_are_deterministic() {
    let run = || {
        let mut c = new_cluster(&[]);
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

/// Reading a key of a simulated host's storage.
trait StorageGet {
    fn storage_get_key(&self, key: &[u8]) -> Option<Vec<u8>>;
}

impl StorageGet for SimHost {
    fn storage_get_key(&self, key: &[u8]) -> Option<Vec<u8>> {
        use tsohost_guest_sdk::port::Host;
        self.storage_get(key)
    }
}
