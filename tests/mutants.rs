//! The trust gate's mutant suite: `tsohost check-driver` refuses every
//! deliberately broken driver below and passes every real one.
//!
//! A mutant is a driver that is right but for one rule of the contract
//! (wit/driver.wit): the test-only single-node driver `misbehave` with a
//! `break=` mode, and copies of the built-in replicated drivers compiled
//! from their own sources with mutation hooks (`raft-mutant`,
//! `paxos-mutant`) with a `mutant=` option. [`MUTANTS`] lists every one
//! with the rule it breaks; guest-drivers/testing/README.md says why the
//! gate must catch each, and how each copy's mutants are shown to break
//! their rule in the SDK's simulator.
//!
//! A mutant must be refused for what it breaks, not for failing to start:
//! each must load, refuse an unknown option and start alone, and the rule
//! named in the table must be among those `check-driver` reports broken.
//! Mutants whose break only shows in a cluster are judged by
//! `check-driver`'s simulated-cluster rule ([`CLUSTER_RULE`]).

mod support;

use std::process::Command;

use serde_json::Value;
use support::{BIN, guest};
use tsohost::tools::conformance::CLUSTER_RULE;

/// Where a mutant's break shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shows {
    /// On a node alone: a single-node rule of `check-driver` fails.
    Alone,
    /// Only among several nodes (leases, quorums, elections, power cuts of
    /// a cluster): `check-driver`'s simulated cluster must fail it.
    InCluster,
}

/// One deliberately broken driver.
struct Mutant {
    /// The component, in the guest workspace's output directory.
    component: &'static str,
    /// The `--driver-option` that breaks it.
    option: &'static str,
    /// The rule of the contract it breaks.
    breaks: &'static str,
    /// What it does.
    does: &'static str,
    shows: Shows,
    /// The `check-driver` rule that must fail.
    rule: &'static str,
}

const MISBEHAVE: &str = "tsohost_test_misbehave.wasm";
const RAFT: &str = "tsohost_test_mutant_raft.wasm";
const PAXOS: &str = "tsohost_test_mutant_paxos.wasm";

