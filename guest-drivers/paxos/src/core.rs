//! The paxos driver, sans-IO: [`PaxosDriver`] runs omnipaxos (Sequence
//! Paxos plus ballot leader election, BLE) and does everything else through
//! a [`Host`], so it runs the same in a component and in a native
//! simulation.
//!
//! Every export follows one pattern: take the host's time, hand the event to
//! omnipaxos (a message, logical clock ticks, a proposal), then
//! [`settle`](PaxosDriver::settle): apply newly decided entries (completing
//! this leader's requests), follow leadership changes, compact, queue
//! omnipaxos's outgoing messages through the promise gate, report
//! leadership, and send one payload per peer. Reports are made before the
//! payloads are handed to the host.
//!
//! # Epochs
//!
//! A leadership's epoch is its omnipaxos ballot, encoded losslessly with the
//! configuration id first (see [`crate::ballot`]).
//!
//! # Requests
//!
//! - `persist-high-water`: the leader (omnipaxos leader in its Accept phase)
//!   checks range and epoch (a request older than its own ballot or the
//!   newest applied epoch is fenced), appends [`Command::Persist`] and
//!   completes when that very entry (same epoch and request id at the index
//!   it was appended at) is decided and applied. Applying fences too.
//! - `load-high-water`: the leader appends a [`Command::Barrier`] and answers
//!   the high water once the barrier is decided and applied. Everything
//!   decided before the barrier (every completed persist, by any earlier
//!   leader) is then applied, so the answer is linearizable. The barrier
//!   also raises the high water to `config.floor`.
//! - A request still undecided when this node stops leading, or after
//!   [`Settings::request_timeout_ms`], fails with `not-leader`.
//!
//! # The leader lease
//!
//! omnipaxos's BLE has no lease, so the driver adds one around it. Let `W` =
//! [`Settings::gate_ms`] (the election timeout `E`) and `L` =
//! [`Settings::lease_ms`] = `W / 2`.
//!
//! - **Heartbeats.** The leader of ballot `b` (omnipaxos leader, Accept
//!   phase) sends `Lease{b, seq}` every heartbeat and records each send
//!   time. A node acknowledges it only if its own omnipaxos promise is
//!   exactly `b`; acknowledging, it closes its **gate** until `r + W` (`r` =
//!   receipt time on its clock): until then it refuses to promise any ballot
//!   other than `b`.
//! - **Gate.** Refusing to promise = dropping every Prepare of another
//!   ballot, both received ones and the ones this node's own omnipaxos wants
//!   to send as a candidate. In omnipaxos a node's promise only changes by
//!   handling a Prepare or by electing itself (which is useless without
//!   sending Prepares), so no other ballot can gather promises through a
//!   gated node. A closed gate also holds back BLE's takeovers (a patch of
//!   the vendored omnipaxos, `hold_elections`): electing itself would not
//!   break the claim below, but it moves the node's promise, so it stops
//!   acknowledging the leader it was gated for. Rounds that missed the
//!   leader's reply at both followers (a stall of the leader's process
//!   longer than a round, under load) then cost the leader its lease and,
//!   `W` later, its leadership; held back, a takeover waits for the gate to
//!   open (no lease heartbeat for `W`) and then happens at once.
//! - **Lease.** The leader's lease base `A` is the newest heartbeat send
//!   time acknowledged by a quorum of the configuration (the leader counts
//!   itself); it reports `lease-until-ms = A + L`, and closes its own gate
//!   until `A + W`. A fresh instance with state starts gated for `W` (it
//!   may have acknowledged a heartbeat just before it was replaced: the
//!   gate lives in memory, the promise it depends on in storage).
//!
//! **Claim.** No other ballot `b'` is served by any node before `A + L`.
//! A leader of `b'` serves only after omnipaxos reached its Accept phase,
//! that is after a quorum `Q'` promised `b'`. The heartbeat behind `A` was
//! acknowledged by a quorum `Q`; let `m ∈ Q ∩ Q'`. `m` acknowledged (or, for
//! the leader, sent) it at `r_m ≥ A` with promise `b`, so it promised `b'`
//! afterwards (a promise never returns to `b` once it moved), and only once
//! its gate, closed until at least `r_m + W ≥ A + W`, was open; if `m` is
//! the new leader itself, its promise counts only once its own Prepares
//! leave, which its gate also holds back until `r_m + W`. So `b'` reaches
//! its Accept phase after `A + W` > `A + L`. The gap `W - L = W/2`
//! absorbs clock-rate differences between hosts over one lease and the
//! rounding of host milliseconds; message delays only help (receipt after
//! send). Lost, duplicated or reordered heartbeats and acknowledgements can
//! only make `A` older. It assumes every node runs with the same
//! `election-timeout-ms` and that host clocks advance at nearly the same
//! rate (not that they agree).
//!
//! Liveness: a healthy leader keeps its followers gated, so a node that
//! elected itself in BLE without reason (e.g. a partition that healed)
//! cannot disturb it, and a gated node does not elect itself; once the
//! leader is gone, the gate opens at most `W` after its last heartbeat, a
//! takeover held back meanwhile happens at once, and Prepares go through.
//! A leader gated by its own lease needs acknowledgements to stay gated, so
//! a leader cut off from its quorum opens its gate and can follow the new
//! leader after the partition heals.
//!
//! Across a reconfiguration the gate (in memory) carries over to the next
//! configuration's instance, and the leader that decides the stop-sign stops
//! leading in the same call (omnipaxos decides a stop-sign at the leader
//! first). For a change of one voter at a time the old and new quorums
//! intersect, so the claim holds unchanged; for bigger changes it relies on
//! that step-down (the host stops serving on the non-leader report).
//!
//! # Membership
//!
//! The configuration (omnipaxos `ClusterConfig` plus peer addresses) is
//! stored under `membership`. The bootstrapping node (`config.bootstrap`,
//! empty storage) stores configuration 1 from `config.peers`; the other
//! nodes start empty and wait: every member of a configuration sends
//! [`Wire::Join`] (the configuration and the state it started from) to
//! members it has not heard at that configuration, once per heartbeat, and
//! answers with a `Join` any message tagged with an older configuration.
//! `change-membership` proposes an omnipaxos stop-sign carrying the next
//! configuration (id + 1, addresses in its metadata). When a node applies a
//! decided stop-sign it stores the next configuration and the state at the
//! stop-sign and deletes the old instance's keys in one synced write, then,
//! if still a member, starts the next configuration's omnipaxos on empty
//! storage; a removed node stops. The request completes with 0 on the
//! proposing node when it has switched.
//!
//! # A single voter
//!
//! omnipaxos needs at least two voters. A configuration whose only voter is
//! this node (bootstrapped from `config.peers` naming only this node, or
//! none) runs without it: each instance takes the next *generation*
//! (stored synced under `op/generation`) and leads forever under ballot
//! `(config_id, generation, 0, node)` with an unbounded lease; a request is
//! applied to the state and stored (`base`, synced) before it completes.
//! `change-membership` from it decides alone: it switches to the next
//! configuration at once (reporting the end of its leadership, so the host
//! stops serving before any new member hears of it) and the new members
//! join as above. A configuration of several voters cannot shrink back to
//! one.
//!
//! `transfer-leadership`: omnipaxos has no transfer, only
//! `try_become_leader` on the node that wants to lead. The leader steps down
//! (reports follower, stops heartbeats, fails its pending requests) and
//! sends [`Wire::TakeOver`] to the target, which calls `try_become_leader`;
//! the target's Prepares leave once the gates open (within `W`). The request
//! completes with the target as soon as this node stepped down; if the
//! target does not take over within `3W`, this node resumes leading.

