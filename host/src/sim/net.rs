//! The simulated network between the nodes: pure, it only decides what
//! happens to each message (lost, delayed, duplicated); the cluster loop
//! schedules the deliveries.
//!
//! Every message gets a delay of its own, so messages are reordered all the
//! time; faults add loss, duplication, long delays and cut links. A cut is
//! directed: `(from, to)` cut means nothing from `from` reaches `to`, so a
//! symmetric partition cuts both directions and a one-way partition one.
//! Whether a link is cut is decided when a message is sent: a message
//! already in flight when a partition begins still arrives. Cuts of
//! overlapping faults are counted, so that the end of one fault does not
//! heal another's.

use super::rng::Rng;
use std::collections::BTreeMap;

/// Base one-way delay of every message, µs (jitter on top).
const BASE_DELAY_US: u64 = 500;
/// Most jitter added to every message, µs: enough to reorder.
const JITTER_US: u64 = 4_000;

/// The network's current conditions.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Directed links cut, with how many faults cut each.
    cut: BTreeMap<(u64, u64), u32>,
    /// Chance of losing a message, percent.
    pub loss_percent: u64,
    /// Chance of delivering a message twice, percent.
    pub duplicate_percent: u64,
    /// Extra delay added to some messages (up to this), µs.
    pub slow_us: u64,
}

impl Network {
    /// Cut `from → to`; the cut, for [`Network::restore`].
    pub fn cut(&mut self, from: u64, to: u64) -> (u64, u64) {
        *self.cut.entry((from, to)).or_default() += 1;
        (from, to)
    }

    /// Cut both directions between every node of `a` and every node of `b`;
    /// the cuts, for [`Network::restore`].
    pub fn partition(&mut self, a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
        let mut cuts = Vec::new();
        for &x in a {
            for &y in b {
                cuts.push(self.cut(x, y));
                cuts.push(self.cut(y, x));
            }
        }
        cuts
    }

    /// Undo `cuts` made by one fault (links another fault cut stay cut).
    pub fn restore(&mut self, cuts: &[(u64, u64)]) {
        for link in cuts {
            if let Some(count) = self.cut.get_mut(link) {
                *count -= 1;
                if *count == 0 {
                    self.cut.remove(link);
                }
            }
        }
    }

    /// Every link works again and every storm is over.
    pub fn heal(&mut self) {
        *self = Network::default();
    }

    /// The storm is over: no loss, duplication or slowness (cuts stay).
    pub fn calm(&mut self) {
        self.loss_percent = 0;
        self.duplicate_percent = 0;
        self.slow_us = 0;
    }

    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.contains_key(&(from, to))
    }

    /// Whether anything is wrong with the network.
    pub fn is_faulty(&self) -> bool {
        !self.cut.is_empty()
            || self.loss_percent > 0
            || self.duplicate_percent > 0
            || self.slow_us > 0
    }

    /// The delays (µs from now) after which a message from `from` to `to`
    /// arrives: none if lost, two if duplicated.
    pub fn route(&self, rng: &mut Rng, from: u64, to: u64) -> Vec<u64> {
        if self.is_cut(from, to) || rng.chance(self.loss_percent) {
            return Vec::new();
        }
        let copies = if rng.chance(self.duplicate_percent) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let slow = if self.slow_us > 0 && rng.chance(50) {
                    rng.range(0, self.slow_us)
                } else {
                    0
                };
                BASE_DELAY_US + rng.range(0, JITTER_US) + slow
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_directed_and_heal() {
        let mut net = Network::default();
        let mut rng = Rng::new(1);
        let one = net.cut(1, 2);
        assert!(net.route(&mut rng, 1, 2).is_empty());
        assert_eq!(net.route(&mut rng, 2, 1).len(), 1);
        let two = net.partition(&[1], &[2, 3]);
        assert!(net.is_cut(3, 1) && net.is_cut(1, 3));
        net.restore(&two);
        assert!(
            net.is_cut(1, 2),
            "the first fault's cut outlives the second's end"
        );
        assert!(!net.is_cut(3, 1));
        net.restore(&[one]);
        assert!(!net.is_faulty());
        net.partition(&[1], &[2]);
        net.heal();
        assert!(!net.is_faulty());
        assert_eq!(net.route(&mut rng, 1, 2).len(), 1);
    }

    #[test]
    fn storms_lose_and_duplicate() {
        let mut net = Network {
            loss_percent: 50,
            duplicate_percent: 50,
            ..Network::default()
        };
        let mut rng = Rng::new(3);
        let counts: Vec<usize> = (0..400).map(|_| net.route(&mut rng, 1, 2).len()).collect();
        for n in 0..=2 {
            assert!(counts.contains(&n), "{n} copies never happened");
        }
        net.slow_us = 1_000_000;
        assert!((0..100).any(|_| net.route(&mut rng, 1, 2).iter().any(|&d| d > 100_000)));
    }
}
