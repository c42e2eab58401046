//! The raft driver, sans-IO: [`RaftDriver`] does everything through a
//! [`Host`], so it runs the same in a component and in a native simulation.
//!
//! Every export follows one pattern: move the executor's clock to the
//! host's, hand the event to openraft (spawn a task or complete a call), run
//! the executor until idle, report leadership and membership if they
//! changed, and only then send what was queued (one payload per peer).
//! Reporting first means that whatever narrows what this node may serve (a
//! hand-over, a lease that a membership change shortened) reaches the host
//! before any message of the same call can help another node lead.
//!
//! # The leader lease
//!
//! The leader reports `lease-until-ms = A + L`, where `A` is the send time
//! (on this host's clock) of the newest heartbeat/append round a quorum of
//! voters acknowledged (openraft's `last_quorum_acked`: it records each
//! follower's acknowledgement with the *send* time of the request
//! acknowledged), and `L` = [`Settings::lease`] = `E / 2`, half the follower
//! lease `F` = [`Settings::follower_lease_ms`] = `E`, the election timeout.
//!
//! Why no other node can be elected and serve before `A + L`:
//! 1. Every voter `f` of the acknowledging quorum received that round at a
//!    time `R_f >= A`. openraft's follower rule (verified in openraft
//!    0.10.0-alpha.37, `Engine::handle_vote_req` and `handle_pre_vote_req`):
//!    while its stored vote is *committed* (it follows an established
//!    leader) and that vote's lease has not expired, a node rejects every
//!    vote and pre-vote request that is not a leadership-transfer election;
//!    receiving an append-entries from the leader renews the lease to
//!    `R_f + F` (`VoteHandler::update_vote`, `leader_lease`: upstream
//!    hardcodes `election_timeout_max`, our vendored copy takes
//!    `Config::leader_lease`, set to `F`; `vendor/openraft/PATCHED.md`). The
//!    leader itself refuses votes while its own quorum-ack lease (`F` after
//!    `A`) is valid. Transfer elections bypass both rules; only a hand-over
//!    by this driver starts one, and it is covered below.
//! 2. A new leader needs the votes of a quorum, which shares a voter with
//!    the acknowledging quorum; that voter grants nothing before
//!    `R_f + F >= A + E` on its clock.
//! 3. The follower's lease lives in openraft's memory only. A restarted
//!    instance would forget it, so this driver drops vote and pre-vote
//!    requests for `F` after an instance starts when its stored vote is
//!    committed (it may have acknowledged a leader just before the restart).
//!    It lets transfer-election votes through: the live rule does not apply
//!    the lease to them either, so there is nothing to stand in for.
//! 4. The new leader serves only after being elected, so after `A + E`,
//!    while the old lease ended at `A + E/2`. The gap `E/2` absorbs clock
//!    rate differences between hosts over one lease, the rounding of the
//!    virtual clock to host milliseconds (`A` is rounded down), and the
//!    sub-millisecond [`MICRO_SLEEP`](tsohost_guest_sdk::runtime::MICRO_SLEEP)
//!    jumps the executor makes ahead of the host's clock.
//! 5. "A quorum" is one of the configuration the leader has in effect. When
//!    a membership change takes effect on the leader (joint, then uniform,
//!    each on append), openraft recomputes `last_quorum_acked` against the
//!    new configuration, and it can move back; a lone voter's unbounded
//!    lease becomes bounded. The driver reports every change of the lease,
//!    shrinks included (the host adopts the latest report), in the call
//!    that appended the entry, before the entry is sent: once any other node
//!    can know a configuration, every lease the host holds is backed by a
//!    quorum of it (of both halves while joint).
//!
//! It assumes every node runs with the same `election-timeout-ms` and that
//! host clocks advance at nearly the same rate (not that they agree).
//!
//! Failover: openraft's election timer runs from the end of the follower
//! lease, so a follower that stops hearing its leader campaigns (a
//! pre-vote, then the election) after `F + T`, with `T` drawn from
//! [`Settings::campaign_delay_ms`] (just over one heartbeat to `E/2`): `E`
//! to `1.5 E` after the leader's last heartbeat, when the other voters'
//! leases, which that heartbeat renewed at about the same time, have run
//! out too. The new leader then commits its first entry and the host loads
//! and persists its window.
//!
//! # Handing leadership over
//!
//! openraft's transfer (`trigger().transfer_leader(to)`, verified in
//! 0.10.0-alpha.37, `LeaderHandler::transfer_leader` and
//! `RaftMsg::HandleTransferLeader`): the leader stops proposing and
//! heartbeating, drops its own vote lease and sends every other voter a
//! `TransferLeader` with its vote and last log id. A receiver whose vote is
//! still that leader's drops its follower lease; the target also waits (at
//! most openraft's minimum election timeout, the shortest campaign delay)
//! until its log reaches the leader's, then campaigns with
//! `leadership_transfer` set, and voters grant that despite any lease. The
//! old leader steps down when it sees the new vote; until it hears of a
//! newer leader it stays an openraft leader that proposes nothing.
//!
//! Because that election ignores leases, the driver marks the epoch `e` as
//! handed over and reports `follower` with no lease and no leader *before*
//! it asks openraft to transfer, in the same host call, so before any
//! `TransferLeader` exists; it never reports `e` as leading again and
//! refuses requests under it with `not-leader`. Why no two nodes serve:
//! - Only a `TransferLeader` from the leader `L` of `e` makes a node drop its
//!   lease or campaign with the flag (the receiver checks that its vote is
//!   still `L`'s), and `L` sends it after its host stopped serving. Every
//!   election the hand-over enables (the target's, or any other once leases
//!   are dropped) happens causally after `L` stopped serving.
//! - A flagged vote request from `T` carries term `e.term + 1` (`T` still had
//!   `L`'s vote). A voter that acknowledged a newer leader `X` holds `X`'s
//!   committed vote, whose term is at least `e.term + 1`, which `T`'s vote
//!   does not exceed unless `T` is `X`, so it refuses; a quorum of such
//!   voters backs `X`'s lease. A late or duplicated transfer therefore
//!   unseats only the leadership that authorized it.
//!
//! A leader removed from the voters hands over the same way (to the most
//! up-to-date voter) once the configuration that removes it is committed,
//! then reverts to a learner. openraft would do this on its own
//! (`removed_leader_step_down`, default after 150 ms) without telling the
//! host first, so the driver disables that ([`Settings::raft_config`]).
//!
//! # Membership
//!
//! Peer addresses live in the membership config as `BasicNode`s, so every
//! node learns them from the log. The driver reports the effective
//! membership (voters and learners, both halves of a joint configuration):
//! the leader replicates to exactly it, before it is committed. A node that
//! knows none (a new node before a leader reaches it) reports nothing.
//!
//! `change-membership` on the leader: drop learners not in `members` (left
//! by an earlier request whose new node never caught up) and add the new
//! nodes as learners, wait until each has replicated the entry that added
//! it ([`Settings::catch_up_budget`]), then replace the voter set
//! (`change_membership(ReplaceAllVoters, retain = false)`: joint, then
//! uniform; removed voters leave the membership). Each step is skipped when
//! there is nothing to do and retried, like a write, while this node leads
//! under the same epoch and openraft answers "in progress" or "own entry not
//! committed yet". It completes once the final membership is committed.
//!
//! A node started with empty storage and without `bootstrap` is an openraft
//! learner that knows no membership: it never campaigns, and it accepts
//! append-entries and snapshots from any leader (whose vote beats its empty
//! one), from which it learns the membership once the leader has added it.
//!
//! # Requests
//!
//! - `load-high-water`: openraft's ReadIndex (`ensure_linearizable`), which
//!   confirms leadership with a quorum and waits until the state machine has
//!   applied everything committed before the read, including the new
//!   leader's first entry. If `floor` is above the replicated high water, the
//!   floor is first persisted through the log, so the cluster never answers
//!   less afterwards whichever node leads.
//! - `persist-high-water`: a client write of [`Command::Persist`], completed
//!   after it is committed and applied. A new leader refuses writes until a
//!   quorum has acknowledged it; the write is retried while this node still
//!   leads under the same epoch.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, LinearizableReadError, RaftError};
use openraft::metrics::WaitError;
use openraft::raft::{
    AppendEntriesRequest, ClientWriteResponse, TransferLeaderRequest, VoteRequest,
};
use openraft::{
    AsyncRuntime, BasicNode, ChangeMembers, Instant, RaftMetrics, ReadPolicy, ServerState,
};
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::rules::{check_epoch, check_range};
use tsohost_guest_sdk::runtime::rpc::{Incoming, Rpc};
use tsohost_guest_sdk::runtime::{Executor, GuestInstant, GuestRuntime};
use tsohost_guest_sdk::stats::{Epochs, counter, gauge};
use tsohost_guest_sdk::{
    Config, Driver, DriverError, Epoch, Leadership, LogLevel, Metric, NodeId, Peer, Role,
};

