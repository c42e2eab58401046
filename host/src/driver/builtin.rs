//! The drivers compiled into the binary, by name.

use super::component::DriverSource;

/// `file`: a single node, high water synced to local storage.
const FILE: &[u8] = include_bytes!(concat!(
    env!("TSOHOST_GUEST_DIR"),
    "/tsohost_driver_file.wasm"
));

/// Names accepted by `--driver`, besides a path.
pub const NAMES: &[&str] = &["file"];

/// The built-in driver called `name`.
pub fn builtin(name: &str) -> Option<DriverSource> {
    match name {
        "file" => Some(DriverSource::Builtin {
            name: "file",
            bytes: FILE,
        }),
        _ => None,
    }
}

/// Where the guest workspace put its components (test-only guests too).
pub fn guest_dir() -> &'static str {
    env!("TSOHOST_GUEST_DIR")
}
