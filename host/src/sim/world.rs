//! The simulation loop: one queue of timed events, the nodes, the network,
//! the nemesis and the checker, on one thread.
//!
//! Time is simulated: the loop takes the earliest event, sets the world's
//! clock to its time and hands it to whom it concerns. Ties are broken by
//! the order events were scheduled in, so a run is a function of the
//! component and the seed.

use super::history::History;
use super::nemesis::{FAULTS_FROM_US, GAP_US, Kind, LASTS_US};
use super::net::Network;
use super::node::SimNode;
use super::rng::Rng;
use super::trace::{NEMESIS, Trace, secs};
use super::{Spec, Summary, Violation};
use crate::driver::bindings::Peer;
use crate::driver::fault::GuestFault;
use crate::driver::{Command, DriverError, LoadedDriver};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Something that happens at a simulated time.
pub enum Ev {
    /// The driver of a node wants a tick (for instance build `.1`).
    DriverTick(u64, u64),
    Deliver {
        from: u64,
        to: u64,
        payload: Vec<u8>,
    },
    /// The clients of a node send their next request (the stream of
    /// requests goes on whatever the node does).
    Client(u64),
    /// A request for `.1` timestamps reaches node `.0`.
    Ask(u64, u64),
    /// The host's periodic check of a node (process start `.1`).
    HostTick(u64, u64),
    /// Rebuild a node's lost instance (lost after build `.1`).
    Rebuild(u64, u64),
    /// A node that lost power starts again.
    Restart(u64),
    /// The nemesis strikes.
    Nemesis,
    /// A fault ends.
    Heal(Heal),
    /// A paused node carries on (if its pause is over).
    Resume(u64),
    /// Cut node `.0` off from every other for `.1` µs (the second half of
    /// a bridge; void once the faults stopped).
    Isolate(u64, u64),
    /// The faults stop for good: liveness is measured from here.
    Quiet,
}

/// What ends a fault.
pub enum Heal {
    /// Restore the links one fault cut.
    Links(Vec<(u64, u64)>),
    Storm,
    /// Add the removed node back to the membership.
    Membership(u64),
}

/// Everything but the nodes.
pub struct World {
    pub spec: Spec,
    pub driver: LoadedDriver,
    pub peers: Vec<Peer>,
    pub now_us: u64,
    clock: Arc<AtomicU64>,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    net: Network,
    net_rng: Rng,
    nemesis_rng: Rng,
    client_rng: Rng,
    pub history: History,
    trace: Trace,
    pub violation: Option<Violation>,
    pub setup_error: Option<String>,
    pub calls: u64,
    pub messages: u64,
    pub instance_losses: u64,
    faults: u64,
    /// Admin requests the driver answered with `invalid-config`.
    unsupported: BTreeSet<&'static str>,
    /// The node the nemesis removed from the membership, until it is back.
    removed: Option<u64>,
    quiet: bool,
}

const CHANGE_MEMBERSHIP: &str = "change-membership";
const TRANSFER: &str = "transfer-leadership";