use crate::network::{Kind, Network, encode};
use crate::settings::Settings;
use crate::store::{LogStore, SmState, StateMachine, Storage};
use crate::types::{
    Applied, Command, LogId, Raft, SnapshotMeta, TypeConfig, Vote, epoch_of, pair, unpair,
};

#[cfg(tsohost_mutants)]
mod mutant;

/// One instance of the raft driver on one node.
pub struct RaftDriver {
    host: Rc<dyn Host>,
    exec: Executor,
    rpc: Rpc,
    raft: Raft,
    state: Rc<RefCell<SmState>>,
    settings: Settings,
    node: NodeId,
    floor: u64,
    /// Vote requests are dropped before this host time (lease point 3).
    refuse_votes_until_ms: u64,
    /// The epoch whose leadership this node handed over; while openraft
    /// still leads in it, the driver reports and answers as a non-leader.
    /// Shared with the tasks that must stop retrying then.
    handed_over: Rc<Cell<Option<Epoch>>>,
    /// Started without peers: a single-node cluster, which reports no
    /// membership while it is its only member, as single-node drivers do.
    peerless: bool,
    reported: Option<Leadership>,
    reported_members: Vec<Peer>,
    /// The terms this instance saw (`stats`).
    epochs: Epochs,
    /// The snapshot's last index when last looked at (`None`: not yet
    /// looked at; the snapshot found in storage is not counted).
    seen_snapshot: Option<Option<u64>>,
    /// Snapshots this instance built or installed.
    snapshots: u64,
    /// The mutant this instance runs, if any (test-only copy, see
    /// [`mutant`]).
    #[cfg(tsohost_mutants)]
    mutant: Option<mutant::Mutant>,
}

