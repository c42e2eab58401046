//! The contract suite: the tests every driver must pass in the simulator,
//! written once and run by each driver crate with
//! [`contract_suite!`](crate::contract_suite).
//!
//! Each test is a function generic over the driver, so that a failure names
//! the rule and the driver (the test's name and crate) and the rule is
//! stated in one place. What the suite demands is what `wit/driver.wit`
//! demands and what the host relies on; how a driver meets it (its lease
//! bound, its storage layout, its messages) is for its own tests.
//!
//! Two parts:
//! - [`single_node`](crate::contract_suite) tests: a node that is the whole
//!   cluster (`config.peers` = itself). Every driver runs them: the file
//!   driver is nothing else, and a replicated driver must behave the same
//!   as a lone voter.
//! - [`replicated`](crate::contract_suite) tests: three nodes (more when a
//!   test adds some) with leases, failover, partitions, power cuts
//!   ([`SimCluster::power_cut`]: unsynced writes are lost), membership
//!   changes and transfers. They read a node's applied state, and the lease
//!   bound the driver claims, through [`SimDriver`].
//!
//! All run with the default timing options, whose election timeout bounds
//! every lease ([`ELECTION_TIMEOUT_MS`]).

use std::rc::Rc;

use super::cluster::{SimCluster, config, options, peers, serving_interval};
use super::{MemStorage, SimClock, SimDriver, SimHost};
use crate::rules::{MAX_PHYSICAL_MS, Timing, ZERO_EPOCH};
use crate::{Driver, DriverError, Epoch, NodeId, Role};

/// The election timeout of the default timing options. A lease granted at
/// `t` must end before `t` plus this: another node may be elected once it
/// has passed without a leader, so a longer lease could overlap the next
/// leadership.
pub const ELECTION_TIMEOUT_MS: u64 = Timing::DEFAULT.election_timeout_ms;

/// Run the contract tests of one or both parts as `#[test]` functions of
/// the calling test crate, each named after the function of
/// [`sim::contract`](crate::sim::contract) it runs:
///
/// ```ignore
/// tsohost_guest_sdk::contract_suite!(single_node: MyDriver);
/// tsohost_guest_sdk::contract_suite!(replicated: MyDriver); // MyDriver: SimDriver
/// ```
#[macro_export]
macro_rules! contract_suite {
    (single_node: $driver:ty) => {
        $crate::contract_suite!(@tests $driver;
            single_node_leads_alone_with_an_unbounded_lease,
            single_node_persists_and_never_decreases,
            single_node_restart_keeps_the_high_water_and_the_fence,
            single_node_never_answers_below_the_floor,
            single_node_has_nobody_to_hand_over_to,
            unknown_options_are_refused_before_anything_is_written,
        );
    };
    (replicated: $driver:ty) => {
        $crate::contract_suite!(@tests $driver;
            elects_a_leader_with_a_bounded_lease_and_persists,
            fails_over_fences_the_old_epoch_and_rejoins,
            a_partitioned_leaders_lease_ends_before_the_next_leader_serves,
            load_is_linearizable_across_repeated_failovers,
            a_power_cut_of_every_node_loses_nothing_acknowledged,
            a_persist_is_synced_on_a_quorum_before_it_completes,
            the_floor_holds_on_every_leader,
            snapshots_bound_storage_and_a_node_resumes_from_them,
            rejects_bad_configuration_before_anything_is_written,
            runs_are_deterministic,
            transfers_leadership_to_a_named_follower,
            transfers_leadership_to_any_other_node,
            membership_and_transfer_requests_are_checked,
            reports_the_membership_with_the_given_addresses,
            a_new_node_joins_catches_up_and_can_lead,
            a_removed_follower_leaves_the_quorum,
            removing_the_leader_hands_leadership_over,
            a_single_voter_grows_to_three,
        );
    };
    (@tests $driver:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::sim::contract::$name::<$driver>();
            }
        )*
    };
}

// ----- single node ----------------------------------------------------------

/// Node 1 alone (`config.peers` = [1], bootstrapping).
fn alone<D: Driver>() -> SimCluster<D> {
    SimCluster::new(&[1], &[])
}

