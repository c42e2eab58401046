//! The single-node scenario: what `check-driver` does to a driver, step by
//! step, and how each step is judged.
//!
//! 1. `init` alone (node 1, bootstrap, floor 0, the user's options): if it
//!    refuses the user's options (`invalid-config`), nothing else runs and
//!    the report says so: the options are the user's to fix.
//!    Then `init` with one more, unknown option, on its own disk: refused
//!    with `invalid-config`.
//! 2. The instance of step 1 reports leadership
//!    (epoch `e1`), loads 0, persists `P1` (completed after a synced write
//!    made after the hand-over, answering at least `P1`), a lower persist and
//!    a load answer at least `P1`, and `2^46` is out of range.
//! 3. [`RESTARTS`] times: power loss, a fresh instance on the same disk. Each
//!    leads in an epoch greater than every epoch any earlier instance led
//!    in, and loads at least everything acknowledged before. The first
//!    restart persists nothing, so an epoch kept in unsynced writes is lost
//!    to the next power loss and comes back; the second persists again.
//! 4. The last instance is sent a persist under each epoch older than its
//!    own (every earlier instance's and 0.0): each fails with `fenced` and
//!    writes nothing; then a persist under its own epoch still succeeds.
//! 5. A fresh disk with a floor: load and a low persist answer at least it.
//! 6. No call trapped or overran, in any of the instances above.
//!
//! Every step that cannot run (its instance is gone, an earlier step it
//! builds on failed) leaves its rule to be reported skipped. A trap in any
//! step fails that step's rule with the trap, in the guest's words (what
//! it printed last, its exception), never as an answer of the contract.

use super::harness::{CALL_TIMEOUT, Lab, Persisted, Reply, StartFailure, Subject};
use super::rules::{Ledger, Rule};
use crate::driver::bindings::{DriverError, Epoch, describe};
use crate::timestamp::MAX_PHYSICAL_MS;

/// The option no driver knows.
const TYPO: &str = "tsohost-check-no-such-option";
/// Restarts of the node; the last instance judges fencing.
const RESTARTS: u32 = 3;
/// The floor of the floor step: far above anything persisted before.
const FLOOR: u64 = 1_000_000_000_000;
/// Between two persisted values.
const STEP: u64 = 1_000;
/// The epoch no host leads in: older than every real one.
const ZERO: Epoch = Epoch { hi: 0, lo: 0 };

/// Rules that need a running, leading instance.
const NEED_LEADER: &[Rule] = &[
    Rule::Load,
    Rule::SyncedBeforeCompletion,
    Rule::AtLeast,
    Rule::NeverDecreases,
    Rule::OutOfRange,
    Rule::Survives,
    Rule::NewerEpoch,
    Rule::Fenced,
    Rule::Floor,
];

