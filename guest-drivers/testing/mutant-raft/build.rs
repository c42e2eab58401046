//! Compile the raft driver's sources (this package's `[lib] path`) with
//! their mutation hooks: `--cfg tsohost_mutants`, for this package only.

fn main() {
    println!("cargo::rustc-cfg=tsohost_mutants");
    println!("cargo::rerun-if-changed=build.rs");
}