/// Alone, a node leads at once and forever: its lease is unbounded (nothing
/// else can ever be elected) and its epoch is a real one.
pub fn single_node_leads_alone_with_an_unbounded_lease<D: Driver>() {
    let mut c = alone::<D>();
    let (id, r) = c.wait_leader();
    assert_eq!((id, r.leader), (1, Some(1)));
    assert_eq!(
        r.lease_until_ms,
        u64::MAX,
        "nothing else can lead its storage"
    );
    assert!(r.epoch > ZERO_EPOCH, "{:?}", r.epoch);
    c.run_for(3_000);
    assert_eq!(c.last_report(1), Some(r), "the same leadership, still");
    c.assert_single_serving_leader_host_model();
}

/// Load and persist on a lone node: a fresh node loads 0; a persist
/// completes with at least `at-least` and never lowers the high water; a
/// value beyond 46 bits is out of range; an epoch this node never issued is
/// refused without a write.
pub fn single_node_persists_and_never_decreases<D: Driver>() {
    let mut c = alone::<D>();
    let (_, r) = c.wait_leader();
    assert_eq!(c.load(1), Ok(0));
    assert_eq!(c.persist(1, 100, r.epoch), Ok(100));
    assert_eq!(c.persist(1, 200, r.epoch), Ok(200));
    assert_eq!(c.persist(1, 150, r.epoch), Ok(200), "never decreases");
    assert_eq!(c.load(1), Ok(200));
    assert_eq!(
        c.persist(1, MAX_PHYSICAL_MS + 1, r.epoch),
        Err(DriverError::OutOfRange(MAX_PHYSICAL_MS + 1))
    );
    let newer = Epoch {
        hi: r.epoch.hi + 1,
        lo: r.epoch.lo,
    };
    assert!(
        c.persist(1, 300, newer).is_err(),
        "an epoch newer than the driver's own was never issued"
    );
    assert_eq!(c.load(1), Ok(200));
    assert_eq!(c.persist(1, MAX_PHYSICAL_MS, r.epoch), Ok(MAX_PHYSICAL_MS));
}

/// A new instance on the same storage (a restart, a trap, a hot swap; then
/// a power cut, which loses unsynced writes) keeps the high water and leads
/// in an epoch greater than every earlier one (WIT: a later leadership has a
/// strictly greater epoch; `tsohost check-driver` demands the same), so
/// the old epochs are fenced, and a fenced persist writes nothing.
pub fn single_node_restart_keeps_the_high_water_and_the_fence<D: Driver>() {
    let mut c = alone::<D>();
    let (_, mut previous) = c.wait_leader();
    assert_eq!(c.persist(1, 40, previous.epoch), Ok(40));
    for (value, round) in [(50, 1), (60, 2)] {
        if round == 1 {
            c.kill(1);
        } else {
            c.power_cut(1);
        }
        c.start(1, false);
        let (_, r2) = c.wait_leader();
        assert!(
            r2.epoch > previous.epoch,
            "round {round}: {:?} must be newer than {:?}",
            r2.epoch,
            previous.epoch
        );
        assert_eq!(
            c.load(1),
            Ok(value - 10),
            "the high water survives the instance"
        );
        assert_eq!(
            c.persist(1, value, ZERO_EPOCH),
            Err(DriverError::Fenced(r2.epoch))
        );
        assert_eq!(
            c.persist(1, value, previous.epoch),
            Err(DriverError::Fenced(r2.epoch))
        );
        assert_eq!(c.load(1), Ok(value - 10), "a fenced persist writes nothing");
        assert_eq!(c.persist(1, value, r2.epoch), Ok(value));
        previous = r2;
    }
    c.assert_single_serving_leader_host_model();
}

/// `config.floor` (a migration's high water) is a lower bound of every load
/// and persist, from the first request on and after restarts, and never
/// lowers what is stored above it.
pub fn single_node_never_answers_below_the_floor<D: Driver>() {
    let mut c = SimCluster::<D>::with_floor(&[1], &[], 500);
    let (_, r) = c.wait_leader();
    assert_eq!(c.load(1), Ok(500));
    assert_eq!(c.persist(1, 100, r.epoch), Ok(500));
    assert_eq!(c.persist(1, 600, r.epoch), Ok(600));
    c.kill(1);
    c.start(1, false);
    let (_, r) = c.wait_leader();
    assert_eq!(c.load(1), Ok(600));
    assert_eq!(c.persist(1, 550, r.epoch), Ok(600));
}