fn storage_err(e: std::io::Error) -> DriverError {
    DriverError::Storage(e.to_string())
}

/// `peers` as openraft nodes, refusing a node listed twice; `field` names
/// the argument in the error.
fn node_map(peers: &[Peer], field: &str) -> Result<BTreeMap<NodeId, BasicNode>, DriverError> {
    let mut nodes = BTreeMap::new();
    for p in peers {
        if nodes.insert(p.id, BasicNode::new(&p.address)).is_some() {
            return Err(DriverError::InvalidConfig(format!(
                "{field}: node {} is listed twice",
                p.id
            )));
        }
    }
    Ok(nodes)
}

impl Driver for RaftDriver {
    #[cfg(not(tsohost_mutants))]
    const NAME: &'static str = "raft";
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
        let mut members = node_map(&cfg.peers, "peers")?;
        if members.is_empty() {
            members.insert(node, BasicNode::new("self"));
        }
        if !members.contains_key(&node) {
            return Err(DriverError::InvalidConfig(format!(
                "peers: this node ({node}) is not among them; the raft driver needs the full \
                 membership including itself"
            )));
        }

        let storage = Storage::open(host.clone())?;
        let pristine = storage.is_pristine().map_err(storage_err)?;
        let vote: Option<Vote> = storage.vote().map_err(storage_err)?;
        let now = host.now_ms();
        let refuse_votes_until_ms = if vote.is_some_and(|v| v.is_committed()) {
            now + settings.follower_lease_ms()
        } else {
            0
        };

        let exec = Executor::new(now, cfg.seed);
        let rpc = Rpc::new(cfg.seed);
        let sm = StateMachine::open(storage.clone()).map_err(storage_err)?;
        let state = sm.state();
        let network = Network {
            me: node,
            rpc: rpc.clone(),
        };
        // Configured as the whole cluster (peers: none, or only this node).
        let alone = cfg.peers.iter().all(|p| p.id == node);
        let config = Arc::new(settings.raft_config(alone)?);
        let slot = Rc::new(RefCell::new(None));
        exec.spawn({
            let slot = slot.clone();
            let log = LogStore::new(storage);
            async move {
                let raft = Raft::new(node, config, network, log, sm).await;
                *slot.borrow_mut() = Some(raft);
            }
        });
        exec.run_until_idle();
        let raft = slot
            .take()
            .ok_or_else(|| DriverError::Internal("openraft did not start without waiting".into()))?
            .map_err(|e| DriverError::Internal(format!("openraft failed to start: {e}")))?;

        if pristine && cfg.bootstrap {
            let raft = raft.clone();
            let host = host.clone();
            exec.spawn(async move {
                if let Err(e) = raft.initialize(members).await {
                    host.log(LogLevel::Error, &format!("bootstrap failed: {e}"));
                }
            });
        } else if pristine {
            host.log(
                LogLevel::Info,
                "no raft state and not bootstrapping: waiting for a leader to replicate to this \
                 node (the bootstrapping node of a new cluster, or the leader after \
                 change-membership added it)",
            );
        }

