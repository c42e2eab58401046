//! The rules `check-driver` judges, in the order it reports them, and the
//! [`Ledger`] that turns what the scenario observed into exactly one
//! verdict per rule.
//!
//! Invariant: every run reports every rule of [`Rule::ALL`], once, in that
//! order, whatever the driver does, so that reports of different drivers
//! (and of one driver before and after a fix) line up and a test can count
//! them. A rule the scenario could not check (a step it depends on failed)
//! is reported `skipped` with the reason, never left out.

use serde::Serialize;

/// One rule of the single-node contract (wit/driver.wit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Component,
    UnknownOptions,
    Init,
    Leadership,
    Load,
    SyncedBeforeCompletion,
    AtLeast,
    NeverDecreases,
    OutOfRange,
    Survives,
    NewerEpoch,
    Fenced,
    Floor,
    NoTraps,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 14] = [
        Rule::Component,
        Rule::UnknownOptions,
        Rule::Init,
        Rule::Leadership,
        Rule::Load,
        Rule::SyncedBeforeCompletion,
        Rule::AtLeast,
        Rule::NeverDecreases,
        Rule::OutOfRange,
        Rule::Survives,
        Rule::NewerEpoch,
        Rule::Fenced,
        Rule::Floor,
        Rule::NoTraps,
    ];

    /// The rule as reported (and as tests and scripts match it).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Component => "component and WIT version",
            Rule::UnknownOptions => "unknown options are refused",
            Rule::Init => "init",
            Rule::Leadership => "leadership is reported",
            Rule::Load => "load-high-water answers",
            Rule::SyncedBeforeCompletion => "persist completes after a synced write",
            Rule::AtLeast => "persist answers at least at-least",
            Rule::NeverDecreases => "high water never decreases",
            Rule::OutOfRange => "out-of-range is rejected",
            Rule::Survives => "state survives re-instantiation",
            Rule::NewerEpoch => "each restart leads in a newer epoch",
            Rule::Fenced => "stale epochs are fenced",
            Rule::Floor => "floor is respected",
            Rule::NoTraps => "no call traps or runs past the time limit",
        }
    }

    fn index(self) -> usize {
        Rule::ALL
            .iter()
            .position(|&r| r == self)
            .expect("every rule is in Rule::ALL")
    }
}

/// How a rule fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not checked: a step the rule depends on failed first.
    Skipped,
}

/// One rule's verdict, as printed and as `--json` serializes it
/// (`{"rule", "outcome", "detail"}`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub rule: &'static str,
    pub outcome: Outcome,
    /// What was observed; on a failure, also what to fix.
    pub detail: String,
}

impl Verdict {
    pub fn pass(rule: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(rule, Outcome::Pass, detail)
    }

    pub fn fail(rule: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(rule, Outcome::Fail, detail)
    }

    pub fn skipped(rule: &'static str, why: impl Into<String>) -> Verdict {
        Verdict::new(
            rule,
            Outcome::Skipped,
            format!("not checked: {}", why.into()),
        )
    }

    fn new(rule: &'static str, outcome: Outcome, detail: impl Into<String>) -> Verdict {
        Verdict {
            rule,
            outcome,
            detail: detail.into(),
        }
    }
}

/// What the scenario found, per rule. A rule may be judged at several
/// steps (every raising persist, every restart): the first failure is
/// kept, as it is the one to fix first; a pass never hides a failure; a
/// skip only fills a rule nothing judged.
#[derive(Debug, Default)]
pub struct Ledger {
    found: [Option<Verdict>; Rule::ALL.len()],
}

impl Ledger {
    /// `rule` held; `detail` replaces an earlier pass's (the last one
    /// summarizes every check).
    pub fn pass(&mut self, rule: Rule, detail: impl Into<String>) {
        let slot = &mut self.found[rule.index()];
        if !matches!(slot, Some(v) if v.outcome == Outcome::Fail) {
            *slot = Some(Verdict::pass(rule.name(), detail));
        }
    }

    /// `rule` is broken; the first failure recorded stands.
    pub fn fail(&mut self, rule: Rule, detail: impl Into<String>) {
        let slot = &mut self.found[rule.index()];
        if !matches!(slot, Some(v) if v.outcome == Outcome::Fail) {
            *slot = Some(Verdict::fail(rule.name(), detail));
        }
    }

    /// `ok`: [`Ledger::pass`] with `pass`, else [`Ledger::fail`] with `fail`.
    pub fn judge(&mut self, rule: Rule, ok: bool, pass: String, fail: String) -> bool {
        if ok {
            self.pass(rule, pass);
        } else {
            self.fail(rule, fail);
        }
        ok
    }

    /// Each of `rules` nothing judged yet could not be checked, because of `why`.
    pub fn skip(&mut self, rules: &[Rule], why: &str) {
        for &rule in rules {
            let slot = &mut self.found[rule.index()];
            if slot.is_none() {
                *slot = Some(Verdict::skipped(rule.name(), why));
            }
        }
    }

    /// Whether `rule` was judged and held.
    pub fn passed(&self, rule: Rule) -> bool {
        matches!(&self.found[rule.index()], Some(v) if v.outcome == Outcome::Pass)
    }

    /// One verdict per rule of [`Rule::ALL`], in order. A rule no step
    /// judged or skipped is skipped here, so none is ever missing.
    pub fn verdicts(self) -> Vec<Verdict> {
        Rule::ALL
            .iter()
            .zip(self.found)
            .map(|(rule, found)| {
                found.unwrap_or_else(|| {
                    Verdict::skipped(rule.name(), "the steps that check it did not run")
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_once_in_order_and_the_first_failure_stands() {
        let mut ledger = Ledger::default();
        ledger.pass(Rule::Init, "ok");
        ledger.fail(Rule::Fenced, "first");
        ledger.pass(Rule::Fenced, "later pass");
        ledger.fail(Rule::Fenced, "second");
        ledger.skip(&[Rule::Fenced, Rule::Floor], "why");
        let verdicts = ledger.verdicts();
        let names: Vec<_> = verdicts.iter().map(|v| v.rule).collect();
        let expected: Vec<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, expected);
        let of = |rule: Rule| &verdicts[rule.index()];
        assert_eq!(of(Rule::Init).outcome, Outcome::Pass);
        assert_eq!(of(Rule::Fenced).outcome, Outcome::Fail);
        assert_eq!(of(Rule::Fenced).detail, "first");
        assert_eq!(of(Rule::Floor).outcome, Outcome::Skipped);
        assert_eq!(of(Rule::Floor).detail, "not checked: why");
        assert_eq!(of(Rule::NoTraps).outcome, Outcome::Skipped);
    }

    #[test]
    fn outcomes_serialize_as_before() {
        let json = serde_json::to_value(Verdict::skipped("r", "x")).unwrap();
        assert_eq!(json["outcome"], "skipped");
        assert_eq!(json["rule"], "r");
    }
}