use std::collections::BTreeMap;
use std::rc::Rc;

use omnipaxos::ballot_leader_election::Ballot;
use omnipaxos::messages::Message;
use omnipaxos::messages::sequence_paxos::PaxosMsg;
use omnipaxos::storage::StopSign;
use omnipaxos::util::LogEntry;
use omnipaxos::{ClusterConfig, OmniPaxos, OmniPaxosConfig, ProposeErr, ServerConfig};
use tsohost_guest_sdk::frame::Frame;
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::rules::{ZERO_EPOCH, check_epoch, check_range};
use tsohost_guest_sdk::stats::{Epochs, counter, gauge};
use tsohost_guest_sdk::{
    Config, Driver, DriverError, Epoch, Leadership, LogLevel, Metric, NodeId, Peer, Role,
};

use crate::ballot::{check_node_id, epoch_of, pair};
use crate::lease::{Lease, Voters};
use crate::settings::Settings;
use crate::state::{Applied, Command, HwState};
use crate::store::{self, Membership, PaxosStore};
use crate::wire::{self, Packet, Wire};

#[cfg(tsohost_mutants)]
mod mutant;

/// omnipaxos over this driver's storage.
type Paxos = OmniPaxos<Command, PaxosStore>;

/// What a pending log request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Persist,
    Load,
}

/// A request of this leader waiting for its entry to be decided.
#[derive(Debug, Clone, Copy)]
struct Pending {
    request: u64,
    kind: Kind,
    epoch: Epoch,
    deadline: u64,
}

/// A leader handing over (`transfer-leadership`).
#[derive(Debug, Clone, Copy)]
struct SteppingDown {
    ballot: Ballot,
    target: NodeId,
    until: u64,
}

/// A `change-membership` waiting for its configuration to run.
#[derive(Debug, Clone, Copy)]
struct PendingReconfig {
    request: u64,
    config_id: u32,
    deadline: u64,
}

/// One instance of the paxos driver on one node.
pub struct PaxosDriver {
    host: Rc<dyn Host>,
    settings: Settings,
    node: NodeId,
    floor: u64,
    /// `config.peers`, reported while this node has no configuration.
    configured_peers: Vec<Peer>,
    membership: Option<Membership>,
    /// `None` while waiting to join, after being removed, or when this node
    /// is the only voter.
    op: Option<Paxos>,
    /// The ballot of this instance when it is the configuration's only
    /// voter (see "A single voter" in the module docs).
    single: Option<Ballot>,
    /// The state of the applied prefix of the log.
    state: HwState,
    /// Log entries `< applied` are applied.
    applied: usize,
    lease: Lease,
    /// The newest Prepare the gate refused, handed to omnipaxos as soon as
    /// the gate opens rather than at its sender's resend (up to
    /// [`Settings::resend_ticks`] heartbeats later).
    held_prepare: Option<(Ballot, Message<Command>)>,
    /// This leader's requests by log index.
    pending: BTreeMap<usize, Pending>,
    reconfig: Option<PendingReconfig>,
    stepping_down: Option<SteppingDown>,
    /// The newest configuration each peer's messages carried.
    heard_config: BTreeMap<NodeId, u32>,
    outbox: BTreeMap<NodeId, Vec<Frame>>,
    now: u64,
    next_op_tick: u64,
    next_heartbeat: u64,
    next_join: u64,
    reported: Option<Leadership>,
    /// The ballots this instance saw (`stats`).
    epochs: Epochs,
    /// Snapshots this instance took.
    snapshots: u64,
    /// The mutant this instance runs, if any (test-only copy, see
    /// [`mutant`]).
    #[cfg(tsohost_mutants)]
    mutant: Option<mutant::Mutant>,
}

