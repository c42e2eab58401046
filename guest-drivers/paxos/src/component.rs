//! The WIT exports, bound to [`PaxosDriver`] with the real host imports.

use std::cell::RefCell;
use std::rc::Rc;

use tsohost_guest_sdk::port::WitHost;
use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, NodeId, Peer, complete, export_driver,
};

use crate::core::PaxosDriver;

std::thread_local! {
    static DRIVER: RefCell<Option<PaxosDriver>> = const { RefCell::new(None) };
}

fn with_driver<R>(f: impl FnOnce(&mut PaxosDriver) -> R) -> Result<R, DriverError> {
    DRIVER.with_borrow_mut(|d| match d {
        Some(d) => Ok(f(d)),
        None => Err(DriverError::Internal("called before init".into())),
    })
}

struct Component;

impl Guest for Component {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "paxos".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        if DRIVER.with_borrow(|d| d.is_some()) {
            return Err(DriverError::Internal("init called twice".into()));
        }
        let driver = PaxosDriver::init(Rc::new(WitHost), &cfg)?;
        DRIVER.with_borrow_mut(|d| *d = Some(driver));
        Ok(())
    }

    fn on_message(from: NodeId, payload: Vec<u8>) {
        let _ = with_driver(|d| d.on_message(from, &payload));
    }

    fn on_tick(now_ms: u64) -> u64 {
        with_driver(|d| d.on_tick(now_ms)).unwrap_or(u64::MAX)
    }

    fn load_high_water(request: u64) {
        if let Err(e) = with_driver(|d| d.load_high_water(request)) {
            complete(request, Err(e));
        }
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        if let Err(e) = with_driver(|d| d.persist_high_water(request, at_least, epoch)) {
            complete(request, Err(e));
        }
    }

    fn change_membership(request: u64, members: Vec<Peer>) {
        if let Err(e) = with_driver(|d| d.change_membership(request, members)) {
            complete(request, Err(e));
        }
    }

    fn transfer_leadership(request: u64, to: Option<NodeId>) {
        if let Err(e) = with_driver(|d| d.transfer_leadership(request, to)) {
            complete(request, Err(e));
        }
    }
}

export_driver!(Component);
