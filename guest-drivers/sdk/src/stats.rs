//! A driver's own statistics, answered through the WIT 0.2 `stats` export
//! and published by the host as `tsohost_driver_<name>{driver=...}`.
//!
//! What every driver reports alike is counted here, so that the names and
//! meanings agree across drivers:
//! - [`Epochs`]: `epoch` (the high part of the epoch last seen: Raft term,
//!   Paxos ballot, file generation) and `elections` (new epochs seen);
//! - the messages through the host ([`transport`]): `messages_sent`,
//!   `messages_received` and their `_bytes`, counted by
//!   [`export_driver!`](crate::export_driver) at the component's edge.
//!
//! Counters count from the start of the instance: the host rebuilds an
//! instance after a trap or a swap, and monitoring reads the drop as a reset.
//! A driver adds its own (commit index, log entries, snapshots) in
//! [`Driver::stats`](crate::Driver::stats), built with [`counter`] and
//! [`gauge`].

use std::cell::Cell;

use crate::{Epoch, Metric, MetricValue};

/// A counter without labels.
pub fn counter(name: &str, help: &str, value: u64) -> Metric {
    Metric {
        name: name.into(),
        help: help.into(),
        value: MetricValue::Counter(value),
        labels: Vec::new(),
    }
}

/// A gauge without labels; values above `i64::MAX` show as `i64::MAX`.
pub fn gauge(name: &str, help: &str, value: u64) -> Metric {
    Metric {
        name: name.into(),
        help: help.into(),
        value: MetricValue::Gauge(i64::try_from(value).unwrap_or(i64::MAX)),
        labels: Vec::new(),
    }
}

/// The epochs a driver has seen: feed it every leadership report's epoch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    last: Option<Epoch>,
    changes: u64,
}

impl Epochs {
    /// Note the epoch of a leadership report; a greater one than the last
    /// is an election (won here or elsewhere).
    pub fn observe(&mut self, epoch: Epoch) {
        if self.last.is_none_or(|last| epoch > last) {
            self.changes += u64::from(self.last.is_some() || epoch.hi > 0);
            self.last = Some(epoch);
        }
    }

    /// `epoch` and `elections`.
    pub fn metrics(&self) -> [Metric; 2] {
        [
            gauge(
                "epoch",
                "The high part of the newest leadership epoch this instance has seen (Raft \
                 term, Paxos ballot, file generation)",
                self.last.map_or(0, |e| e.hi),
            ),
            counter(
                "elections",
                "New leadership epochs this instance has seen: elections won here or elsewhere",
                self.changes,
            ),
        ]
    }
}

thread_local! {
    /// Messages and bytes sent and received by this component instance (a
    /// component instance has one thread, so this is per instance).
    static TRANSPORT: Cell<[u64; 4]> = const { Cell::new([0; 4]) };
}

fn count(slot: usize, bytes: usize) {
    TRANSPORT.with(|t| {
        let mut v = t.get();
        v[slot] += 1;
        v[slot + 1] += bytes as u64;
        t.set(v);
    });
}

/// Count a message sent through the host (by [`port::WitHost`](crate::port::WitHost)).
pub fn count_sent(bytes: usize) {
    count(0, bytes);
}

/// Count a message received from the host (by
/// [`export_driver!`](crate::export_driver)).
pub fn count_received(bytes: usize) {
    count(2, bytes);
}

/// The messages this instance sent and received through the host.
pub fn transport() -> Vec<Metric> {
    let [sent, sent_bytes, received, received_bytes] = TRANSPORT.with(Cell::get);
    vec![
        counter(
            "messages_sent",
            "Messages this driver instance sent to peers",
            sent,
        ),
        counter(
            "messages_sent_bytes",
            "Bytes of the messages this driver instance sent to peers",
            sent_bytes,
        ),
        counter(
            "messages_received",
            "Messages this driver instance received from peers",
            received,
        ),
        counter(
            "messages_received_bytes",
            "Bytes of the messages this driver instance received from peers",
            received_bytes,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(hi: u64, lo: u64) -> Epoch {
        Epoch { hi, lo }
    }

    fn values(e: &Epochs) -> (i64, u64) {
        match e.metrics().map(|m| m.value) {
            [MetricValue::Gauge(g), MetricValue::Counter(c)] => (g, c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn elections_count_new_epochs_only() {
        let mut e = Epochs::default();
        assert_eq!(values(&e), (0, 0));
        e.observe(epoch(0, 0));
        assert_eq!(values(&e), (0, 0), "no leadership yet is no election");
        e.observe(epoch(3, 1));
        e.observe(epoch(3, 1));
        assert_eq!(values(&e), (3, 1));
        e.observe(epoch(2, 9));
        assert_eq!(values(&e), (3, 1), "an older epoch is no election");
        e.observe(epoch(3, 2));
        e.observe(epoch(5, 0));
        assert_eq!(values(&e), (5, 3));
    }

    #[test]
    fn transport_counts_messages_and_bytes() {
        count_sent(10);
        count_sent(5);
        count_received(7);
        let v: Vec<_> = transport().into_iter().map(|m| m.value).collect();
        assert_eq!(v, [2, 15, 1, 7].map(MetricValue::Counter));
    }
}
