//! Deterministic simulations of the raft driver core on the SDK's simulated
//! cluster (`tsohost_guest_sdk::sim::cluster`): what is particular to raft.
//! What every driver must do is the SDK's contract suite (`tests/contract.rs`).

use std::rc::Rc;

use tsohost_driver_raft::core::RaftDriver;
use tsohost_guest_sdk::rules::Timing;
use tsohost_guest_sdk::sim::cluster::{SimCluster, config, peers, request_frames};
use tsohost_guest_sdk::sim::contract::ELECTION_TIMEOUT_MS;
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{Driver, DriverError, NodeId, Role};

type Cluster = SimCluster<RaftDriver>;

/// Nodes 1, 2 and 3 (1 bootstraps), counting the request frames each node
/// delivers to each other.
fn new_cluster(opts: &[(&str, &str)]) -> Cluster {
    let mut c = SimCluster::new(&[1, 2, 3], opts);
    c.count_message = request_frames;
    c
}

/// Request frames `from` has delivered to `to` so far.
fn requests(c: &Cluster, from: NodeId, to: NodeId) -> u64 {
    c.delivered(from, to)
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
fn the_epoch_is_the_term_and_the_leader() {
    let mut c = new_cluster(&[]);
    let (leader, report) = c.wait_leader();
    assert!(report.epoch.hi >= 1);
    assert_eq!(report.epoch.lo, leader);
}

#[test]
fn snapshots_keep_few_log_entries() {
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
}

/// A restarted sole voter does not resume its own term (openraft's leader
/// restore is off when the node is configured alone): it is elected in the
/// next term, as every new leadership must be (WIT: strictly greater
/// epochs), well within an election timeout.
#[test]
fn a_restarted_sole_voter_leads_in_the_next_term() {
    let mut c = Cluster::new(&[1], &[]);
    let (_, r1) = c.wait_leader();
    c.kill(1);
    c.start(1, false);
    let restarted_at = c.clock.now();
    let (_, r2) = c.wait_leader();
    assert!(
        c.clock.now() - restarted_at < ELECTION_TIMEOUT_MS,
        "led {} ms after the restart",
        c.clock.now() - restarted_at
    );
    assert_eq!(
        (r2.epoch.hi, r2.epoch.lo),
        (r1.epoch.hi + 1, r1.epoch.lo),
        "the next term, same leader"
    );
    assert_eq!(c.last_report(1), Some(r2));
}

/// Failover timing ("The leader lease" and "Failover" in `core`), over 20
/// kills at different points of the heartbeat cycle, each replacing the
/// last new leader: no new leader serves sooner than `E - heartbeat` after
/// the kill (the voters heard the old leader at most a heartbeat before it,
/// and refuse votes for `F = E` after that), the usual failover is at most
/// `1.5 E` (`F` plus a campaign delay of at most `E / 2`, then a few
/// milliseconds of election and first commit), and none takes longer than
/// `2 E` (one split vote costs one more campaign delay).
#[test]
fn a_killed_leader_is_replaced_within_one_and_a_half_election_timeouts() {
    let e = ELECTION_TIMEOUT_MS;
    let hb = Timing::DEFAULT.heartbeat_ms;
    let took = new_cluster(&[]).failover_times(20, |_, _, _| {});
    let (fastest, median, slowest) = (took[0], took[took.len() / 2], took[took.len() - 1]);
    assert!(
        fastest >= e - hb,
        "a new leader served {fastest} ms after the kill, within the voters' refusal: {took:?}"
    );
    assert!(median <= e * 3 / 2 + 30, "median {median} ms: {took:?}");
    assert!(slowest <= 2 * e + 30, "slowest {slowest} ms: {took:?}");
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

/// A node started empty, without bootstrap, is a learner that knows no
/// membership: it reports none, never campaigns and sends nothing until the
/// leader adds it; then it starts from the leader's snapshot.
#[test]
fn a_new_node_waits_silently_and_starts_from_a_snapshot() {
    let mut c = new_cluster(&[("snapshot-every", "10")]);
    let (leader, r) = c.wait_leader();
    for i in 1..=30 {
        assert_eq!(c.persist(leader, i * 10, r.epoch), Ok(i * 10));
    }
    c.run_for(200);
    assert!(c.storages[&leader].count_prefix(b"log/") < 30, "log purged");

    c.add_node(4);
    assert_eq!(c.member_ids(4), None);
    c.run_for(3_000);
    assert_eq!(c.member_ids(4), None);
    assert_eq!(
        c.last_report(4).map(|r| (r.role, r.leader)),
        Some((Role::Follower, None))
    );
    assert_eq!((1..=3).map(|id| requests(&c, 4, id)).sum::<u64>(), 0);

    assert_eq!(c.change_to(leader, &[1, 2, 3, 4]), Ok(0));
    assert_eq!(c.member_ids(leader), Some(vec![1, 2, 3, 4]));
    c.run_until(1_000, |c| {
        c.applied(4) == 300 && c.member_ids(4) == Some(vec![1, 2, 3, 4])
    });
    let first_entry = [b"log/".as_slice(), &1u64.to_be_bytes()].concat();
    assert_eq!(
        c.storages[&4].count_prefix(&first_entry),
        0,
        "node 4 started from the leader's snapshot, not from the first entry"
    );
}

#[test]
fn a_removed_follower_is_no_longer_contacted() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    let [keep, gone] = others(&c, leader)[..] else {
        unreachable!()
    };
    assert_eq!(c.persist(leader, 10, r.epoch), Ok(10));
    let mut remaining = vec![leader, keep];
    remaining.sort();
    assert_eq!(c.change_to(leader, &remaining), Ok(0));
    c.run_until(1_000, |c| c.member_ids(keep) == Some(remaining.clone()));

    // Nobody sends it requests any more (no replication, no votes).
    c.run_for(300);
    let sent = (requests(&c, leader, gone), requests(&c, keep, gone));
    assert!(sent.0 > 0);
    c.run_for(3_000);
    assert_eq!((requests(&c, leader, gone), requests(&c, keep, gone)), sent);
}

/// The driver, not openraft, hands a removed leader's leadership over, and
/// reports the step-down (no lease) first.
#[test]
fn a_removed_leader_hands_over_itself() {
    let mut c = new_cluster(&[]);
    let (old, r) = c.wait_leader();
    let rest = others(&c, old);
    assert_eq!(c.change_to(old, &rest), Ok(0));
    let (new, _) = c.wait_leader();
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
    assert!(
        c.nodes[&old]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader || rep.epoch == r.epoch)
    );
}

