use super::*;
use proptest::prelude::*;

const ME: u64 = 1;
const WINDOW: u64 = 3000;
const T0: u64 = 1_700_000_000_000;

fn epoch(hi: u64) -> Epoch {
    Epoch { hi, lo: 0 }
}

fn report(leader: Option<u64>, hi: u64, lease_until_ms: u64) -> Leadership {
    Leadership {
        role: if leader == Some(ME) {
            Role::Leader
        } else {
            Role::Follower
        },
        leader,
        epoch: epoch(hi),
        lease_until_ms,
    }
}

/// A node's machine and allocator, the clocks, and a driver that remembers
/// the highest high water it made durable.
struct Node {
    m: TermMachine,
    alloc: Allocator,
    now: Now,
    durable: u64,
}

impl Node {
    fn new() -> Node {
        Node {
            m: TermMachine::new(ME, 0, false),
            alloc: Allocator::new(WINDOW),
            now: Now {
                wall_ms: T0,
                mono_ms: 1,
            },
            durable: 0,
        }
    }

    fn report(&mut self, r: Leadership) -> Vec<Effect> {
        self.m.on_leadership(&mut self.alloc, r)
    }

    fn complete(&mut self, request: Request, outcome: Result<u64, DriverError>) -> Vec<Effect> {
        self.m
            .on_completed(&mut self.alloc, request, outcome, self.now)
    }

    /// What a correct driver answers.
    fn answer(&mut self, request: Request) -> Result<u64, DriverError> {
        if let Some(target) = request.target() {
            self.durable = self.durable.max(target);
        }
        Ok(self.durable)
    }

    fn tick(&mut self) -> Vec<Effect> {
        self.m.on_tick(&mut self.alloc, self.now)
    }

    fn advance(&mut self, ms: u64) {
        self.now.wall_ms += ms;
        self.now.mono_ms += ms;
    }

    fn serving(&self) -> bool {
        self.alloc.is_serving(self.now)
    }

    /// Lead in epoch `hi` and answer the load and the start-up persist.
    fn lead(&mut self, hi: u64, lease_until_ms: u64) {
        let load = sent(&self.report(report(Some(ME), hi, lease_until_ms)));
        let answer = self.answer(load);
        let start = sent(&self.complete(load, answer));
        let answer = self.answer(start);
        let effects = self.complete(start, answer);
        assert!(effects.contains(&Effect::Settled), "{effects:?}");
        assert!(self.serving());
    }
}

/// The one request among `effects`.
fn sent(effects: &[Effect]) -> Request {
    let requests: Vec<Request> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1, "{effects:?}");
    requests[0]
}

#[test]
fn a_leader_loads_then_persists_a_window_then_serves() {
    let mut n = Node::new();
    n.durable = T0 + 10_000;
    let load = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    assert_eq!(load, Request::Load { epoch: epoch(1) });
    assert!(!n.serving());
    let answer = n.answer(load);
    let start = sent(&n.complete(load, answer));
    assert_eq!(
        start.target(),
        Some(T0 + 10_000 + WINDOW),
        "above the loaded high water"
    );
    assert!(!n.serving(), "not before the start-up persist completed");
    let answer = n.answer(start);
    let effects = n.complete(start, answer);
    assert_eq!(
        effects,
        vec![
            Effect::Serving {
                high_water: T0 + 10_000 + WINDOW
            },
            Effect::Settled
        ]
    );
    let grant = n.alloc.grant(1, n.now).unwrap();
    assert_eq!(grant.first.physical_ms(), T0 + 10_000);
}

#[test]
fn a_term_starts_above_the_floor() {
    let mut n = Node::new();
    n.m.set_floor(T0 + 60_000);
    let load = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    let start = sent(&n.complete(load, Ok(0)));
    assert_eq!(start.target(), Some(T0 + 60_000 + WINDOW));
}