impl Driver for PaxosDriver {
    #[cfg(not(tsohost_mutants))]
    const NAME: &'static str = "paxos";
    #[cfg(tsohost_mutants)]
    const NAME: &'static str = mutant::NAME;

    /// Start (or resume from storage) on `host` with `cfg`.
    fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        #[cfg(tsohost_mutants)]
        let (mutant, cfg) = mutant::take(cfg)?;
        #[cfg(tsohost_mutants)]
        let (host, cfg) = (mutant::host(mutant, host), &cfg);
        let settings = Settings::from_config(cfg)?;
        let node = cfg.node_id;
        check_node_id(node, "node-id")?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &cfg.peers {
            check_node_id(p.id, "peers")?;
            if !seen.insert(p.id) {
                return Err(DriverError::InvalidConfig(format!(
                    "peers: node {} is listed twice",
                    p.id
                )));
            }
        }
        if !cfg.peers.is_empty() && !seen.contains(&node) {
            return Err(DriverError::InvalidConfig(format!(
                "peers: this node ({node}) is not among them; the paxos driver needs the full \
                 membership including itself"
            )));
        }
        let now = host.now_ms();
        let mut membership = store::membership(&*host)?;
        let resumed = membership.is_some();
        if membership.is_none() && cfg.bootstrap {
            let mut members: Vec<(NodeId, String)> = cfg
                .peers
                .iter()
                .map(|p| (p.id, p.address.clone()))
                .collect();
            if members.is_empty() {
                members.push((node, String::new()));
            }
            members.sort();
            let m = Membership {
                config_id: 1,
                members,
            };
            store::switch_config(&*host, &m, &HwState::default())?;
            membership = Some(m);
        }
        let mut driver = PaxosDriver {
            host,
            settings,
            node,
            floor: cfg.floor,
            configured_peers: cfg.peers.clone(),
            membership: None,
            op: None,
            single: None,
            state: HwState::default(),
            applied: 0,
            lease: Lease::default(),
            held_prepare: None,
            pending: BTreeMap::new(),
            reconfig: None,
            stepping_down: None,
            heard_config: BTreeMap::new(),
            outbox: BTreeMap::new(),
            now,
            next_op_tick: now,
            next_heartbeat: now,
            next_join: now,
            reported: None,
            epochs: Epochs::default(),
            snapshots: 0,
            #[cfg(tsohost_mutants)]
            mutant,
        };
        if let Some(m) = membership {
            driver.start_config(m)?;
        }
        if resumed {
            // This node may have acknowledged a lease just before the last
            // instance went: refuse other ballots for a full window.
            let promise = driver
                .op
                .as_ref()
                .map(Paxos::get_promise)
                .unwrap_or_default();
            driver
                .lease
                .close_gate(now + driver.settings.gate_ms(), promise);
        }
        driver.report_membership();
        driver.settle();
        Ok(driver)
    }

    /// Bytes from a peer's driver.
    fn on_message(&mut self, from: NodeId, payload: &[u8]) {
        self.now = self.now.max(self.host.now_ms());
        match wire::decode(payload) {
            Ok(packets) => {
                for p in packets {
                    self.receive(from, p);
                }
            }
            Err(e) => self.log(
                LogLevel::Warn,
                format!("dropped {} bytes from node {from}: {e}", payload.len()),
            ),
        }
        self.settle();
    }

    /// Time passes; returns when to be ticked next.
    fn on_tick(&mut self, now_ms: u64) -> u64 {
        self.now = self.now.max(now_ms);
        let hb = self.settings.heartbeat_ms;
        // A closed gate holds back ballot leader election's takeovers too
        // (not only the Prepares they send): see "The leader lease". Once it
        // opens, a Prepare it held back goes first (this node then follows
        // that candidate rather than competing), then a takeover held back.
        let hold = self.now < self.lease.gate_until();
        if !hold && let Some((_, prepare)) = self.held_prepare.take() {
            self.receive_paxos(prepare.get_sender(), prepare);
        }
        if let Some(op) = self.op.as_mut() {
            op.hold_elections(hold);
        }
        if self.now >= self.next_op_tick {
            // After a long pause, tick once rather than replaying every
            // missed tick at once.
            if self.now - self.next_op_tick > 10 * hb {
                self.next_op_tick = self.now;
            }
            while self.next_op_tick <= self.now {
                if let Some(op) = self.op.as_mut() {
                    op.tick();
                }
                self.next_op_tick += hb;
            }
        }
        self.expire();
        self.settle();
        let mut next = self.next_op_tick.min(self.next_join);
        if self.now < self.lease.gate_until() {
            next = next.min(self.lease.gate_until());
        }
        if self.lease.leading().is_some() || self.stepping_down.is_some() {
            next = next.min(self.next_heartbeat);
        }
        if let Some(p) = self.pending.values().map(|p| p.deadline).min() {
            next = next.min(p);
        }
        next.max(self.now + 1)
    }

    /// `load-high-water`, answered through `host.completed`.
    fn load_high_water(&mut self, request: u64) {
        self.now = self.now.max(self.host.now_ms());
        #[cfg(tsohost_mutants)]
        if self.mutant_is(mutant::Mutant::StaleRead) && self.serving_ballot().is_ok() {
            self.read_locally(request);
            self.settle();
            return;
        }
        let outcome = self.serving_ballot().and_then(|mine| {
            let epoch = epoch_of(mine);
            let cmd = Command::Barrier {
                floor: self.floor,
                epoch: pair(epoch),
                request,
            };
            self.propose(request, Kind::Load, epoch, cmd)
        });
        if let Err(e) = outcome {
            self.host.completed(request, Err(e));
        }
        self.settle();
    }

    /// `persist-high-water`, answered through `host.completed`.
    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        self.now = self.now.max(self.host.now_ms());
        let outcome = check_range(at_least).and_then(|()| {
            let mine = epoch_of(self.serving_ballot()?);
            let accepted = mine.max(self.state.highest_epoch());
            #[cfg(tsohost_mutants)]
            let accepted = self.mutant_fence(accepted);
            check_epoch(epoch, accepted)?;
            if epoch > mine {
                return Err(DriverError::Internal(format!(
                    "persist carries epoch {}.{}, newer than this leader's {}.{}",
                    epoch.hi, epoch.lo, mine.hi, mine.lo
                )));
            }
            let target = at_least.max(self.floor);
            #[cfg(tsohost_mutants)]
            let target = self.mutant_target(target);
            let cmd = Command::Persist {
                at_least: target,
                epoch: pair(mine),
                request,
            };
            self.propose(request, Kind::Persist, mine, cmd)
        });
        if let Err(e) = outcome {
            self.host.completed(request, Err(e));
        }
        self.settle();
    }

    /// `change-membership`, answered through `host.completed`.
    fn change_membership(&mut self, request: u64, members: &[Peer]) {
        self.now = self.now.max(self.host.now_ms());
        match self.propose_membership(members.to_vec()) {
            Ok(None) => self.host.completed(request, Ok(0)),
            Ok(Some(config_id)) => {
                self.reconfig = Some(PendingReconfig {
                    request,
                    config_id,
                    deadline: self.now + 10 * self.settings.election_timeout_ms,
                });
            }
            Err(e) => self.host.completed(request, Err(e)),
        }
        self.settle();
    }

    /// `transfer-leadership`, answered through `host.completed`.
    fn transfer_leadership(&mut self, request: u64, to: Option<NodeId>) {
        self.now = self.now.max(self.host.now_ms());
        let outcome = self.step_down(to);
        // Report the step-down before completing.
        self.settle();
        self.host.completed(request, outcome);
    }

    /// Ballots and elections, omnipaxos's log indexes, and snapshots.
    fn stats(&self) -> Vec<Metric> {
        let (decided, compacted) = self.log_indexes().unwrap_or((self.applied, self.applied));
        let mut stats = self.epochs.metrics().to_vec();
        stats.extend([
            gauge(
                "commit_index",
                "The last log index this node knows to be decided",
                decided as u64,
            ),
            gauge(
                "applied_index",
                "The log index up to which this node applied the decided entries",
                self.applied as u64,
            ),
            gauge(
                "log_entries",
                "Decided entries held in this node's log (not yet compacted into a snapshot)",
                decided.saturating_sub(compacted) as u64,
            ),
            gauge(
                "snapshot_index",
                "The log index the last snapshot (compaction) covers",
                compacted as u64,
            ),
            counter("snapshots", "Snapshots this instance took", self.snapshots),
            counter(
                "held_takeovers",
                "Ballot-leader-election rounds that missed the leader and would have taken \
                 over while its lease heartbeats still arrived (held back by the promise gate)",
                self.op.as_ref().map_or(0, |op| op.held_takeovers()),
            ),
        ]);
        stats
    }
}

