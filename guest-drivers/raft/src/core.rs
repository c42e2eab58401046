//! The raft driver, sans-IO: [`RaftDriver`] does everything through a
//! [`Host`], so it runs the same in a component and in a native simulation.
//!
//! Every export follows one pattern: move the executor's clock to the
//! host's, hand the event to openraft (spawn a task or complete a call), run
//! the executor until idle, send what was queued (one payload per peer), and
//! report leadership if it changed or the lease grew.
//!
//! # The leader lease
//!
//! The leader reports `lease-until-ms = A + L`, where `A` is the send time
//! (on this host's clock) of the newest heartbeat/append round a quorum of
//! voters acknowledged (openraft's `last_quorum_acked`: it records each
//! follower's acknowledgement with the *send* time of the request
//! acknowledged), and `L` = [`Settings::lease`] = ¾ of the minimum election
//! timeout `E`, so `L < E < E_max = 2E`.
//!
//! Why no other node can be elected and serve before `A + L`:
//! 1. Every voter `f` of the acknowledging quorum received that round at a
//!    time `R_f >= A`. openraft's follower rule (verified in openraft
//!    0.10.0-alpha.37, `Engine::handle_vote_req` and `handle_pre_vote_req`):
//!    while its stored vote is *committed* (it follows an established
//!    leader) and that vote's lease has not expired, a node rejects every
//!    vote and pre-vote request that is not an authorized leadership
//!    transfer; receiving an append-entries from the leader renews the lease
//!    to `R_f + E_max` (`VoteHandler::update_vote`, `leader_lease =
//!    election_timeout_max`). The leader itself refuses votes while its own
//!    quorum-ack lease is valid. This driver never requests a transfer.
//! 2. A new leader needs the votes of a quorum, which shares a voter with
//!    the acknowledging quorum; that voter grants nothing before
//!    `R_f + E_max >= A + 2E` on its clock.
//! 3. The follower's lease lives in openraft's memory only. A restarted
//!    instance would forget it, so this driver drops vote and pre-vote
//!    requests for `E_max` after an instance starts when its stored vote is
//!    committed (it may have acknowledged a leader just before the restart).
//! 4. The new leader serves only after being elected, so after `A + 2E`,
//!    while the old lease ended at `A + ¾E`. The gap `1¼E` absorbs clock
//!    rate differences between hosts over one lease, the rounding of the
//!    virtual clock to host milliseconds (`A` is rounded down), and the
//!    sub-millisecond [`MICRO_SLEEP`](tsohost_guest_sdk::runtime::MICRO_SLEEP)
//!    jumps the executor makes ahead of the host's clock.
//!
//! It assumes every node runs with the same `election-timeout-ms` and that
//! host clocks advance at nearly the same rate (not that they agree).
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

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::AsyncRuntime;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Instant, ReadPolicy, ServerState};
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::rules::{check_epoch, check_range};
use tsohost_guest_sdk::runtime::rpc::{Incoming, Rpc};
use tsohost_guest_sdk::runtime::{Executor, GuestInstant, GuestRuntime};
use tsohost_guest_sdk::{Config, DriverError, Epoch, Leadership, LogLevel, NodeId, Role};

use crate::network::{Kind, Network, encode};
use crate::settings::Settings;
use crate::store::{LogStore, SmState, StateMachine, Storage};
use crate::types::{
    Applied, Command, Raft, SnapshotMeta, TypeConfig, Vote, epoch_of, pair, unpair,
};

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
    reported: Option<Leadership>,
}

fn storage_err(e: std::io::Error) -> DriverError {
    DriverError::Storage(e.to_string())
}

impl RaftDriver {
    /// Start (or resume from storage) on `host` with `cfg`.
    pub fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        let settings = Settings::from_config(cfg)?;
        let node = cfg.node_id;
        let mut members: BTreeMap<NodeId, BasicNode> = BTreeMap::new();
        for p in &cfg.peers {
            if members.insert(p.id, BasicNode::new(&p.address)).is_some() {
                return Err(DriverError::InvalidConfig(format!(
                    "peers: node {} is listed twice",
                    p.id
                )));
            }
        }
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
            now + settings.election_timeout_max_ms()
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
        let config = Arc::new(settings.raft_config()?);
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

