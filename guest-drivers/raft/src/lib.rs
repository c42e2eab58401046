//! The `raft` driver: openraft 0.10 inside a guest component.
//!
//! The consensus logic is [`core::RaftDriver`], written against the SDK's
//! [`Host`](tsohost_guest_sdk::port::Host) trait and tested natively; this
//! file only binds it to the WIT exports with the real imports
//! (`WitHost`). One instance per component instance, created by `init`.
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

/// The driver core's entry points, for the SDK's simulated cluster (the
/// simulation tests and the fuzz targets).
#[cfg(feature = "sim")]
pub const SIM: tsohost_guest_sdk::sim::cluster::DriverFns<core::RaftDriver> =
    tsohost_guest_sdk::sim::cluster::DriverFns {
        init: |host, cfg| core::RaftDriver::init(host, cfg),
        on_message: core::RaftDriver::on_message,
        on_tick: core::RaftDriver::on_tick,
        load: core::RaftDriver::load_high_water,
        persist: core::RaftDriver::persist_high_water,
        change_membership: core::RaftDriver::change_membership,
        transfer_leadership: core::RaftDriver::transfer_leadership,
    };
