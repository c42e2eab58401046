//! The `paxos` driver: omnipaxos 0.2 inside a guest component.
//!
//! The consensus logic is [`core::PaxosDriver`], written against the SDK's
//! [`Host`](tsohost_guest_sdk::port::Host) trait and tested natively; the
//! `component` module only binds it to the WIT exports with the real
//! imports (`WitHost`). See [`core`] for the requests, the leader lease and
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

/// The driver core's entry points, for the SDK's simulated cluster (the
/// simulation tests and the fuzz targets).
#[cfg(feature = "sim")]
pub const SIM: tsohost_guest_sdk::sim::cluster::DriverFns<core::PaxosDriver> =
    tsohost_guest_sdk::sim::cluster::DriverFns {
        init: |host, cfg| core::PaxosDriver::init(host, cfg),
        on_message: core::PaxosDriver::on_message,
        on_tick: core::PaxosDriver::on_tick,
        load: core::PaxosDriver::load_high_water,
        persist: core::PaxosDriver::persist_high_water,
        change_membership: |d, r, members| d.change_membership(r, members),
        transfer_leadership: core::PaxosDriver::transfer_leadership,
    };
