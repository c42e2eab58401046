//! The timestamp allocator: pure, no IO, no clock of its own.
//!
//! It hands out timestamps from memory below a durable **high water** (HW),
//! a bound on the physical part, so consensus stays off the hot path
//! (docs/architecture.md §3). Every input that is not deterministic — the clocks, what the
//! driver made durable, leadership — is an argument.
//!
//! Invariants:
//! - every timestamp it returns is greater than every one it returned before
//!   (`last` only grows, across terms);
//! - while serving, every returned timestamp has a physical part below the
//!   durable high water of the current term; since a new term starts at or
//!   above the high water it loaded, no later term on any node can return a
//!   value it returned (uniqueness and real-time order across failovers);
//! - it serves only between `serve` and the next `stop`, and only while the
//!   driver's lease (on the monotonic clock) holds;
//! - a grant of `count` values is one contiguous range of the u64 space.

use crate::timestamp::{LOGICAL_PER_MS, MAX_PHYSICAL_MS, Timestamp};

/// The two clocks the allocator reads, sampled by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix time in ms: the physical part of new timestamps follows it.
    pub wall_ms: u64,
    /// The host's monotonic clock in ms: leases are expressed on it.
    pub mono_ms: u64,
}

/// Identifies one leadership term of this node. Completions that arrive for
/// an older term are ignored, so a slow persist from a lost term can never
/// extend a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(u64);

/// A granted range `[first, first + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub first: Timestamp,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("count must be between 1 and {LOGICAL_PER_MS}, got {0}")]
    BadCount(u64),
    #[error("this node is not serving timestamps")]
    NotServing,
    #[error("the leader lease has expired")]
    LeaseExpired,
    /// The window below the high water is used up; an extension is (or must
    /// be) under way. Retry once it completes.
    #[error("the timestamp window is exhausted until the high water is extended")]
    WindowExhausted,
    /// The clock passed the largest representable physical time.
    #[error("the physical clock is beyond 2^46 ms")]
    Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not leading, or leading but not yet allowed to serve.
    Idle,
    /// Leading: `floor_hw` was loaded, the start-up persist is under way.
    Starting { term: Term, floor_hw: u64 },
    Serving {
        term: Term,
        lease_until_ms: u64,
        /// Target of an extension under way, if any.
        extending: Option<u64>,
    },
}

#[derive(Debug, Clone)]
pub struct Allocator {
    window_ms: u64,
    /// The last timestamp handed out (0: none yet).
    last: u64,
    /// The durable high water of the current term, in ms: every timestamp
    /// served in it has a smaller physical part.
    high_water: u64,
    next_term: u64,
    state: State,
}

