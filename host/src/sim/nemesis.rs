//! Which faults a simulation injects, and when: the kinds a user can list in
//! `--faults`, and the seeded choice of the next fault.
//!
//! Faults happen during the fault window only (from [`FAULTS_FROM_US`] to
//! the start of the quiet tail, whose length is the liveness bound); each
//! heals after a while, and at the start of the quiet tail everything heals
//! at once so that liveness can be judged.

use super::rng::Rng;
use std::fmt;
use std::str::FromStr;

/// The cluster gets this long to elect a first leader before faults begin.
pub const FAULTS_FROM_US: u64 = 2_000_000;
/// Time between two faults, µs.
pub const GAP_US: (u64, u64) = (200_000, 2_500_000);
/// How long a fault lasts before it heals, µs.
pub const LASTS_US: (u64, u64) = (300_000, 5_000_000);

/// A kind of fault, as named in `--faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Two groups that cannot reach each other.
    Partition,
    /// One node cannot send to (or cannot hear from) the others.
    OneWay,
    /// The node that leads is cut off from every other.
    IsolateLeader,
    /// The leader and one follower cannot reach each other, while both
    /// still reach the rest (Jepsen's bridge): the follower campaigns
    /// through voters that still acknowledge the leader, which only a
    /// driver whose voters refuse new leaders during the lease survives.
    Bridge,
    /// Messages are lost, duplicated and slowed for a while.
    Storm,
    /// A node loses power: unsynced writes are gone; it restarts later.
    PowerLoss,
    /// A node stops running for a while (a stop-the-world pause), then
    /// carries on where it was.
    Pause,
    /// The next host call of a node's guest traps.
    Trap,
    /// A node's guest runs past the per-call limit.
    Hang,
    /// A node's guest is sent a message larger than its memory cap.
    Exhaust,
    /// A node's wall clock steps or drifts.
    Clock,
    /// A node's storage fails some writes, or some reads.
    Disk,
    /// The leader is asked to hand leadership over (and, half the time, is
    /// cut off right after).
    Transfer,
    /// A node is removed from the membership and later added back.
    Membership,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Partition,
        Kind::OneWay,
        Kind::IsolateLeader,
        Kind::Bridge,
        Kind::Storm,
        Kind::PowerLoss,
        Kind::Pause,
        Kind::Trap,
        Kind::Hang,
        Kind::Exhaust,
        Kind::Clock,
        Kind::Disk,
        Kind::Transfer,
        Kind::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::OneWay => "one-way",
            Kind::IsolateLeader => "isolate-leader",
            Kind::Bridge => "bridge",
            Kind::Storm => "storm",
            Kind::PowerLoss => "power-loss",
            Kind::Pause => "pause",
            Kind::Trap => "trap",
            Kind::Hang => "hang",
            Kind::Exhaust => "exhaust",
            Kind::Clock => "clock",
            Kind::Disk => "disk",
            Kind::Transfer => "transfer",
            Kind::Membership => "membership",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds of fault a run injects; `all`, `none` or a comma list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults(pub Vec<Kind>);

impl Faults {
    pub fn all() -> Faults {
        Faults(Kind::ALL.to_vec())
    }

    pub fn contains(&self, kind: Kind) -> bool {
        self.0.contains(&kind)
    }

    /// The next fault's kind, among those enabled and `possible`.
    pub fn pick(&self, rng: &mut Rng, possible: impl Fn(Kind) -> bool) -> Option<Kind> {
        let kinds: Vec<Kind> = self.0.iter().copied().filter(|&k| possible(k)).collect();
        (!kinds.is_empty()).then(|| *rng.pick(&kinds))
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        if *self == Faults::all() {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Faults {
    type Err = String;

    fn from_str(s: &str) -> Result<Faults, String> {
        match s.trim() {
            "all" => return Ok(Faults::all()),
            "none" | "" => return Ok(Faults(Vec::new())),
            _ => {}
        }
        let mut kinds = Vec::new();
        for name in s.split(',').map(str::trim) {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    format!(
                        "unknown fault {name:?}; --faults takes `all`, `none` or a comma list of: {}",
                        known.join(", ")
                    )
                })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds.sort();
        Ok(Faults(kinds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_back() {
        let f: Faults = "trap, partition,trap".parse().unwrap();
        assert_eq!(f.0, vec![Kind::Partition, Kind::Trap]);
        assert_eq!(f.to_string(), "partition,trap");
        assert_eq!("all".parse::<Faults>().unwrap().to_string(), "all");
        assert_eq!("none".parse::<Faults>().unwrap().to_string(), "none");
        let err = "partition,bogus".parse::<Faults>().unwrap_err();
        assert!(
            err.contains("\"bogus\"") && err.contains("power-loss"),
            "{err}"
        );
    }
}