/// A lone node cannot hand leadership over (`invalid-config`, as the WIT
/// says for single-node drivers), and refusing changes nothing.
pub fn single_node_has_nobody_to_hand_over_to<D: Driver>() {
    let mut c = alone::<D>();
    let (_, r) = c.wait_leader();
    for to in [None, Some(2)] {
        let outcome = c.transfer(1, to);
        assert!(
            matches!(outcome, Err(DriverError::InvalidConfig(_))),
            "transfer to {to:?}: {outcome:?}"
        );
    }
    c.run_for(1_000);
    assert_eq!(c.serving_leader(), Some((1, r)));
    assert_eq!(c.persist(1, 10, r.epoch), Ok(10));
}

/// Initialize one instance of `D` on fresh storage; `init`'s error (if any)
/// and the storage it left.
fn try_init<D: Driver>(
    id: NodeId,
    ids: &[NodeId],
    opts: &[(&str, &str)],
) -> (Option<DriverError>, MemStorage) {
    let storage = MemStorage::default();
    let host = Rc::new(SimHost::new(id, storage.clone(), SimClock::default()));
    let cfg = config(id, ids, true, 0, &options(opts));
    (D::init(host, &cfg).err(), storage)
}

/// `init` with the message of the `invalid-config` it must fail with,
/// checking that it wrote nothing.
fn refused<D: Driver>(id: NodeId, ids: &[NodeId], opts: &[(&str, &str)]) -> String {
    match try_init::<D>(id, ids, opts) {
        (Some(DriverError::InvalidConfig(msg)), storage) => {
            assert!(storage.is_empty(), "{opts:?}: a refused init wrote storage");
            msg
        }
        (Some(e), _) => panic!("{opts:?}: {e:?}"),
        (None, _) => panic!("{opts:?}: accepted"),
    }
}

/// An option the driver does not know is a typo, refused by name before
/// the driver touches storage (so a corrected restart finds it untouched).
pub fn unknown_options_are_refused_before_anything_is_written<D: Driver>() {
    let msg = refused::<D>(1, &[1], &[("colour", "blue")]);
    assert!(msg.contains("colour"), "{msg}");
}

// ----- replicated -----------------------------------------------------------

/// No two leaderships ever served at once: as the host serves, and if the
/// driver claims it, even reading every lease to its end.
fn one_leader_at_a_time<D: SimDriver>(c: &SimCluster<D>) {
    c.assert_single_serving_leader_host_model();
    if D::HONOURS_EVERY_LEASE {
        c.assert_single_serving_leader();
    }
}

/// Nodes 1, 2 and 3 (1 bootstraps).
fn three<D: Driver>(opts: &[(&str, &str)]) -> SimCluster<D> {
    SimCluster::new(&[1, 2, 3], opts)
}

/// The original three nodes but `id`, in id order.
fn others<D>(c: &SimCluster<D>, id: NodeId) -> Vec<NodeId> {
    c.ids
        .iter()
        .copied()
        .filter(|&i| i != id && i <= 3)
        .collect()
}

/// A healthy cluster elects one leader, whose lease is at most
/// [`SimDriver::MAX_LEASE_MS`] and keeps being extended; it keeps the request
/// contract ([`SimCluster::check_leader_basics`]); followers name it, and
/// every node applies what it decided.
pub fn elects_a_leader_with_a_bounded_lease_and_persists<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (leader, report) = c.wait_leader();
    assert_eq!(report.leader, Some(leader));
    assert!(D::MAX_LEASE_MS <= ELECTION_TIMEOUT_MS);
    let now = c.clock.now();
    assert!(
        report.lease_until_ms > now && report.lease_until_ms <= now + D::MAX_LEASE_MS,
        "lease until {} at {now}",
        report.lease_until_ms
    );
    c.check_leader_basics(leader, report.epoch);

    let before = c.last_report(leader).unwrap().lease_until_ms;
    c.run_for(2_000);
    let after = c.last_report(leader).unwrap();
    assert_eq!(after.epoch, report.epoch);
    assert!(
        after.lease_until_ms > before + 1_500,
        "the lease is extended"
    );
    assert!(after.lease_until_ms <= c.clock.now() + D::MAX_LEASE_MS);
    for id in c.ids.clone() {
        assert_eq!(c.applied(id), 200, "node {id}");
        if id != leader {
            assert_eq!(
                c.last_report(id).map(|r| (r.role, r.leader)),
                Some((Role::Follower, Some(leader))),
                "node {id}"
            );
        }
    }
    one_leader_at_a_time(&c);
}

