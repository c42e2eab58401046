//! The `file` driver: a single node whose high water lives in the host's
//! local storage, synced before every persist completes.
//!
//! It leads forever (nothing else can lead its storage) and takes a new epoch
//! on every start, so a persist from an instance that has since been replaced
//! is fenced. It is the SDK's [`SingleNode`] register under the name `file`,
//! knowing no options; see [`tsohost_guest_sdk::register`] for the
//! invariants.
//!
//! The component glue is compiled for `wasm32` only (its export names are
//! not native symbols); natively the crate is a library for the tests, which
//! run it in the SDK's simulator.

use std::rc::Rc;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::register::SingleNode;
use tsohost_guest_sdk::{
    Config, Driver, DriverError, Epoch, LogLevel, Metric, NodeId, Peer, rules,
};

/// One instance of the file driver.
#[derive(Debug)]
pub struct FileDriver(SingleNode);

impl FileDriver {
    /// The register this instance runs.
    pub fn register(&self) -> &SingleNode {
        &self.0
    }
}

impl Driver for FileDriver {
    const NAME: &'static str = "file";

    /// Refuse any option (the file driver has none) and any other node,
    /// then open the register: a new generation, synced, then leadership.
    fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        rules::check_options(cfg, &[])?;
        SingleNode::init(host, cfg).map(FileDriver)
    }

    fn on_message(&mut self, from: NodeId, payload: &[u8]) {
        self.0.host().log(
            LogLevel::Warn,
            &format!(
                "ignored {} bytes from node {from}: the file driver has no peers",
                payload.len()
            ),
        );
    }

    fn on_tick(&mut self, now_ms: u64) -> u64 {
        self.0.on_tick(now_ms)
    }

    fn load_high_water(&mut self, request: u64) {
        self.0.load_high_water(request);
    }

    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        self.0.persist_high_water(request, at_least, epoch);
    }

    fn change_membership(&mut self, request: u64, members: &[Peer]) {
        self.0.change_membership(request, members);
    }

    fn transfer_leadership(&mut self, request: u64, to: Option<NodeId>) {
        self.0.transfer_leadership(request, to);
    }

    fn stats(&self) -> Vec<Metric> {
        self.0.stats()
    }
}

#[cfg(target_arch = "wasm32")]
tsohost_guest_sdk::export_driver!(FileDriver);