        let mut driver = RaftDriver {
            host,
            exec,
            rpc,
            raft,
            state,
            settings,
            node,
            floor: cfg.floor,
            refuse_votes_until_ms,
            handed_over: Rc::default(),
            peerless: cfg.peers.is_empty(),
            reported: None,
            reported_members: Vec::new(),
            epochs: Epochs::default(),
            seen_snapshot: None,
            snapshots: 0,
            #[cfg(tsohost_mutants)]
            mutant,
        };
        #[cfg(tsohost_mutants)]
        if driver.mutant_is(mutant::Mutant::NoFloor) {
            driver.floor = 0;
        }
        driver.settle();
        Ok(driver)
    }

    /// Bytes from a peer's driver.
    fn on_message(&mut self, from: NodeId, payload: &[u8]) {
        self.exec.advance_to_ms(self.host.now_ms());
        match self.rpc.receive(from, payload) {
            Ok(requests) => {
                for req in requests {
                    self.serve(req);
                }
            }
            Err(e) => self.host.log(
                LogLevel::Warn,
                &format!("dropped {} bytes from node {from}: {e}", payload.len()),
            ),
        }
        self.settle();
    }

    /// Time passes; returns when to be ticked next.
    fn on_tick(&mut self, now_ms: u64) -> u64 {
        self.exec.advance_to_ms(now_ms);
        let next = self.settle();
        next.unwrap_or(now_ms + self.settings.heartbeat_ms)
    }

    /// `load-high-water`, answered through `host.completed`.
    fn load_high_water(&mut self, request: u64) {
        self.exec.advance_to_ms(self.host.now_ms());
        match self.lead() {
            Err(e) => self.host.completed(request, Err(e)),
            #[cfg(tsohost_mutants)]
            Ok(_) if self.mutant_is(mutant::Mutant::StaleRead) => self.read_locally(request),
            Ok(lead) => {
                let (state, host) = (self.state.clone(), self.host.clone());
                let (floor, retry) = (self.floor, self.retry_policy());
                self.exec.spawn(async move {
                    let read = lead.raft.ensure_linearizable(ReadPolicy::ReadIndex).await;
                    let outcome = match read {
                        Ok(_) => {
                            let hw = state.borrow().high_water;
                            if floor > hw {
                                let cmd = Command::Persist {
                                    at_least: floor,
                                    epoch: pair(lead.epoch),
                                };
                                write(&lead, cmd, retry).await
                            } else {
                                Ok(hw)
                            }
                        }
                        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                            Err(DriverError::NotLeader(f.leader_id))
                        }
                        Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                            Err(DriverError::NotLeader(None))
                        }
                        Err(RaftError::Fatal(f)) => Err(DriverError::Internal(f.to_string())),
                    };
                    host.completed(request, outcome.map(|hw| hw.max(floor)));
                });
            }
        }
        self.settle();
    }

    /// `persist-high-water`, answered through `host.completed`.
    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        self.exec.advance_to_ms(self.host.now_ms());
        let checked = check_range(at_least).and_then(|()| {
            let lead = self.lead()?;
            let applied = unpair(self.state.borrow().highest_epoch);
            check_epoch(epoch, lead.epoch.max(applied))?;
            if epoch > lead.epoch {
                return Err(DriverError::Internal(format!(
                    "persist carries epoch {}.{}, newer than this leader's {}.{}",
                    epoch.hi, epoch.lo, lead.epoch.hi, lead.epoch.lo
                )));
            }
            Ok(lead)
        });
        match checked {
            Err(e) => self.host.completed(request, Err(e)),
            #[cfg(tsohost_mutants)]
            Ok(lead) if self.mutant_is(mutant::Mutant::EarlyAck) => {
                self.ack_early(request, lead, at_least, epoch);
            }
            Ok(lead) => {
                let host = self.host.clone();
                let (floor, retry) = (self.floor, self.retry_policy());
                let cmd = Command::Persist {
                    at_least,
                    epoch: pair(epoch),
                };
                self.exec.spawn(async move {
                    let outcome = write(&lead, cmd, retry).await;
                    host.completed(request, outcome.map(|hw| hw.max(floor)));
                });
            }
        }
        self.settle();
    }

    /// `change-membership`, answered through `host.completed` (see
    /// "Membership" in the module docs).
    fn change_membership(&mut self, request: u64, members: &[Peer]) {
        self.exec.advance_to_ms(self.host.now_ms());
        match self.check_members(members) {
            Err(e) => self.host.completed(request, Err(e)),
            Ok((lead, target)) => {
                let host = self.host.clone();
                let (retry, catch_up) = (self.retry_policy(), self.settings.catch_up_budget());
                self.exec.spawn(async move {
                    let outcome = change_members(&lead, target, retry, catch_up).await;
                    host.completed(request, outcome);
                });
            }
        }
        self.settle();
    }

    /// `transfer-leadership`, answered through `host.completed` with the new
    /// leader (see "Handing leadership over" in the module docs).
    fn transfer_leadership(&mut self, request: u64, to: Option<NodeId>) {
        self.exec.advance_to_ms(self.host.now_ms());
        match self.successor(to) {
            Err(e) => self.host.completed(request, Err(e)),
            Ok((epoch, target)) => {
                self.hand_over(epoch, target);
                let (raft, host) = (self.raft.clone(), self.host.clone());
                let (me, budget) = (self.node, self.settings.handover_budget());
                self.exec.spawn(async move {
                    let outcome = await_successor(&raft, me, epoch, target, budget).await;
                    host.completed(request, outcome);
                });
            }
        }
        self.settle();
    }

    /// Terms and elections, openraft's log indexes, and snapshots.
    fn stats(&self) -> Vec<Metric> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let index = |log_id: &Option<LogId>| log_id.as_ref().map_or(0, |l| l.index());
        let first = m.purged.as_ref().map_or(0, |p| p.index() + 1);
        let entries = m
            .last_log_index
            .map_or(0, |l| (l + 1).saturating_sub(first));
        let mut stats = self.epochs.metrics().to_vec();
        stats.extend([
            gauge(
                "commit_index",
                "The last log index this node knows to be committed (safe to apply here)",
                index(&m.local_committed),
            ),
            gauge(
                "applied_index",
                "The last log index applied to this node's state machine",
                index(&m.last_applied),
            ),
            gauge(
                "last_log_index",
                "The last index in this node's log",
                m.last_log_index.unwrap_or(0),
            ),
            gauge(
                "log_entries",
                "Entries stored in this node's log (those not yet purged into a snapshot)",
                entries,
            ),
            gauge(
                "snapshot_index",
                "The last log index the current snapshot covers",
                index(&m.snapshot),
            ),
            counter(
                "snapshots",
                "Snapshots this instance built or installed",
                self.snapshots,
            ),
        ]);
        stats
    }
}