/// See [`SimCluster::check_failover`]; then the new leader persists and the
/// restarted old one applies it.
pub fn fails_over_fences_the_old_epoch_and_rejoins<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (old, new, epoch) = c.check_failover();
    assert_eq!(c.persist(new, 1_000, epoch), Ok(1_000));
    c.run_until(1_000, |c| c.applied(old) == 1_000);
    one_leader_at_a_time(&c);
}

/// A leader cut off from everyone stops extending its lease at once; the
/// next leader serves only after that lease ended; the deposed epoch is
/// fenced; after healing, the old leader follows and nothing was lost.
pub fn a_partitioned_leaders_lease_ends_before_the_next_leader_serves<D: SimDriver>() {
    let mut c = three::<D>(&[]);
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
    assert!(
        old_lease_end <= cut_at + D::MAX_LEASE_MS,
        "old lease until {old_lease_end}, cut at {cut_at}: extended after the cut"
    );
    assert!(
        old_lease_end < new_serving_from,
        "old lease until {old_lease_end}, new leader serves from {new_serving_from}"
    );
    assert_eq!(
        c.persist(new, 20, old_report.epoch),
        Err(DriverError::Fenced(new_report.epoch))
    );
    c.isolated.clear();
    c.run_until(5_000, |c| {
        c.last_report(old)
            .is_some_and(|r| r.role == Role::Follower && r.leader == Some(new))
    });
    c.run_for(2_000);
    one_leader_at_a_time(&c);
    assert_eq!(
        c.serving_leader().map(|l| l.1.epoch),
        Some(new_report.epoch)
    );
    assert_eq!(c.load(new), Ok(10));
}

/// Every leader, after any number of failovers (each a power cut of the
/// leader), loads exactly what the previous ones completed.
pub fn load_is_linearizable_across_repeated_failovers<D: SimDriver>() {
    let mut c = three::<D>(&[]);
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
        c.power_cut(leader);
        let (next, _) = c.wait_leader();
        assert_eq!(c.load(next), Ok(completed), "round {round}");
        c.start(leader, false);
    }
    c.run_for(3_000);
    one_leader_at_a_time(&c);
}

/// Every node loses power at once: whatever was acknowledged survives on
/// what they had synced, and the cluster leads again above it.
pub fn a_power_cut_of_every_node_loses_nothing_acknowledged<D: SimDriver>() {
    let mut c = three::<D>(&[("snapshot-every", "10")]);
    let (leader, r) = c.wait_leader();
    for i in 1..=25 {
        assert_eq!(c.persist(leader, i * 10, r.epoch), Ok(i * 10));
    }
    for id in c.ids.clone() {
        c.power_cut(id);
    }
    for id in c.ids.clone() {
        c.start(id, false);
    }
    let (next, r2) = c.wait_leader();
    assert!(r2.epoch >= r.epoch);
    assert_eq!(c.load(next), Ok(250));
    assert_eq!(c.persist(next, 260, r2.epoch), Ok(260));
    one_leader_at_a_time(&c);
}

/// A persist completes only once a quorum holds it durably: by then, at
/// least two of the three nodes made a synced write.
pub fn a_persist_is_synced_on_a_quorum_before_it_completes<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (leader, r) = c.wait_leader();
    c.run_for(500);
    let before: Vec<u64> = c
        .ids
        .iter()
        .map(|id| c.storages[id].synced_writes())
        .collect();
    assert_eq!(c.persist(leader, 7, r.epoch), Ok(7));
    let synced = c
        .ids
        .iter()
        .zip(&before)
        .filter(|(id, b)| c.storages[*id].synced_writes() > **b)
        .count();
    assert!(synced >= 2, "{synced} of 3 nodes synced");
}

