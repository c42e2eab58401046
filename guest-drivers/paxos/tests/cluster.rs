//! Deterministic simulations of the paxos driver core on the SDK's
//! simulated cluster (`tsohost_guest_sdk::sim::cluster`): what is
//! particular to paxos (ballots as epochs, configurations, the log's
//! layout). What every driver must do is the SDK's contract suite
//! (`tests/contract.rs`).

use std::rc::Rc;

use omnipaxos::messages::Message;
use tsohost_driver_paxos::core::PaxosDriver;
use tsohost_driver_paxos::wire::{self, Wire};
use tsohost_guest_sdk::rules::Timing;
use tsohost_guest_sdk::sim::cluster::{SimCluster, config, peers};
use tsohost_guest_sdk::sim::contract::ELECTION_TIMEOUT_MS;
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{Driver, DriverError, NodeId, Role};

type Cluster = SimCluster<PaxosDriver>;

fn new_cluster(opts: &[(&str, &str)]) -> Cluster {
    SimCluster::new(&[1, 2, 3], opts)
}

fn high_water(c: &Cluster, id: NodeId) -> u64 {
    c.applied(id)
}

#[test]
fn the_epoch_is_the_configuration_and_the_ballot() {
    let mut c = new_cluster(&[]);
    let (leader, report) = c.wait_leader();
    assert_eq!(report.epoch.hi >> 32, 1, "configuration 1");
    assert_eq!(report.epoch.lo & 0xffff_ffff, leader, "the ballot's pid");
}

/// A cut-off leader cannot persist (no quorum decides its entry): its
/// pending request fails with `not-leader` once it stops leading.
#[test]
fn a_cut_off_leaders_pending_persist_fails_with_not_leader() {
    let mut c = new_cluster(&[]);
    let (old, old_report) = c.wait_leader();
    assert_eq!(c.persist(old, 10, old_report.epoch), Ok(10));
    c.isolated.insert(old);
    let stale = c.request(old, |d, r| d.persist_high_water(r, 20, old_report.epoch));
    let (new, _) = c.wait_leader();
    assert_ne!(new, old);
    assert_eq!(c.wait(old, stale), Err(DriverError::NotLeader(None)));
    c.isolated.clear();
    c.run_for(2_000);
    assert_eq!(c.load(new), Ok(10));
}