impl RaftDriver {
    /// The leadership this node holds and has not handed over, or
    /// `not-leader`.
    fn lead(&self) -> Result<Lead, DriverError> {
        let epoch = leading(&self.raft, self.handed_over.get())?;
        Ok(Lead {
            raft: self.raft.clone(),
            handed_over: self.handed_over.clone(),
            epoch,
        })
    }

    /// Validate a `change-membership` request: the leadership it runs under
    /// and the target membership.
    fn check_members(
        &self,
        members: &[Peer],
    ) -> Result<(Lead, BTreeMap<NodeId, BasicNode>), DriverError> {
        let target = node_map(members, "members")?;
        if target.is_empty() {
            return Err(DriverError::InvalidConfig(
                "members: empty; a cluster needs at least one voter".into(),
            ));
        }
        let lead = self.lead()?;
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let known = m.membership_config.membership();
        for (id, node) in &target {
            if let Some(old) = known.get_node(id)
                && old != node
            {
                return Err(DriverError::InvalidConfig(format!(
                    "members: node {id} is a member at address `{}`, not `{}`; a member's address \
                     cannot change (remove the node, then add it under a new id)",
                    old.addr, node.addr
                )));
            }
        }
        Ok((lead, target))
    }

    /// The epoch this node leads under and the voter to hand it to: `to`,
    /// or with `None` the most up-to-date other voter.
    fn successor(&self, to: Option<NodeId>) -> Result<(Epoch, NodeId), DriverError> {
        let lead = self.lead()?;
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let others: BTreeSet<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|&v| v != self.node)
            .collect();
        let target = match to {
            Some(t) if t == self.node => {
                return Err(DriverError::InvalidConfig(format!(
                    "to: node {t} is this node, which already leads"
                )));
            }
            Some(t) if !others.contains(&t) => {
                return Err(DriverError::InvalidConfig(format!(
                    "to: node {t} is not a voter; the other voters are {others:?}"
                )));
            }
            Some(t) => Some(t),
            None => most_up_to_date(&m, &others),
        };
        target.map(|t| (lead.epoch, t)).ok_or_else(|| {
            DriverError::InvalidConfig(
                "this node is the only voter: there is nobody to hand leadership to".into(),
            )
        })
    }

    /// Hand the leadership of `epoch` over to `to`: report it first, then
    /// let openraft transfer (see "Handing leadership over").
    fn hand_over(&mut self, epoch: Epoch, to: NodeId) {
        self.handed_over.set(Some(epoch));
        #[cfg(tsohost_mutants)]
        if self.mutant_is(mutant::Mutant::NoStepDown) {
            self.handed_over.set(None);
        }
        self.report();
        self.host.log(
            LogLevel::Info,
            &format!(
                "handing the leadership of epoch {}.{} over to node {to}",
                epoch.hi, epoch.lo
            ),
        );
        let (raft, host) = (self.raft.clone(), self.host.clone());
        self.exec.spawn(async move {
            if let Err(e) = raft.trigger().transfer_leader(to).await {
                host.log(LogLevel::Error, &format!("leadership transfer failed: {e}"));
            }
        });
    }

    /// A leader that a committed configuration removed from the voters
    /// hands over, then reverts to a learner should no successor reach it
    /// (it is no longer in the successor's configuration), as openraft's
    /// disabled step-down would. Returns whether it did.
    fn step_down_if_removed(&mut self) -> bool {
        let (epoch, to, vote, membership_log_id) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let epoch = epoch_of(m.vote.leader_id());
            let removed = m.state == ServerState::Leader
                && self.handed_over.get() != Some(epoch)
                && !m.membership_config.voter_ids().any(|v| v == self.node)
                && m.committed_membership_config == m.membership_config;
            if !removed {
                return false;
            }
            let voters = m.membership_config.voter_ids().collect();
            let Some(to) = most_up_to_date(&m, &voters) else {
                return false;
            };
            (epoch, to, m.vote, *m.membership_config.log_id())
        };
        self.hand_over(epoch, to);
        let (raft, host) = (self.raft.clone(), self.host.clone());
        let wait = Duration::from_millis(self.settings.heartbeat_ms);
        self.exec.spawn(async move {
            GuestRuntime::sleep(wait).await;
            let trigger = raft.trigger();
            if let Err(e) = trigger
                .refresh_server_state(Some(vote), membership_log_id)
                .await
            {
                host.log(
                    LogLevel::Error,
                    &format!("reverting to learner failed: {e}"),
                );
            }
        });
        true
    }

    fn retry_policy(&self) -> Retry {
        Retry {
            pause: Duration::from_millis(self.settings.heartbeat_ms.div_ceil(2)),
            budget: self.settings.retry_budget(),
        }
    }

    /// Serve a peer's request on a task; the response leaves at the next
    /// flush.
    fn serve(&self, req: Incoming) {
        let Some(kind) = Kind::from_u8(req.kind) else {
            self.host.log(
                LogLevel::Warn,
                &format!(
                    "dropped request of unknown kind {} from node {}",
                    req.kind, req.from
                ),
            );
            return;
        };
        if matches!(kind, Kind::Vote | Kind::PreVote)
            && self.exec.now_ms() < self.refuse_votes_until_ms
            && !is_transfer_vote(kind, &req.body)
        {
            self.host.log(
                LogLevel::Debug,
                &format!(
                    "dropped {kind:?} request from node {}: restarted with a committed vote, \
                     votes refused until {} ms",
                    req.from, self.refuse_votes_until_ms
                ),
            );
            return;
        }
        let (raft, rpc) = (self.raft.clone(), self.rpc.clone());
        self.exec.spawn(async move {
            let body = handle(&raft, kind, &req.body).await;
            rpc.respond(req.from, req.id, body);
        });
    }

    /// Run until idle, report, send. Returns the next timer, in host ms.
    fn settle(&mut self) -> Option<u64> {
        let mut next = self.exec.run_until_idle();
        if self.step_down_if_removed() {
            next = self.exec.run_until_idle();
        }
        self.report();
        self.rpc.flush(&*self.host);
        next
    }

    /// The leadership openraft currently believes in, with the lease, as the
    /// host must see it (a handed-over leadership is not leading).
    pub fn leadership(&self) -> Leadership {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if let Err(fatal) = &m.running_state {
            // openraft stopped (a storage failure): trap, so that the host
            // re-creates the instance from storage.
            self.host
                .log(LogLevel::Error, &format!("openraft stopped: {fatal}"));
            panic!("openraft stopped: {fatal}");
        }
        let epoch = epoch_of(m.vote.leader_id());
        let role = match m.state {
            ServerState::Leader if self.handed_over.get() != Some(epoch) => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            _ => Role::Follower,
        };
        // A node that does not lead never names itself (a handed-over or
        // removed leader keeps its own vote until it hears a successor).
        let leader = m
            .current_leader
            .filter(|&l| role == Role::Leader || l != self.node);
        let lease_until_ms = if role != Role::Leader {
            0
        } else if m.membership_config.voter_ids().all(|v| v == self.node) {
            // The only voter: nobody else can ever be elected.
            u64::MAX
        } else {
            m.last_quorum_acked.as_ref().map_or(0, |acked| {
                let acked: GuestInstant = **acked;
                let lease = self.settings.lease();
                #[cfg(tsohost_mutants)]
                let lease = mutant::lease(self.mutant, &self.settings, lease);
                (acked + lease).as_host_ms()
            })
        };
        Leadership {
            role,
            leader,
            epoch,
            lease_until_ms,
        }
    }

    /// The effective membership, with addresses, in id order.
    pub fn members(&self) -> Vec<Peer> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .nodes()
            .map(|(&id, node)| Peer {
                id,
                address: node.addr.clone(),
            })
            .collect()
    }

    /// Report leadership on every change: of role, leader or epoch, and of
    /// the lease, which grows with each quorum acknowledgement and can
    /// shrink when a membership change takes effect (lease point 5). Report
    /// the membership when it changes, once there is one.
    fn report(&mut self) {
        let now = self.leadership();
        self.epochs.observe(now.epoch);
        let snapshot = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.snapshot.as_ref().map(|l| l.index())
        };
        if self.seen_snapshot.is_some_and(|seen| seen != snapshot) {
            self.snapshots += 1;
        }
        self.seen_snapshot = Some(snapshot);
        if self.reported != Some(now) {
            self.host.report_leadership(now);
            self.reported = Some(now);
        }
        let members = self.members();
        let alone = self.peerless && members.iter().all(|p| p.id == self.node);
        if !members.is_empty() && !alone && members != self.reported_members {
            self.host.report_membership(&members);
            self.reported_members = members;
        }
    }

    /// The replicated state as this node has applied it.
    pub fn state(&self) -> SmState {
        self.state.borrow().clone()
    }

    /// The executor's clock, in host ms.
    pub fn now_ms(&self) -> u64 {
        self.exec.now_ms()
    }
}