        if cfg.bootstrap && pristine {
            let raft = raft.clone();
            let host = host.clone();
            exec.spawn(async move {
                if let Err(e) = raft.initialize(members).await {
                    host.log(LogLevel::Error, &format!("bootstrap failed: {e}"));
                }
            });
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
            reported: None,
        };
        driver.settle();
        Ok(driver)
    }

    /// Bytes from a peer's driver.
    pub fn on_message(&mut self, from: NodeId, payload: &[u8]) {
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
    pub fn on_tick(&mut self, now_ms: u64) -> u64 {
        self.exec.advance_to_ms(now_ms);
        let next = self.settle();
        next.unwrap_or(now_ms + self.settings.heartbeat_ms)
    }

    /// `load-high-water`, answered through `host.completed`.
    pub fn load_high_water(&mut self, request: u64) {
        self.exec.advance_to_ms(self.host.now_ms());
        match self.leading_epoch() {
            Err(e) => self.host.completed(request, Err(e)),
            Ok(epoch) => {
                let (raft, state, host) =
                    (self.raft.clone(), self.state.clone(), self.host.clone());
                let (floor, retry) = (self.floor, self.retry_policy());
                self.exec.spawn(async move {
                    let outcome = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                        Ok(_) => {
                            let hw = state.borrow().high_water;
                            if floor > hw {
                                let cmd = Command::Persist {
                                    at_least: floor,
                                    epoch: pair(epoch),
                                };
                                write(&raft, cmd, epoch, retry).await
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
    pub fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        self.exec.advance_to_ms(self.host.now_ms());
        let checked = check_range(at_least).and_then(|()| {
            let mine = self.leading_epoch()?;
            let applied = unpair(self.state.borrow().highest_epoch);
            check_epoch(epoch, mine.max(applied))?;
            if epoch > mine {
                return Err(DriverError::Internal(format!(
                    "persist carries epoch {}.{}, newer than this leader's {}.{}",
                    epoch.hi, epoch.lo, mine.hi, mine.lo
                )));
            }
            Ok(mine)
        });
        match checked {
            Err(e) => self.host.completed(request, Err(e)),
            Ok(mine) => {
                let (raft, host) = (self.raft.clone(), self.host.clone());
                let (floor, retry) = (self.floor, self.retry_policy());
                let cmd = Command::Persist {
                    at_least,
                    epoch: pair(epoch),
                };
                self.exec.spawn(async move {
                    let outcome = write(&raft, cmd, mine, retry).await;
                    host.completed(request, outcome.map(|hw| hw.max(floor)));
                });
            }
        }
        self.settle();
    }

    /// The epoch this node leads under, or `not-leader`.
    fn leading_epoch(&self) -> Result<Epoch, DriverError> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state == ServerState::Leader {
            Ok(epoch_of(m.vote.leader_id()))
        } else {
            Err(DriverError::NotLeader(m.current_leader))
        }
    }

    fn retry_policy(&self) -> Retry {
        Retry {
            pause: Duration::from_millis(self.settings.heartbeat_ms.div_ceil(2)),
            budget: Duration::from_millis(self.settings.election_timeout_max_ms()),
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

    /// Run until idle, send, report. Returns the next timer, in host ms.
    fn settle(&mut self) -> Option<u64> {
        let next = self.exec.run_until_idle();
        self.rpc.flush(&*self.host);
        self.report();
        next
    }

    /// The leadership openraft currently believes in, with the lease.
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
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            _ => Role::Follower,
        };
        let lease_until_ms = if role != Role::Leader {
            0
        } else if m
            .membership_config
            .membership()
            .voter_ids()
            .all(|v| v == self.node)
        {
            // The only voter: nobody else can ever be elected.
            u64::MAX
        } else {
            m.last_quorum_acked.as_ref().map_or(0, |acked| {
                let acked: GuestInstant = **acked;
                (acked + self.settings.lease()).as_host_ms()
            })
        };
        Leadership {
            role,
            leader: m.current_leader,
            epoch: epoch_of(m.vote.leader_id()),
            lease_until_ms,
        }
    }

    /// Report on every change of role, leader or epoch, and whenever the
    /// lease grows.
    fn report(&mut self) {
        let now = self.leadership();
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

    /// The replicated state as this node has applied it.
    pub fn state(&self) -> SmState {
        self.state.borrow().clone()
    }

    /// The executor's clock, in host ms.
    pub fn now_ms(&self) -> u64 {
        self.exec.now_ms()
    }
}

/// How long and how often a write is retried while this node leads but
/// openraft refuses it (a new leader before its first quorum ack).
#[derive(Debug, Clone, Copy)]
struct Retry {
    pause: Duration,
    budget: Duration,
}

/// Write `cmd` through the log as leader under `epoch`; the high water after
/// it applied.
async fn write(raft: &Raft, cmd: Command, epoch: Epoch, retry: Retry) -> Result<u64, DriverError> {
    let give_up = GuestInstant::now() + retry.budget;
    loop {
        let forward = match raft.client_write(cmd).await {
            Ok(resp) => {
                return match resp.data {
                    Applied::HighWater(hw) => Ok(hw),
                    Applied::Fenced(newer) => Err(DriverError::Fenced(unpair(newer))),
                };
            }
            Err(RaftError::APIError(
                ClientWriteError::ForwardToLeader(f) | ClientWriteError::LogEntryDiscarded(f),
            )) => f,
            Err(RaftError::APIError(e)) => return Err(DriverError::Internal(e.to_string())),
            Err(RaftError::Fatal(f)) => return Err(DriverError::Internal(f.to_string())),
        };
        let still_leading = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            m.state == ServerState::Leader && epoch_of(m.vote.leader_id()) == epoch
        };
        if !still_leading || GuestInstant::now() >= give_up {
            let leader = forward
                .leader_id
                .or_else(|| raft.metrics().borrow_watched().current_leader);
            return Err(DriverError::NotLeader(leader.filter(|_| !still_leading)));
        }
        GuestRuntime::sleep(retry.pause).await;
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
    }
}