#[test]
fn snapshots_compact_the_log() {
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
fn membership_changes_omnipaxos_cannot_make_are_refused() {
    let mut c = new_cluster(&[]);
    let (leader, _) = c.wait_leader();
    let invalid = |outcome: Result<u64, DriverError>, what: &str| {
        assert!(
            matches!(outcome, Err(DriverError::InvalidConfig(_))),
            "{what}: {outcome:?}"
        );
    };
    invalid(c.change_to(leader, &[1]), "shrinking to one voter");
    invalid(
        c.change_to(leader, &[1, 5000]),
        "a node id above MAX_NODE_ID (4096)",
    );
    assert_eq!(
        c.change_to(leader, &[1, 2, 3]),
        Ok(0),
        "unchanged membership"
    );
}

#[test]
fn rejects_node_ids_a_ballot_cannot_carry() {
    let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
    let bad = |id: NodeId, ids: &[NodeId]| match PaxosDriver::init(
        host.clone(),
        &config(id, ids, true, 0, &[]),
    ) {
        Err(DriverError::InvalidConfig(msg)) => msg,
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("accepted {id} {ids:?}"),
    };
    assert!(bad(0, &[0, 1, 2]).contains("node id 0"));
    assert!(bad(1, &[1, 2, 1 << 33]).contains("out of range"));
    assert!(
        host.storage.is_empty(),
        "nothing written by a rejected init"
    );
}

/// A single voter takes a new ballot on every start (a stored generation),
/// and growing to three starts a new configuration: the lone leadership
/// ends in the call and the next one is in a greater epoch.
#[test]
fn a_single_voter_takes_a_new_ballot_on_every_start_and_on_growing() {
    let mut c = Cluster::new(&[1], &[]);
    let (_, r1) = c.wait_leader();
    c.kill(1);
    c.start(1, false);
    let (_, r2) = c.wait_leader();
    assert!(r2.epoch > r1.epoch);
    assert_eq!(
        c.persist(1, 50, r1.epoch),
        Err(DriverError::Fenced(r2.epoch))
    );

    c.peers = vec![1, 2, 3];
    c.start(2, false);
    c.start(3, false);
    assert_eq!(c.change_to(1, &[1, 2, 3]), Ok(0));
    assert_ne!(c.last_report(1).map(|r| r.role), Some(Role::Leader));
    let (_, r3) = c.wait_leader();
    assert!(r3.epoch > r2.epoch);
    assert_eq!(r3.epoch.hi >> 32, 2, "configuration 2");
}

/// After the leader is killed, a new one serves once the followers' gates
/// open, `E` after the last lease heartbeat they acknowledged, and hardly
/// later: ballot leader election has agreed the leader is gone by then
/// (its rounds are `E / 5`), so the takeover held by the gate happens as it
/// opens. No election timer of its own adds to `E`, and ballots are totally
/// ordered, so no split vote either.
#[test]
fn a_killed_leader_is_replaced_as_soon_as_its_lease_lets_the_gates_open() {
    let took = new_cluster(&[]).failover_times(20, |_, _, _| {});
    assert_failover_at_the_gate(&took);
}

/// The same when one follower missed the leader's last heartbeats, so its
/// gate opens first: it takes over and prepares while the other's gate is
/// still closed. The refused Prepare is kept and taken up as that gate
/// opens; dropped, it would wait for the candidate's resend (`2 hb`).
#[test]
fn a_prepare_refused_by_a_closed_gate_is_taken_up_as_the_gate_opens() {
    let hb = Timing::DEFAULT.heartbeat_ms;
    let took = new_cluster(&[]).failover_times(20, |c, leader, round| {
        let followers: Vec<NodeId> = c.ids.iter().copied().filter(|&i| i != leader).collect();
        let early = followers[round % followers.len()];
        for _ in 0..2 * hb {
            drop_messages(c, leader, Some(early), |w| matches!(w, Wire::Lease { .. }));
            c.step();
        }
    });
    assert_failover_at_the_gate(&took);
}

/// No failover inside the gates (`E` after the last heartbeat, at most one
/// heartbeat before the kill), and none more than a few milliseconds after
/// them.
fn assert_failover_at_the_gate(took: &[u64]) {
    let e = ELECTION_TIMEOUT_MS;
    let hb = Timing::DEFAULT.heartbeat_ms;
    let (fastest, slowest) = (took[0], took[took.len() - 1]);
    assert!(
        fastest >= e - hb,
        "a new leader served {fastest} ms after the kill, inside the gates: {took:?}"
    );
    assert!(slowest <= e + 10, "slowest {slowest} ms: {took:?}");
}

/// A leader whose ballot-leader-election replies are lost for many rounds
/// (as when its process stalls past a round under load) while its lease
/// heartbeats still arrive keeps leading, and keeps its lease: its
/// followers' closed gates hold their takeovers back. Without the hold,
/// both followers elect themselves within two rounds, stop acknowledging
/// the leader's heartbeats, and it loses its lease and then its ballot.
#[test]
fn missed_election_rounds_do_not_unseat_a_leader_whose_lease_heartbeats_arrive() {
    let mut c = new_cluster(&[]);
    let (leader, report) = c.wait_leader();
    let lost_from = c.clock.now();
    for _ in 0..5_000 {
        drop_election_messages_from(&mut c, leader);
        c.step();
    }
    let now = c.clock.now();
    for (at, r) in c.all_reports() {
        assert!(
            r.epoch <= report.epoch,
            "a new epoch {:?} at {at} ms (ballot-leader-election replies lost since {lost_from})",
            r.epoch
        );
    }
    let last = c.last_report(leader).expect("reports");
    assert_eq!(last.role, Role::Leader);
    assert!(
        last.lease_until_ms > now,
        "the lease lapsed: {last:?} at {now}"
    );
    let held: u64 = c
        .ids
        .clone()
        .into_iter()
        .filter(|&id| id != leader)
        .map(|id| held_takeovers(&c, id))
        .sum();
    assert!(held > 0, "the followers never missed the leader");
    assert_eq!(c.persist(leader, 10, report.epoch), Ok(10));
}

/// Drop the ballot-leader-election messages `from` has sent, keeping the
/// rest of each payload.
fn drop_election_messages_from(c: &mut Cluster, from: NodeId) {
    drop_messages(c, from, None, |w| matches!(w, Wire::Paxos(Message::BLE(_))));
}

/// Drop the messages in flight from `from` (to `to`, or to anyone) that
/// `dropped` picks, keeping the rest of each payload.
fn drop_messages(
    c: &mut Cluster,
    from: NodeId,
    to: Option<NodeId>,
    dropped: impl Fn(&Wire) -> bool,
) {
    for (_, sender, receiver, payload) in c.in_flight.iter_mut() {
        if *sender != from || to.is_some_and(|to| to != *receiver) {
            continue;
        }
        let frames: Vec<_> = wire::decode(payload)
            .expect("a payload the driver sent")
            .iter()
            .filter(|p| !dropped(&p.wire))
            .map(wire::frame)
            .collect();
        *payload = wire::encode(&frames);
    }
}

/// The driver's `held_takeovers` statistic.
fn held_takeovers(c: &Cluster, id: NodeId) -> u64 {
    let stats = c.driver(id).stats();
    let held = stats.iter().find(|m| m.name == "held_takeovers");
    match held.map(|m| &m.value) {
        Some(tsohost_guest_sdk::MetricValue::Counter(n)) => *n,
        other => panic!("node {id}: held_takeovers is {other:?}"),
    }
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