/// `config.floor` bounds every load from below, whichever node leads.
pub fn the_floor_holds_on_every_leader<D: SimDriver>() {
    let mut c = SimCluster::<D>::with_floor(&[1, 2, 3], &[], 500);
    let (leader, r) = c.wait_leader();
    assert_eq!(c.load(leader), Ok(500));
    assert_eq!(c.persist(leader, 100, r.epoch), Ok(500));
    c.kill(leader);
    let (next, r2) = c.wait_leader();
    assert_eq!(c.load(next), Ok(500));
    assert_eq!(c.persist(next, 700, r2.epoch), Ok(700));
    assert_eq!(c.load(next), Ok(700));
}

/// With `snapshot-every`, storage stays bounded however many persists were
/// made (the log is compacted), and a restarted node resumes from what it
/// kept; a new leader still loads everything.
pub fn snapshots_bound_storage_and_a_node_resumes_from_them<D: SimDriver>() {
    let mut c = three::<D>(&[("snapshot-every", "10")]);
    let (leader, report) = c.wait_leader();
    for i in 1..=60 {
        assert_eq!(c.persist(leader, i * 10, report.epoch), Ok(i * 10));
    }
    c.run_for(500);
    for id in c.ids.clone() {
        let keys = c.storages[&id].len();
        assert!(keys <= 40, "node {id} keeps {keys} keys after 60 persists");
    }
    let follower = others(&c, leader)[0];
    c.kill(follower);
    c.start(follower, false);
    assert_eq!(c.applied(follower), 600);
    c.kill(leader);
    let (new, r) = c.wait_leader();
    assert!(r.epoch > report.epoch);
    assert_eq!(c.load(new), Ok(600));
    one_leader_at_a_time(&c);
}

/// The timing options are checked alike by every replicated driver (see
/// [`Timing`]), and a node must be among its peers; all refused before
/// anything is written.
pub fn rejects_bad_configuration_before_anything_is_written<D: SimDriver>() {
    let ids = [1, 2, 3];
    let msg = refused::<D>(1, &ids, &[("electon-timeout-ms", "5")]);
    assert!(msg.contains("electon-timeout-ms"), "{msg}");
    let msg = refused::<D>(1, &ids, &[("heartbeat-ms", "900")]);
    assert!(msg.contains("heartbeat-ms"), "{msg}");
    let msg = refused::<D>(1, &ids, &[("snapshot-every", "x")]);
    assert!(msg.contains("snapshot-every"), "{msg}");
    let msg = refused::<D>(4, &ids, &[]);
    assert!(msg.contains("peers"), "{msg}");
}

/// Two runs of the same scenario report the same leaderships at the same
/// times: a driver is a function of its config, seed, storage and calls.
pub fn runs_are_deterministic<D: SimDriver>() {
    let run = || {
        let mut c = three::<D>(&[]);
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

/// `transfer-leadership` to a named follower: the leader stops serving in
/// the very call (before any message can help the target win), completes
/// with the target, which leads in a greater epoch with everything
/// persisted; the old epoch no longer persists.
pub fn transfers_leadership_to_a_named_follower<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (first, r1) = c.wait_leader();
    assert_eq!(c.persist(first, 100, r1.epoch), Ok(100));
    let named = *others(&c, first).last().unwrap();
    let handed_at = c.clock.now();
    assert_eq!(c.transfer(first, Some(named)), Ok(named));
    let (at, stepped) = *c.nodes[&first]
        .reports
        .iter()
        .find(|(at, rep)| *at >= handed_at && rep.role != Role::Leader)
        .expect("stepped down");
    assert_eq!(at, handed_at, "stopped serving in the call: {stepped:?}");
    let (second, r2) = c.wait_leader();
    assert_eq!(second, named);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.load(second), Ok(100));
    assert_eq!(c.persist(second, 200, r2.epoch), Ok(200));
    assert!(matches!(
        c.persist(first, 300, r1.epoch),
        Err(DriverError::NotLeader(_))
    ));
    c.run_for(2_000);
    assert_eq!(c.serving_leader().map(|l| l.0), Some(second));
    one_leader_at_a_time(&c);
}

/// `transfer-leadership` to nobody in particular completes with the node
/// that took over.
pub fn transfers_leadership_to_any_other_node<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (first, r1) = c.wait_leader();
    assert_eq!(c.persist(first, 100, r1.epoch), Ok(100));
    let to = c.transfer(first, None).unwrap();
    assert_ne!(to, first);
    let (second, r2) = c.wait_leader();
    assert_eq!(second, to);
    assert!(r2.epoch > r1.epoch);
    assert_eq!(c.load(second), Ok(100));
    one_leader_at_a_time(&c);
}