impl PaxosDriver {
    /// Run configuration `m` (stored already): state from its base, and an
    /// omnipaxos instance if this node is a member.
    fn start_config(&mut self, m: Membership) -> Result<(), DriverError> {
        self.op = None;
        self.single = None;
        self.held_prepare = None;
        self.state = store::base(&*self.host)?;
        self.applied = 0;
        if m.members.len() == 1 && m.contains(self.node) {
            let generation = store::next_generation(&*self.host)?;
            self.single = Some(Ballot::with(m.config_id, generation, 0, self.node));
        } else if m.contains(self.node) {
            let cfg = OmniPaxosConfig {
                cluster_config: ClusterConfig {
                    configuration_id: m.config_id,
                    nodes: m.ids(),
                    flexible_quorum: None,
                },
                server_config: ServerConfig {
                    pid: self.node,
                    election_tick_timeout: self.settings.election_ticks(),
                    resend_message_tick_timeout: self.settings.resend_ticks(),
                    batch_size: 1,
                    ..Default::default()
                },
            };
            let storage = PaxosStore::open(self.host.clone())?;
            let op = cfg.build(storage).map_err(|e| {
                DriverError::InvalidConfig(format!(
                    "configuration {} ({:?}): {e}",
                    m.config_id,
                    m.ids()
                ))
            })?;
            self.op = Some(op);
        } else {
            self.log(
                LogLevel::Info,
                format!(
                    "not a member of configuration {} ({:?}): idle",
                    m.config_id,
                    m.ids()
                ),
            );
        }
        self.membership = Some(m);
        Ok(())
    }

    fn config_id(&self) -> u32 {
        self.membership.as_ref().map_or(0, |m| m.config_id)
    }

    fn log(&self, level: LogLevel, msg: String) {
        self.host.log(level, &msg);
    }

    fn report_membership(&self) {
        match &self.membership {
            Some(m) => self.host.report_membership(&m.peers()),
            None => self.host.report_membership(&self.configured_peers),
        }
    }

    // ----- requests --------------------------------------------------------

    /// The ballot this node leads and serves under: omnipaxos leader in its
    /// Accept phase, not handing over. Otherwise `not-leader`.
    fn serving_ballot(&self) -> Result<Ballot, DriverError> {
        if let Some(b) = self.single {
            return Ok(b);
        }
        match self.leading_ballot() {
            Some(b) if self.stepping_down.is_none() => Ok(b),
            _ => Err(DriverError::NotLeader(self.leader_hint())),
        }
    }