/// With `none`, leadership goes to the voter whose log is furthest along:
/// here the one that was not cut off while the leader wrote.
#[test]
fn a_transfer_to_anyone_picks_the_most_up_to_date_voter() {
    let mut c = new_cluster(&[]);
    let (first, r1) = c.wait_leader();
    let [a, b] = others(&c, first)[..] else {
        unreachable!()
    };
    c.isolated.insert(a);
    assert_eq!(c.persist(first, 300, r1.epoch), Ok(300));
    assert_eq!(c.transfer(first, None), Ok(b));
    let (second, r2) = c.wait_leader();
    assert_eq!(second, b);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.persist(second, 400, r2.epoch), Ok(400));
    c.isolated.clear();
    c.run_for(3_000);
    assert_eq!(c.serving_leader().map(|l| l.0), Some(second));
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

/// Refusals name what is wrong; raft also refuses moving a member to a new
/// address and a transfer to the leader itself.
#[test]
fn membership_and_transfer_refusals_say_why() {
    let mut c = new_cluster(&[]);
    let (leader, r) = c.wait_leader();
    let follower = others(&c, leader)[0];
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
    c.run_for(1_000);
    assert_eq!(
        c.serving_leader().map(|l| (l.0, l.1.epoch)),
        Some((leader, r.epoch))
    );
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
