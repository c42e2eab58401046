//! The faults the harness applies, and the seeded choices behind them.
//!
//! Every nemesis heals what it did before it returns, so faults never
//! overlap and each one's effect shows in the availability timeline. The
//! choices (which fault, which node, for how long) come from one seeded
//! generator; which node leads depends on the run, so a seed replays the
//! schedule of choices, not the exact interleaving of the processes.

pub use crate::sim::rng::Rng;
use crate::tools::cluster::LocalCluster;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tsohost_client::admin::{AdminError, Faults, GuestFault};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nemesis {
    /// kill -9 a node (the leader half of the time), restart it later.
    Kill,
    /// SIGSTOP a node for two to four election timeouts (longer than any
    /// lease), then SIGCONT: a stalled leader must not serve stale time.
    Pause,
    /// Cut the leader off from every other node, then heal.
    IsolateLeader,
    /// Cut one follower off from every other node, then heal.
    IsolateFollower,
    /// A one-way partition: a follower stops hearing the leader (and
    /// campaigns), or the leader stops hearing its followers (and can no
    /// longer renew its lease) while its messages still arrive; then heal.
    OneWay,
    /// Hot-swap a node's driver for the same build (the leader half of the
    /// time): the new instance must start above everything served.
    Swap,
    /// Step a node's wall clock (the leader's half of the time) up to a
    /// minute either way, then back: timestamps must neither repeat nor go
    /// backwards, whichever way the clock moves.
    ClockJump,
    /// Fail a node's next one to three storage writes (the leader's half of
    /// the time), as a failing disk would: the driver fails the request or
    /// traps and is rebuilt from storage.
    StorageFault,
    /// Make a node's driver (the leader's half of the time) trap, or hang
    /// past its per-call limit, inside its next call into the host, or
    /// allocate past its memory cap for its next peer message: the instance
    /// is torn down and rebuilt from storage mid-run.
    GuestFault,
}

impl Nemesis {
    pub const ALL: [Nemesis; 9] = [
        Nemesis::Kill,
        Nemesis::Pause,
        Nemesis::IsolateLeader,
        Nemesis::IsolateFollower,
        Nemesis::OneWay,
        Nemesis::Swap,
        Nemesis::ClockJump,
        Nemesis::StorageFault,
        Nemesis::GuestFault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::IsolateFollower => "isolate-follower",
            Nemesis::OneWay => "one-way",
            Nemesis::Swap => "swap",
            Nemesis::ClockJump => "clock-jump",
            Nemesis::StorageFault => "storage-fault",
            Nemesis::GuestFault => "guest-fault",
        }
    }
}

impl FromStr for Nemesis {
    type Err = String;

    fn from_str(s: &str) -> Result<Nemesis, String> {
        Nemesis::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Nemesis::ALL.iter().map(|n| n.name()).collect();
                format!("unknown nemesis `{s}`; choose from {}", names.join(", "))
            })
    }
}

/// One fault as applied: when, what, and when it was healed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fault {
    pub nemesis: &'static str,
    /// Since the start of the run.
    pub at_ms: u64,
    pub healed_ms: u64,
    pub what: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>7.1} s - {:>7.1} s  {}",
            self.at_ms as f64 / 1e3,
            self.healed_ms as f64 / 1e3,
            self.what
        )
    }
}

/// What a nemesis needs besides the cluster.
pub struct Context<'a> {
    pub start: Instant,
    pub election_timeout_ms: u64,
    /// The component bytes a `swap` installs.
    pub driver_bytes: &'a [u8],
}