/// Membership and transfer requests: only the leader takes them (a
/// follower names it); malformed ones are `invalid-config`; the unchanged
/// membership completes at once; refusals change nothing.
pub fn membership_and_transfer_requests_are_checked<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (leader, r) = c.wait_leader();
    let follower = others(&c, leader)[0];
    let not_leader = Err(DriverError::NotLeader(Some(leader)));
    assert_eq!(c.change_to(follower, &[1, 2, 3]), not_leader);
    assert_eq!(c.transfer(follower, None), not_leader);

    let invalid = |outcome: Result<u64, DriverError>, what: &str| {
        assert!(
            matches!(outcome, Err(DriverError::InvalidConfig(_))),
            "{what}: {outcome:?}"
        );
    };
    invalid(c.change_to(leader, &[]), "no members");
    invalid(c.change_to(leader, &[1, 2, 2]), "a member twice");
    invalid(c.transfer(leader, Some(9)), "to a non-member");

    c.run_for(1_000);
    assert_eq!(
        c.serving_leader().map(|l| (l.0, l.1.epoch)),
        Some((leader, r.epoch))
    );
    assert_eq!(c.member_ids(leader), Some(vec![1, 2, 3]));
    assert_eq!(c.change_to(leader, &[3, 1, 2]), Ok(0), "unchanged");
}

/// Every node reports the membership it knows, with the addresses it was
/// given (the host dials exactly these).
pub fn reports_the_membership_with_the_given_addresses<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (leader, r) = c.wait_leader();
    assert_eq!(c.persist(leader, 1, r.epoch), Ok(1));
    c.run_for(2_000);
    for id in [1, 2, 3] {
        assert_eq!(c.member_ids(id), Some(vec![1, 2, 3]), "node {id}");
    }
}

/// A node started empty and not bootstrapping waits (never leads, disturbs
/// nobody) until `change-membership` adds it; then it catches up, reports
/// the new membership, and can lead above everything persisted before.
pub fn a_new_node_joins_catches_up_and_can_lead<D: SimDriver>() {
    let mut c = three::<D>(&[("snapshot-every", "10")]);
    let (leader, r) = c.wait_leader();
    for i in 1..=30 {
        assert_eq!(c.persist(leader, i * 10, r.epoch), Ok(i * 10));
    }
    c.add_node(4);
    c.run_for(3_000);
    assert!(
        c.nodes[&4]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader),
        "a node nobody added never leads"
    );
    assert_eq!(
        c.serving_leader().map(|l| (l.0, l.1.epoch)),
        Some((leader, r.epoch)),
        "and disturbs nobody"
    );

    assert_eq!(c.change_to(leader, &[1, 2, 3, 4]), Ok(0));
    c.run_until(5_000, |c| {
        c.applied(4) == 300 && c.member_ids(4) == Some(vec![1, 2, 3, 4])
    });
    let (l2, r2) = c.wait_leader();
    assert!(r2.epoch >= r.epoch);
    assert_eq!(c.member_ids(l2), Some(vec![1, 2, 3, 4]));
    assert_eq!(c.load(l2), Ok(300));
    assert_eq!(c.persist(l2, 1_000, r2.epoch), Ok(1_000));
    c.run_until(1_000, |c| c.applied(4) == 1_000);

    let reported = c.nodes[&l2].host.memberships.borrow().len();
    assert_eq!(c.change_to(l2, &[4, 3, 2, 1]), Ok(0), "unchanged");
    assert_eq!(c.nodes[&l2].host.memberships.borrow().len(), reported);

    if l2 != 4 {
        assert_eq!(c.transfer(l2, Some(4)), Ok(4));
    }
    let (new, r4) = c.wait_leader();
    assert_eq!(new, 4);
    assert!(r4.epoch >= r2.epoch);
    assert_eq!(c.load(4), Ok(1_000));
    assert_eq!(c.persist(4, 1_100, r4.epoch), Ok(1_100));
    c.run_for(1_000);
    one_leader_at_a_time(&c);
}

