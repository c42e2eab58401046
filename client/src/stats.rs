//! Statistics of a load run: callers ask for timestamps back to back for a
//! fixed time, and the run reports calls and timestamps per second, latency
//! percentiles, errors, and answers out of order. `tsohost bench` and the
//! load generator that measures tsoracle the same way
//! (`examples/bench/tsoracle-load`) both count with this module, so their
//! reports compare.
//!
//! Each caller [measures](Tally::measure) into a [`Tally`]; the callers'
//! tallies are [merged](Tally::merge) and [summed up](Tally::summary).

use serde::Serialize;
use std::time::{Duration, Instant};

/// How one call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: the first timestamp of the answer.
    Answered(u64),
    /// Refused or failed; the caller goes on.
    Failed,
    /// Failed, and the caller cannot go on (its connection is gone).
    Gone,
}

/// What callers saw: the latency of every answered call, the calls that
/// failed, and the answers that were not above the same caller's previous
/// answer.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    latencies_us: Vec<u32>,
    /// Calls that failed or were refused.
    pub errors: u64,
    /// Answers not above the previous answer of the same caller: always 0
    /// for a correct oracle.
    pub order_violations: u64,
    /// The caller's previous answer.
    last: u64,
}

impl Tally {
    /// One caller: `call` back to back until `end`, counting the calls sent
    /// from `from` on (those before are a warm-up). Each call takes the
    /// caller's `state` (its connection, say) and gives it back.
    pub async fn measure<S, F, Fut>(from: Instant, end: Instant, mut state: S, mut call: F) -> Tally
    where
        F: FnMut(S) -> Fut,
        Fut: Future<Output = (S, Outcome)>,
    {
        let mut tally = Tally {
            latencies_us: Vec::with_capacity(1 << 16),
            ..Tally::default()
        };
        loop {
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            let outcome;
            (state, outcome) = call(state).await;
            let took = sent.elapsed();
            if sent < from {
                continue;
            }
            match outcome {
                Outcome::Answered(first) => tally.answered(first, took),
                Outcome::Failed => tally.errors += 1,
                Outcome::Gone => {
                    tally.errors += 1;
                    break;
                }
            }
        }
        tally
    }

    /// A call answered after `took` with timestamps from `first` on.
    pub fn answered(&mut self, first: u64, took: Duration) {
        if first <= self.last {
            self.order_violations += 1;
        }
        self.last = first;
        let us = took.as_micros().min(u32::MAX as u128) as u32;
        self.latencies_us.push(us);
    }

    /// Add another caller's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.order_violations += other.order_violations;
    }

    /// How many calls were answered.
    pub fn answered_calls(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// The latency percentiles of the answered calls.
    pub fn latency(&mut self) -> Latency {
        Latency::of(&mut self.latencies_us)
    }

    /// The report of a run that lasted `duration` (warm-up excluded), with
    /// `count` timestamps per call.
    pub fn summary(mut self, duration: Duration, count: u64) -> Summary {
        let secs = duration.as_secs_f64();
        let requests = self.answered_calls();
        Summary {
            requests,
            errors: self.errors,
            order_violations: self.order_violations,
            requests_per_s: requests as f64 / secs,
            timestamps_per_s: (requests * count) as f64 / secs,
            latency: self.latency(),
        }
    }
}

/// What a load run measured, as its JSON report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Answered calls.
    pub requests: u64,
    /// Calls that failed or were refused.
    pub errors: u64,
    /// Answers not above the previous answer of the same caller.
    pub order_violations: u64,
    /// Answered calls per second.
    pub requests_per_s: f64,
    /// Timestamps handed out per second.
    pub timestamps_per_s: f64,
    /// Latency of the answered calls.
    pub latency: Latency,
}

/// Latency percentiles, in microseconds (0 when nothing was answered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The 99.9th percentile.
    pub p999_us: u64,
    /// The slowest call.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of `samples_us`, which this sorts.
    pub fn of(samples_us: &mut [u32]) -> Latency {
        samples_us.sort_unstable();
        let pct = |p: f64| -> u64 {
            if samples_us.is_empty() {
                0
            } else {
                let i = ((samples_us.len() as f64 * p) as usize).min(samples_us.len() - 1);
                samples_us[i] as u64
            }
        };
        Latency {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: samples_us.last().copied().unwrap_or(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_hundred_samples() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!(
            (l.p50_us, l.p99_us, l.p999_us, l.max_us),
            (51, 100, 100, 100)
        );
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn a_tally_counts_answers_out_of_order_per_caller() {
        let mut a = Tally::default();
        a.answered(10, Duration::from_micros(5));
        a.answered(10, Duration::from_micros(7));
        let mut b = Tally::default();
        b.answered(3, Duration::from_micros(9));
        b.errors += 1;
        a.merge(b);
        let s = a.summary(Duration::from_secs(1), 2);
        assert_eq!((s.requests, s.errors, s.order_violations), (3, 1, 1));
        assert_eq!(s.timestamps_per_s, 6.0);
        assert_eq!(s.latency.max_us, 9);
    }
}
