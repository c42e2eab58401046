//! The one shape of a Rust driver: a sans-IO core implementing [`Driver`],
//! exported as a component by [`export_driver!`](crate::export_driver) and
//! run natively, unchanged, by the simulator (feature `sim`).
//!
//! A driver never calls the host imports itself: it gets a
//! [`Host`] in [`Driver::init`] and keeps it. Inside a
//! component that host is [`WitHost`](crate::port::WitHost); in a
//! simulation it is an in-memory one. Everything a driver decides is
//! therefore a function of its config, its storage and the calls it
//! receives, which is what makes it testable and replayable.

use std::cell::RefCell;
use std::rc::Rc;

use crate::port::Host;
use crate::{Config, DriverError, DriverInfo, Epoch, Metric, NodeId, Peer};

/// A consensus driver: the `driver` interface of `wit/driver.wit`, one
/// method per export, on one instance.
///
/// The contract is the WIT one; what it means for an implementation:
/// - One value is one component instance. It is created by
///   [`init`](Driver::init) and dropped with the instance, which the host
///   may tear down between any two calls (a trap, a limit, a hot swap): a
///   driver keeps nothing it cannot rebuild from storage.
/// - Calls are serialized and never re-entered: an import called from a
///   method does not call back into the driver.
/// - Every request (`load-high-water`, `persist-high-water`,
///   `change-membership`, `transfer-leadership`) is completed exactly once
///   through [`Host::completed`], from the call itself or a later one.
pub trait Driver: Sized + 'static {
    /// The stable name (`file`, `raft`, `paxos`). The host keys the driver's
    /// storage by it, so two builds with one name share state and a new
    /// build must read what an old one wrote.
    const NAME: &'static str;

    /// The version shown to operators; `None`: the version of the crate
    /// that calls [`export_driver!`](crate::export_driver)
    /// (`CARGO_PKG_VERSION`), which is what a driver normally wants.
    const VERSION: Option<&'static str> = None;

    /// Start, or resume from storage, on `host` with `cfg`. An error refuses
    /// the instance; an `invalid-config` error names the field or option.
    /// Leadership is reported through `host` as soon as it is known,
    /// possibly from here.
    fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError>;

    /// Bytes a peer's driver sent: possibly lost, duplicated, reordered or
    /// forged by a buggy peer, so anything may arrive.
    fn on_message(&mut self, from: NodeId, payload: &[u8]);

    /// Time passes (`now_ms` is the host's monotonic clock); returns when to
    /// be ticked next, which must be after `now_ms`.
    fn on_tick(&mut self, now_ms: u64) -> u64;

    /// `load-high-water`: complete `request` with the linearizable high
    /// water (never below `config.floor`), or `not-leader`.
    fn load_high_water(&mut self, request: u64);

    /// `persist-high-water`: complete `request` only once a high water of at
    /// least `at_least` survives the loss of this instance, with the durable
    /// value; fence epochs older than the newest accepted.
    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch);

    /// `change-membership` to `members`; single-node drivers refuse it with
    /// `invalid-config`.
    fn change_membership(&mut self, request: u64, members: &[Peer]);

    /// `transfer-leadership` to `to` (any other node with `None`);
    /// single-node drivers refuse it with `invalid-config`.
    fn transfer_leadership(&mut self, request: u64, to: Option<NodeId>);

    /// `stats`: the driver's own statistics, answered from memory without
    /// calling the host (see [`crate::stats`]). The messages sent and
    /// received are counted and added by [`export_driver!`](crate::export_driver).
    fn stats(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// What `info` answers for `D`, given the version of the crate exporting it
/// (used when `D` does not name one).
pub fn info<D: Driver>(crate_version: &str) -> DriverInfo {
    DriverInfo {
        name: D::NAME.into(),
        version: D::VERSION.unwrap_or(crate_version).into(),
    }
}

/// The slot of a component instance's driver, and what the exports do when
/// it is empty.
///
/// It exists because wit-bindgen's `Guest` trait has only associated
/// functions (no `self`): the instance has to live in a static somewhere,
/// and [`export_driver!`](crate::export_driver) declares that static (a
/// `thread_local`; a component instance has one thread) in its expansion.
/// That static is the only place a driver instance is held; drivers
/// themselves keep no global state, so that the same core runs many times
/// in one native process (a simulated cluster).
///
/// Invariants: the slot is filled only by a successful `init` and only
/// once; before that, every request fails with `internal` (the host calls
/// nothing but `info` and `init` first, so this is a guard, not a path).
#[derive(Debug)]
pub struct Instance<D>(RefCell<Option<D>>);

impl<D> Default for Instance<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D> Instance<D> {
    /// An empty slot (`const`, for a `thread_local` initializer).
    pub const fn new() -> Self {
        Instance(RefCell::new(None))
    }
}

impl<D: Driver> Instance<D> {
    /// `init`: create the driver on `host` and keep it; fails without
    /// touching the slot if `init` already succeeded.
    pub fn init(&self, host: Rc<dyn Host>, cfg: &Config) -> Result<(), DriverError> {
        if self.0.borrow().is_some() {
            return Err(DriverError::Internal("init called twice".into()));
        }
        let driver = D::init(host, cfg)?;
        *self.0.borrow_mut() = Some(driver);
        Ok(())
    }

    /// Run `f` on the driver, or fail with `internal` if there is none.
    pub fn with<R>(&self, f: impl FnOnce(&mut D) -> R) -> Result<R, DriverError> {
        match self.0.borrow_mut().as_mut() {
            Some(d) => Ok(f(d)),
            None => Err(DriverError::Internal("called before init".into())),
        }
    }

    /// Run `f` (which handles `request`) on the driver, or complete
    /// `request` through `host` with the error if there is none: every
    /// request is completed exactly once either way.
    pub fn request(&self, host: &dyn Host, request: u64, f: impl FnOnce(&mut D)) {
        if let Err(e) = self.with(f) {
            host.completed(request, Err(e));
        }
    }
}

/// Export `D`, a type implementing [`Driver`], as this component's `driver`
/// interface, with the real host imports ([`port::WitHost`](crate::port::WitHost)).
/// Call it once, in the crate that builds the component (wasm32 only: the
/// export names are not valid native symbols).
///
/// `info` answers [`Driver::NAME`] and the calling crate's version unless
/// [`Driver::VERSION`] names one; `init` first installs the panic hook
/// ([`report_panics`](crate::report_panics)), then fills the instance slot.
/// The slot, a `thread_local` [`Instance`], is declared here because
/// wit-bindgen's `Guest` trait has only static functions, and nowhere else
/// holds a driver.
///
/// ```ignore
/// struct MyDriver { host: Rc<dyn Host>, /* ... */ }
/// impl tsohost_guest_sdk::Driver for MyDriver { /* ... */ }
/// #[cfg(target_arch = "wasm32")]
/// tsohost_guest_sdk::export_driver!(MyDriver);
/// ```
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: $crate::driver::Instance<$driver> =
                    const { $crate::driver::Instance::new() };
            }

            struct Component;

            impl $crate::bindings::exports::tsohost::driver::driver::Guest for Component {
                fn info() -> $crate::DriverInfo {
                    $crate::driver::info::<$driver>(env!("CARGO_PKG_VERSION"))
                }

                fn init(cfg: $crate::Config) -> Result<(), $crate::DriverError> {
                    $crate::report_panics();
                    let host = ::std::rc::Rc::new($crate::port::WitHost);
                    INSTANCE.with(|i| i.init(host, &cfg))
                }

                fn on_message(from: $crate::NodeId, payload: Vec<u8>) {
                    $crate::stats::count_received(payload.len());
                    let _ = INSTANCE
                        .with(|i| i.with(|d| $crate::Driver::on_message(d, from, &payload)));
                }

                fn on_tick(now_ms: u64) -> u64 {
                    INSTANCE
                        .with(|i| i.with(|d| $crate::Driver::on_tick(d, now_ms)))
                        .unwrap_or(u64::MAX)
                }

                fn load_high_water(request: u64) {
                    INSTANCE.with(|i| {
                        i.request(&$crate::port::WitHost, request, |d| {
                            $crate::Driver::load_high_water(d, request)
                        })
                    });
                }

                fn persist_high_water(request: u64, at_least: u64, epoch: $crate::Epoch) {
                    INSTANCE.with(|i| {
                        i.request(&$crate::port::WitHost, request, |d| {
                            $crate::Driver::persist_high_water(d, request, at_least, epoch)
                        })
                    });
                }

                fn change_membership(request: u64, members: Vec<$crate::Peer>) {
                    INSTANCE.with(|i| {
                        i.request(&$crate::port::WitHost, request, |d| {
                            $crate::Driver::change_membership(d, request, &members)
                        })
                    });
                }

                fn transfer_leadership(request: u64, to: Option<$crate::NodeId>) {
                    INSTANCE.with(|i| {
                        i.request(&$crate::port::WitHost, request, |d| {
                            $crate::Driver::transfer_leadership(d, request, to)
                        })
                    });
                }

                fn stats() -> Vec<$crate::Metric> {
                    let mut stats = $crate::stats::transport();
                    stats.extend(
                        INSTANCE
                            .with(|i| i.with(|d| $crate::Driver::stats(d)))
                            .unwrap_or_default(),
                    );
                    stats
                }
            }

    $crate::bindings::export_guest!(Component with_types_in $crate::bindings);
        };
    };
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use crate::sim::{MemStorage, SimClock, SimHost};

    /// Counts its calls; `init` fails on an odd seed.
    struct Counter(u64);

    impl Driver for Counter {
        const NAME: &'static str = "counter";

        fn init(_host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
            if cfg.seed % 2 == 1 {
                return Err(DriverError::InvalidConfig("odd seed".into()));
            }
            Ok(Counter(0))
        }

        fn on_message(&mut self, _from: NodeId, _payload: &[u8]) {
            self.0 += 1;
        }

        fn on_tick(&mut self, now_ms: u64) -> u64 {
            now_ms + 1
        }

        fn load_high_water(&mut self, _request: u64) {
            self.0 += 1;
        }

        fn persist_high_water(&mut self, _request: u64, _at_least: u64, _epoch: Epoch) {}

        fn change_membership(&mut self, _request: u64, _members: &[Peer]) {}

        fn transfer_leadership(&mut self, _request: u64, _to: Option<NodeId>) {}
    }

    fn cfg(seed: u64) -> Config {
        crate::sim::cluster::config(1, &[], false, seed, &[])
    }

    #[test]
    fn the_slot_is_filled_once_and_guards_requests_before_init() {
        let host = Rc::new(SimHost::new(1, MemStorage::default(), SimClock::default()));
        let slot = Instance::<Counter>::new();
        slot.request(&*host, 7, |d| d.load_high_water(7));
        assert_eq!(
            host.take_completion(7),
            Some(Err(DriverError::Internal("called before init".into())))
        );
        assert!(matches!(
            slot.init(host.clone(), &cfg(1)),
            Err(DriverError::InvalidConfig(_))
        ));
        assert!(slot.with(|_| ()).is_err(), "a failed init fills nothing");
        slot.init(host.clone(), &cfg(2)).unwrap();
        assert_eq!(
            slot.init(host.clone(), &cfg(2)),
            Err(DriverError::Internal("init called twice".into()))
        );
        slot.request(&*host, 8, |d| d.load_high_water(8));
        assert_eq!(host.take_completion(8), None, "the driver got it");
        assert_eq!(slot.with(|d| d.0), Ok(1));
    }

    #[test]
    fn info_names_the_driver_and_the_exporting_crates_version() {
        struct Pinned;
        impl Driver for Pinned {
            const NAME: &'static str = "pinned";
            const VERSION: Option<&'static str> = Some("9.9.9");
            fn init(_: Rc<dyn Host>, _: &Config) -> Result<Self, DriverError> {
                Ok(Pinned)
            }
            fn on_message(&mut self, _: NodeId, _: &[u8]) {}
            fn on_tick(&mut self, now_ms: u64) -> u64 {
                now_ms + 1
            }
            fn load_high_water(&mut self, _: u64) {}
            fn persist_high_water(&mut self, _: u64, _: u64, _: Epoch) {}
            fn change_membership(&mut self, _: u64, _: &[Peer]) {}
            fn transfer_leadership(&mut self, _: u64, _: Option<NodeId>) {}
        }
        let counter = info::<Counter>("1.2.3");
        assert_eq!(
            (counter.name.as_str(), counter.version.as_str()),
            ("counter", "1.2.3")
        );
        assert_eq!(info::<Pinned>("1.2.3").version, "9.9.9");
    }
}
