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
    git_commit(&root);
}

/// `TSOHOST_GIT_COMMIT` for `--version`: the commit checked out (with
/// `-dirty` if the work tree differs), or `unknown` outside a git checkout
/// (a source tarball). Rebuilt when HEAD moves.
fn git_commit(root: &std::path::Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=TSOHOST_GIT_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        // The branch's ref, loose or packed (a path that does not exist
        // would rerun this script on every build).
        let branch = git(&["symbolic-ref", "-q", "HEAD"]).map(|head| dir.join(head));
        for path in [branch, Some(dir.join("packed-refs"))]
            .into_iter()
            .flatten()
        {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
