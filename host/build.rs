//! Builds the guest-drivers workspace for wasm32-wasip2, so that the built-in
//! drivers can be embedded in the binary and the test-only guests are ready
//! for the tests. One `cargo build` of the host builds everything.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let guests = root.join("guest-drivers");
    for path in [
        "wit",
        "guest-drivers/Cargo.toml",
        "guest-drivers/Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for dir in ["sdk", "file", "raft", "paxos", "testing", "vendor"] {
        println!("cargo:rerun-if-changed={}", guests.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests).args([
        "build",
        "--release",
        "--workspace",
        "--target",
        "wasm32-wasip2",
    ]);
    // The outer build's settings are for the host, not the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build guest-drivers/");
    if !status.success() {
        panic!(
            "building guest-drivers/ for wasm32-wasip2 failed (see above). If the target is \
             missing, run `rustup target add wasm32-wasip2` (./x does it for you)."
        );
    }
    let out = guests.join("target/wasm32-wasip2/release");
    println!("cargo:rustc-env=TSOHOST_GUEST_DIR={}", out.display());
}
