//! `tsohost check-driver`: the built-in drivers keep every rule (raft and
//! paxos as single nodes), a driver that breaks a rule is caught with a
//! message naming it, a trap is reported as a trap, and every run reports
//! the same rules, deterministically.

mod support;

use serde_json::Value;
use support::{BIN, guest};

/// How many rules every report lists, whatever the driver does: the one
/// place the number is stated.
const RULES: usize = 15;

fn check(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .arg("check-driver")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The `--json` report: whether the check passed, and each verdict.
fn verdicts(args: &[&str]) -> (bool, Vec<Value>) {
    let (ok, out) = check(&[args, &["--json"][..]].concat());
    let verdicts: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"));
    (ok, verdicts.as_array().unwrap().clone())
}

/// The rules of a report, in order.
fn rules(verdicts: &[Value]) -> Vec<&str> {
    verdicts
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect()
}

/// The rules the built-in file driver's report lists: every report lists
/// these, in this order.
fn every_rule() -> Vec<String> {
    let (ok, verdicts) = verdicts(&["file"]);
    assert!(ok, "{verdicts:#?}");
    assert_eq!(verdicts.len(), RULES, "{verdicts:#?}");
    rules(&verdicts).into_iter().map(String::from).collect()
}

fn misbehave() -> String {
    guest("tsohost_test_misbehave.wasm")
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_built_in_drivers_keep_every_rule() {
    std::thread::scope(|s| {
        for driver in ["file", "raft", "paxos"] {
            s.spawn(move || {
                let (ok, out) = check(&[driver]);
                assert!(ok, "{driver}:\n{out}");
                assert!(
                    out.ends_with(&format!("all {RULES} rules hold\n")),
                    "{driver}:\n{out}"
                );
            });
        }
    });
    let file = guest("tsohost_driver_file.wasm");
    let (ok, verdicts) = verdicts(&[file.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(verdicts.len(), RULES);
    assert!(verdicts.iter().all(|v| v["outcome"] == "pass"));
}

/// Each `break=` mode of the misbehaving driver fails the rule it breaks
/// (and, where it breaks nothing else, only that rule); every report lists
/// every rule.
#[test]
fn each_broken_rule_is_caught() {
    let misbehave = misbehave();
    let every_rule = every_rule();
    // (option, the rule it breaks, whether it breaks that rule only)
    let cases = [
        (
            "break=no-sync",
            "persist completes after a synced write",
            false,
        ),
        ("break=decrease", "high water never decreases", false),
        ("break=no-fence", "stale epochs are fenced", true),
        ("break=no-range", "out-of-range is rejected", true),
        ("break=no-floor", "floor is respected", true),
        ("break=amnesia", "state survives re-instantiation", false),
        ("break=no-leader", "leadership is reported", true),
        (
            "break=complete-before-sync",
            "persist completes after a synced write",
            true,
        ),
        ("break=fence-only-zero", "stale epochs are fenced", true),
        (
            "break=static-epoch",
            "each restart leads in a newer epoch",
            true,
        ),
        (
            "break=unsynced-epoch",
            "each restart leads in a newer epoch",
            true,
        ),
        (
            "fault=loop-on-persist=2",
            "no call traps or runs past the time limit",
            false,
        ),
    ];
    std::thread::scope(|s| {
        for (option, rule, only) in cases {
            let (misbehave, every_rule) = (&misbehave, &every_rule);
            s.spawn(move || {
                let (ok, out) = check(&[misbehave, "--driver-option", option]);
                assert!(!ok, "{option}: passed\n{out}");
                assert!(
                    out.contains(&format!("FAIL  {rule}:")),
                    "{option}: {rule} not failed\n{out}"
                );
                let (_, verdicts) = verdicts(&[misbehave, "--driver-option", option]);
                assert_eq!(rules(&verdicts), *every_rule, "{option}: other rules");
                let failed: Vec<&str> = verdicts
                    .iter()
                    .filter(|v| v["outcome"] == "fail")
                    .map(|v| v["rule"].as_str().unwrap())
                    .collect();
                if only {
                    assert_eq!(failed, [rule], "{option}\n{out}");
                }
            });
        }
    });
}

#[test]
fn a_trap_in_init_is_reported_as_a_trap() {
    let (ok, out) = check(&[&misbehave(), "--driver-option", "fault=trap-in-init"]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  init: init trapped: "), "{out}");
    assert!(!out.contains("accepted"), "{out}");
    assert!(
        out.contains("FAIL  no call traps or runs past the time limit:"),
        "{out}"
    );
    // Nothing after init could be checked, and it says so.
    assert!(
        out.contains("skip  stale epochs are fenced: not checked: init failed"),
        "{out}"
    );
    assert_eq!(out.lines().count(), RULES + 1, "{out}");
}

#[test]
fn components_that_are_not_drivers_fail_the_first_rule() {
    let every_rule = every_rule();
    let wrong_world = guest("tsohost-test-wrong-world.wasm");
    let (ok, out) = check(&[wrong_world.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("FAIL  component and WIT version"), "{out}");
    let (_, verdicts) = verdicts(&[wrong_world.to_str().unwrap()]);
    assert_eq!(rules(&verdicts), every_rule);
    let (ok, out) = check(&[guest("tsohost_test_future_version.wasm").to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("@9.0.0"), "{out}");
}

/// The driver runs on a simulated clock and seeds: the same report twice.
#[test]
fn a_check_is_deterministic() {
    let (_, first) = check(&["raft", "--json"]);
    let (_, second) = check(&["raft", "--json"]);
    assert_eq!(first, second);
}
