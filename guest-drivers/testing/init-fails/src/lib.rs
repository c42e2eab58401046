//! Test-only: a build that calls itself the `file` driver (so a hot swap
//! accepts it as a new build of the running driver, on the same storage)
//! but whose `init` always fails, as a broken upgrade would. The host must
//! keep the old build serving and report the refusal.

use std::rc::Rc;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::{Config, Driver, DriverError, Epoch, NodeId, Peer};

/// No instance ever exists: `init` fails, so the other exports answer
/// through the export glue (`internal`, "called before init").
enum InitFails {}

impl Driver for InitFails {
    const NAME: &'static str = "file";
    const VERSION: Option<&'static str> = Some("0.0.0-init-fails");

    fn init(_host: Rc<dyn Host>, _cfg: &Config) -> Result<Self, DriverError> {
        Err(DriverError::InvalidConfig(
            "this build of `file` refuses to start (a test of a broken upgrade)".into(),
        ))
    }

    fn on_message(&mut self, _from: NodeId, _payload: &[u8]) {
        match *self {}
    }

    fn on_tick(&mut self, _now_ms: u64) -> u64 {
        match *self {}
    }

    fn load_high_water(&mut self, _request: u64) {
        match *self {}
    }

    fn persist_high_water(&mut self, _request: u64, _at_least: u64, _epoch: Epoch) {
        match *self {}
    }

    fn change_membership(&mut self, _request: u64, _members: &[Peer]) {
        match *self {}
    }

    fn transfer_leadership(&mut self, _request: u64, _to: Option<NodeId>) {
        match *self {}
    }
}

tsohost_guest_sdk::export_driver!(InitFails);
