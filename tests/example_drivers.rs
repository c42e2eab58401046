//! Drivers in other languages (examples/drivers/: Python, JavaScript, C,
//! Zig): each is built with its own script (which installs its toolchain
//! from the package registries), checked against the contract, served by
//! the real binary, and survives a kill -9 and restart without going
//! backwards.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::{BIN, Server, timestamp};

/// Run `examples/drivers/<lang>/build.sh`; the component it built.
fn build(lang: &str, component: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/drivers")
        .join(lang);
    let out = Command::new(dir.join("build.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "{lang}/build.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.join("out").join(component);
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

/// The last line of the report on a driver that keeps every rule: the one
/// the built-in file driver gets (`all N rules hold`, N being however many
/// rules check-driver has).
fn all_rules_hold() -> String {
    let out = Command::new(BIN)
        .args(["check-driver", "file"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-driver file:\n{report}");
    report.lines().last().unwrap().to_string()
}

async fn keeps_the_contract(lang: &str, component: &str) {
    let wasm = build(lang, component);
    let wasm = wasm.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["check-driver", wasm])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{lang}: check-driver failed:\n{report}"
    );
    assert_eq!(report.lines().last(), Some(&*all_rules_hold()), "{report}");

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--driver", wasm]);
    server.wait_ready().await;
    let mut last = 0;
    for _ in 0..5 {
        let ts = timestamp(&server.url).await;
        assert!(ts > last);
        last = ts;
    }
    let server = server.crash_and_restart();
    server.wait_ready().await;
    assert!(
        timestamp(&server.url).await > last,
        "{lang}: backwards after a restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python() {
    keeps_the_contract("python", "python-file.wasm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript() {
    keeps_the_contract("javascript", "javascript-file.wasm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn c() {
    keeps_the_contract("c", "c-file.wasm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zig() {
    keeps_the_contract("zig", "zig-file.wasm").await;
}
