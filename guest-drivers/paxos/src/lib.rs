//! The `paxos` driver: omnipaxos 0.2 inside a guest component.
//!
//! The consensus logic is [`core::PaxosDriver`], the SDK's
//! [`Driver`](tsohost_guest_sdk::Driver) written against its
//! [`Host`](tsohost_guest_sdk::port::Host) trait and tested natively (the
//! SDK's contract suite and `tests/cluster.rs`); the `component` module only
//! exports it with `export_driver!`, on the real imports (`WitHost`). See [`core`] for the requests, the leader lease and
//! membership, [`ballot`] for the epoch encoding, [`store`] for the storage
//! layout.
//!
//! The glue is compiled for `wasm32` only: the component exports carry names
//! (`tsohost:driver/driver@0.1.0#init`) a native shared library cannot
//! export, and native builds exist for the tests of the core.

pub mod ballot;
pub mod core;
pub mod lease;
pub mod settings;
pub mod state;
pub mod store;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod component;

/// What the SDK's simulator reads of a node beyond the exports (the
/// simulation tests, the contract suite and the fuzz targets).
#[cfg(feature = "sim")]
impl tsohost_guest_sdk::sim::SimDriver for core::PaxosDriver {
    /// Half the election timeout ([`settings::Settings`]).
    const MAX_LEASE_MS: u64 = tsohost_guest_sdk::sim::contract::ELECTION_TIMEOUT_MS / 2;
    /// A new ballot's leader waits out the promise gate, which covers every
    /// lease granted before it, however the older leadership ended.
    const HONOURS_EVERY_LEASE: bool = true;

    fn applied_high_water(&self) -> u64 {
        self.state().high_water
    }
}
