//! The judge of the contract: over every answered request of every client,
//! (1) no timestamp is handed out twice, and (2) real-time order holds: if A
//! returned before B was sent, every timestamp of B is greater than every
//! timestamp of A. O(n log n).

use std::sync::{Arc, Mutex};
use std::time::Instant;
use tsohost::client::Answer;
use tsohost::timestamp::RangeJson;

#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub sent: Instant,
    pub received: Instant,
    /// `[first, first + count)`.
    pub first: u64,
    pub count: u64,
}

impl Op {
    fn last(&self) -> u64 {
        self.first + self.count - 1
    }
}

#[derive(Default, Clone)]
pub struct History(Arc<Mutex<Vec<Op>>>);

impl History {
    pub fn record(&self, sent: Instant, received: Instant, answer: &Answer) {
        let range: RangeJson = serde_json::from_slice(&answer.body).expect("timestamp JSON");
        self.push(Op {
            sent,
            received,
            first: range.first().expect("decimal timestamp").0,
            count: range.count,
        });
    }

    pub fn push(&self, op: Op) {
        self.0.lock().unwrap().push(op);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.0.lock().unwrap().clone()
    }

    /// The largest timestamp answered so far.
    pub fn max(&self) -> u64 {
        self.ops().iter().map(Op::last).max().unwrap_or(0)
    }

    /// Panics with the offending pair on a violation.
    pub fn check(&self) {
        if let Err(e) = check(&self.ops()) {
            panic!("contract violated: {e}");
        }
    }
}

/// `Ok` if the history keeps the contract, else the first violation found.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let mut by_first: Vec<&Op> = ops.iter().collect();
    by_first.sort_by_key(|o| o.first);
    for pair in by_first.windows(2) {
        if pair[1].first <= pair[0].last() {
            return Err(format!(
                "duplicate timestamps: {:?} overlaps {:?}",
                pair[0], pair[1]
            ));
        }
    }
    let mut by_received: Vec<&Op> = ops.iter().collect();
    by_received.sort_by_key(|o| o.received);
    let mut by_sent: Vec<&Op> = ops.iter().collect();
    by_sent.sort_by_key(|o| o.sent);
    let mut done = 0;
    let mut max_done: Option<&Op> = None;
    for b in by_sent {
        while done < by_received.len() && by_received[done].received < b.sent {
            let a = by_received[done];
            if max_done.is_none_or(|m| a.last() > m.last()) {
                max_done = Some(a);
            }
            done += 1;
        }
        if let Some(a) = max_done
            && b.first <= a.last()
        {
            return Err(format!(
                "real-time order: {b:?} was sent after {a:?} returned, but is not above it"
            ));
        }
    }
    Ok(())
}
