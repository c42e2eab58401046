//! A driver the host cannot use is refused at start, with a message that
//! names the problem, and a non-zero exit.

mod support;

use support::{guest, serve_refused};

fn refused_with(args: &[&str], expect: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = serve_refused(dir.path(), args);
    assert_ne!(code, 0, "{args:?} should fail");
    for word in expect {
        assert!(
            stderr.contains(word),
            "{args:?}: {word:?} not in stderr:\n{stderr}"
        );
    }
}

#[test]
fn a_file_that_is_not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driver.wasm");
    std::fs::write(&path, "#!/bin/sh\necho not wasm\n").unwrap();
    refused_with(
        &["--driver", path.to_str().unwrap()],
        &["not a WebAssembly component"],
    );
}

#[test]
fn a_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    refused_with(
        &["--driver", path.to_str().unwrap()],
        &["core WebAssembly module"],
    );
}

#[test]
fn a_corrupt_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    let bytes = std::fs::read(guest("tsohost_driver_file.wasm")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    refused_with(
        &["--driver", path.to_str().unwrap()],
        &["not a valid WebAssembly component"],
    );
}

#[test]
fn a_component_of_another_world() {
    let path = guest("tsohost-test-wrong-world.wasm");
    refused_with(
        &["--driver", path.to_str().unwrap()],
        &[
            "does not implement the world tsohost:driver/consensus-driver",
            "wasi:cli/run",
        ],
    );
}

#[test]
fn a_component_of_an_incompatible_wit_version() {
    let path = guest("tsohost_test_future_version.wasm");
    refused_with(
        &["--driver", path.to_str().unwrap()],
        &[
            "tsohost:driver/driver@9.0.0",
            "loads only 0.1.0, 0.2.0",
            "rebuild",
        ],
    );
}

#[test]
fn a_missing_file_and_an_unknown_name() {
    refused_with(
        &["--driver", "/nonexistent/driver.wasm"],
        &["cannot read driver", "/nonexistent/driver.wasm"],
    );
    refused_with(&["--driver", "rafft"], &["not a built-in driver", "file"]);
}

#[test]
fn a_driver_that_refuses_its_options() {
    refused_with(
        &["--driver-option", "colour=blue"],
        &[
            "refused its configuration",
            "unknown driver option `colour`",
        ],
    );
}

#[test]
fn bad_flags() {
    refused_with(&["--window", "5"], &["duration"]);
    refused_with(&["--window", "1ms"], &["--window"]);
    refused_with(&["--guest-memory-mib", "1"], &["--guest-memory-mib"]);
    refused_with(&["--peers", "1=127.0.0.1:1"], &["--cluster-secret-file"]);
    refused_with(
        &["--peers", "2=127.0.0.1:1"],
        &["--peers must include this node"],
    );
    refused_with(&["--peers", "1=127.0.0.1:1,1=127.0.0.1:2"], &["twice"]);
    refused_with(
        &["--peers", "one=127.0.0.1:1"],
        &["node id must be a number"],
    );
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny").unwrap();
    let short = short.to_str().unwrap();
    refused_with(
        &["--peers", "1=127.0.0.1:1", "--cluster-secret-file", short],
        &["at least 16 bytes"],
    );
    refused_with(&["--admin-token-file", short], &["at least 16 characters"]);
    refused_with(
        &["--admin-token-file", "/nonexistent"],
        &["--admin-token-file", "cannot read"],
    );
}

#[test]
fn a_data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _server = support::Server::start(dir.path(), &[]);
    let (code, stderr) = serve_refused(dir.path(), &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("another tsohost"), "{stderr}");
}
