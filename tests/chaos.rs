//! `tsohost chaos` end to end: a short seeded schedule of every fault
//! against each replicated driver keeps the contract, and the harness's
//! self-test (a corrupted answer) is caught and fails the run.

mod support;

use std::process::Command;
use support::BIN;

fn chaos(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("chaos")
        .arg("--dir")
        .arg(dir.path().join("run"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keeps_the_contract(driver: &str) {
    let (ok, report, log) = chaos(&[
        "--driver",
        driver,
        "--duration",
        "15s",
        "--seed",
        "20261122",
        "--clients",
        "8",
    ]);
    assert!(ok, "{report}\n{log}");
    assert!(report.contains("contract kept"), "{report}");
    let faults: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("faults ("))
        .and_then(|l| l.strip_suffix("):"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fault count in:\n{report}"));
    assert!(faults >= 2, "only {faults} faults applied:\n{report}");
    let answered: u64 = report
        .lines()
        .find_map(|l| l.split_once(" answered requests"))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no answer count in:\n{report}"));
    assert!(answered > 100, "the cluster barely served:\n{report}");
}

#[test]
fn raft_keeps_the_contract_under_a_short_schedule() {
    keeps_the_contract("raft");
}

#[test]
fn paxos_keeps_the_contract_under_a_short_schedule() {
    keeps_the_contract("paxos");
}

#[test]
fn an_injected_violation_is_caught_and_fails_the_run() {
    let (ok, report, _) = chaos(&[
        "--driver",
        "raft",
        "--duration",
        "1s",
        "--nemesis",
        "kill",
        "--clients",
        "4",
        "--inject-violation",
        "--seed",
        "3",
    ]);
    assert!(
        !ok,
        "the run passed despite the injected violation:\n{report}"
    );
    assert!(report.contains("CONTRACT VIOLATED"), "{report}");
    assert!(report.contains("handed out twice"), "{report}");
    assert!(report.contains("real-time order broken"), "{report}");
}

#[test]
fn bad_arguments_are_refused_with_the_flag_named() {
    let (ok, _, err) = chaos(&["--driver", "file"]);
    assert!(!ok);
    assert!(err.contains("--driver file"), "{err}");
    let (ok, _, err) = chaos(&["--nemesis", "meteor"]);
    assert!(!ok);
    assert!(err.contains("unknown nemesis `meteor`"), "{err}");
}
