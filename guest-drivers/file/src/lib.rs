//! The `file` driver: a single node whose high water lives in the host's
//! local storage, synced before every persist completes.
//!
//! It leads forever (nothing else can lead its storage) and takes a new epoch
//! on every start, so a persist from an instance that has since been replaced
//! is fenced. See [`tsohost_guest_sdk::register`] for the invariants.

use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, LogLevel, NodeId, Peer, export_driver, host,
    register, rules,
};

struct FileDriver;

impl Guest for FileDriver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "file".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        tsohost_guest_sdk::report_panics();
        rules::check_options(&cfg, &[])?;
        register::init(&cfg)
    }

    fn on_message(from: NodeId, payload: Vec<u8>) {
        host::log(
            LogLevel::Warn,
            &format!(
                "ignored {} bytes from node {from}: the file driver has no peers",
                payload.len()
            ),
        );
    }

    fn on_tick(_now_ms: u64) -> u64 {
        u64::MAX
    }

    fn load_high_water(request: u64) {
        register::load_high_water(request);
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        register::persist_high_water(request, at_least, epoch);
    }

    fn change_membership(request: u64, _members: Vec<Peer>) {
        register::refuse_cluster_operation(request, "change-membership");
    }

    fn transfer_leadership(request: u64, _to: Option<NodeId>) {
        register::refuse_cluster_operation(request, "transfer-leadership");
    }
}

export_driver!(FileDriver);