    /// omnipaxos's own view: this node leads `b` and is in the Accept phase.
    /// omnipaxos exposes no role; its promise names this node and its phase
    /// is Accept exactly when it leads (a node takes a ballot of its own only
    /// as leader, and handling another's Prepare moves its promise away).
    fn leading_ballot(&self) -> Option<Ballot> {
        let op = self.op.as_ref()?;
        let p = op.get_promise();
        (p.pid == self.node && op.get_current_leader() == Some((self.node, true))).then_some(p)
    }

    fn leader_hint(&self) -> Option<NodeId> {
        if let Some(s) = self.stepping_down {
            return Some(s.target);
        }
        let pid = self.op.as_ref()?.get_promise().pid;
        (pid != 0 && pid != self.node).then_some(pid)
    }

    fn propose(
        &mut self,
        request: u64,
        kind: Kind,
        epoch: Epoch,
        cmd: Command,
    ) -> Result<(), DriverError> {
        if self.single.is_some() {
            // The only voter decides alone: apply, store synced, answer.
            let mut next = self.state;
            let outcome = next.apply(&cmd);
            store::set_base(&*self.host, &next)?;
            self.state = next;
            let result = match (outcome, kind) {
                (Applied::HighWater(hw), _) => Ok(hw.max(self.floor)),
                (Applied::Fenced(newer), Kind::Persist) => Err(DriverError::Fenced(newer)),
                (Applied::Fenced(_), Kind::Load) => Err(DriverError::NotLeader(None)),
            };
            self.host.completed(request, result);
            return Ok(());
        }
        let op = self.op.as_mut().ok_or(DriverError::NotLeader(None))?;
        let idx = op.get_accepted_idx();
        op.append(cmd).map_err(|e| match e {
            ProposeErr::PendingReconfigEntry(_) => DriverError::Internal(
                "a membership change is in progress; retry once the new configuration runs".into(),
            ),
            other => DriverError::Internal(format!("omnipaxos refused the entry: {other:?}")),
        })?;
        if op.get_accepted_idx() != idx + 1 {
            return Err(DriverError::Internal(format!(
                "omnipaxos did not append the entry at {idx} (accepted index {})",
                op.get_accepted_idx()
            )));
        }
        self.pending.insert(
            idx,
            Pending {
                request,
                kind,
                epoch,
                deadline: self.now + self.settings.request_timeout_ms(),
            },
        );
        Ok(())
    }

    /// Propose the stop-sign of `members`; `None` if they are the current
    /// configuration already.
    fn propose_membership(&mut self, members: Vec<Peer>) -> Result<Option<u32>, DriverError> {
        self.serving_ballot()?;
        let current = self
            .membership
            .clone()
            .ok_or(DriverError::NotLeader(None))?;
        let mut next: Vec<(NodeId, String)> = Vec::new();
        for p in &members {
            check_node_id(p.id, "members")?;
            if next.iter().any(|(id, _)| *id == p.id) {
                return Err(DriverError::InvalidConfig(format!(
                    "members: node {} is listed twice",
                    p.id
                )));
            }
            next.push((p.id, p.address.clone()));
        }
        next.sort();
        if next.len() < 2 && next != current.members {
            return Err(DriverError::InvalidConfig(format!(
                "members: a configuration of several voters cannot shrink to {} (omnipaxos \
                 needs at least 2 voters)",
                next.len()
            )));
        }
        if next == current.members {
            return Ok(None);
        }
        if self.reconfig.is_some() {
            return Err(DriverError::Internal(
                "another membership change is in progress".into(),
            ));
        }
        let config_id = current
            .config_id
            .checked_add(1)
            .ok_or_else(|| DriverError::Internal("configuration ids are exhausted".into()))?;
        let m = Membership {
            config_id,
            members: next,
        };
        if self.single.is_some() {
            // Decided alone: switch now; the new members join from us.
            self.log(
                LogLevel::Info,
                format!("configuration {config_id}: {:?}", m.ids()),
            );
            let base = self.state;
            self.switch(m, base)?;
            return Ok(None);
        }
        let metadata = postcard::to_stdvec(&m)
            .map_err(|e| DriverError::Internal(format!("encoding the membership: {e}")))?;
        let cc = ClusterConfig {
            configuration_id: config_id,
            nodes: m.ids(),
            flexible_quorum: None,
        };
        let op = self.op.as_mut().ok_or(DriverError::NotLeader(None))?;
        op.reconfigure(cc, Some(metadata)).map_err(|e| match e {
            ProposeErr::ConfigError(e, ..) => DriverError::InvalidConfig(format!("members: {e}")),
            ProposeErr::PendingReconfigConfig(..) => {
                DriverError::Internal("another membership change is in progress".into())
            }
            other => DriverError::Internal(format!("omnipaxos refused the change: {other:?}")),
        })?;
        self.log(
            LogLevel::Info,
            format!("proposed configuration {config_id}: {:?}", m.ids()),
        );
        Ok(Some(config_id))
    }

