//! The paxos driver's mutants (`paxos/src/core/mutant.rs`) break the
//! contract in the SDK's simulator: each fails the contract tests (or the
//! [`scenario`](support::scenario)s) named for it, while the same copy
//! without `mutant=` keeps the whole contract suite and passes the
//! scenarios, so every failure is the mutation's doing. The suite and why
//! the trust gate must refuse each mutant: `guest-drivers/testing/README.md`.

#[path = "../../mutant-raft/tests/support/mod.rs"]
mod support;

use support::{caught_by, mutant, scenario};
use tsohost_guest_sdk::sim::contract;
use tsohost_test_mutant_paxos::core::PaxosDriver;

tsohost_guest_sdk::contract_suite!(single_node: PaxosDriver);
tsohost_guest_sdk::contract_suite!(replicated: PaxosDriver);

#[test]
fn the_scenarios_hold_without_a_mutant() {
    scenario::a_new_leaders_first_load_sees_every_completed_persist::<PaxosDriver>();
    scenario::a_leader_cut_off_as_it_hands_over_never_serves_beside_its_successor::<PaxosDriver>();
}

mutant!(UnsyncedAccept = PaxosDriver, "unsynced-accept");
mutant!(UnackedLease = PaxosDriver, "unacked-lease");
mutant!(LongLease = PaxosDriver, "long-lease");
mutant!(NoFence = PaxosDriver, "no-fence");
mutant!(ShortPersist = PaxosDriver, "short-persist");
mutant!(StaleRead = PaxosDriver, "stale-read");

/// Promises and accepted entries a power cut loses.
#[test]
fn unsynced_accept() {
    caught_by!(UnsyncedAccept:
        contract::a_persist_is_synced_on_a_quorum_before_it_completes,
        contract::a_power_cut_of_every_node_loses_nothing_acknowledged,
    );
}

/// A cut-off leader keeps extending its lease.
#[test]
fn unacked_lease() {
    caught_by!(UnackedLease:
        contract::a_partitioned_leaders_lease_ends_before_the_next_leader_serves,
        contract::a_removed_follower_leaves_the_quorum,
    );
}

/// The lease outlives the promise gate: two leaderships serve at once.
#[test]
fn long_lease() {
    caught_by!(LongLease:
        contract::elects_a_leader_with_a_bounded_lease_and_persists,
        contract::a_partitioned_leaders_lease_ends_before_the_next_leader_serves,
        contract::load_is_linearizable_across_repeated_failovers,
        contract::transfers_leadership_to_a_named_follower,
        contract::removing_the_leader_hands_leadership_over,
    );
}

/// A stale epoch's persist goes through.
#[test]
fn no_fence() {
    caught_by!(NoFence:
        contract::single_node_restart_keeps_the_high_water_and_the_fence,
        contract::fails_over_fences_the_old_epoch_and_rejoins,
    );
}

/// A persist makes less durable than asked.
#[test]
fn short_persist() {
    caught_by!(ShortPersist:
        contract::single_node_persists_and_never_decreases,
        contract::elects_a_leader_with_a_bounded_lease_and_persists,
    );
}

/// A new leader answers from what it has applied, not what was decided.
#[test]
fn stale_read() {
    caught_by!(StaleRead:
        scenario::a_new_leaders_first_load_sees_every_completed_persist,
    );
}