/// The epoch `raft` leads under, unless its leadership was `handed_over`;
/// otherwise `not-leader` with the leader this node knows of.
fn leading(raft: &Raft, handed_over: Option<Epoch>) -> Result<Epoch, DriverError> {
    let m = raft.metrics();
    let m = m.borrow_watched();
    let epoch = epoch_of(m.vote.leader_id());
    if m.state == ServerState::Leader && handed_over != Some(epoch) {
        Ok(epoch)
    } else {
        Err(DriverError::NotLeader(
            m.current_leader.filter(|&l| l != m.id),
        ))
    }
}

/// The leadership a request runs under; its task gives up once this node no
/// longer leads in `epoch`.
struct Lead {
    raft: Raft,
    handed_over: Rc<Cell<Option<Epoch>>>,
    epoch: Epoch,
}

impl Lead {
    /// Ok while this node still leads in the request's epoch.
    fn check(&self) -> Result<(), DriverError> {
        match leading(&self.raft, self.handed_over.get())? {
            e if e == self.epoch => Ok(()),
            _ => Err(DriverError::NotLeader(None)),
        }
    }
}

/// Among `voters`, the one whose log matches the leader's furthest (the
/// lowest id among equals): it needs the least catching up to campaign.
fn most_up_to_date(m: &RaftMetrics<TypeConfig>, voters: &BTreeSet<NodeId>) -> Option<NodeId> {
    let matched = |id: &NodeId| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
    };
    // `max_by_key` keeps the last of equal keys.
    voters.iter().rev().max_by_key(|id| matched(id)).copied()
}

