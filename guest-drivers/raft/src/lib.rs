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