/// Every mutant the test components know (checked by
/// `the_table_lists_every_mutant`).
const MUTANTS: &[Mutant] = &[
    // The single-node register with one rule broken (`misbehave`).
    Mutant {
        component: MISBEHAVE,
        option: "break=no-sync",
        breaks: "a persist completes only once durable",
        does: "writes the high water without sync, then completes",
        shows: Shows::Alone,
        rule: "persist completes after a synced write",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=complete-before-sync",
        breaks: "a persist completes only once durable",
        does: "completes the persist, then writes the value with sync in the same call",
        shows: Shows::Alone,
        rule: "persist completes after a synced write",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=decrease",
        breaks: "the durable high water never decreases",
        does: "stores a lower at-least over a higher high water",
        shows: Shows::Alone,
        rule: "high water never decreases",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=no-fence",
        breaks: "a persist from an epoch older than the newest accepted fails with fenced",
        does: "never checks the epoch",
        shows: Shows::Alone,
        rule: "stale epochs are fenced",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=fence-only-zero",
        breaks: "a persist from an epoch older than the newest accepted fails with fenced",
        does: "fences epoch 0.0 only, not the epochs of earlier instances",
        shows: Shows::Alone,
        rule: "stale epochs are fenced",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=static-epoch",
        breaks: "a later leadership has a strictly greater epoch",
        does: "leads every instance in epoch 1.0",
        shows: Shows::Alone,
        rule: "each restart leads in a newer epoch",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=unsynced-epoch",
        breaks: "a later leadership has a strictly greater epoch",
        does: "writes each instance's generation, its epoch, with sync=false",
        shows: Shows::Alone,
        rule: "each restart leads in a newer epoch",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=no-range",
        breaks: "at-least above 2^46 - 1 fails with out-of-range",
        does: "stores any at-least",
        shows: Shows::Alone,
        rule: "out-of-range is rejected",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=no-leader",
        breaks: "a driver reports leadership when known",
        does: "never reports leadership",
        shows: Shows::Alone,
        rule: "leadership is reported",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=no-floor",
        breaks: "load-high-water never answers below config.floor",
        does: "ignores the floor",
        shows: Shows::Alone,
        rule: "floor is respected",
    },
    Mutant {
        component: MISBEHAVE,
        option: "break=amnesia",
        breaks: "nothing may live only in guest memory",
        does: "keeps the high water in guest memory",
        shows: Shows::Alone,
        rule: "state survives re-instantiation",
    },
    // The raft driver with one hook enabled (`raft/src/core/mutant.rs`).
    Mutant {
        component: RAFT,
        option: "mutant=long-lease",
        breaks: "no other node can be granted leadership and serve before lease-until-ms",
        does: "reports a lease of 2 election timeouts, longer than the voters' refusal (1)",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: RAFT,
        option: "mutant=early-ack",
        breaks: "a persist completes only once committed by a quorum",
        does: "completes a persist once the leader appended it",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: RAFT,
        option: "mutant=unsynced-commit",
        breaks: "a completed persist survives the loss of every instance",
        does: "writes the committed index without sync",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: RAFT,
        option: "mutant=stale-read",
        breaks: "load-high-water is linearizable",
        does: "answers the leader's applied state without a ReadIndex round",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: RAFT,
        option: "mutant=no-floor",
        breaks: "load-high-water never answers below config.floor",
        does: "ignores the floor",
        shows: Shows::Alone,
        rule: "floor is respected",
    },
    Mutant {
        component: RAFT,
        option: "mutant=no-step-down",
        breaks: "transfer-leadership completes once this node stepped down and reported it",
        does: "lets openraft hand over without reporting the step-down first",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    // The paxos driver with one hook enabled (`paxos/src/core/mutant.rs`).
    Mutant {
        component: PAXOS,
        option: "mutant=unsynced-accept",
        breaks: "what a protocol needs durable before a message leaves is synced",
        does: "writes promises, accepted rounds and accepted entries without sync",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: PAXOS,
        option: "mutant=unacked-lease",
        breaks: "no other node can be granted leadership and serve before lease-until-ms",
        does: "extends the lease on every heartbeat sent, acknowledged by a quorum or not",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: PAXOS,
        option: "mutant=long-lease",
        breaks: "no other node can be granted leadership and serve before lease-until-ms",
        does: "reports a lease of 1.5 election timeouts, longer than the promise gate (1)",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
    Mutant {
        component: PAXOS,
        option: "mutant=no-fence",
        breaks: "a persist from an epoch older than the newest accepted fails with fenced",
        does: "never checks the request's epoch",
        shows: Shows::Alone,
        rule: "stale epochs are fenced",
    },
    Mutant {
        component: PAXOS,
        option: "mutant=short-persist",
        breaks: "a persist completes with a durable high water of at least at-least",
        does: "proposes at-least - 1",
        shows: Shows::Alone,
        rule: "persist answers at least at-least",
    },
    Mutant {
        component: PAXOS,
        option: "mutant=stale-read",
        breaks: "load-high-water is linearizable",
        does: "answers the leader's applied state without deciding a barrier",
        shows: Shows::InCluster,
        rule: CLUSTER_RULE,
    },
];

/// What `check-driver --json` said of `driver` with `options`: whether it
/// passed, and each rule's `(outcome, detail)` in report order.
struct Verdicts {
    passed: bool,
    rules: Vec<(String, String, String)>,
    output: String,
}

impl Verdicts {
    fn outcome(&self, rule: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(r, _, _)| r == rule)
            .map(|(_, o, _)| o.as_str())
    }

    fn detail(&self, rule: &str) -> &str {
        self.rules
            .iter()
            .find(|(r, _, _)| r == rule)
            .map_or("", |(_, _, d)| d.as_str())
    }

    fn failed(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|(_, o, _)| o == "fail")
            .map(|(r, _, _)| r.as_str())
            .collect()
    }
}

fn check_driver(driver: &str, options: &[&str]) -> Verdicts {
    let mut cmd = Command::new(BIN);
    cmd.args(["check-driver", driver, "--json"]);
    for o in options {
        cmd.args(["--driver-option", o]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let output = format!(
        "{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("check-driver {driver} {options:?}: not JSON ({e}):\n{output}"));
    let rules = json
        .as_array()
        .unwrap_or_else(|| panic!("check-driver {driver}: not an array:\n{output}"))
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("rule"), s("outcome"), s("detail"))
        })
        .collect();
    Verdicts {
        passed: out.status.success(),
        rules,
        output,
    }
}

/// Run `f` on every item, a few at a time (each runs a `check-driver`
/// process that compiles a component); then fail with every item's failure,
/// if any.
fn each<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    let mut failures = Vec::new();
    for chunk in items.chunks(4) {
        std::thread::scope(|s| {
            let running: Vec<_> = chunk.iter().map(|item| s.spawn(|| f(item))).collect();
            for r in running {
                if let Err(e) = r.join() {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(why);
                }
            }
        });
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n\n{}",
        failures.len(),
        items.len(),
        failures.join("\n\n")
    );
}

