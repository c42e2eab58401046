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

/// Send the message and location of a panic to the host's log before the
/// instance traps, so that the operator reads *why* a driver was rebuilt
/// rather than a bare `unreachable` backtrace. Idempotent; every driver
/// should call it first thing in `init` ([`export_sans_io_driver!`] does).
pub fn report_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::log(LogLevel::Error, &format!("driver panicked: {info}"));
        }));
    });
}

/// Export a sans-IO driver — a type with the inherent functions below,
/// written against [`port::Host`] so that it also runs in a native
/// simulation — as this component's `driver` interface, with the real host
/// imports ([`port::WitHost`]). One instance lives per component instance;
/// every export but `info` and `init` fails (`internal`) before `init`.
///
/// ```ignore
/// impl MyDriver {
///     pub fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError>;
///     pub fn on_message(&mut self, from: NodeId, payload: &[u8]);
///     pub fn on_tick(&mut self, now_ms: u64) -> u64;
///     pub fn load_high_water(&mut self, request: u64);
///     pub fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch);
///     pub fn change_membership(&mut self, request: u64, members: &[Peer]);
///     pub fn transfer_leadership(&mut self, request: u64, to: Option<NodeId>);
/// }
/// tsohost_guest_sdk::export_sans_io_driver!(MyDriver, "my-driver");
/// ```
#[macro_export]
macro_rules! export_sans_io_driver {
    ($driver:ty, $name:expr) => {
        ::std::thread_local! {
            static __TSOHOST_DRIVER: ::std::cell::RefCell<Option<$driver>> =
                const { ::std::cell::RefCell::new(None) };
        }

        fn __tsohost_with<R>(f: impl FnOnce(&mut $driver) -> R) -> Result<R, $crate::DriverError> {
            __TSOHOST_DRIVER.with_borrow_mut(|d| match d {
                Some(d) => Ok(f(d)),
                None => Err($crate::DriverError::Internal("called before init".into())),
            })
        }

        /// Run `f` on the driver, or fail `request` if there is none yet.
        fn __tsohost_request(request: u64, f: impl FnOnce(&mut $driver)) {
            if let Err(e) = __tsohost_with(f) {
                $crate::complete(request, Err(e));
            }
        }

        struct __TsohostComponent;

        impl $crate::Guest for __TsohostComponent {
            fn info() -> $crate::DriverInfo {
                $crate::DriverInfo {
                    name: ($name).into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }
            }

            fn init(cfg: $crate::Config) -> Result<(), $crate::DriverError> {
                $crate::report_panics();
                if __TSOHOST_DRIVER.with_borrow(|d| d.is_some()) {
                    return Err($crate::DriverError::Internal("init called twice".into()));
                }
                let host = ::std::rc::Rc::new($crate::port::WitHost);
                let driver = <$driver>::init(host, &cfg)?;
                __TSOHOST_DRIVER.with_borrow_mut(|d| *d = Some(driver));
                Ok(())
            }

            fn on_message(from: $crate::NodeId, payload: Vec<u8>) {
                let _ = __tsohost_with(|d| d.on_message(from, &payload));
            }

            fn on_tick(now_ms: u64) -> u64 {
                __tsohost_with(|d| d.on_tick(now_ms)).unwrap_or(u64::MAX)
            }

            fn load_high_water(request: u64) {
                __tsohost_request(request, |d| d.load_high_water(request));
            }

            fn persist_high_water(request: u64, at_least: u64, epoch: $crate::Epoch) {
                __tsohost_request(request, |d| d.persist_high_water(request, at_least, epoch));
            }

            fn change_membership(request: u64, members: Vec<$crate::Peer>) {
                __tsohost_request(request, |d| d.change_membership(request, &members));
            }

            fn transfer_leadership(request: u64, to: Option<$crate::NodeId>) {
                __tsohost_request(request, |d| d.transfer_leadership(request, to));
            }
        }

        $crate::export_driver!(__TsohostComponent);
    };
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
