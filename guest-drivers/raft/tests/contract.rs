//! The SDK's contract suite (`tsohost_guest_sdk::sim::contract`) on the
//! raft driver core: as a lone voter and as a replicated cluster.

use tsohost_driver_raft::core::RaftDriver;

tsohost_guest_sdk::contract_suite!(single_node: RaftDriver);
tsohost_guest_sdk::contract_suite!(replicated: RaftDriver);
