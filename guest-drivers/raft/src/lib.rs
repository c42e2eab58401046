//! The `raft` driver: openraft 0.10 inside a guest component.
//!
//! The consensus logic is [`core::RaftDriver`], the SDK's
//! [`Driver`](tsohost_guest_sdk::Driver) written against its
//! [`Host`](tsohost_guest_sdk::port::Host) trait and tested natively (the
//! SDK's contract suite and `tests/cluster.rs`); the `component` module only
//! exports it with `export_driver!`, on the real imports (`WitHost`). One
//! instance per component instance, created by `init`.
//!
//! The glue is compiled for `wasm32` only: the component exports carry names
//! (`tsohost:driver/driver@0.1.0#init`) a native shared library cannot
//! export, and native builds exist for the tests of the core.

pub mod core;
pub mod network;
pub mod settings;
pub mod store;
pub mod types;

#[cfg(target_arch = "wasm32")]
mod component;

/// What the SDK's simulator reads of a node beyond the exports (the
/// simulation tests, the contract suite and the fuzz targets).
#[cfg(feature = "sim")]
impl tsohost_guest_sdk::sim::SimDriver for core::RaftDriver {
    /// Half the election timeout (see "The leader lease" in [`core`]).
    const MAX_LEASE_MS: u64 = tsohost_guest_sdk::sim::contract::ELECTION_TIMEOUT_MS / 2;

    fn applied_high_water(&self) -> u64 {
        self.state().high_water
    }
}