    fn step_down(&mut self, to: Option<NodeId>) -> Result<u64, DriverError> {
        if self.single.is_some() {
            return Err(DriverError::InvalidConfig(
                "transfer-leadership: this node is the only voter; add members first".into(),
            ));
        }
        let ballot = self.serving_ballot()?;
        let members = self
            .membership
            .as_ref()
            .map(Membership::ids)
            .unwrap_or_default();
        let target = match to {
            Some(t) if t == self.node => return Ok(t),
            Some(t) if members.contains(&t) => t,
            Some(t) => {
                return Err(DriverError::InvalidConfig(format!(
                    "transfer-leadership: node {t} is not a member ({members:?})"
                )));
            }
            None => self.lease.freshest_follower().ok_or_else(|| {
                DriverError::Internal(
                    "transfer-leadership: no follower has acknowledged this leader; nobody \
                     could take over"
                        .into(),
                )
            })?,
        };
        self.stepping_down = Some(SteppingDown {
            ballot,
            target,
            until: self.now + 3 * self.settings.gate_ms(),
        });
        self.lease.stop_leading();
        self.fail_pending(DriverError::NotLeader(Some(target)));
        self.queue(target, Wire::TakeOver { ballot });
        self.log(
            LogLevel::Info,
            format!("stepping down from ballot {ballot:?} in favour of node {target}"),
        );
        Ok(target)
    }

    fn fail_pending(&mut self, e: DriverError) {
        for (_, p) in std::mem::take(&mut self.pending) {
            self.host.completed(p.request, Err(e.clone()));
        }
    }

    /// Time out requests and hand-overs.
    fn expire(&mut self) {
        let now = self.now;
        let late: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for i in late {
            let p = self.pending.remove(&i).expect("listed");
            self.log(
                LogLevel::Warn,
                format!("request {} not decided in time: no quorum?", p.request),
            );
            self.host
                .completed(p.request, Err(DriverError::NotLeader(None)));
        }
        if let Some(r) = self.reconfig
            && r.deadline <= now
        {
            self.reconfig = None;
            self.host.completed(
                r.request,
                Err(DriverError::Internal(format!(
                    "configuration {} did not start in time (it may still)",
                    r.config_id
                ))),
            );
        }
        if let Some(s) = self.stepping_down {
            if s.until <= now {
                self.log(
                    LogLevel::Warn,
                    format!("node {} did not take over: leading again", s.target),
                );
                self.stepping_down = None;
            } else if now >= self.next_heartbeat {
                self.queue(s.target, Wire::TakeOver { ballot: s.ballot });
                self.next_heartbeat = now + self.settings.heartbeat_ms;
            }
        }
    }

    // ----- messages --------------------------------------------------------

    fn queue(&mut self, to: NodeId, wire: Wire) {
        let packet = Packet {
            config: self.config_id(),
            wire,
        };
        self.outbox
            .entry(to)
            .or_default()
            .push(wire::frame(&packet));
    }

    fn send_join(&mut self, to: NodeId) {
        if let Some(m) = self.membership.clone() {
            match store::base(&*self.host) {
                Ok(base) => self.queue(
                    to,
                    Wire::Join {
                        membership: m,
                        base,
                    },
                ),
                Err(e) => self.log(LogLevel::Error, format!("reading the base state: {e}")),
            }
        }
    }

    fn receive(&mut self, from: NodeId, packet: Packet) {
        let heard = self.heard_config.entry(from).or_insert(0);
        *heard = (*heard).max(packet.config);
        let mine = self.config_id();
        if packet.config < mine && !matches!(packet.wire, Wire::Join { .. }) {
            // The sender runs an older configuration: tell it about ours
            // (it may be a member, or learn that it was removed).
            self.send_join(from);
            return;
        }
        match packet.wire {
            Wire::Join { membership, base } => self.join(from, membership, base),
            _ if packet.config != mine => {}
            Wire::Paxos(msg) => self.receive_paxos(from, msg),
            Wire::Lease { ballot, seq } => {
                let promised = self.op.as_ref().map(Paxos::get_promise);
                if promised == Some(ballot) && ballot.pid == from {
                    self.lease
                        .close_gate(self.now + self.settings.gate_ms(), ballot);
                    self.queue(from, Wire::LeaseAck { ballot, seq });
                } else if let Some(promise) = promised
                    && promise > ballot
                    && promise.pid == self.node
                    && self.leading_ballot().is_none()
                {
                    // A candidate the leader's followers will not promise
                    // while the leader is healthy: only the leader can end
                    // this, by taking a ballot above ours.
                    self.queue(from, Wire::Outranked { ballot, promise });
                }
            }
            Wire::Outranked { ballot, promise } => {
                if self.lease.leading() == Some(ballot)
                    && promise > ballot
                    && self.stepping_down.is_none()
                    && let Some(op) = self.op.as_mut()
                {
                    op.try_become_leader();
                    self.log(
                        LogLevel::Info,
                        format!(
                            "node {from} holds ballot {promise:?}, above this leader's \
                             {ballot:?}, and cannot follow: taking a higher ballot"
                        ),
                    );
                }
            }
            Wire::LeaseAck { ballot, seq } => {
                if let Some(m) = &self.membership {
                    let (ids, quorum) = (m.ids(), m.quorum());
                    let voters = Voters {
                        me: self.node,
                        members: &ids,
                        quorum,
                    };
                    self.lease
                        .acked(from, ballot, seq, voters, self.settings.gate_ms());
                }
            }
            Wire::TakeOver { ballot } => {
                if let Some(op) = self.op.as_mut()
                    && op.get_promise() == ballot
                    && ballot.pid == from
                {
                    op.try_become_leader();
                    self.log(
                        LogLevel::Info,
                        format!("node {from} hands over leadership: taking over"),
                    );
                }
            }
        }
    }

