//! The raft driver's mutants (`raft/src/core/mutant.rs`) break the contract
//! in the SDK's simulator: each fails the contract tests (or the
//! [`scenario`](support::scenario)s) named for it, while the same copy
//! without `mutant=` keeps the whole contract suite and passes the
//! scenarios, so every failure is the mutation's doing. The suite and why
//! the trust gate must refuse each mutant: `guest-drivers/testing/README.md`.

mod support;

use support::{caught_by, mutant, scenario};
use tsohost_guest_sdk::sim::contract;
use tsohost_test_mutant_raft::core::RaftDriver;

tsohost_guest_sdk::contract_suite!(single_node: RaftDriver);
tsohost_guest_sdk::contract_suite!(replicated: RaftDriver);

#[test]
fn the_scenarios_hold_without_a_mutant() {
    scenario::a_new_leaders_first_load_sees_every_completed_persist::<RaftDriver>();
    scenario::a_leader_cut_off_as_it_hands_over_never_serves_beside_its_successor::<RaftDriver>();
}

mutant!(LongLease = RaftDriver, "long-lease");
mutant!(EarlyAck = RaftDriver, "early-ack");
mutant!(UnsyncedCommit = RaftDriver, "unsynced-commit");
mutant!(StaleRead = RaftDriver, "stale-read");
mutant!(NoFloor = RaftDriver, "no-floor");
mutant!(NoStepDown = RaftDriver, "no-step-down");

/// The lease outlives the voters' refusal: two leaderships serve at once.
#[test]
fn long_lease() {
    caught_by!(LongLease:
        contract::elects_a_leader_with_a_bounded_lease_and_persists,
        contract::a_partitioned_leaders_lease_ends_before_the_next_leader_serves,
        contract::snapshots_bound_storage_and_a_node_resumes_from_them,
    );
}

/// Acknowledged before a quorum holds it: lost with the leader.
#[test]
fn early_ack() {
    caught_by!(EarlyAck:
        contract::a_persist_is_synced_on_a_quorum_before_it_completes,
        contract::fails_over_fences_the_old_epoch_and_rejoins,
        contract::load_is_linearizable_across_repeated_failovers,
        contract::a_power_cut_of_every_node_loses_nothing_acknowledged,
    );
}

/// The committed index is lost in a power cut: the resumed leader's read
/// misses an acknowledged persist.
#[test]
fn unsynced_commit() {
    caught_by!(UnsyncedCommit:
        contract::a_power_cut_of_every_node_loses_nothing_acknowledged,
    );
}

/// A new leader answers from what it has applied, not what was committed.
#[test]
fn stale_read() {
    caught_by!(StaleRead:
        scenario::a_new_leaders_first_load_sees_every_completed_persist,
    );
}

/// `config.floor` ignored.
#[test]
fn no_floor() {
    caught_by!(NoFloor:
        contract::single_node_never_answers_below_the_floor,
        contract::the_floor_holds_on_every_leader,
    );
}

/// Handing over without stepping down first: two leaderships serve at once
/// when the old leader does not hear of the new one.
#[test]
fn no_step_down() {
    caught_by!(NoStepDown:
        contract::transfers_leadership_to_a_named_follower,
        contract::removing_the_leader_hands_leadership_over,
        scenario::a_leader_cut_off_as_it_hands_over_never_serves_beside_its_successor,
    );
}