/// Run the scenario with `lab`'s driver; the component rule is the
/// caller's. `Err(why)`: the driver refused the options the user gave
/// (`invalid-config` with options given): nothing could be checked, and
/// that is the user's to fix, not a break of the contract.
pub fn run(lab: &Lab, ledger: &mut Ledger) -> Result<(), String> {
    let mut node = Subject::new(lab, 0);
    let started = node.start();
    if let Err(StartFailure::Refused(DriverError::InvalidConfig(message))) = &started
        && !lab.options.is_empty()
    {
        let given = lab
            .options
            .iter()
            .map(|(k, v)| format!("--driver-option {k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let why = format!(
            "the driver refused the options given ({given}): invalid-config: {message}; fix or \
             drop them (the driver's documentation lists the options it takes)"
        );
        ledger.fail(Rule::Init, &why);
        let skipped = "the driver refused the options given";
        ledger.skip(
            &[Rule::UnknownOptions, Rule::Leadership, Rule::NoTraps],
            skipped,
        );
        ledger.skip(NEED_LEADER, skipped);
        return Err(why);
    }
    // A driver that refuses the options given would refuse one more for
    // that reason alone: this probe runs only once they are accepted.
    unknown_options(lab, ledger);
    match started {
        Err(failure) => {
            let detail = match failure {
                StartFailure::Refused(e) => format!(
                    "init refused a single-node config (node 1 alone, bootstrap, floor 0): {}; \
                     a driver must start alone",
                    describe(&e)
                ),
                StartFailure::Trapped(reason) => format!("init trapped: {reason}"),
            };
            ledger.fail(Rule::Init, detail);
            ledger.skip(&[Rule::Leadership], "init failed");
            ledger.skip(NEED_LEADER, "init failed");
        }
        Ok(()) => {
            ledger.pass(
                Rule::Init,
                "init succeeded for a single-node config (node 1 alone, bootstrap)",
            );
            lifecycle(&mut node, ledger);
            drop(node);
            if ledger.passed(Rule::Leadership) {
                floor(lab, ledger);
            }
        }
    }
    no_traps(lab, ledger);
    Ok(())
}

fn unknown_options(lab: &Lab, ledger: &mut Ledger) {
    let mut typo = lab.options.to_vec();
    typo.push((TYPO.into(), "1".into()));
    let mut probe = Subject::new(lab, 0);
    match probe.start_with(typo) {
        Err(StartFailure::Refused(DriverError::InvalidConfig(message))) => {
            ledger.pass(
                Rule::UnknownOptions,
                format!("init returned invalid-config: {message}"),
            );
        }
        Err(StartFailure::Refused(e)) => ledger.fail(
            Rule::UnknownOptions,
            format!(
                "init refused the unknown option `{TYPO}`, but with {}; answer invalid-config \
                 naming the option",
                describe(&e)
            ),
        ),
        Err(StartFailure::Trapped(reason)) => ledger.fail(
            Rule::UnknownOptions,
            format!(
                "given the unknown option `{TYPO}`, init trapped: {reason}; answer \
                 invalid-config instead"
            ),
        ),
        Ok(()) => ledger.fail(
            Rule::UnknownOptions,
            format!(
                "init accepted the option `{TYPO}`; return invalid-config for keys you do not \
                 know, so typos are not silently ignored"
            ),
        ),
    }
}

/// Why an instance did not lead, for a failure's detail.
fn not_leading(reply: &Reply) -> String {
    match reply {
        Reply::Silent => format!(
            "node 1, alone in its cluster, never reported itself leader within {} s of \
             simulated time, ticked as it asked; call host.report-leadership with role leader \
             and leader 1",
            super::harness::BUDGET_MS / 1000
        ),
        Reply::Trapped(reason) => {
            format!("while node 1 was to report leadership, the instance trapped: {reason}")
        }
        other => format!("node 1 never reported itself leader: {other}"),
    }
}

/// What the persists of the scenario established.
#[derive(Default)]
struct Persists {
    /// The highest value any persist acknowledged: what every later load
    /// must answer at least.
    acked: u64,
    /// Raising persists judged so far.
    raised: u32,
}

impl Persists {
    /// A persist above everything persisted so far (`what` names it for a
    /// detail): it completes with at least `at_least`, and only after a
    /// storage-write with sync that happened after it was handed over.
    fn raise(
        &mut self,
        node: &mut Subject,
        ledger: &mut Ledger,
        at_least: u64,
        epoch: Epoch,
        what: &str,
    ) -> Option<u64> {
        let Persisted {
            reply,
            synced_before,
            trace,
        } = node.persist(at_least, epoch);
        let rules = [Rule::SyncedBeforeCompletion, Rule::AtLeast];
        let value = match reply {
            Reply::NoInstance => {
                ledger.skip(&rules, &format!("{what}: no instance ran"));
                return None;
            }
            Reply::Done(Ok(value)) => value,
            Reply::Trapped(reason) => {
                let detail = format!("{what} ({at_least}, epoch {epoch}) trapped: {reason}");
                ledger.fail(Rule::SyncedBeforeCompletion, &detail);
                ledger.fail(Rule::AtLeast, detail);
                return None;
            }
            other => {
                let detail = format!("{what} ({at_least}, epoch {epoch}) answered {other}");
                ledger.fail(Rule::SyncedBeforeCompletion, &detail);
                ledger.fail(Rule::AtLeast, detail);
                return None;
            }
        };
        self.raised += 1;
        self.acked = self.acked.max(value);
        ledger.judge(
            Rule::SyncedBeforeCompletion,
            synced_before,
            format!(
                "each of {} persists completed after a storage-write with sync=true made after \
                 it was handed over",
                self.raised
            ),
            format!(
                "{what} ({at_least}) completed before any storage-write with sync=true made \
                 after it was handed over (in order: {trace}); the value would be lost in a \
                 power cut: write it with sync=true and call completed only after that write \
                 returned"
            ),
        );
        ledger.judge(
            Rule::AtLeast,
            value >= at_least,
            format!(
                "each of {} persists answered at least at-least",
                self.raised
            ),
            format!(
                "{what}: asked {at_least}, answered {value}; complete with the durable high \
                 water, which is at least at-least"
            ),
        );
        Some(value)
    }
}

/// Steps 2 to 4, on one disk.
fn lifecycle(node: &mut Subject, ledger: &mut Ledger) {
    let epoch = match node.await_leadership() {
        Ok(epoch) => {
            ledger.pass(Rule::Leadership, format!("leader in epoch {epoch}"));
            epoch
        }
        Err(reply) => {
            ledger.fail(Rule::Leadership, not_leading(&reply));
            ledger.skip(NEED_LEADER, "node 1 never led");
            return;
        }
    };
    let loaded = node.load();
    if !trapped(
        ledger,
        Rule::Load,
        "load-high-water on empty storage",
        &[&loaded],
    ) {
        ledger.judge(
            Rule::Load,
            loaded == Reply::Done(Ok(0)),
            "0 on empty storage".into(),
            format!(
                "on empty storage with floor 0, load answered {loaded}; answer 0: nothing was \
                 persisted"
            ),
        );
    }

    let mut persists = Persists::default();
    let first = persists.raise(node, ledger, 2 * STEP, epoch, "the first persist");
    never_decreases(node, ledger, first, epoch);
    out_of_range(node, ledger, epoch);

    let mut earlier: Vec<Epoch> = node.led_in().to_vec();
    for round in 1..=RESTARTS {
        let what = format!("restart {round} (after a power loss)");
        if let Err(failure) = node.start() {
            ledger.fail(Rule::Survives, format!("{what}: {failure}"));
            ledger.skip(&[Rule::NewerEpoch, Rule::Fenced], "a restart failed");
            return;
        }
        let epoch = match node.await_leadership() {
            Ok(epoch) => epoch,
            Err(reply) => {
                ledger.fail(Rule::Survives, format!("{what}: {}", not_leading(&reply)));
                ledger.skip(
                    &[Rule::NewerEpoch, Rule::Fenced],
                    "a restarted instance never led",
                );
                return;
            }
        };
        let reloaded = node.load();
        if trapped(
            ledger,
            Rule::Survives,
            &format!("{what}: a load"),
            &[&reloaded],
        ) {
            ledger.skip(
                &[Rule::NewerEpoch, Rule::Fenced],
                "a restarted instance trapped",
            );
            return;
        }
        ledger.judge(
            Rule::Survives,
            reloaded.ok().is_some_and(|v| v >= persists.acked),
            format!(
                "after each of {round} power losses a fresh instance on the same storage led \
                 again and loaded at least {}",
                persists.acked
            ),
            format!(
                "{what}: load answered {reloaded}, but {} was acknowledged before; keep all \
                 state in host storage, written with sync=true before completing",
                persists.acked
            ),
        );
        let above = persists.acked.max(reloaded.ok().unwrap_or(0));
        // A driver may answer anything: no arithmetic on its answers may
        // overflow (the report must come out whole).
        match round {
            // Nothing synced after this instance took its epoch: a power
            // loss now shows whether the epoch was synced.
            1 => {}
            RESTARTS => {
                stale_epochs(node, ledger, &earlier, epoch, reloaded.ok());
                // Above whatever a stale persist that was not fenced wrote.
                let at = above.saturating_add(STEP * (earlier.len() as u64 + 2));
                persists.raise(
                    node,
                    ledger,
                    at,
                    epoch,
                    "a persist under the current epoch after the stale ones",
                );
            }
            _ => {
                let what = format!("{what}: a persist");
                persists.raise(node, ledger, above.saturating_add(STEP), epoch, &what);
            }
        }
        // Every epoch this instance reported, through all it was asked.
        newer_epoch(ledger, &what, &earlier, node.led_in());
        earlier.extend_from_slice(node.led_in());
    }
    ledger.pass(
        Rule::NewerEpoch,
        format!(
            "{} instances ({RESTARTS} restarts, each after a power loss) led in epochs {}",
            RESTARTS + 1,
            earlier
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" < ")
        ),
    );
}