impl World {
    /// Run `spec` on `driver` to the end or the first violation.
    pub fn run(driver: &LoadedDriver, spec: &Spec) -> Result<Summary, String> {
        let clock = Arc::new(AtomicU64::new(0));
        let mut rng = Rng::new(spec.seed);
        let ids: Vec<u64> = (1..=spec.nodes as u64).collect();
        let mut nodes: Vec<SimNode> = ids
            .iter()
            .map(|&id| SimNode::new(id, clock.clone(), spec.window_ms))
            .collect();
        let peers = nodes.iter().map(SimNode::peer).collect();
        let mut w = World {
            spec: spec.clone(),
            driver: driver.clone(),
            peers,
            now_us: 0,
            clock,
            queue: BTreeMap::new(),
            seq: 0,
            net: Network::default(),
            net_rng: rng.fork(),
            nemesis_rng: rng.fork(),
            client_rng: rng.fork(),
            history: History::default(),
            trace: Trace::printing(spec.print_trace),
            violation: None,
            setup_error: None,
            calls: 0,
            messages: 0,
            instance_losses: 0,
            faults: 0,
            unsupported: BTreeSet::new(),
            removed: None,
            quiet: false,
        };
        let end_us = spec.duration_ms * 1_000;
        let quiet_at = end_us.saturating_sub(spec.liveness_ms * 1_000);
        for &id in &ids {
            let first = w.client_rng.range(0, 4_000);
            w.schedule(first, Ev::Client(id));
        }
        if !spec.faults.0.is_empty() && quiet_at > FAULTS_FROM_US {
            w.schedule(FAULTS_FROM_US, Ev::Nemesis);
        }
        w.schedule(quiet_at, Ev::Quiet);
        for node in &mut nodes {
            node.start(&mut w);
        }
        while w.violation.is_none() && w.setup_error.is_none() {
            let Some(((at, _), ev)) = w.queue.pop_first() else {
                break;
            };
            if at > end_us {
                break;
            }
            w.now_us = at;
            w.clock.store(at, Relaxed);
            w.dispatch(&mut nodes, ev);
        }
        if std::env::var("SIMDEBUG").is_ok() {
            eprintln!(
                "DEBUG end: now {} queue {} first {:?}",
                w.now_us,
                w.queue.len(),
                w.queue.keys().next()
            );
        }
        if let Some(error) = w.setup_error {
            return Err(error);
        }
        if w.violation.is_none() {
            w.now_us = end_us;
            match w.history.first_grant_after_quiet_us {
                Some(_) => {}
                None => w.violation(
                    NEMESIS,
                    format!(
                        "liveness: no node served a timestamp in the {} after the faults \
                         stopped (every link healed, every node up)",
                        secs(spec.liveness_ms * 1_000)
                    ),
                ),
            }
        }
        Ok(Summary {
            simulated_ms: w.now_us / 1_000,
            grants: w.history.grants,
            timestamps: w.history.timestamps,
            leaderships: w.history.leaderships_seen,
            persists: w.history.persists,
            faults: w.faults,
            messages: w.messages,
            calls: w.calls,
            instance_losses: w.instance_losses,
            recovered_after_ms: w
                .history
                .first_grant_after_quiet_us
                .map(|t| t.saturating_sub(quiet_at) / 1_000),
            violation: w.violation,
        })
    }

