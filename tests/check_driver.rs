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

/// A guest that prints and then traps: the report shows the trap, the
/// panic's message and what it printed, in the rule whose step trapped
/// (never as an answer of the contract), and in the "no call traps" rule.
#[test]
fn a_trap_is_reported_with_what_the_guest_printed() {
    let option = "fault=print-then-trap-on-persist=1";
    let (ok, out) = check(&[&misbehave(), "--driver-option", option]);
    assert!(!ok, "{out}");
    let failed = |rule: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("FAIL  {rule}:")))
            .unwrap_or_else(|| panic!("{rule} not failed:\n{out}"))
            .to_string()
    };
    for rule in [
        "persist completes after a synced write",
        "no call traps or runs past the time limit",
    ] {
        let line = failed(rule);
        for said in [
            "`persist-high-water` trapped",
            "the guest's exception: misbehave: trapping on purpose after printing",
            "misbehave: a line on stdout before the trap",
            "misbehave: a line on stderr before the trap",
        ] {
            assert!(line.contains(said), "{said:?} missing from {line}");
        }
        assert!(!line.contains(" answered "), "{line}");
    }
    assert_eq!(out.lines().count(), RULES + 1, "{out}");
}

/// A trap in `init` under the unknown-option probe is a trap, not an
/// acceptance of the option.
#[test]
fn a_trap_in_the_unknown_option_probe_is_a_trap() {
    let (ok, out) = check(&[&misbehave(), "--driver-option", "fault=print-then-trap"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAIL  unknown options are refused: given the unknown option"),
        "{out}"
    );
    assert!(out.contains("init trapped"), "{out}");
    assert!(!out.contains("accepted"), "{out}");
    assert!(out.contains("a line on stdout before the trap"), "{out}");
    assert_eq!(out.lines().count(), RULES + 1, "{out}");
}

/// A driver refusing the user's own `--driver-option` is the options'
/// fault: said so, every other rule skipped, no "breaks the contract".
#[test]
fn refused_options_are_the_users_to_fix() {
    let out = std::process::Command::new(BIN)
        .args(["check-driver", "file", "--driver-option", "no-such=1"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stdout.contains(
            "FAIL  init: the driver refused the options given (--driver-option no-such=1)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("skip  unknown options are refused: not checked: the driver refused"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), RULES + 1, "{stdout}");
    assert!(
        stderr.contains("error: the driver refused the options given"),
        "{stderr}"
    );
    assert!(!stderr.contains("breaks the contract"), "{stderr}");
}

/// Compiled components are cached as `serve` caches them: the first check
/// compiles and says where it keeps the result, the second loads it and
/// says so, and the report is the same.
#[test]
fn a_second_check_loads_the_compiled_component_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let file = guest("tsohost_driver_file.wasm");
    let run = || {
        let out = std::process::Command::new(BIN)
            .args(["check-driver", file.to_str().unwrap()])
            .env("XDG_CACHE_HOME", cache.path())
            .env_remove("TSOHOST_CACHE_DIR")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success());
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (first, log) = run();
    assert!(log.contains("compiling"), "{log}");
    assert!(!log.contains("from the cache"), "{log}");
    let entries = std::fs::read_dir(cache.path().join("tsohost"))
        .unwrap()
        .count();
    assert_eq!(entries, 1);
    let (second, log) = run();
    assert!(log.contains("compiled earlier, from the cache"), "{log}");
    assert!(!log.contains("compiling"), "{log}");
    assert_eq!(first, second);
}