/// A persist below the high water and a load after it answer at least it.
fn never_decreases(node: &mut Subject, ledger: &mut Ledger, first: Option<u64>, epoch: Epoch) {
    let Some(high) = first else {
        ledger.skip(
            &[Rule::NeverDecreases],
            "the first persist did not complete",
        );
        return;
    };
    let lower = high.saturating_sub(STEP / 2);
    let persisted = node.persist(lower, epoch).reply;
    if persisted == Reply::NoInstance {
        ledger.skip(&[Rule::NeverDecreases], "the instance was lost earlier");
        return;
    }
    let what = format!("after persisting {high}, a persist of {lower}");
    if trapped(ledger, Rule::NeverDecreases, &what, &[&persisted]) {
        return;
    }
    let reread = node.load();
    if trapped(
        ledger,
        Rule::NeverDecreases,
        &format!("{what}, then a load"),
        &[&reread],
    ) {
        return;
    }
    ledger.judge(
        Rule::NeverDecreases,
        persisted.ok().is_some_and(|v| v >= high) && reread.ok().is_some_and(|v| v >= high),
        format!("after {high}, a persist of {lower} answered {persisted} and a load {reread}"),
        format!(
            "after persisting {high}, a persist of {lower} answered {persisted} and a load \
             {reread}; a lower persist completes with the current, larger high water"
        ),
    );
}

