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