#[test]
fn another_leader_stops_serving_at_once_and_settles() {
    let mut n = Node::new();
    n.lead(1, u64::MAX);
    let effects = n.report(report(Some(2), 2, 0));
    assert_eq!(effects, vec![Effect::Stopped, Effect::Settled]);
    assert!(!n.serving());
    assert!(!n.m.is_leading());
    assert_eq!(
        n.report(report(None, 3, 0)),
        vec![Effect::Stopped],
        "no known leader: not settled"
    );
}

#[test]
fn a_completion_of_an_older_epoch_is_ignored() {
    let mut n = Node::new();
    let old = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    let new = sent(&n.report(report(Some(ME), 2, u64::MAX)));
    assert_eq!(new, Request::Load { epoch: epoch(2) });
    assert_eq!(n.complete(old, Ok(0)), vec![]);
    assert!(sent(&n.complete(new, Ok(0))).target().is_some());
}

#[test]
fn a_start_of_an_earlier_term_in_the_same_epoch_is_ignored() {
    let mut n = Node::new();
    let load = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    let first = sent(&n.complete(load, Ok(0)));
    // Leadership lost and regained in the same epoch: a new term.
    n.report(report(None, 1, 0));
    let load = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    let second = sent(&n.complete(load, Ok(0)));
    assert_ne!(first, second);
    assert_eq!(n.complete(first, Ok(T0 + WINDOW)), vec![]);
    assert!(!n.serving());
    assert_eq!(n.complete(second, Ok(T0 + WINDOW)).len(), 2);
    assert!(n.serving());
}

#[test]
fn a_failed_start_is_retried_after_the_delay() {
    let mut n = Node::new();
    let load = sent(&n.report(report(Some(ME), 1, u64::MAX)));
    let start = sent(&n.complete(load, Ok(0)));
    assert_eq!(
        n.complete(start, Err(DriverError::Storage("disk".into()))),
        vec![]
    );
    assert_eq!(n.m.next_wakeup_ms(), Some(n.now.mono_ms + RETRY_DELAY_MS));
    n.advance(RETRY_DELAY_MS - 1);
    assert_eq!(n.tick(), vec![]);
    n.advance(1);
    assert_eq!(sent(&n.tick()), Request::Load { epoch: epoch(1) });
    assert_eq!(n.m.next_wakeup_ms(), None);
}

#[test]
fn the_window_is_extended_once_a_third_is_used() {
    let mut n = Node::new();
    n.lead(1, u64::MAX);
    assert_eq!(n.tick(), vec![]);
    n.advance(WINDOW / 3 + 1);
    let extend = sent(&n.tick());
    assert!(matches!(extend, Request::Extend { .. }));
    assert_eq!(n.tick(), vec![], "one extension at a time");
    let answer = n.answer(extend);
    let effects = n.complete(extend, answer);
    assert_eq!(
        effects,
        vec![Effect::Extended {
            high_water: n.durable
        }]
    );
}

#[test]
fn a_fenced_extension_loses_leadership_and_another_failure_is_retried() {
    let mut n = Node::new();
    n.lead(1, u64::MAX);
    n.advance(WINDOW / 2);
    let extend = sent(&n.tick());
    assert_eq!(
        n.complete(extend, Err(DriverError::Storage("disk".into()))),
        vec![]
    );
    assert!(n.serving());
    let again = sent(&n.tick());
    assert_eq!(
        n.complete(again, Err(DriverError::Fenced(epoch(2)))),
        vec![Effect::Stopped]
    );
    assert!(!n.serving());
}

#[test]
fn an_extension_of_an_earlier_term_changes_nothing() {
    let mut n = Node::new();
    n.lead(1, u64::MAX);
    n.advance(WINDOW / 2);
    let stale = sent(&n.tick());
    n.report(report(Some(2), 2, 0));
    n.lead(3, u64::MAX);
    let before = format!("{:?}", n.alloc);
    assert_eq!(
        n.complete(stale, Err(DriverError::Fenced(epoch(3)))),
        vec![]
    );
    assert_eq!(n.complete(stale, Ok(T0 + 100_000)), vec![]);
    assert_eq!(before, format!("{:?}", n.alloc));
    assert!(n.serving());
}