    fn receive_paxos(&mut self, from: NodeId, msg: Message<Command>) {
        if msg.get_sender() != from || msg.get_receiver() != self.node {
            self.log(
                LogLevel::Warn,
                format!(
                    "dropped an omnipaxos message from node {from} claiming {} -> {}",
                    msg.get_sender(),
                    msg.get_receiver()
                ),
            );
            return;
        }
        if let Message::SequencePaxos(p) = &msg
            && let PaxosMsg::Prepare(prep) = &p.msg
            && self.lease.gated(self.now, prep.n)
        {
            self.log(
                LogLevel::Debug,
                format!(
                    "held back Prepare {:?} from node {from}: gate closed until {} ms",
                    prep.n,
                    self.lease.gate_until()
                ),
            );
            let ballot = prep.n;
            if self
                .held_prepare
                .as_ref()
                .is_none_or(|(held, _)| ballot > *held)
            {
                self.held_prepare = Some((ballot, msg));
            }
            return;
        }
        if let Some(op) = self.op.as_mut() {
            op.handle_incoming(msg);
        }
    }

    /// A peer runs configuration `m` (decided), which started from `base`.
    fn join(&mut self, from: NodeId, m: Membership, base: HwState) {
        if m.config_id <= self.config_id() {
            return;
        }
        self.log(
            LogLevel::Info,
            format!(
                "node {from} runs configuration {} ({:?}): joining",
                m.config_id,
                m.ids()
            ),
        );
        if let Err(e) = self.switch(m, base) {
            self.log(LogLevel::Error, format!("joining failed: {e:?}"));
        }
    }

    /// Store and run configuration `m` from `base`.
    fn switch(&mut self, m: Membership, base: HwState) -> Result<(), DriverError> {
        store::switch_config(&*self.host, &m, &base)?;
        self.lease.stop_leading();
        self.stepping_down = None;
        self.fail_pending(DriverError::NotLeader(None));
        let config_id = m.config_id;
        self.start_config(m)?;
        self.state.absorb(&base);
        self.report_membership();
        if let Some(r) = self.reconfig
            && r.config_id <= config_id
        {
            self.reconfig = None;
            self.host.completed(r.request, Ok(0));
        }
        self.next_join = self.now;
        Ok(())
    }

    // ----- settle ----------------------------------------------------------

    /// Apply, follow leadership, compact, send, report.
    fn settle(&mut self) {
        self.apply();
        self.follow_leadership();
        self.compact();
        self.heartbeats();
        self.drain_paxos();
        self.report();
        self.flush();
    }

    /// Apply every decided entry not applied yet; complete this leader's
    /// requests; switch configuration at a decided stop-sign.
    fn apply(&mut self) {
        loop {
            let Some(op) = self.op.as_ref() else {
                return;
            };
            if self.applied >= op.get_decided_idx() {
                return;
            }
            let Some(entries) = op.read_decided_suffix(self.applied) else {
                return;
            };
            let mut idx = self.applied;
            let mut stop: Option<StopSign> = None;
            for e in entries {
                match e {
                    LogEntry::Decided(cmd) => {
                        let outcome = self.state.apply(&cmd);
                        self.complete_at(idx, &cmd, outcome);
                        idx += 1;
                    }
                    LogEntry::Snapshotted(s) => {
                        self.state.absorb(&s.snapshot);
                        idx = idx.max(s.trimmed_idx);
                    }
                    LogEntry::Trimmed(t) => {
                        self.log(
                            LogLevel::Error,
                            format!("log trimmed to {t} without a snapshot: state may lag"),
                        );
                        idx = idx.max(t);
                    }
                    LogEntry::StopSign(ss, true) => {
                        stop = Some(ss);
                        idx += 1;
                        break;
                    }
                    LogEntry::StopSign(_, false) | LogEntry::Undecided(_) => break,
                }
            }
            // Requests below a snapshot can no longer be matched.
            let lost: Vec<usize> = self.pending.range(..idx).map(|(i, _)| *i).collect();
            for i in lost {
                let p = self.pending.remove(&i).expect("listed");
                self.host
                    .completed(p.request, Err(DriverError::NotLeader(None)));
            }
            if idx == self.applied && stop.is_none() {
                return;
            }
            self.applied = idx;
            if let Some(ss) = stop {
                self.stop_sign(ss);
            }
        }
    }

    fn complete_at(&mut self, idx: usize, cmd: &Command, outcome: Applied) {
        let Some(p) = self.pending.remove(&idx) else {
            return;
        };
        let result = if cmd.epoch() != p.epoch || cmd.request() != p.request {
            // Another leader's entry was decided at this index: ours is lost.
            Err(DriverError::NotLeader(self.leader_hint()))
        } else {
            match (outcome, p.kind) {
                (Applied::HighWater(hw), _) => Ok(hw.max(self.floor)),
                (Applied::Fenced(newer), Kind::Persist) => Err(DriverError::Fenced(newer)),
                (Applied::Fenced(_), Kind::Load) => Err(DriverError::NotLeader(None)),
            }
        };
        self.host.completed(p.request, result);
    }

    /// A decided stop-sign: run the next configuration.
    fn stop_sign(&mut self, ss: StopSign) {
        let members = ss
            .metadata
            .as_deref()
            .and_then(|b| postcard::from_bytes::<Membership>(b).ok())
            .filter(|m| m.config_id == ss.next_config.configuration_id)
            .unwrap_or_else(|| Membership {
                config_id: ss.next_config.configuration_id,
                members: ss
                    .next_config
                    .nodes
                    .iter()
                    .map(|id| (*id, String::new()))
                    .collect(),
            });
        self.log(
            LogLevel::Info,
            format!(
                "configuration {} decided: {:?}",
                members.config_id,
                members.ids()
            ),
        );
        let base = self.state;
        if let Err(e) = self.switch(members, base) {
            // Storage failed: trap, so that the host re-creates the instance
            // from storage (which still holds the decided stop-sign).
            self.log(LogLevel::Error, format!("switching configuration: {e:?}"));
            panic!("switching configuration failed: {e:?}");
        }
    }

