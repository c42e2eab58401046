//! The Rust guest SDK for tsohost drivers.
//!
//! Every Rust driver depends on this crate and on nothing else for its
//! contract with the host:
//! - [`bindings`]: the `tsohost:driver` world, generated from `wit/` by
//!   wit-bindgen; a driver implements [`Guest`] and calls
//!   [`export_driver!`](crate::export_driver).
//! - [`rules`]: the checks every driver applies the same way (the range of a
//!   high water, epoch fencing).
//! - [`storage`] and [`log`](crate::log): typed helpers over the host imports.
//! - [`register`]: the durable high-water register, which is the whole of a
//!   single-node driver.
//! - [`port`]: the host imports as a trait ([`port::Host`]), so that a
//!   driver's logic is sans-IO and testable natively; [`port::WitHost`] is
//!   the real one.
//! - [`frame`]: request/response framing between the drivers of a cluster.
//! - `runtime` (feature `runtime`): an async runtime for consensus libraries
//!   (openraft's `AsyncRuntime`) driven by host calls, and an RPC layer.
//! - `sim` (feature `sim`): in-memory hosts for native simulations.
//!
//! A minimal driver:
//!
//! ```ignore
//! use tsohost_guest_sdk::{Guest, export_driver, register::SingleNode};
//! struct MyDriver;
//! impl Guest for MyDriver { /* delegate to SingleNode */ }
//! export_driver!(MyDriver);
//! ```

extern crate self as tsohost_guest_sdk;

pub mod frame;
pub mod port;
pub mod register;
pub mod rules;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod storage;

/// Bindings for the `tsohost:driver/consensus-driver` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "consensus-driver",
        pub_export_macro: true,
        export_macro_name: "export_driver",
        default_bindings_module: "tsohost_guest_sdk::bindings",
        runtime_path: "tsohost_guest_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Eq, PartialOrd, Ord, Hash],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub use bindings::export_driver;
pub use bindings::exports::tsohost::driver::driver::Guest;
pub use bindings::tsohost::driver::host;
pub use bindings::tsohost::driver::types::{
    Config, DriverError, DriverInfo, Epoch, Leadership, LogLevel, NodeId, Peer, Role,
};

/// Complete a host request (`load-high-water`, `persist-high-water`).
pub fn complete(request: u64, outcome: Result<u64, DriverError>) {
    host::completed(request, outcome.as_ref().copied());
}

/// Log through the host, formatted like `format!`.
///
/// ```ignore
/// tsohost_guest_sdk::log!(Info, "elected in term {}", term);
/// ```
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::host::log($crate::LogLevel::$level, &::std::format!($($arg)*))
    };
}