/// Apply `nemesis` to `cluster` and heal it.
pub async fn apply(
    nemesis: Nemesis,
    cluster: &mut LocalCluster,
    rng: &mut Rng,
    cx: &Context<'_>,
) -> Fault {
    let at = cx.start.elapsed();
    let leader = cluster.serving().await;
    let n = cluster.nodes();
    let others = |of: u64| -> Vec<u64> { (1..=n).filter(|&i| i != of).collect() };
    let random = |rng: &mut Rng| rng.between(1, n + 1);
    let leader_or_random = |rng: &mut Rng| match leader {
        Some(l) if rng.between(0, 2) == 0 => l,
        _ => random(rng),
    };
    let role = |id: u64| {
        if Some(id) == leader {
            " (the leader)"
        } else {
            ""
        }
    };
    let e = cx.election_timeout_ms;
    let what = match nemesis {
        Nemesis::Kill => {
            let id = leader_or_random(rng);
            cluster.kill9(id);
            let down = rng.millis(200, 3 * e + 200);
            tokio::time::sleep(down).await;
            match cluster.restart(id) {
                Ok(()) => format!("kill -9 node {id}{}; restarted after {down:?}", role(id)),
                Err(err) => format!("kill -9 node {id}{}; restart FAILED: {err}", role(id)),
            }
        }
        Nemesis::Pause => {
            let id = leader_or_random(rng);
            let stalled = rng.millis(2 * e, 4 * e + 1);
            cluster.pause(id, true);
            tokio::time::sleep(stalled).await;
            cluster.pause(id, false);
            format!(
                "SIGSTOP node {id}{} for {stalled:?}, then SIGCONT",
                role(id)
            )
        }
        Nemesis::IsolateLeader | Nemesis::IsolateFollower => {
            let id = match (nemesis, leader) {
                (Nemesis::IsolateLeader, Some(l)) => l,
                (Nemesis::IsolateFollower, Some(l)) => *rng.pick(&others(l)),
                _ => random(rng),
            };
            let cut = rng.millis(e, 5 * e);
            let mut refused = Vec::new();
            for peer in others(id) {
                if let Err(err) = cluster.block(peer, &[id]).await {
                    refused.push(format!("node {peer}: {err}"));
                }
            }
            if let Err(err) = cluster.block(id, &others(id)).await {
                refused.push(format!("node {id}: {err}"));
            }
            tokio::time::sleep(cut).await;
            for node in 1..=n {
                if let Err(err) = cluster.block(node, &[]).await {
                    refused.push(format!("healing node {node}: {err}"));
                }
            }
            let mut what = format!("cut node {id}{} off from the others for {cut:?}", role(id));
            if !refused.is_empty() {
                what += &format!(" (not applied everywhere: {})", refused.join("; "));
            }
            what
        }
        Nemesis::Swap => {
            let id = leader_or_random(rng);
            let answer = cluster
                .admin(id)
                .swap(bytes::Bytes::copy_from_slice(cx.driver_bytes))
                .await;
            let outcome = match answer {
                Ok(_) => "done".to_string(),
                Err(err @ AdminError::Api { .. }) => format!("refused: {err}"),
                Err(err) => format!("failed: {err}"),
            };
            format!("hot swap of node {id}{}'s driver: {outcome}", role(id))
        }
        Nemesis::OneWay => {
            let leader = leader.unwrap_or_else(|| random(rng));
            let follower = *rng.pick(&others(leader));
            let held = rng.millis(e, 5 * e);
            let (deaf, to, what) = if rng.between(0, 2) == 0 {
                let what = format!(
                    "node {follower} stopped hearing node {leader} (the leader) for {held:?}"
                );
                (follower, vec![leader], what)
            } else {
                let what = format!(
                    "node {leader} (the leader) stopped hearing the others for {held:?}, \
                     its messages still arriving"
                );
                (leader, others(leader), what)
            };
            let set = only(|f| f.dropped_from = Some(to));
            let heal = only(|f| f.dropped_from = Some(vec![]));
            what + &fault_for(cluster, deaf, set, heal, held).await
        }
        Nemesis::ClockJump => {
            let id = leader_or_random(rng);
            let step = rng.between(1_000, 60_000) as i64;
            let step = if rng.between(0, 2) == 0 { -step } else { step };
            let held = rng.millis(e, 4 * e);
            let what = format!(
                "stepped node {id}{}'s wall clock by {step:+} ms for {held:?}, then back",
                role(id)
            );
            let set = only(|f| f.clock_offset_ms = Some(step));
            let heal = only(|f| f.clock_offset_ms = Some(0));
            what + &fault_for(cluster, id, set, heal, held).await
        }
        Nemesis::StorageFault => {
            let id = leader_or_random(rng);
            let n = rng.between(1, 4);
            let held = rng.millis(e, 3 * e);
            // Half the time reads: a driver reads its state when it is
            // (re)built, so the driver is trapped to meet them.
            let (what, set, heal) = if rng.between(0, 2) == 0 {
                (
                    format!(
                        "failed node {id}{}'s next {n} storage write(s) (for up to {held:?})",
                        role(id)
                    ),
                    only(|f| f.fail_storage_writes = Some(n)),
                    only(|f| f.fail_storage_writes = Some(0)),
                )
            } else {
                (
                    format!(
                        "failed node {id}{}'s next {n} storage read(s) and trapped its driver \
                         (for up to {held:?})",
                        role(id)
                    ),
                    only(|f| {
                        f.fail_storage_reads = Some(n);
                        f.guest = Some(GuestFault::Trap);
                    }),
                    only(|f| f.fail_storage_reads = Some(0)),
                )
            };
            what + &fault_for(cluster, id, set, heal, held).await
        }
        Nemesis::GuestFault => {
            let id = leader_or_random(rng);
            let (fault, said, when) = *rng.pick(&[
                (GuestFault::Trap, "trap", "in its next host call"),
                (GuestFault::Hang, "hang", "in its next host call"),
                (
                    GuestFault::Exhaust,
                    "exhaust its memory",
                    "with its next peer message",
                ),
            ]);
            let settle = rng.millis(e, 3 * e);
            let what = format!(
                "made node {id}{}'s driver {said} {when}, then waited {settle:?}",
                role(id)
            );
            let set = only(|f| f.guest = Some(fault));
            match cluster.admin(id).set_faults(&set).await {
                Ok(_) => {
                    tokio::time::sleep(settle).await;
                    what
                }
                Err(err) => what + &format!(" (not applied: {err})"),
            }
        }
    };
    Fault {
        nemesis: nemesis.name(),
        at_ms: at.as_millis() as u64,
        healed_ms: cx.start.elapsed().as_millis() as u64,
        what,
    }
}

/// Faults with only what `set` changes: the others stay as they are.
fn only(set: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::default();
    set(&mut faults);
    faults
}

/// Apply admin faults `set` on node `id` for `held`, then `heal`; a note
/// for the report if either was refused.
async fn fault_for(
    cluster: &LocalCluster,
    id: u64,
    set: Faults,
    heal: Faults,
    held: Duration,
) -> String {
    let admin = cluster.admin(id);
    let set = admin.set_faults(&set).await;
    tokio::time::sleep(held).await;
    let heal = admin.set_faults(&heal).await;
    match set.and(heal) {
        Ok(_) => String::new(),
        Err(err) => format!(" (not applied: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_choices() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.between(0, 1000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert_eq!(Rng::new(1).between(5, 5), 5);
    }

    #[test]
    fn nemeses_parse_by_name_and_refuse_others() {
        for n in Nemesis::ALL {
            assert_eq!(n.name().parse::<Nemesis>(), Ok(n));
        }
        let err = "flood".parse::<Nemesis>().unwrap_err();
        assert!(err.contains("kill, pause"), "{err}");
    }
}