fn out_of_range(node: &mut Subject, ledger: &mut Ledger, epoch: Epoch) {
    let too_far = MAX_PHYSICAL_MS + 1;
    let reply = node.persist(too_far, epoch).reply;
    match reply {
        Reply::NoInstance => ledger.skip(&[Rule::OutOfRange], "the instance was lost earlier"),
        Reply::Done(Err(DriverError::OutOfRange(_))) => {
            ledger.pass(Rule::OutOfRange, "2^46 failed with out-of-range");
        }
        Reply::Trapped(reason) => ledger.fail(
            Rule::OutOfRange,
            format!("a persist of 2^46 trapped: {reason}"),
        ),
        other => ledger.fail(
            Rule::OutOfRange,
            format!("a persist of 2^46 answered {other}; answer out-of-range"),
        ),
    }
}

/// Every epoch `now` (the new instance's) must be above every `earlier`
/// one.
fn newer_epoch(ledger: &mut Ledger, what: &str, earlier: &[Epoch], now: &[Epoch]) {
    let Some(newest) = earlier.iter().max() else {
        return;
    };
    if let Some(stale) = now.iter().find(|e| *e <= newest) {
        ledger.fail(
            Rule::NewerEpoch,
            format!(
                "{what}: the new instance led in epoch {stale}, but an earlier one led in \
                 {newest}: every instance must lead in an epoch greater than every earlier \
                 one (a host may still hold requests of the old one), so take a new epoch on \
                 every start and write it with sync=true before reporting leadership"
            ),
        );
    }
}