#[test]
fn the_lease_bounds_serving_and_a_renewal_extends_it() {
    let mut n = Node::new();
    let lease = n.now.mono_ms + 1000;
    n.lead(1, lease);
    n.advance(999);
    assert!(n.alloc.grant(1, n.now).is_ok());
    n.advance(1);
    assert!(!n.serving());
    assert_eq!(
        n.alloc.grant(1, n.now),
        Err(crate::allocator::GrantError::LeaseExpired)
    );
    assert_eq!(
        n.report(report(Some(ME), 1, lease + 1000)),
        vec![Effect::Settled]
    );
    assert!(n.serving());
}

#[test]
fn a_held_node_does_not_lead_until_released() {
    let mut n = Node::new();
    n.lead(1, u64::MAX);
    assert_eq!(n.m.set_held(&mut n.alloc, true), vec![Effect::Stopped]);
    assert!(!n.serving());
    assert_eq!(
        n.report(report(Some(ME), 1, u64::MAX)),
        vec![Effect::Stopped, Effect::Settled]
    );
    assert!(!n.serving());
    let load = sent(&n.m.set_held(&mut n.alloc, false));
    assert_eq!(load, Request::Load { epoch: epoch(1) });
    n.m.forget_report();
    n.m.set_held(&mut n.alloc, true);
    assert_eq!(
        n.m.set_held(&mut n.alloc, false),
        vec![],
        "nothing to replay"
    );
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    /// The driver reports `leader` (1..=3) in epoch `hi`, leased `lease` ms ahead.
    Report {
        leader: Option<u64>,
        hi: u64,
        lease: u64,
    },
    /// Complete the outstanding request at `index` (mod their number).
    Complete {
        index: usize,
        outcome: Outcome,
    },
    Advance(u64),
    Tick,
    Hold(bool),
    Crash,
    Grant(u64),
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// As a correct driver would answer.
    Durable,
    Fenced,
    NotLeader,
    Storage,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        6 => Just(Outcome::Durable),
        1 => Just(Outcome::Fenced),
        1 => Just(Outcome::NotLeader),
        1 => Just(Outcome::Storage),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (proptest::option::of(1..=3u64), 1..5u64, 0..5000u64)
            .prop_map(|(leader, hi, lease)| Step::Report { leader, hi, lease }),
        4 => (any::<usize>(), outcome())
            .prop_map(|(index, outcome)| Step::Complete { index, outcome }),
        1 => (0..2000u64).prop_map(Step::Advance),
        2 => Just(Step::Tick),
        1 => any::<bool>().prop_map(Step::Hold),
        1 => Just(Step::Crash),
        2 => (1..1000u64).prop_map(Step::Grant),
    ]
}