/// Whether `body` is a vote request of a leadership-transfer election.
fn is_transfer_vote(kind: Kind, body: &[u8]) -> bool {
    kind == Kind::Vote
        && postcard::from_bytes::<VoteRequest<TypeConfig>>(body)
            .is_ok_and(|r| r.leadership_transfer)
}

/// How long and how often a proposal is retried while this node leads but
/// openraft refuses it for now (a new leader before its first quorum ack,
/// a membership change still in progress).
#[derive(Debug, Clone, Copy)]
struct Retry {
    pause: Duration,
    budget: Duration,
}

type Proposed =
    Result<ClientWriteResponse<TypeConfig>, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>;

/// Propose through `op` until openraft accepts and commits it, while this
/// node leads under `lead` and the budget lasts.
async fn propose<F, Fut>(
    lead: &Lead,
    retry: Retry,
    mut op: F,
) -> Result<ClientWriteResponse<TypeConfig>, DriverError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Proposed>,
{
    let give_up = GuestInstant::now() + retry.budget;
    loop {
        let e = match op().await {
            Ok(resp) => return Ok(resp),
            Err(RaftError::Fatal(f)) => return Err(DriverError::Internal(f.to_string())),
            Err(RaftError::APIError(e)) => e,
        };
        let not_yet = matches!(
            e,
            ClientWriteError::ForwardToLeader(_) | ClientWriteError::LogEntryDiscarded(_)
        );
        let busy = matches!(
            e,
            ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_)
                    | ChangeMembershipError::UncommittedLeaderLog(_)
            )
        );
        if !not_yet && !busy {
            return Err(DriverError::Internal(e.to_string()));
        }
        lead.check()?;
        if GuestInstant::now() >= give_up {
            return Err(if not_yet {
                DriverError::NotLeader(None)
            } else {
                DriverError::Internal(format!(
                    "gave up after {} ms: {e}",
                    retry.budget.as_millis()
                ))
            });
        }
        GuestRuntime::sleep(retry.pause).await;
    }
}

/// Write `cmd` through the log as leader under `lead`; the high water after
/// it applied.
async fn write(lead: &Lead, cmd: Command, retry: Retry) -> Result<u64, DriverError> {
    let resp = propose(lead, retry, || lead.raft.client_write(cmd)).await?;
    match resp.data {
        Applied::HighWater(hw) => Ok(hw),
        Applied::Fenced(newer) => Err(DriverError::Fenced(unpair(newer))),
    }
}

/// Make `target` the voting membership (see "Membership" in the module
/// docs); completes with 0.
async fn change_members(
    lead: &Lead,
    target: BTreeMap<NodeId, BasicNode>,
    retry: Retry,
    catch_up: Duration,
) -> Result<u64, DriverError> {
    let raft = &lead.raft;
    let known = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .clone();
    let leftover: BTreeSet<NodeId> = known
        .learner_ids()
        .filter(|id| !target.contains_key(id))
        .collect();
    if !leftover.is_empty() {
        let change = || raft.change_membership(ChangeMembers::RemoveNodes(leftover.clone()), false);
        propose(lead, retry, change).await?;
    }
    let new: BTreeMap<NodeId, BasicNode> = target
        .iter()
        .filter(|(id, _)| known.get_node(id).is_none())
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    if !new.is_empty() {
        let change = || raft.change_membership(ChangeMembers::AddNodes(new.clone()), true);
        let added = propose(lead, retry, change).await?;
        await_caught_up(lead, &new, added.log_id, catch_up).await?;
    }
    let voters: BTreeSet<NodeId> = target.keys().copied().collect();
    let joint = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .get_joint_config()
        .clone();
    if joint != [voters.clone()] {
        let change =
            || raft.change_membership(ChangeMembers::ReplaceAllVoters(voters.clone()), false);
        propose(lead, retry, change).await?;
    }
    // Each step waited for its own entry; a request that found nothing to
    // do still answers only once the membership it found is committed.
    let committed = raft
        .wait(Some(retry.budget))
        .metrics(
            |m| m.committed_membership_config == m.membership_config,
            "membership committed",
        )
        .await;
    match committed {
        Ok(_) => Ok(0),
        Err(_) => {
            lead.check()?;
            Err(DriverError::Internal(format!(
                "the membership was not committed within {} ms",
                retry.budget.as_millis()
            )))
        }
    }
}