/// A persist under each epoch older than `current` fails with `fenced` and
/// writes nothing (`loaded`: what the instance loaded before them). The
/// values asked lie in `(loaded, loaded + STEP * (earlier.len() + 1)]`.
fn stale_epochs(
    node: &mut Subject,
    ledger: &mut Ledger,
    earlier: &[Epoch],
    current: Epoch,
    loaded: Option<u64>,
) {
    let mut stale: Vec<Epoch> = earlier.iter().copied().chain([ZERO]).collect();
    stale.sort();
    stale.dedup();
    stale.retain(|e| *e < current);
    if stale.is_empty() {
        ledger.skip(
            &[Rule::Fenced],
            &format!("no epoch older than {current} was led in"),
        );
        return;
    }
    let base = loaded.unwrap_or(0);
    for (k, &epoch) in stale.iter().enumerate() {
        let at_least = base.saturating_add(STEP * (k as u64 + 1));
        match node.persist(at_least, epoch).reply {
            Reply::Done(Err(DriverError::Fenced(newer))) if newer > epoch => {}
            Reply::NoInstance => {
                ledger.skip(&[Rule::Fenced], "the instance was lost earlier");
                return;
            }
            Reply::Trapped(reason) => {
                ledger.fail(
                    Rule::Fenced,
                    format!("a persist under the older epoch {epoch} trapped: {reason}"),
                );
                return;
            }
            other => {
                ledger.fail(
                    Rule::Fenced,
                    format!(
                        "a persist under epoch {epoch}, older than the {current} this instance \
                         leads in, answered {other}; fail it with fenced carrying the newer \
                         epoch: a host that led in {epoch} may still be sending"
                    ),
                );
                return;
            }
        }
    }
    let reread = node.load();
    if trapped(
        ledger,
        Rule::Fenced,
        "a load after the stale persists",
        &[&reread],
    ) {
        return;
    }
    let tried = stale
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    ledger.judge(
        Rule::Fenced,
        loaded.is_some() && reread.ok() == loaded,
        format!("persists under every older epoch ({tried}) failed with fenced and wrote nothing"),
        format!(
            "persists under the older epochs {tried} failed with fenced, but a load then \
             answered {reread} instead of {}: a fenced persist must write nothing",
            loaded.map_or("(no earlier load)".into(), |v| v.to_string())
        ),
    );
}

/// Step 5: a fresh disk with a floor far above anything persisted.
fn floor(lab: &Lab, ledger: &mut Ledger) {
    let mut node = Subject::new(lab, FLOOR);
    if let Err(failure) = node.start() {
        ledger.fail(Rule::Floor, format!("with floor {FLOOR}: {failure}"));
        return;
    }
    let epoch = match node.await_leadership() {
        Ok(epoch) => epoch,
        Err(reply) => {
            ledger.fail(
                Rule::Floor,
                format!("with floor {FLOOR}: {}", not_leading(&reply)),
            );
            return;
        }
    };
    let loaded = node.load();
    let low = 100;
    let persisted = node.persist(low, epoch).reply;
    let what = format!("floor {FLOOR} on empty storage: a load and a persist of {low}");
    if trapped(ledger, Rule::Floor, &what, &[&loaded, &persisted]) {
        return;
    }
    let at_floor = |reply: &Reply| reply.ok().is_some_and(|v| v >= FLOOR);
    ledger.judge(
        Rule::Floor,
        at_floor(&loaded) && at_floor(&persisted),
        format!("floor {FLOOR}: load answered {loaded}, a persist of {low} {persisted}"),
        format!(
            "floor {FLOOR} on empty storage: load answered {loaded} and a persist of {low} \
             {persisted}; never answer below config.floor"
        ),
    );
}

/// If a reply is a trap, `rule` fails with the trap in the guest's words
/// (`what` names the step), and true: a trap is never judged as an answer
/// of the contract.
fn trapped(ledger: &mut Ledger, rule: Rule, what: &str, replies: &[&Reply]) -> bool {
    let Some(reason) = replies.iter().find_map(|reply| match reply {
        Reply::Trapped(reason) => Some(reason),
        _ => None,
    }) else {
        return false;
    };
    ledger.fail(rule, format!("{what}: the instance trapped: {reason}"));
    true
}

/// Step 6, over every instance of the check.
fn no_traps(lab: &Lab, ledger: &mut Ledger) {
    let crashes = lab.crashes();
    // The same trap in every instance is told once, with its count.
    let mut distinct: Vec<(&String, usize)> = Vec::new();
    for crash in &crashes {
        match distinct.iter_mut().find(|(c, _)| *c == crash) {
            Some((_, n)) => *n += 1,
            None => distinct.push((crash, 1)),
        }
    }
    let told: Vec<String> = distinct
        .iter()
        .map(|(crash, n)| match n {
            1 => crash.to_string(),
            n => format!("{crash} ({n} times)"),
        })
        .collect();
    ledger.judge(
        Rule::NoTraps,
        crashes.is_empty(),
        format!(
            "no call trapped or overran in {} instances",
            lab.instances()
        ),
        format!(
            "{} of {} instances were lost: {}; a driver must not trap, and must return from \
             every call within {CALL_TIMEOUT:?}",
            crashes.len(),
            lab.instances(),
            told.join("; ")
        ),
    );
}