impl Allocator {
    /// `window_ms`: how far ahead of the clock the high water is kept.
    pub fn new(window_ms: u64) -> Allocator {
        Allocator {
            window_ms: window_ms.max(1),
            last: 0,
            high_water: 0,
            next_term: 1,
            state: State::Idle,
        }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Whether a grant at `now` could succeed (but for the window): serving,
    /// and the lease still holds.
    pub fn is_serving(&self, now: Now) -> bool {
        matches!(self.state, State::Serving { lease_until_ms, .. } if now.mono_ms < lease_until_ms)
    }

    /// The current term, if leading.
    pub fn term(&self) -> Option<Term> {
        match self.state {
            State::Idle => None,
            State::Starting { term, .. } | State::Serving { term, .. } => Some(term),
        }
    }

    /// The durable high water of the current term (0 when idle).
    pub fn high_water(&self) -> u64 {
        match self.state {
            State::Idle => 0,
            _ => self.high_water,
        }
    }

    /// The last timestamp handed out by this allocator, 0 if none.
    pub fn last_issued(&self) -> u64 {
        self.last
    }

    /// Stop serving at once (leadership lost, driver gone). In-flight
    /// completions of the old term will be ignored.
    pub fn stop(&mut self) {
        self.state = State::Idle;
    }

    /// Leadership begins and the driver answered the durable high water
    /// `loaded` (linearizably). Returns the term and the high water that must
    /// be persisted before serving: `max(now, loaded) + window`.
    pub fn start_term(&mut self, loaded: u64, now: Now) -> (Term, u64) {
        let term = Term(self.next_term);
        self.next_term += 1;
        self.state = State::Starting {
            term,
            floor_hw: loaded,
        };
        let base = now
            .wall_ms
            .max(loaded)
            .max(Timestamp(self.last).physical_ms());
        (term, (base + self.window_ms).min(MAX_PHYSICAL_MS))
    }

    /// The start-up persist of `term` completed with durable high water
    /// `persisted`: serve, starting above everything issued under the loaded
    /// high water. Returns false (and changes nothing) for a stale term.
    pub fn serve(&mut self, term: Term, persisted: u64, lease_until_ms: u64) -> bool {
        let State::Starting { term: t, floor_hw } = self.state else {
            return false;
        };
        if t != term {
            return false;
        }
        // Every timestamp issued before has a physical part < floor_hw.
        self.last = self
            .last
            .max(Timestamp::at_ms(floor_hw).0.saturating_sub(1));
        self.high_water = persisted.max(floor_hw);
        self.state = State::Serving {
            term,
            lease_until_ms,
            extending: None,
        };
        true
    }

    /// The driver renewed the lease of `term`.
    pub fn renew_lease(&mut self, term: Term, until_ms: u64) {
        if let State::Serving {
            term: t,
            lease_until_ms,
            ..
        } = &mut self.state
            && *t == term
        {
            *lease_until_ms = until_ms;
        }
    }

    /// Hand out `count` consecutive timestamps.
    pub fn grant(&mut self, count: u64, now: Now) -> Result<Grant, GrantError> {
        if count == 0 || count > LOGICAL_PER_MS {
            return Err(GrantError::BadCount(count));
        }
        let State::Serving { lease_until_ms, .. } = self.state else {
            return Err(GrantError::NotServing);
        };
        if now.mono_ms >= lease_until_ms {
            return Err(GrantError::LeaseExpired);
        }
        if now.wall_ms > MAX_PHYSICAL_MS {
            return Err(GrantError::Overflow);
        }
        let first = (self.last + 1).max(Timestamp::at_ms(now.wall_ms).0);
        let end = first + count; // exclusive; no overflow: first < 2^64 - 2^18
        if end > Timestamp::at_ms(self.high_water).0 {
            return Err(GrantError::WindowExhausted);
        }
        self.last = end - 1;
        Ok(Grant {
            first: Timestamp(first),
            count,
        })
    }

    /// If the high water should be extended now and no extension is under
    /// way, mark one under way and return `(term, target)` to persist.
    ///
    /// Extends once a third of the window is used: when less than two thirds
    /// of it are left between the current physical time (the clock, or the
    /// last timestamp if it ran ahead) and the high water.
    pub fn begin_extension(&mut self, now: Now) -> Option<(Term, u64)> {
        let target = self.extension_due(now)?;
        let State::Serving {
            term, extending, ..
        } = &mut self.state
        else {
            return None;
        };
        *extending = Some(target);
        Some((*term, target))
    }

    /// The target of the extension `begin_extension` would start now, if any.
    /// Cheap and read-only, for the hot path to decide whether to wake the
    /// node's coordinator.
    pub fn extension_due(&self, now: Now) -> Option<u64> {
        let State::Serving {
            extending: None, ..
        } = self.state
        else {
            return None;
        };
        let base = now.wall_ms.max(Timestamp(self.last).physical_ms() + 1);
        if self.high_water.saturating_sub(base) >= self.window_ms - self.window_ms / 3 {
            return None;
        }
        let target = (base + self.window_ms).min(MAX_PHYSICAL_MS);
        // At the end of time there is nothing more to extend to.
        (target > self.high_water).then_some(target)
    }

    /// An extension of `term` completed: the high water `persisted` is
    /// durable. Ignored for a stale term.
    pub fn extended(&mut self, term: Term, persisted: u64) {
        if let State::Serving {
            term: t, extending, ..
        } = &mut self.state
            && *t == term
        {
            *extending = None;
            self.high_water = self.high_water.max(persisted);
        }
    }

    /// An extension of `term` failed; a later `begin_extension` retries.
    pub fn extension_failed(&mut self, term: Term) {
        if let State::Serving {
            term: t, extending, ..
        } = &mut self.state
            && *t == term
        {
            *extending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;

    fn now(wall_ms: u64) -> Now {
        Now {
            wall_ms,
            mono_ms: 0,
        }
    }

    fn serving(window: u64, loaded: u64, at: u64) -> (Allocator, Term) {
        let mut a = Allocator::new(window);
        let (term, target) = a.start_term(loaded, now(at));
        assert!(a.serve(term, target, u64::MAX));
        (a, term)
    }

    #[test]
    fn does_not_serve_before_the_start_persist() {
        let mut a = Allocator::new(3000);
        assert_eq!(a.grant(1, now(T0)), Err(GrantError::NotServing));
        let (term, target) = a.start_term(0, now(T0));
        assert_eq!(target, T0 + 3000);
        assert_eq!(a.grant(1, now(T0)), Err(GrantError::NotServing));
        assert!(a.serve(term, target, u64::MAX));
        assert_eq!(a.grant(1, now(T0)).unwrap().first, Timestamp::at_ms(T0));
    }

    #[test]
    fn starts_above_the_loaded_high_water_even_with_a_slow_clock() {
        let (mut a, _) = serving(3000, T0 + 10_000, T0);
        let g = a.grant(1, now(T0)).unwrap();
        assert_eq!(g.first, Timestamp::at_ms(T0 + 10_000));
    }

    #[test]
    fn batch_is_contiguous_and_next_is_above_it() {
        let (mut a, _) = serving(3000, 0, T0);
        let g = a.grant(LOGICAL_PER_MS, now(T0)).unwrap();
        let h = a.grant(1, now(T0)).unwrap();
        assert_eq!(h.first.0, g.first.0 + LOGICAL_PER_MS);
        assert_eq!(a.grant(0, now(T0)), Err(GrantError::BadCount(0)));
        assert_eq!(
            a.grant(LOGICAL_PER_MS + 1, now(T0)),
            Err(GrantError::BadCount(LOGICAL_PER_MS + 1))
        );
    }

    #[test]
    fn never_backwards_when_the_clock_jumps_back() {
        let (mut a, _) = serving(3000, 0, T0);
        let g = a.grant(1, now(T0 + 1000)).unwrap();
        let h = a.grant(1, now(T0 - 60_000)).unwrap();
        assert!(h.first > g.first);
    }

    #[test]
    fn window_exhausts_and_extension_refills_it() {
        let (mut a, term) = serving(3000, 0, T0);
        assert_eq!(a.begin_extension(now(T0)), None, "a full window");
        assert_eq!(a.grant(1, now(T0 + 3000)), Err(GrantError::WindowExhausted));
        let (t, target) = a.begin_extension(now(T0 + 3000)).unwrap();
        assert_eq!((t, target), (term, T0 + 6000));
        assert_eq!(a.begin_extension(now(T0 + 3000)), None, "one at a time");
        a.extended(term, target);
        assert!(a.grant(1, now(T0 + 3000)).is_ok());
    }

    #[test]
    fn extension_starts_once_a_third_of_the_window_is_used() {
        let (mut a, _) = serving(3000, 0, T0);
        assert_eq!(a.begin_extension(now(T0 + 999)), None);
        assert!(a.begin_extension(now(T0 + 1001)).is_some());
    }

    #[test]
    fn stop_is_immediate_and_stale_completions_are_ignored() {
        let (mut a, term) = serving(3000, 0, T0);
        let _ = a.begin_extension(now(T0 + 2500)).unwrap();
        a.stop();
        assert_eq!(a.grant(1, now(T0)), Err(GrantError::NotServing));
        a.extended(term, T0 + 100_000);
        let (term2, target) = a.start_term(T0 + 3000, now(T0));
        assert!(!a.serve(term, target, u64::MAX), "old term");
        assert!(a.serve(term2, target, u64::MAX));
        assert_eq!(a.high_water(), target);
    }

    #[test]
    fn lease_expiry_stops_serving() {
        let mut a = Allocator::new(3000);
        let (term, target) = a.start_term(0, now(T0));
        assert!(a.serve(term, target, 100));
        let at = |mono_ms| Now {
            wall_ms: T0,
            mono_ms,
        };
        assert!(a.grant(1, at(99)).is_ok());
        assert!(a.is_serving(at(99)));
        assert!(!a.is_serving(at(100)));
        assert_eq!(a.grant(1, at(100)), Err(GrantError::LeaseExpired));
        a.renew_lease(term, 200);
        assert!(a.grant(1, at(150)).is_ok());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Grant(u64),
        Tick(i64),
        Extend,
        CompleteExtension,
        Lose,
        Gain(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1..=LOGICAL_PER_MS).prop_map(Op::Grant),
            3 => (-5_000i64..5_000).prop_map(Op::Tick),
            2 => Just(Op::Extend),
            2 => Just(Op::CompleteExtension),
            1 => Just(Op::Lose),
            1 => any::<bool>().prop_map(Op::Gain),
        ]
    }

    proptest! {
        /// Random grant/extend/lose/gain sequences, with a clock that jumps
        /// both ways, never hand out a duplicate or a smaller timestamp, and
        /// never serve at or above the durable high water. The durable high
        /// water is modelled as a register shared by successive terms, as a
        /// driver keeps it.
        #[test]
        fn never_duplicate_never_backwards(ops in proptest::collection::vec(op(), 1..300)) {
            let mut a = Allocator::new(3000);
            let mut wall = T0;
            let mut durable = 0u64;
            let mut pending: Option<(Term, u64)> = None;
            let mut last_end = 0u64; // exclusive end of the last grant
            for op in ops {
                match op {
                    Op::Grant(count) => {
                        if let Ok(g) = a.grant(count, now(wall)) {
                            prop_assert!(g.first.0 >= last_end, "{} < {}", g.first.0, last_end);
                            last_end = g.first.0 + count;
                            prop_assert!(last_end <= Timestamp::at_ms(durable).0);
                        }
                    }
                    Op::Tick(delta) => wall = wall.saturating_add_signed(delta),
                    Op::Extend => {
                        if let Some(p) = a.begin_extension(now(wall)) {
                            pending = Some(p);
                        }
                    }
                    Op::CompleteExtension => {
                        if let Some((term, target)) = pending.take() {
                            durable = durable.max(target);
                            a.extended(term, durable);
                        }
                    }
                    Op::Lose => a.stop(),
                    Op::Gain(persist_first) => {
                        let (term, target) = a.start_term(durable, now(wall));
                        if persist_first {
                            durable = durable.max(target);
                            prop_assert!(a.serve(term, durable, u64::MAX));
                        }
                    }
                }
            }
        }
    }
}
