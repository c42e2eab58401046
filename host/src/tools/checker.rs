//! The judge of the contract over a recorded history: (1) no timestamp is
//! handed out twice, and (2) real-time order holds: if request A returned
//! before request B was sent, every timestamp of B is greater than every
//! timestamp of A. Pure and O(n log n), so it judges long chaos runs and
//! the integration tests alike.
//!
//! Times are microseconds on one monotonic clock shared by every client
//! (since the start of a chaos run, say). A request that failed or timed
//! out is not an operation: it returned no timestamps and constrains
//! nothing.

use std::fmt;

/// One answered request: it was sent at `sent`, its answer received at
/// `received`, and it handed out `[first, first + count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub sent: u64,
    pub received: u64,
    pub first: u64,
    pub count: u64,
    /// Who sent it (a client number), for reports.
    pub client: u32,
}

impl Op {
    /// The last timestamp of the range.
    pub fn last(&self) -> u64 {
        self.first + self.count.max(1) - 1
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} sent at {:.6} s, answered at {:.6} s: [{}, {}]",
            self.client,
            self.sent as f64 / 1e6,
            self.received as f64 / 1e6,
            self.first,
            self.last()
        )
    }
}

/// A broken rule and the two requests involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// `b`'s range overlaps `a`'s.
    Duplicate { a: Op, b: Op },
    /// `b` was sent after `a` returned, yet does not lie above it.
    Order { a: Op, b: Op },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Duplicate { a, b } => {
                write!(f, "timestamps handed out twice: ({a}) overlaps ({b})")
            }
            Violation::Order { a, b } => write!(
                f,
                "real-time order broken: ({b}) was sent after ({a}) returned but is not above it"
            ),
        }
    }
}

/// Every violation in `ops` (at most `limit` of each kind), in time order.
pub fn violations(ops: &[Op], limit: usize) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut by_first: Vec<&Op> = ops.iter().collect();
    by_first.sort_by_key(|o| (o.first, o.sent));
    // Compare each range with the furthest-reaching one before it: a range
    // nested in an earlier long one overlaps it even if not its neighbour.
    let mut reach: Option<&Op> = None;
    for &b in &by_first {
        if let Some(a) = reach
            && b.first <= a.last()
            && found.len() < limit
        {
            found.push(Violation::Duplicate { a: *a, b: *b });
        }
        if reach.is_none_or(|r| b.last() > r.last()) {
            reach = Some(b);
        }
    }

    let duplicates = found.len();
    let mut by_received: Vec<&Op> = ops.iter().collect();
    by_received.sort_by_key(|o| o.received);
    let mut by_sent: Vec<&Op> = ops.iter().collect();
    by_sent.sort_by_key(|o| o.sent);
    let mut done = 0;
    let mut highest: Option<&Op> = None;
    for b in by_sent {
        while done < by_received.len() && by_received[done].received < b.sent {
            let a = by_received[done];
            if highest.is_none_or(|h| a.last() > h.last()) {
                highest = Some(a);
            }
            done += 1;
        }
        if let Some(a) = highest
            && b.first <= a.last()
            && found.len() - duplicates < limit
        {
            found.push(Violation::Order { a: *a, b: *b });
        }
    }
    found
}

/// `Ok` if `ops` keep the contract, else the first violation found.
pub fn check(ops: &[Op]) -> Result<(), Violation> {
    match violations(ops, 1).into_iter().next() {
        None => Ok(()),
        Some(v) => Err(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op(sent: u64, received: u64, first: u64, count: u64) -> Op {
        Op {
            sent,
            received,
            first,
            count,
            client: 0,
        }
    }

    #[test]
    fn accepts_increasing_and_concurrent_answers() {
        assert!(check(&[op(0, 1, 10, 5), op(2, 3, 15, 1)]).is_ok());
        // Concurrent requests may be answered in any order.
        assert!(check(&[op(0, 3, 10, 1), op(1, 2, 5, 1)]).is_ok());
        assert!(check(&[]).is_ok());
    }

    #[test]
    fn finds_overlapping_ranges_even_when_not_adjacent() {
        let long = op(0, 1, 10, 100);
        let v = violations(&[long, op(2, 3, 20, 1), op(4, 5, 50, 1)], 10);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(matches!(v[0], Violation::Duplicate { a, .. } if a == long));
        assert!(check(&[op(0, 1, 10, 5), op(0, 1, 14, 1)]).is_err());
    }

    #[test]
    fn finds_a_later_request_that_is_not_above_an_earlier_answer() {
        let v = check(&[op(0, 1, 10, 1), op(2, 3, 5, 1)]).unwrap_err();
        assert_eq!(
            v,
            Violation::Order {
                a: op(0, 1, 10, 1),
                b: op(2, 3, 5, 1)
            }
        );
        assert!(v.to_string().contains("real-time order broken"));
    }

    /// The O(n log n) checker agrees with the O(n²) definition.
    fn brute_force_ok(ops: &[Op]) -> bool {
        ops.iter().enumerate().all(|(i, a)| {
            ops.iter().enumerate().all(|(j, b)| {
                i == j
                    || (b.last() < a.first || b.first > a.last())
                        && (a.received >= b.sent || b.first > a.last())
            })
        })
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(raw in prop::collection::vec(
            (0u64..50, 0u64..10, 0u64..60, 1u64..4), 0..12)
        ) {
            let ops: Vec<Op> = raw
                .iter()
                .map(|&(sent, took, first, count)| op(sent, sent + took, first, count))
                .collect();
            prop_assert_eq!(check(&ops).is_ok(), brute_force_ok(&ops));
        }
    }
}