    pub fn schedule(&mut self, after_us: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now_us + after_us, self.seq), ev);
    }

    pub fn note(&mut self, node: u64, line: impl AsRef<str>) {
        self.trace.note(self.now_us, node, line);
    }

    /// The run breaks here: keep what broke and the trace that led to it.
    pub fn violation(&mut self, node: u64, what: String) {
        if self.violation.is_some() {
            return;
        }
        self.note(node, format!("VIOLATION: {what}"));
        self.violation = Some(Violation {
            at_ms: self.now_us / 1_000,
            what,
            trace: self.trace.render(),
        });
    }

    /// A driver on `from` sent `payload` to `to`.
    pub fn send(&mut self, from: u64, to: u64, payload: Vec<u8>) {
        self.messages += 1;
        if to == 0 || to > self.spec.nodes as u64 {
            return;
        }
        let delays = self.net.route(&mut self.net_rng, from, to);
        for delay in delays {
            self.schedule(
                delay,
                Ev::Deliver {
                    from,
                    to,
                    payload: payload.clone(),
                },
            );
        }
    }

    /// A driver answered an admin request of the nemesis.
    pub fn admin_answered(&mut self, what: &'static str, outcome: &Result<u64, DriverError>) {
        let kind = if what.starts_with(CHANGE_MEMBERSHIP) {
            CHANGE_MEMBERSHIP
        } else {
            TRANSFER
        };
        if matches!(outcome, Err(DriverError::InvalidConfig(_))) && self.unsupported.insert(kind) {
            self.note(
                NEMESIS,
                format!("the driver does not support {kind}: not tried again"),
            );
        }
    }

    fn dispatch(&mut self, nodes: &mut [SimNode], ev: Ev) {
        let target = match &ev {
            Ev::DriverTick(n, _) | Ev::Ask(n, _) | Ev::HostTick(n, _) | Ev::Rebuild(n, _) => {
                Some(*n)
            }
            Ev::Deliver { to, .. } => Some(*to),
            _ => None,
        };
        if let Some(n) = target
            && nodes[n as usize - 1].paused_until_us > self.now_us
        {
            nodes[n as usize - 1].deferred.push(ev);
            return;
        }
        let node = |n: u64| n as usize - 1;
        match ev {
            Ev::DriverTick(n, build) => nodes[node(n)].driver_tick(self, build),
            Ev::Deliver { from, to, payload } => nodes[node(to)].deliver(self, from, payload),
            Ev::Client(n) => {
                let next = self.client_rng.range(1_000, 4_000);
                self.schedule(next, Ev::Client(n));
                let count = if self.client_rng.chance(70) {
                    1
                } else {
                    self.client_rng.range(2, 1_000)
                };
                self.dispatch(nodes, Ev::Ask(n, count));
            }
            Ev::Ask(n, count) => nodes[node(n)].client(self, count),
            Ev::HostTick(n, incarnation) => nodes[node(n)].host_tick(self, incarnation),
            Ev::Rebuild(n, build) => nodes[node(n)].rebuild(self, build),
            Ev::Restart(n) => {
                if !nodes[node(n)].up {
                    nodes[node(n)].start(self);
                }
            }
            Ev::Nemesis => {
                if !self.quiet {
                    self.strike(nodes);
                    let gap = self.nemesis_rng.range(GAP_US.0, GAP_US.1);
                    self.schedule(gap, Ev::Nemesis);
                }
            }
            Ev::Heal(heal) => self.heal(nodes, heal),
            Ev::Resume(n) => self.resume(&mut nodes[node(n)]),
            Ev::Quiet => self.quiet_down(nodes),
            Ev::Isolate(node, for_us) if !self.quiet => {
                let all: Vec<u64> = nodes.iter().map(|n| n.id).collect();
                self.isolate(&all, node, for_us, "then isolate");
            }
            Ev::Isolate(..) => {}
        }
    }

    /// The node that leads in the greatest epoch, if any.
    fn leader(nodes: &[SimNode]) -> Option<u64> {
        nodes
            .iter()
            .filter_map(|n| n.leading().map(|e| (e, n.id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Cut `node` off from every other of `all` for `for_us`, noted as
    /// "`what` nN for …".
    fn isolate(&mut self, all: &[u64], node: u64, for_us: u64, what: &str) {
        let rest: Vec<u64> = all.iter().copied().filter(|&o| o != node).collect();
        let cuts = self.net.partition(&[node], &rest);
        self.note(NEMESIS, format!("{what} n{node} for {}", secs(for_us)));
        self.schedule(for_us, Ev::Heal(Heal::Links(cuts)));
    }

    fn strike(&mut self, nodes: &mut [SimNode]) {
        let leader = Self::leader(nodes);
        let up: Vec<u64> = nodes.iter().filter(|n| n.up).map(|n| n.id).collect();
        let many = nodes.len() >= 2;
        let possible = |kind: Kind| match kind {
            Kind::Partition | Kind::OneWay => many,
            Kind::IsolateLeader => many && leader.is_some(),
            Kind::Bridge => nodes.len() >= 3 && leader.is_some(),
            Kind::Transfer => many && leader.is_some() && !self.unsupported.contains(TRANSFER),
            Kind::Membership => {
                nodes.len() >= 3
                    && leader.is_some()
                    && self.removed.is_none()
                    && !self.unsupported.contains(CHANGE_MEMBERSHIP)
            }
            Kind::PowerLoss | Kind::Pause | Kind::Trap | Kind::Hang | Kind::Exhaust => {
                !up.is_empty()
            }
            Kind::Storm | Kind::Clock | Kind::Disk => true,
        };
        let Some(kind) = self.spec.faults.pick(&mut self.nemesis_rng, possible) else {
            return;
        };
        self.faults += 1;
        let rng = &mut self.nemesis_rng;
        let lasts = rng.range(LASTS_US.0, LASTS_US.1);
        // A node to strike: the leader half of the time, to hurt.
        let victim = match leader {
            Some(l) if rng.chance(50) => l,
            _ if up.is_empty() => 1,
            _ => *rng.pick(&up),
        };
        let all: Vec<u64> = nodes.iter().map(|n| n.id).collect();
        match kind {
            Kind::Partition => {
                let (a, b): (Vec<u64>, Vec<u64>) = loop {
                    let (a, b): (Vec<u64>, Vec<u64>) = all.iter().partition(|_| rng.chance(50));
                    if !a.is_empty() && !b.is_empty() {
                        break (a, b);
                    }
                };
                let cuts = self.net.partition(&a, &b);
                self.note(
                    NEMESIS,
                    format!("partition {a:?} | {b:?} for {}", secs(lasts)),
                );
                self.schedule(lasts, Ev::Heal(Heal::Links(cuts)));
            }
            Kind::OneWay => {
                let deaf = rng.chance(50);
                let cuts = all
                    .iter()
                    .filter(|&&o| o != victim)
                    .map(|&other| {
                        if deaf {
                            self.net.cut(other, victim)
                        } else {
                            self.net.cut(victim, other)
                        }
                    })
                    .collect();
                let how = if deaf {
                    "hears nothing"
                } else {
                    "reaches no one"
                };
                self.note(
                    NEMESIS,
                    format!("one-way: n{victim} {how} for {}", secs(lasts)),
                );
                self.schedule(lasts, Ev::Heal(Heal::Links(cuts)));
            }
            Kind::IsolateLeader => {
                let leader = leader.expect("possible");
                self.isolate(&all, leader, lasts, "isolate the leader");
            }
            Kind::Bridge => {
                let leader = leader.expect("possible");
                let others: Vec<u64> = all.iter().copied().filter(|&o| o != leader).collect();
                let follower = *rng.pick(&others);
                let cuts = self.net.partition(&[leader], &[follower]);
                self.note(
                    NEMESIS,
                    format!(
                        "bridge: the leader n{leader} and n{follower} cannot reach each other for {}",
                        secs(lasts)
                    ),
                );
                self.schedule(lasts, Ev::Heal(Heal::Links(cuts)));
                // Half the time the leader then loses the rest too: the
                // cut-off follower's election timer has been running for a
                // while, so it campaigns the moment the other voters'
                // refusal ends, the earliest any successor can be elected
                // (and where a lease one step too long shows).
                if self.nemesis_rng.chance(50) {
                    let after = self.nemesis_rng.range(lasts / 4, lasts / 2);
                    self.schedule(after, Ev::Isolate(leader, lasts - after));
                }
            }
            Kind::Storm => {
                self.net.loss_percent = rng.range(5, 40);
                self.net.duplicate_percent = rng.range(5, 40);
                self.net.slow_us = rng.range(10_000, 1_000_000);
                self.note(
                    NEMESIS,
                    format!(
                        "storm: {}% lost, {}% duplicated, up to {} late, for {}",
                        self.net.loss_percent,
                        self.net.duplicate_percent,
                        secs(self.net.slow_us),
                        secs(lasts)
                    ),
                );
                self.schedule(lasts, Ev::Heal(Heal::Storm));
            }
            Kind::PowerLoss => {
                let down_for = rng.range(100_000, 4_000_000);
                self.note(
                    NEMESIS,
                    format!("power loss of n{victim} for {}", secs(down_for)),
                );
                nodes[victim as usize - 1].power_off(self);
                self.schedule(down_for, Ev::Restart(victim));
            }
            Kind::Pause => {
                let pause = rng.range(50_000, (self.spec.window_ms * 2_000).max(100_000));
                self.note(NEMESIS, format!("pause n{victim} for {}", secs(pause)));
                let node = &mut nodes[victim as usize - 1];
                node.paused_until_us = node.paused_until_us.max(self.now_us + pause);
                self.schedule(pause, Ev::Resume(victim));
            }
            Kind::Trap | Kind::Hang | Kind::Exhaust => {
                let fault = match kind {
                    Kind::Trap => GuestFault::Trap,
                    Kind::Hang => GuestFault::Hang,
                    _ => GuestFault::Exhaust,
                };
                self.note(NEMESIS, format!("{kind}: n{victim}'s guest"));
                nodes[victim as usize - 1].inject(fault);
            }
            Kind::Clock => {
                let victim = *rng.pick(&all);
                let step = rng.range(0, 20_000) as i64 - 10_000;
                let drift = rng.range(0, 2_000) as i64 - 1_000;
                self.note(
                    NEMESIS,
                    format!("n{victim}'s wall clock steps {step} ms, drifts {drift} ppm"),
                );
                nodes[victim as usize - 1].skew_clock(step, drift);
            }
            Kind::Disk => {
                let victim = *rng.pick(&all);
                let count = rng.range(1, 3);
                let disk = &nodes[victim as usize - 1].disk;
                if rng.chance(50) {
                    disk.fail_writes(count);
                    self.note(NEMESIS, format!("n{victim}'s next {count} writes fail"));
                } else {
                    disk.fail_reads(count);
                    self.note(NEMESIS, format!("n{victim}'s next {count} reads fail"));
                }
            }
            Kind::Transfer => {
                let leader = leader.expect("possible");
                self.note(NEMESIS, format!("ask the leader n{leader} to hand over"));
                nodes[leader as usize - 1].admin(self, TRANSFER, |request| {
                    Command::TransferLeadership { request, to: None }
                });
                // Half the time the old leader is then cut off, so that it
                // does not hear of its successor: it must have stopped
                // serving on its own before the successor can serve.
                if self.nemesis_rng.chance(50) {
                    self.isolate(&all, leader, lasts, "then isolate");
                }
            }
            Kind::Membership => {
                let leader = leader.expect("possible");
                let others: Vec<u64> = all.iter().copied().filter(|&o| o != leader).collect();
                let gone = *rng.pick(&others);
                let members: Vec<Peer> = self
                    .peers
                    .iter()
                    .filter(|p| p.id != gone)
                    .cloned()
                    .collect();
                self.removed = Some(gone);
                self.note(
                    NEMESIS,
                    format!("remove n{gone} from the membership for {}", secs(lasts)),
                );
                nodes[leader as usize - 1].admin(self, "change-membership: remove", |request| {
                    Command::ChangeMembership { request, members }
                });
                self.schedule(lasts, Ev::Heal(Heal::Membership(gone)));
            }
        }
    }

    fn heal(&mut self, nodes: &mut [SimNode], heal: Heal) {
        match heal {
            Heal::Links(cuts) => {
                self.net.restore(&cuts);
                self.note(
                    NEMESIS,
                    if self.net.is_faulty() {
                        "a fault's links restored (others stay cut)"
                    } else {
                        "links restored"
                    },
                );
            }
            Heal::Storm => {
                self.net.calm();
                self.note(NEMESIS, "storm over");
            }
            Heal::Membership(node) => {
                if self.removed != Some(node) {
                    return;
                }
                match Self::leader(nodes) {
                    Some(leader) => {
                        self.removed = None;
                        self.note(NEMESIS, format!("add n{node} back to the membership"));
                        let members = self.peers.clone();
                        nodes[leader as usize - 1].admin(
                            self,
                            "change-membership: add back",
                            |request| Command::ChangeMembership { request, members },
                        );
                    }
                    // No one to ask yet: try again soon.
                    None => self.schedule(500_000, Ev::Heal(Heal::Membership(node))),
                }
            }
        }
    }

    /// What a paused node missed happens now, in the order it came, once
    /// its pause is over.
    fn resume(&mut self, node: &mut SimNode) {
        if node.paused_until_us > self.now_us {
            return;
        }
        for ev in std::mem::take(&mut node.deferred) {
            self.schedule(0, ev);
        }
    }

    /// Every fault ends: links, storms, pauses; every node runs.
    fn quiet_down(&mut self, nodes: &mut [SimNode]) {
        self.quiet = true;
        self.net.heal();
        self.note(NEMESIS, "faults stop: links healed, every node up");
        for node in nodes.iter_mut() {
            node.calm();
            self.resume(node);
            if !node.up {
                node.start(self);
            }
        }
        self.history.quiet_from(self.now_us);
        if let Some(node) = self.removed {
            self.heal(nodes, Heal::Membership(node));
        }
    }
}
