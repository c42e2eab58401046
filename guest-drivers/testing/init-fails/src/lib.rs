//! Test-only: a build that calls itself the `file` driver (so a hot swap
//! accepts it as a new build of the running driver, on the same storage)
//! but whose `init` always fails, as a broken upgrade would. The host must
//! keep the old build serving and report the refusal.

use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, NodeId, Peer, complete, export_driver,
};

struct InitFails;

/// Requests cannot reach an instance whose `init` failed; answer anyway.
fn never_started(request: u64) {
    complete(request, Err(DriverError::Internal("never started".into())));
}

impl Guest for InitFails {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "file".into(),
            version: "0.0.0-init-fails".into(),
        }
    }

    fn init(_cfg: Config) -> Result<(), DriverError> {
        Err(DriverError::InvalidConfig(
            "this build of `file` refuses to start (a test of a broken upgrade)".into(),
        ))
    }

    fn on_message(_from: NodeId, _payload: Vec<u8>) {}

    fn on_tick(_now_ms: u64) -> u64 {
        u64::MAX
    }

    fn load_high_water(request: u64) {
        never_started(request);
    }

    fn persist_high_water(request: u64, _at_least: u64, _epoch: Epoch) {
        never_started(request);
    }

    fn change_membership(request: u64, _members: Vec<Peer>) {
        never_started(request);
    }

    fn transfer_leadership(request: u64, _to: Option<NodeId>) {
        never_started(request);
    }
}

export_driver!(InitFails);
