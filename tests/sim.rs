//! `tsohost sim`: the built-in replicated drivers keep every promise over a
//! sweep of seeds, with the default window and with one longer than a
//! failover (so that a lease bug cannot hide behind an expiring window); a
//! broken driver is caught, and its failing seed replays to the same trace,
//! byte for byte.

mod support;

use std::process::Command;
use support::{BIN, guest};

/// Run `tsohost sim ARGS`: whether it passed, and its stdout.
fn sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).arg("sim").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Seeds with the default window, then seeds with a window (30 s) longer
/// than any failover.
fn sweep(driver: &str) {
    for args in [
        &["--seeds", "1..12"][..],
        &[
            "--seeds",
            "100..104",
            "--window",
            "30s",
            "--duration",
            "90s",
            "--liveness",
            "30s",
        ],
    ] {
        let mut all = vec![driver];
        all.extend_from_slice(args);
        let (ok, out) = sim(&all);
        assert!(ok, "{driver} broke a promise:\n{out}");
        assert!(!out.contains("VIOLATION"), "{out}");
    }
}

#[test]
fn raft_keeps_every_promise_over_a_seed_sweep() {
    sweep("raft");
}

#[test]
fn paxos_keeps_every_promise_over_a_seed_sweep() {
    sweep("paxos");
}

#[test]
fn a_broken_driver_is_caught_and_its_seed_replays_to_the_same_trace() {
    // The high water lives in guest memory: the first lost instance loses it.
    let amnesia = guest("tsohost_test_misbehave.wasm");
    let args = [
        amnesia.to_str().unwrap(),
        "--nodes",
        "1",
        "--seeds",
        "1..5",
        "--faults",
        "trap,power-loss",
        "--driver-option",
        "break=amnesia",
    ];
    let (ok, first) = sim(&args);
    assert!(!ok, "amnesia passed:\n{first}");
    assert!(first.contains("VIOLATION"), "{first}");
    let replay = first
        .lines()
        .find_map(|l| l.strip_prefix("replay: tsohost sim "))
        .expect("a replay command");
    let (ok, second) = sim(&replay.split(' ').collect::<Vec<_>>());
    assert!(!ok);
    let report = |out: &str| out[out.find("\nseed ").expect("a report")..].to_string();
    assert_eq!(report(&first), report(&second), "the replay differs");
}

#[test]
fn bad_arguments_are_refused_with_the_fix() {
    let out = Command::new(BIN)
        .args(["sim", "raft", "--faults", "partition,typo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown fault \"typo\""), "{err}");
    let out = Command::new(BIN)
        .args(["sim", "raft", "--seeds", "9..2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("above the last"));
}
