//! `tsohost check-driver`: the built-in driver keeps every rule, and a
//! driver that breaks a rule is caught with a message naming it.

mod support;

use support::{BIN, guest};

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

#[test]
fn the_file_driver_keeps_every_rule() {
    let (ok, out) = check(&["file"]);
    assert!(ok, "{out}");
    assert!(out.contains("all 13 rules hold"), "{out}");
    let (ok, out) = check(&[
        guest("tsohost_driver_file.wasm").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{out}");
    let verdicts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        verdicts
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["outcome"] == "pass")
    );
}

#[test]
fn each_broken_rule_is_caught() {
    let misbehave = guest("tsohost_test_misbehave.wasm");
    let misbehave = misbehave.to_str().unwrap();
    let cases = [
        ("break=no-sync", "persist completes after a synced write"),
        ("break=decrease", "high water never decreases"),
        ("break=no-fence", "stale epochs are fenced"),
        ("break=no-range", "out-of-range is rejected"),
        ("break=no-floor", "floor is respected"),
        ("break=amnesia", "state survives re-instantiation"),
        ("break=no-leader", "leadership is reported"),
        (
            "fault=loop-on-persist=2",
            "no call traps or runs past the time limit",
        ),
    ];
    std::thread::scope(|s| {
        for (option, rule) in cases {
            s.spawn(move || {
                let (ok, out) = check(&[misbehave, "--driver-option", option]);
                assert!(!ok, "{option}: passed\n{out}");
                assert!(
                    out.contains(&format!("FAIL  {rule}:")),
                    "{option}: {rule} not failed\n{out}"
                );
            });
        }
    });
}

#[test]
fn components_that_are_not_drivers_fail_the_first_rule() {
    let (ok, out) = check(&[guest("tsohost-test-wrong-world.wasm").to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("FAIL  component and WIT version"), "{out}");
    let (ok, out) = check(&[guest("tsohost_test_future_version.wasm").to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("@9.0.0"), "{out}");
}
