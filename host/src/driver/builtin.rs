//! The drivers compiled into the binary, by name.

use super::component::DriverSource;

/// `file`: a single node, high water synced to local storage.
const FILE: &[u8] = include_bytes!(concat!(
    env!("TSOHOST_GUEST_DIR"),
    "/tsohost_driver_file.wasm"
));

/// `raft`: openraft in a guest; a replicated high water, leader leases.
const RAFT: &[u8] = include_bytes!(concat!(
    env!("TSOHOST_GUEST_DIR"),
    "/tsohost_driver_raft.wasm"
));

/// `paxos`: omnipaxos in a guest; a replicated log, leader leases.
const PAXOS: &[u8] = include_bytes!(concat!(
    env!("TSOHOST_GUEST_DIR"),
    "/tsohost_driver_paxos.wasm"
));

/// Names accepted by `--driver`, besides a path.
pub const NAMES: &[&str] = &["file", "raft", "paxos"];

/// The built-in driver called `name`.
pub fn builtin(name: &str) -> Option<DriverSource> {
    let bytes = match name {
        "file" => FILE,
        "raft" => RAFT,
        "paxos" => PAXOS,
        _ => return None,
    };
    let name = NAMES.iter().find(|n| **n == name)?;
    Some(DriverSource::Builtin { name, bytes })
}

/// Where the guest workspace put its components (test-only guests too).
pub fn guest_dir() -> &'static str {
    env!("TSOHOST_GUEST_DIR")
}
