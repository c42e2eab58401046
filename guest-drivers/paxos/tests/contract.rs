//! The SDK's contract suite (`tsohost_guest_sdk::sim::contract`) on the
//! paxos driver core: as a lone voter and as a replicated cluster.

use tsohost_driver_paxos::core::PaxosDriver;

tsohost_guest_sdk::contract_suite!(single_node: PaxosDriver);
tsohost_guest_sdk::contract_suite!(replicated: PaxosDriver);