/// Wait until every node of `new` has replicated the log up to `entry`.
async fn await_caught_up(
    lead: &Lead,
    new: &BTreeMap<NodeId, BasicNode>,
    entry: LogId,
    budget: Duration,
) -> Result<(), DriverError> {
    let behind = |m: &RaftMetrics<TypeConfig>| -> Vec<NodeId> {
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
        };
        new.keys()
            .copied()
            .filter(|id| matched(id).is_none_or(|at| at < entry))
            .collect()
    };
    let waited = lead
        .raft
        .wait(Some(budget))
        .metrics(
            |m| m.state != ServerState::Leader || behind(m).is_empty(),
            "new learners caught up",
        )
        .await;
    lead.check()?;
    let behind = match waited {
        Ok(m) => behind(&m),
        Err(_) => behind(&lead.raft.metrics().borrow_watched()),
    };
    if behind.is_empty() {
        Ok(())
    } else {
        Err(DriverError::Internal(format!(
            "node(s) {behind:?} did not replicate the log within {} ms of being added; they stay \
             learners and the voters are unchanged: are they running and reachable?",
            budget.as_millis()
        )))
    }
}

/// Wait until a leader of a newer epoch than `epoch`, which this node
/// handed over to `to`, is known; that leader's id. Should this node itself
/// be elected again (the target could not take over: not yet connected, or
/// behind), the transfer failed, and says so at once.
async fn await_successor(
    raft: &Raft,
    me: NodeId,
    epoch: Epoch,
    to: NodeId,
    budget: Duration,
) -> Result<u64, DriverError> {
    let newer_leader = |m: &RaftMetrics<TypeConfig>| {
        let newer = m.vote.is_committed() && epoch_of(m.vote.leader_id()) > epoch;
        m.current_leader.filter(|_| newer)
    };
    match raft
        .wait(Some(budget))
        .metrics(|m| newer_leader(m).is_some(), "a newer leader")
        .await
    {
        Ok(m) => match newer_leader(&m) {
            Some(l) if l == me => {
                let again = epoch_of(m.vote.leader_id());
                Err(DriverError::Internal(format!(
                    "node {to} did not take over the leadership of epoch {}.{} (is it connected \
                     and caught up?); this node was elected again, in epoch {}.{}",
                    epoch.hi, epoch.lo, again.hi, again.lo
                )))
            }
            Some(l) => Ok(l),
            None => Err(DriverError::Internal("the new leader vanished".into())),
        },
        Err(WaitError::Timeout(..)) => Err(DriverError::Internal(format!(
            "no leader emerged within {} ms after this node handed the leadership of epoch {}.{} \
             to node {to} (down, or too far behind to campaign?); this node no longer leads in \
             that epoch, and the voters elect a leader once their leases lapse",
            budget.as_millis(),
            epoch.hi,
            epoch.lo
        ))),
        Err(WaitError::ShuttingDown) => Err(DriverError::Internal(
            "openraft stopped while handing leadership over".into(),
        )),
    }
}

/// Serve one request; the response body is `Result<response, String>`.
async fn handle(raft: &Raft, kind: Kind, body: &[u8]) -> Vec<u8> {
    fn bad(e: postcard::Error) -> Vec<u8> {
        encode(&Err::<(), String>(format!("undecodable request: {e}")))
    }
    match kind {
        Kind::Append => match postcard::from_bytes::<AppendEntriesRequest<TypeConfig>>(body) {
            Ok(req) => encode(&raft.append_entries(req).await.map_err(|e| e.to_string())),
            Err(e) => bad(e),
        },
        Kind::Vote => match postcard::from_bytes::<VoteRequest<TypeConfig>>(body) {
            Ok(req) => encode(&raft.vote(req).await.map_err(|e| e.to_string())),
            Err(e) => bad(e),
        },
        Kind::PreVote => match postcard::from_bytes::<VoteRequest<TypeConfig>>(body) {
            Ok(req) => encode(&raft.pre_vote(req).await.map_err(|e| e.to_string())),
            Err(e) => bad(e),
        },
        Kind::Snapshot => match postcard::from_bytes::<(Vote, SnapshotMeta, SmState)>(body) {
            Ok((vote, meta, data)) => {
                let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SmState> {
                    meta,
                    snapshot: data,
                };
                encode(
                    &raft
                        .install_full_snapshot(vote, snapshot)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            Err(e) => bad(e),
        },
        Kind::TransferLeader => {
            match postcard::from_bytes::<TransferLeaderRequest<TypeConfig>>(body) {
                Ok(req) => encode(
                    &raft
                        .handle_transfer_leader(req)
                        .await
                        .map_err(|e| e.to_string()),
                ),
                Err(e) => bad(e),
            }
        }
    }
}
