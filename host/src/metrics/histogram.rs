//! A latency histogram whose observation takes no lock and allocates
//! nothing: fixed buckets of atomics. prometheus-client's own histogram
//! takes a mutex on every observation, which the request path must not.
//!
//! Invariants:
//! - An observation is one binary search over [`BOUNDS_NS`] and two
//!   relaxed atomic adds; the sum is kept in integer nanoseconds (exact,
//!   no compare-and-swap loop; it overflows after ~584 years of summed
//!   latency).
//! - A scrape reads every bucket once and derives `_count` from them, so
//!   the `+Inf` bucket always equals `_count`; `_sum` may lag by the
//!   observations in flight.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from 50 µs (a timestamp served
/// from the window) to 2.5 s (a request that waited for an election or a
/// slow disk). Past the last, `+Inf`.
pub const BOUNDS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];

const BUCKETS: usize = BOUNDS.len() + 1;

/// [`BOUNDS`] in nanoseconds.
const BOUNDS_NS: [u64; BOUNDS.len()] = {
    let mut ns = [0u64; BOUNDS.len()];
    let mut i = 0;
    while i < BOUNDS.len() {
        ns[i] = (BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

#[derive(Debug, Default)]
struct Buckets {
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// A latency histogram; clones share the same buckets (like
/// prometheus-client's `Counter`).
#[derive(Debug, Default, Clone)]
pub struct Histogram(Arc<Buckets>);

impl Histogram {
    /// Count one observation of `elapsed`.
    #[inline]
    pub fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.0.counts[bucket].fetch_add(1, Relaxed);
        self.0.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.counts.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| self.0.counts[i].load(Relaxed));
        let buckets: [(f64, u64); BUCKETS] =
            std::array::from_fn(|i| (BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), counts[i]));
        let sum = self.0.sum_ns.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_whose_bound_is_not_below_it() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // exactly the first bound
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(3)); // past every bound: +Inf
        let counts: Vec<u64> = h.0.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[BUCKETS - 1], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.0.sum_ns.load(Relaxed), 3_000_101_000);
    }

    proptest! {
        /// Every observation is counted once, in a bucket whose bound holds
        /// it and whose predecessor's does not.
        #[test]
        fn each_observation_is_counted_once_in_its_bucket(ns in proptest::collection::vec(0u64..5_000_000_000, 1..50)) {
            let h = Histogram::default();
            for &n in &ns {
                h.observe(Duration::from_nanos(n));
            }
            prop_assert_eq!(h.count(), ns.len() as u64);
            for (i, c) in h.0.counts.iter().enumerate() {
                let lower = if i == 0 { None } else { Some(BOUNDS_NS[i - 1]) };
                let upper = BOUNDS_NS.get(i).copied();
                let expected = ns
                    .iter()
                    .filter(|&&n| lower.is_none_or(|l| n > l) && upper.is_none_or(|u| n <= u))
                    .count() as u64;
                prop_assert_eq!(c.load(Relaxed), expected);
            }
        }
    }
}