proptest! {
    /// Random reports, completions (in any order, failed or not, from any
    /// epoch), clock steps, holds and crashes: the allocator never serves
    /// without a completed start-up persist of the epoch this node leads in,
    /// never at or past that epoch's lease, and a completion of another
    /// epoch or term changes nothing.
    #[test]
    fn serves_only_after_a_persist_of_the_current_epoch_and_within_its_lease(
        steps in proptest::collection::vec(step(), 1..200)
    ) {
        let mut n = Node::new();
        let mut outstanding: Vec<Request> = Vec::new();
        // The epoch whose start-up persist completed since this node last
        // began leading, and the latest lease reported for the epoch led.
        let mut persisted_in: Option<Epoch> = None;
        let mut lease: Option<(Epoch, u64)> = None;
        for step in steps {
            let leading_before = n.m.epoch();
            let effects = match step {
                Step::Report { leader, hi, lease: ahead } => {
                    let r = report(leader, hi, n.now.mono_ms + ahead);
                    if leader == Some(ME) {
                        lease = Some((r.epoch, r.lease_until_ms));
                    }
                    n.report(r)
                }
                Step::Complete { index, outcome } if !outstanding.is_empty() => {
                    let request = outstanding.remove(index % outstanding.len());
                    let outcome = match outcome {
                        Outcome::Durable => n.answer(request),
                        Outcome::Fenced => Err(DriverError::Fenced(epoch(9))),
                        Outcome::NotLeader => Err(DriverError::NotLeader(Some(2))),
                        Outcome::Storage => Err(DriverError::Storage("disk".into())),
                    };
                    let stale = match request {
                        Request::Load { epoch } => Some(epoch) != n.m.epoch(),
                        Request::Start { epoch, term, .. } | Request::Extend { epoch, term, .. } => {
                            Some(epoch) != n.m.epoch()
                                || (matches!(request, Request::Extend { .. })
                                    && n.alloc.term() != Some(term))
                        }
                    };
                    let before = format!("{:?}", n.alloc);
                    if outcome.is_ok()
                        && matches!(request, Request::Start { .. })
                        && Some(request.epoch()) == n.m.epoch()
                    {
                        persisted_in = Some(request.epoch());
                    }
                    let effects = n.complete(request, outcome);
                    if stale {
                        prop_assert_eq!(&effects, &vec![], "stale {:?}", request);
                        prop_assert_eq!(&before, &format!("{:?}", n.alloc));
                    }
                    effects
                }
                Step::Complete { .. } => vec![],
                Step::Advance(ms) => {
                    n.advance(ms);
                    n.tick()
                }
                Step::Tick => n.tick(),
                Step::Hold(held) => n.m.set_held(&mut n.alloc, held),
                Step::Crash => n.m.lose(&mut n.alloc),
                Step::Grant(count) => {
                    let _ = n.alloc.grant(count, n.now);
                    vec![]
                }
            };
            if n.m.epoch() != leading_before {
                // A new term (or none): nothing persisted in it yet.
                persisted_in = None;
            }
            for effect in &effects {
                match effect {
                    Effect::Send(request) => {
                        prop_assert_eq!(Some(request.epoch()), n.m.epoch());
                        outstanding.push(*request);
                    }
                    Effect::Stopped => prop_assert!(!n.serving()),
                    Effect::Serving { .. } | Effect::Extended { .. } => {
                        prop_assert!(n.serving() || n.alloc.term().is_some())
                    }
                    Effect::Settled => {}
                }
            }
            if n.serving() {
                let epoch = n.m.epoch();
                prop_assert!(epoch.is_some(), "serving while not leading");
                prop_assert_eq!(persisted_in, epoch, "serving without a persist in this epoch");
                let (leased, until) = lease.expect("a lease was reported");
                prop_assert_eq!(Some(leased), epoch);
                prop_assert!(n.now.mono_ms < until, "serving past the lease");
            }
        }
    }

    /// A steady clock, a driver that answers within a third of the window,
    /// ticks at least every sixth of it (as the coordinator's): requests
    /// never find the window exhausted.
    #[test]
    fn the_window_is_extended_before_it_runs_out(
        delays in proptest::collection::vec(0..=WINDOW / 3, 1..40),
        steps in proptest::collection::vec((1..=WINDOW / 6, 1..1000u64), 50..400),
    ) {
        let mut n = Node::new();
        n.lead(1, u64::MAX);
        // Requests in flight: (due at mono ms, request).
        let mut in_flight: Vec<(u64, Request)> = Vec::new();
        let mut delays = delays.iter().cycle();
        for (ms, count) in steps {
            // Answers are handled when they arrive, as the coordinator does.
            let until = n.now.mono_ms + ms;
            in_flight.sort_by_key(|(at, _)| *at);
            while let Some(&(at, request)) = in_flight.first().filter(|(at, _)| *at <= until) {
                in_flight.remove(0);
                n.advance(at.saturating_sub(n.now.mono_ms));
                let answer = n.answer(request);
                n.complete(request, answer);
            }
            n.advance(until - n.now.mono_ms);
            for effect in n.tick() {
                if let Effect::Send(request) = effect {
                    in_flight.push((n.now.mono_ms + delays.next().unwrap(), request));
                }
            }
            prop_assert!(n.alloc.grant(count, n.now).is_ok(), "window exhausted at {:?}", n.now);
        }
    }
}