/// `check-driver` on mutant `m`: it loaded, refused an unknown option and
/// started alone, so whatever it fails, it fails for what it does.
fn check_mutant(m: &Mutant) -> Verdicts {
    let v = check_driver(guest(m.component).to_str().unwrap(), &[m.option]);
    for rule in [
        "component and WIT version",
        "unknown options are refused",
        "init",
    ] {
        assert_eq!(
            v.outcome(rule),
            Some("pass"),
            "{} {}: `{rule}` must hold for the mutant to prove anything (is the mode \
             implemented?)\n{}",
            m.component,
            m.option,
            v.output
        );
    }
    v
}

fn assert_refused(m: &Mutant, v: &Verdicts) {
    assert!(
        !v.passed,
        "{} {} breaks \"{}\" ({}), but check-driver passed it\n{}",
        m.component, m.option, m.breaks, m.does, v.output
    );
    assert!(
        v.failed().contains(&m.rule),
        "{} {} breaks \"{}\" ({}): check-driver must fail `{}`, it failed {:?}\n{}",
        m.component,
        m.option,
        m.breaks,
        m.does,
        m.rule,
        v.failed(),
        v.output
    );
}

fn mutants(shows: Shows) -> Vec<&'static Mutant> {
    MUTANTS.iter().filter(|m| m.shows == shows).collect()
}

/// The built-in drivers keep every rule; so do the test components the
/// mutants come from when no mutant is selected (the hooks change nothing
/// until chosen, so each refusal below is the mutation's doing).
#[test]
fn every_real_driver_passes() {
    let misbehave = guest(MISBEHAVE);
    let raft = guest(RAFT);
    let paxos = guest(PAXOS);
    let drivers = [
        "file",
        "raft",
        "paxos",
        misbehave.to_str().unwrap(),
        raft.to_str().unwrap(),
        paxos.to_str().unwrap(),
    ];
    each(&drivers, |driver| {
        let v = check_driver(driver, &[]);
        assert!(
            v.passed && v.failed().is_empty(),
            "{driver} must pass\n{}",
            v.output
        );
        assert!(v.rules.iter().all(|(_, o, _)| o == "pass"), "{}", v.output);
    });
}

/// Every mutant that breaks a rule a single node shows is refused, with
/// that rule among the broken ones.
#[test]
fn every_mutant_a_single_node_shows_is_refused() {
    each(&mutants(Shows::Alone), |m| {
        assert_refused(m, &check_mutant(m))
    });
}

/// Every mutant only a cluster shows starts alone (its options are right,
/// [`check_mutant`]) and is refused by `check-driver`'s simulated cluster.
#[test]
fn every_mutant_only_a_cluster_shows_is_refused() {
    each(&mutants(Shows::InCluster), |m| {
        let v = check_mutant(m);
        assert_refused(m, &v);
        assert_eq!(
            v.outcome(CLUSTER_RULE),
            Some("fail"),
            "{} {}: the simulated cluster must be what refuses it\n{}",
            m.component,
            m.option,
            v.output
        );
    });
}

/// The table lists every mutant each component knows: asked for one it
/// does not know, each names all of them.
#[test]
fn the_table_lists_every_mutant() {
    for (component, key) in [(MISBEHAVE, "break"), (RAFT, "mutant"), (PAXOS, "mutant")] {
        let v = check_driver(
            guest(component).to_str().unwrap(),
            &[&format!("{key}=tsohost-no-such-mutant")],
        );
        let detail = v.detail("init");
        let known: Vec<String> = detail
            .rsplit_once("one of ")
            .unwrap_or_else(|| panic!("{component}: init names no mutants\n{}", v.output))
            .1
            .split([';', '\n'])
            .next()
            .unwrap_or_default()
            .split(", ")
            .map(|m| format!("{key}={}", m.trim().trim_end_matches(['.', ')'])))
            .collect();
        let mut listed: Vec<String> = MUTANTS
            .iter()
            .filter(|m| m.component == component)
            .map(|m| m.option.to_string())
            .collect();
        let mut known_sorted = known.clone();
        known_sorted.sort();
        listed.sort();
        assert_eq!(listed, known_sorted, "{component}\n{}", v.output);
    }
    assert!(MUTANTS.len() >= 12);
}