/// A follower removed by `change-membership` no longer counts: the two
/// remaining nodes are the whole quorum (cutting one off ends the lease,
/// although the removed node is alive and connected), and it never leads.
pub fn a_removed_follower_leaves_the_quorum<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (leader, r) = c.wait_leader();
    let [keep, gone] = others(&c, leader)[..] else {
        unreachable!()
    };
    assert_eq!(c.persist(leader, 10, r.epoch), Ok(10));
    let mut remaining = vec![leader, keep];
    remaining.sort();
    assert_eq!(c.change_to(leader, &remaining), Ok(0));
    let (l2, r2) = c.wait_leader();
    assert_ne!(l2, gone);
    c.run_until(2_000, |c| {
        remaining
            .iter()
            .all(|&id| c.member_ids(id) == Some(remaining.clone()))
    });
    assert_eq!(c.persist(l2, 20, r2.epoch), Ok(20));

    let other = if l2 == leader { keep } else { leader };
    c.isolated.insert(other);
    c.run_for(2_000);
    assert_eq!(c.serving_leader(), None, "{gone} is no longer a voter");
    c.isolated.clear();
    let (back, r3) = c.wait_leader();
    assert_ne!(back, gone);
    assert_eq!(c.load(back), Ok(20));
    assert_eq!(c.persist(back, 30, r3.epoch), Ok(30));
    assert!(
        c.nodes[&gone]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader || rep.epoch < r.epoch)
    );
    one_leader_at_a_time(&c);
}

/// Removing the leader from the membership hands leadership to a remaining
/// node in a greater epoch; the removed node stops serving and never leads
/// again.
pub fn removing_the_leader_hands_leadership_over<D: SimDriver>() {
    let mut c = three::<D>(&[]);
    let (old, r) = c.wait_leader();
    assert_eq!(c.persist(old, 10, r.epoch), Ok(10));
    let rest = others(&c, old);
    assert_eq!(c.change_to(old, &rest), Ok(0));

    let (new, nr) = c.wait_leader();
    assert!(rest.contains(&new));
    assert!(nr.epoch > r.epoch, "{nr:?} vs {r:?}");
    assert_ne!(c.last_report(old).map(|r| r.role), Some(Role::Leader));
    assert!(matches!(
        c.persist(old, 30, r.epoch),
        Err(DriverError::NotLeader(_))
    ));
    c.run_until(2_000, |c| {
        rest.iter()
            .all(|&id| c.member_ids(id) == Some(rest.clone()))
    });
    assert!(c.load(new).unwrap() >= 10);
    assert_eq!(c.persist(new, 20, nr.epoch), Ok(20));

    c.run_for(5_000);
    assert!(
        c.nodes[&old]
            .reports
            .iter()
            .all(|(_, rep)| rep.role != Role::Leader || rep.epoch == r.epoch)
    );
    assert_eq!(c.serving_leader().map(|l| l.0), Some(new));
    one_leader_at_a_time(&c);
}

/// A lone voter with an unbounded lease adds two empty nodes: its lease
/// becomes bounded (others could now be elected), and the three share the
/// high water.
pub fn a_single_voter_grows_to_three<D: SimDriver>() {
    let mut c = SimCluster::<D>::new(&[1], &[]);
    let (_, r1) = c.wait_leader();
    assert_eq!(r1.lease_until_ms, u64::MAX);
    assert_eq!(c.persist(1, 40, r1.epoch), Ok(40));
    c.peers = vec![1, 2, 3];
    c.start(2, false);
    c.start(3, false);
    assert_eq!(c.change(1, &peers(&[1, 2, 3])), Ok(0));
    let (l, r3) = c.wait_leader();
    assert!(r3.epoch >= r1.epoch);
    c.run_for(100);
    let lease = c.last_report(l).unwrap().lease_until_ms;
    assert!(lease < u64::MAX, "a lease of three voters is bounded");
    assert_eq!(c.load(l), Ok(40));
    assert_eq!(c.persist(l, 60, r3.epoch), Ok(60));
    c.run_until(2_000, |c| [1, 2, 3].iter().all(|&id| c.applied(id) == 60));
    // Only as the host serves: the lone voter's lease was unbounded, and
    // only its next report ended it.
    c.assert_single_serving_leader_host_model();
}
