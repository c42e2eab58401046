//! `tsohost check-driver`: runs the driver contract (wit/driver.wit)
//! against a component and reports each rule kept, broken or not checked,
//! in words a driver author can act on.
//!
//! - [`rules`]: the fixed catalogue of rules and the ledger that reports
//!   each exactly once, in order;
//! - [`harness`]: one node of the driver, run synchronously in the real
//!   sandbox on an in-memory disk with power loss and a simulated clock;
//! - [`single_node`]: the scenario that judges the rules.
//!
//! The component is compiled once ([`load`]); every instance of the check,
//! and a caller's extra check ([`ClusterCheck`]), run from that one
//! [`LoadedDriver`].

mod harness;
mod rules;
mod single_node;

pub use rules::{Outcome, Rule, Verdict};

use crate::driver::{DriverSource, GuestLimits, LoadError, LoadedDriver, Runtime};
use harness::Lab;
use rules::Ledger;
use serde::Serialize;
use std::path::PathBuf;

/// The name of the rule a simulated cluster judges, when the caller checks
/// one (see [`ClusterCheck`]).
pub const CLUSTER_RULE: &str = "keeps the contract in a simulated cluster";

/// A check of the loaded driver in a simulated cluster, run after the
/// single-node rules with the same component and options: `Ok(detail)` if
/// the driver kept the contract, `Err(detail)` naming what broke. Given to
/// [`check`], it adds [`CLUSTER_RULE`] to every report (skipped when the
/// component does not load or does not start alone), so the set of rules
/// stays the same from run to run.
pub type ClusterCheck<'a> =
    &'a dyn Fn(&LoadedDriver, &[(String, String)]) -> Result<String, String>;

/// The verdicts of one check, in rule order; `--json` prints them as an
/// array of `{"rule", "outcome", "detail"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Report {
    verdicts: Vec<Verdict>,
    /// Why nothing could be checked if the driver refused the options the
    /// user gave: theirs to fix, not a break of the contract.
    #[serde(skip)]
    refused_options: Option<String>,
}

impl Report {
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// Whether every rule was checked and held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.outcome == Outcome::Pass)
    }

    /// Set if the driver refused the `--driver-option`s given (then every
    /// rule but `init` is skipped): why, and what to do.
    pub fn refused_options(&self) -> Option<&str> {
        self.refused_options.as_deref()
    }

    /// Lines for a terminal, ending with the count of rules that hold or
    /// not.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for v in &self.verdicts {
            let mark = match v.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skipped => "skip",
            };
            out.push_str(&format!("{mark}  {}: {}\n", v.rule, v.detail));
        }
        let total = self.verdicts.len();
        if self.passed() {
            out.push_str(&format!("all {total} rules hold\n"));
        } else if self.refused_options.is_some() {
            out.push_str(&format!(
                "none of {total} rules checked: the driver refused the options given\n"
            ));
        } else {
            let failed = self
                .verdicts
                .iter()
                .filter(|v| v.outcome == Outcome::Fail)
                .count();
            let skipped = self
                .verdicts
                .iter()
                .filter(|v| v.outcome == Outcome::Skipped)
                .count();
            out.push_str(&format!(
                "{failed} of {total} rules broken, {skipped} not checked\n"
            ));
        }
        out
    }
}

/// Compile and validate the component once, under the limits every
/// instance of the check runs under. With `cache_dir`, compiled code is
/// kept there and reused as `serve` does (keyed by the component's digest
/// and the engine), so a second check of an unchanged component skips the
/// compilation (seconds to tens of seconds for a large component).
pub fn load(source: &DriverSource, cache_dir: Option<PathBuf>) -> Result<LoadedDriver, LoadError> {
    Runtime::new(cache_dir)?
        .with_limits(GuestLimits {
            memory: harness::MEMORY_LIMIT,
            call_timeout: harness::CALL_TIMEOUT,
        })
        .load(source)
}

/// Check `source` against the contract, as a single node with `options`
/// given to every `init`, then with `cluster` if given; compiled code is
/// cached in `cache_dir` (see [`load`]).
pub fn check(
    source: &DriverSource,
    options: &[(String, String)],
    cluster: Option<ClusterCheck<'_>>,
    cache_dir: Option<PathBuf>,
) -> Report {
    let mut ledger = Ledger::default();
    let mut refused_options = None;
    let driver = match load(source, cache_dir) {
        Ok(driver) => {
            ledger.pass(
                Rule::Component,
                format!("exports tsohost:driver/driver@{}", driver.wit_version),
            );
            refused_options = single_node::run(&Lab::new(&driver, options), &mut ledger).err();
            Some(driver)
        }
        Err(e) => {
            ledger.fail(Rule::Component, e.to_string());
            ledger.skip(&Rule::ALL, "the component did not load");
            None
        }
    };
    let started_alone = ledger.passed(Rule::Init);
    let mut verdicts = ledger.verdicts();
    let alone_ok = verdicts.iter().all(|v| v.outcome == Outcome::Pass);
    if let Some(cluster) = cluster {
        verdicts.push(match &driver {
            None => Verdict::skipped(CLUSTER_RULE, "the component did not load"),
            Some(_) if refused_options.is_some() => {
                Verdict::skipped(CLUSTER_RULE, "the driver refused the options given")
            }
            Some(_) if !started_alone => Verdict::skipped(CLUSTER_RULE, "init failed alone"),
            // The simulation assumes a driver that keeps the rules alone;
            // one that breaks them would only fail it again, slowly.
            Some(_) if !alone_ok => Verdict::skipped(
                CLUSTER_RULE,
                "not simulated: fix the rules a single node breaks (above) first",
            ),
            Some(driver) => match cluster(driver, options) {
                Ok(detail) => Verdict::pass(CLUSTER_RULE, detail),
                Err(detail) => Verdict::fail(CLUSTER_RULE, detail),
            },
        });
    }
    Report {
        verdicts,
        refused_options,
    }
}