    /// Start or stop the lease bookkeeping as omnipaxos's leadership moves.
    fn follow_leadership(&mut self) {
        let leading = self.leading_ballot();
        if let Some(s) = self.stepping_down
            && leading != Some(s.ballot)
        {
            self.stepping_down = None;
        }
        let serving = leading.filter(|_| self.stepping_down.is_none());
        if self.lease.leading() != serving {
            if self.lease.leading().is_some() {
                self.lease.stop_leading();
                let hint = self.leader_hint();
                self.fail_pending(DriverError::NotLeader(hint));
            }
            if let Some(b) = serving {
                self.log(LogLevel::Info, format!("leading ballot {b:?}"));
                self.lease.start_leading(b);
                self.next_heartbeat = self.now;
            }
        }
    }

    /// Lease heartbeats while leading; joins to members not heard yet.
    fn heartbeats(&mut self) {
        let hb = self.settings.heartbeat_ms;
        let members = self
            .membership
            .as_ref()
            .map(Membership::ids)
            .unwrap_or_default();
        if self.lease.leading().is_some() && self.now >= self.next_heartbeat {
            if let Some((ballot, seq)) = self.lease.heartbeat_sent(self.now) {
                for &m in &members {
                    if m != self.node {
                        self.queue(m, Wire::Lease { ballot, seq });
                    }
                }
            }
            self.next_heartbeat = self.now + hb;
        }
        if self.now >= self.next_join {
            let mine = self.config_id();
            for &m in &members {
                if m != self.node && self.heard_config.get(&m).copied().unwrap_or(0) < mine {
                    self.send_join(m);
                }
            }
            self.next_join = self.now + hb;
        }
    }

    /// Snapshot (locally) once `snapshot-every` decided entries follow the
    /// last snapshot.
    fn compact(&mut self) {
        let every = self.settings.snapshot_every;
        let Some(op) = self.op.as_mut() else {
            return;
        };
        let decided = op.get_decided_idx();
        if every == 0 || self.applied < decided {
            return;
        }
        // Only corrupt storage has more compacted than decided: skip
        // compaction then rather than panic (found by fuzzing).
        if (decided.saturating_sub(op.get_compacted_idx())) as u64 >= every {
            match op.snapshot(None, true) {
                Ok(()) => self.snapshots += 1,
                Err(e) => self
                    .host
                    .log(LogLevel::Warn, &format!("snapshot failed: {e}")),
            }
        }
    }

    /// Queue omnipaxos's messages, holding back this node's Prepares while
    /// the gate is closed (omnipaxos resends them).
    fn drain_paxos(&mut self) {
        let Some(op) = self.op.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        op.take_outgoing_messages(&mut out);
        for msg in out {
            if let Message::SequencePaxos(p) = &msg
                && let PaxosMsg::Prepare(prep) = &p.msg
                && self.lease.gated(self.now, prep.n)
            {
                continue;
            }
            let to = msg.get_receiver();
            self.queue(to, Wire::Paxos(msg));
        }
    }

    fn flush(&mut self) {
        for (to, frames) in std::mem::take(&mut self.outbox) {
            if to != self.node {
                self.host.send(to, &wire::encode(&frames));
            }
        }
    }

    /// The leadership this node believes in, with the lease.
    pub fn leadership(&self) -> Leadership {
        if let Some(b) = self.single {
            // Nothing else can lead this configuration.
            return Leadership {
                role: Role::Leader,
                leader: Some(self.node),
                epoch: epoch_of(b),
                lease_until_ms: u64::MAX,
            };
        }
        let Some(op) = self.op.as_ref() else {
            return Leadership {
                role: Role::Follower,
                leader: None,
                epoch: ZERO_EPOCH,
                lease_until_ms: 0,
            };
        };
        let promise = op.get_promise();
        let epoch = epoch_of(promise);
        if let Some(b) = self.lease.leading() {
            let lease_until_ms = self.lease.lease_until(self.settings.lease_ms());
            #[cfg(tsohost_mutants)]
            let lease_until_ms = self.mutant_lease(lease_until_ms);
            return Leadership {
                role: Role::Leader,
                leader: Some(self.node),
                epoch: epoch_of(b),
                lease_until_ms,
            };
        }
        if let Some(s) = self.stepping_down {
            return Leadership {
                role: Role::Follower,
                leader: Some(s.target),
                epoch,
                lease_until_ms: 0,
            };
        }
        let role = if promise.pid == self.node {
            Role::Candidate
        } else {
            Role::Follower
        };
        Leadership {
            role,
            leader: self.leader_hint(),
            epoch,
            lease_until_ms: 0,
        }
    }

    /// Report on every change of role, leader or epoch, and whenever the
    /// lease grows.
    fn report(&mut self) {
        let now = self.leadership();
        self.epochs.observe(now.epoch);
        let changed = match self.reported {
            None => true,
            Some(r) => {
                r.role != now.role
                    || r.leader != now.leader
                    || r.epoch != now.epoch
                    || now.lease_until_ms > r.lease_until_ms
            }
        };
        if changed {
            self.host.report_leadership(now);
            self.reported = Some(now);
        }
    }

    // ----- inspection (tests, status) --------------------------------------

    /// The replicated state as this node has applied it.
    pub fn state(&self) -> HwState {
        self.state
    }

    /// The configuration this node runs, if any.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// omnipaxos's decided and compacted indexes, if running.
    pub fn log_indexes(&self) -> Option<(usize, usize)> {
        self.op
            .as_ref()
            .map(|op| (op.get_decided_idx(), op.get_compacted_idx()))
    }
}
