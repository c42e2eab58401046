//! The coordinator: one task that wires the node's two state machines, the
//! [`TermMachine`] and the [`DriverSlot`], to the outside (docs/architecture.md
//! §3): driver events, admin requests, timers and shutdown come in through
//! one `select!` loop; the machines' effects go out to the driver, the peer
//! network, the metrics and the requests waiting for the window.
//!
//! Request ids are the coordinator's: every request sent to the driver is in
//! `pending` until its completion arrives, so an answer always reaches the
//! machine (or admin caller) that asked.

use super::slot::{DriverSlot, Refusal};
use super::term::{Effect, Request, TermMachine};
use super::{DriverStatus, LeadershipStatus, Node};
use crate::allocator::{Allocator, Now};
use crate::driver::bindings::{DriverInfo, Peer, describe};
use crate::driver::{Command, DriverError, DriverHandle, Event, LoadedDriver, Spawner};
use crate::storage::Db;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

/// How long a graceful shutdown waits for leadership to be handed off.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests to the coordinator from the admin API.
pub enum Control {
    /// Make `members` the cluster's voting membership (through the driver).
    ChangeMembership {
        members: Vec<Peer>,
        reply: oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Hand leadership to `to` (any other node with `None`).
    TransferLeadership {
        to: Option<u64>,
        reply: oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Replace the running driver with a new build of the same driver.
    Swap {
        driver: Box<LoadedDriver>,
        reply: oneshot::Sender<Result<DriverStatus, String>>,
    },
    /// Stop serving for a migration, durably; answers the highest high
    /// water this node held (ms).
    Seal {
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Serve again under the sealed driver (a migration given up).
    Unseal {
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A sealed node's linearizable read of its driver's high water (on the
    /// leader; others answer not-leader).
    ReadHighWater {
        reply: oneshot::Sender<Result<u64, DriverError>>,
    },
    /// Check that `driver` could replace the running one in a migration
    /// (another driver, instantiable here); answers its name and version.
    /// Nothing changes, but the compiled component is cached for the switch.
    Prepare {
        driver: Box<LoadedDriver>,
        reply: oneshot::Sender<Result<DriverInfo, String>>,
    },
    /// Replace the sealed driver by another driver, on a fresh namespace,
    /// serving above `floor`.
    Migrate {
        driver: Box<LoadedDriver>,
        floor: u64,
        reply: oneshot::Sender<Result<DriverStatus, String>>,
    },
}

/// Who asked for a driver request.
enum Pending {
    /// A request of the term machine, and when it was sent (for the load
    /// and persist durations).
    Term(Request, Instant),
    /// An operator's request; the outcome goes back to the admin API.
    Admin(oneshot::Sender<Result<u64, DriverError>>),
    /// Handing leadership off before a graceful shutdown.
    HandOff,
}

/// A structured log event `$event` of the coordinator's node, with the
/// fields every such event carries (node, epoch, driver, digest) and
/// `$rest` (more fields, then the message).
macro_rules! node_event {
    ($coordinator:expr, $level:ident, $event:literal, $($rest:tt)*) => {{
        let (epoch, driver) = $coordinator.identity();
        tracing::$level!(
            event = $event,
            node = $coordinator.node.node_id,
            epoch,
            driver = driver.name,
            digest = driver.digest,
            $($rest)*
        );
    }};
}

/// Drives a node from its driver's events until the event channel closes.
pub struct Coordinator {
    node: Arc<Node>,
    term: TermMachine,
    slot: DriverSlot,
    pending: HashMap<u64, Pending>,
    next_request: u64,
    /// Set once a graceful shutdown may proceed (hand-off done or failed).
    stop_now: bool,
    /// Between a `term_started` log event and its `term_stopped`: the term
    /// machine reports `Stopped` whenever it forgets a term, even when none
    /// had started serving, and only a started term is said to stop.
    in_term: bool,
}

impl Coordinator {
    /// The floor and whether the node is sealed come from the node's
    /// [`crate::migration::DriverRecord`].
    pub fn new(
        node: Arc<Node>,
        spawner: Spawner,
        db: Db,
        driver: DriverHandle,
        loaded: LoadedDriver,
    ) -> Coordinator {
        let (floor, sealed) = {
            let record = node.migration.lock().unwrap();
            (record.floor, record.sealed)
        };
        Coordinator {
            term: TermMachine::new(node.node_id, floor, sealed),
            slot: DriverSlot::new(node.clone(), spawner, db, driver, loaded),
            node,
            pending: HashMap::new(),
            next_request: 1,
            stop_now: false,
            in_term: false,
        }
    }

    /// Run until `events` closes or `shutdown` fires; then stop the driver.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
        shutdown: Arc<Notify>,
    ) {
        let node = self.node.clone();
        let check_every =
            Duration::from_millis((node.allocator.lock().unwrap().window_ms() / 6).clamp(5, 1000));
        let mut check = tokio::time::interval(check_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop_by: Option<tokio::time::Instant> = None;
        while !self.stop_now {
            let wakeup = self
                .term
                .next_wakeup_ms()
                .map(|at| Duration::from_millis(at.saturating_sub(node.clock.now().mono_ms)));
            let retry = async {
                match wakeup {
                    Some(after) => tokio::time::sleep(after).await,
                    None => std::future::pending().await,
                }
            };
            let give_up = async {
                match stop_by {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(control) = control.recv() => self.on_control(control),
                _ = node.wake.notified() => self.tick(),
                _ = check.tick() => {
                    self.slot.expire_refused_swap();
                    self.tick();
                }
                _ = retry => self.tick(),
                _ = shutdown.notified(), if stop_by.is_none() => {
                    stop_by = Some(tokio::time::Instant::now() + HAND_OFF_TIMEOUT);
                    self.hand_off();
                }
                _ = give_up => {
                    tracing::warn!("leadership was not handed off in {HAND_OFF_TIMEOUT:?}; stopping anyway");
                    break;
                }
            }
        }
        self.with_term(|term, alloc, _| term.lose(alloc));
        self.slot.shutdown();
    }

    /// Run one event through the term machine with the allocator and the
    /// time, then carry out its effects.
    fn with_term(&mut self, f: impl FnOnce(&mut TermMachine, &mut Allocator, Now) -> Vec<Effect>) {
        let now = self.node.clock.now();
        let effects = {
            let mut alloc = self.node.allocator.lock().unwrap();
            f(&mut self.term, &mut alloc, now)
        };
        for effect in effects {
            self.apply(effect);
        }
    }

    fn apply(&mut self, effect: Effect) {
        let metrics = &self.node.metrics;
        match effect {
            Effect::Send(request) => {
                let id = self.request_id(Pending::Term(request, Instant::now()));
                self.slot.send(request.command(id));
            }
            Effect::Serving { high_water } => {
                node_event!(
                    self,
                    info,
                    "term_started",
                    high_water_ms = high_water,
                    "serving timestamps; high water {high_water} ms"
                );
                self.in_term = true;
                metrics.terms_started_total.inc();
                metrics.high_water_seconds.set(high_water as f64 / 1e3);
                self.node.progressed.notify_waiters();
            }
            Effect::Extended { high_water } => {
                metrics.high_water_seconds.set(high_water as f64 / 1e3);
                self.node.progressed.notify_waiters();
            }
            // The gauges of serving and headroom are read off the
            // allocator at scrape; the high water keeps its last value.
            Effect::Stopped => {
                if std::mem::take(&mut self.in_term) {
                    node_event!(
                        self,
                        info,
                        "term_stopped",
                        "no longer leading: stopped serving"
                    );
                }
            }
            Effect::Settled => self.slot.settle_refused_swap(),
        }
    }

    /// The epoch last reported and the running driver, for the fields of
    /// structured log events.
    fn identity(&self) -> (String, DriverStatus) {
        let epoch = self.node.leadership.lock().unwrap().epoch.clone();
        let driver = self.node.driver.lock().unwrap().clone();
        (epoch.unwrap_or_default(), driver)
    }

    /// Time passed, or a request found the window due for extension.
    fn tick(&mut self) {
        self.with_term(|term, alloc, now| term.on_tick(alloc, now));
    }

    fn request_id(&mut self, pending: Pending) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, pending);
        id
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Started(info) => {
                self.node.metrics.driver_starts_total.inc();
                let mut d = self.node.driver.lock().unwrap();
                d.healthy = true;
                d.name = info.name;
                d.version = info.version;
            }
            Event::Leadership(report) => {
                let status = LeadershipStatus::from(&report);
                let role = status.role;
                let previous =
                    std::mem::replace(&mut *self.node.leadership.lock().unwrap(), status);
                if previous.epoch != Some(report.epoch.to_string()) {
                    self.node.metrics.elections_total.inc();
                    self.node
                        .metrics
                        .epoch
                        .set(i64::try_from(report.epoch.hi).unwrap_or(i64::MAX));
                    let leads = match report.leader {
                        Some(leader) => format!("node {leader} leads"),
                        None => "no leader known".to_string(),
                    };
                    node_event!(
                        self,
                        info,
                        "election",
                        leader = report.leader,
                        role = role.as_str(),
                        "new epoch {}: {leads}",
                        report.epoch
                    );
                }
                self.with_term(|term, alloc, _| term.on_leadership(alloc, report));
            }
            Event::Completed { request, outcome } => match self.pending.remove(&request) {
                Some(Pending::Term(request, sent)) => {
                    let metrics = &self.node.metrics;
                    let op = match request {
                        Request::Load { .. } => &metrics.load,
                        _ => &metrics.persist,
                    };
                    op.observe(outcome.is_ok(), sent.elapsed());
                    self.with_term(|term, alloc, now| {
                        term.on_completed(alloc, request, outcome, now)
                    });
                }
                Some(Pending::Admin(reply)) => {
                    let _ = reply.send(outcome);
                }
                Some(Pending::HandOff) => {
                    match &outcome {
                        Ok(leader) => tracing::info!("handed leadership to node {leader}"),
                        Err(e) => tracing::warn!("could not hand leadership off: {}", describe(e)),
                    }
                    self.stop_now = true;
                }
                None => {}
            },
            Event::Send { to, payload } => match &self.node.network {
                Some(network) => network.send(to, payload),
                None => {
                    self.node.metrics.peer_messages_dropped_total.inc();
                    tracing::debug!("dropped a driver message to node {to}: no peer network");
                }
            },
            Event::Wrote { .. } => {}
            Event::SendDropped => {
                self.node.metrics.peer_messages_dropped_total.inc();
            }
            Event::Membership(members) => {
                if let Some(network) = &self.node.network {
                    tracing::info!(
                        "membership: {}",
                        members
                            .iter()
                            .map(|p| format!("{}={}", p.id, p.address))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    network.set_members(members.into_iter().map(|p| (p.id, p.address)).collect());
                }
            }
            Event::Crashed { reason } => {
                node_event!(
                    self,
                    error,
                    "driver_crash",
                    reason,
                    "the driver crashed: {reason}"
                );
                self.with_term(|term, alloc, _| term.lose(alloc));
                self.node.metrics.driver_crashes_total.inc();
                let mut d = self.node.driver.lock().unwrap();
                d.healthy = false;
                d.crashes += 1;
                d.last_crash = Some(reason);
            }
        }
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Swap { driver, reply } => match self.slot.swap(*driver) {
                Ok(status) => {
                    let _ = reply.send(Ok(status));
                }
                Err(Refusal::Restarted(error)) => self.slot.hold_refusal(reply, error),
                Err(Refusal::Now(error)) => {
                    let _ = reply.send(Err(error));
                }
                Err(Refusal::NoDriver(error)) => {
                    self.with_term(|term, alloc, _| term.lose(alloc));
                    let _ = reply.send(Err(error));
                }
            },
            Control::ChangeMembership { members, reply } => {
                let request = self.request_id(Pending::Admin(reply));
                self.slot
                    .send(Command::ChangeMembership { request, members });
            }
            Control::TransferLeadership { to, reply } => {
                let request = self.request_id(Pending::Admin(reply));
                self.slot.send(Command::TransferLeadership { request, to });
            }
            Control::Seal { reply } => {
                let sealed = self.slot.seal();
                if let Ok(sealed) = &sealed
                    && sealed.now_sealed
                {
                    self.with_term(|term, alloc, _| term.set_held(alloc, true));
                }
                let _ = reply.send(sealed.map(|s| s.held_ms));
            }
            Control::Unseal { reply } => {
                let unsealed = self.slot.unseal();
                if let Ok(true) = unsealed {
                    self.with_term(|term, alloc, _| term.set_held(alloc, false));
                }
                let _ = reply.send(unsealed.map(|_| ()));
            }
            Control::ReadHighWater { reply } => {
                if !self.slot.sealed() {
                    let _ = reply.send(Err(DriverError::Internal(
                        "this node is not sealed: a read for a migration comes after the seal"
                            .into(),
                    )));
                    return;
                }
                let request = self.request_id(Pending::Admin(reply));
                self.slot.send(Command::LoadHighWater { request });
            }
            Control::Prepare { driver, reply } => {
                let _ = reply.send(self.slot.prepare(&driver));
            }
            Control::Migrate {
                driver,
                floor,
                reply,
            } => {
                let answer = match self.slot.migrate(*driver, floor) {
                    Ok((status, record)) => {
                        // The old driver's view of leadership is void.
                        self.term.set_floor(record.floor);
                        self.term.forget_report();
                        self.with_term(|term, alloc, _| term.set_held(alloc, false));
                        Ok(status)
                    }
                    Err(Refusal::NoDriver(error)) => {
                        self.with_term(|term, alloc, _| term.lose(alloc));
                        Err(error)
                    }
                    Err(Refusal::Now(error) | Refusal::Restarted(error)) => Err(error),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Before a graceful shutdown: a leader of a cluster hands leadership to
    /// another node so that the cluster does not wait for an election; any
    /// other node stops at once.
    fn hand_off(&mut self) {
        if !self.term.is_leading() || self.node.network.is_none() {
            self.stop_now = true;
            return;
        }
        tracing::info!("handing leadership off before shutting down");
        self.with_term(|term, alloc, _| term.lose(alloc));
        let request = self.request_id(Pending::HandOff);
        self.slot
            .send(Command::TransferLeadership { request, to: None });
    }
}
