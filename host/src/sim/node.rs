//! One simulated node: the host side a real node runs (the term machine,
//! the allocator, the recovery of a lost guest instance) around a real
//! instance of the driver component, on a [`Disk`] with power loss and a
//! simulated clock.
//!
//! The node never blocks and never reads a real clock: every method handles
//! one event at the world's current simulated time and leaves what must
//! happen later (a tick, a delivery, a rebuild) in the world's queue.

use super::disk::Disk;
use super::history::Issued;
use super::world::{Ev, World};
use crate::allocator::{Allocator, GrantError, Now};
use crate::clock::Clock;
use crate::driver::actor::{MAX_BACKOFF, MAX_TICK_INTERVAL, MIN_BACKOFF};
use crate::driver::bindings::{Config, Peer, describe};
use crate::driver::fault::{GuestFault, GuestFaults};
use crate::driver::instance::{BuildError, Instance, Setup, summary};
use crate::driver::{Command, DriverError, Epoch, Event, Leadership, Role};
use crate::node::term::{Effect, Request, TermMachine};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// Unix ms at simulated time zero.
const WALL_BASE_MS: u64 = 1_800_000_000_000;

/// A node's clocks: the world's simulated time seen through the node's own
/// monotonic origin (reset when the process restarts, as a real one is) and
/// its own wall clock offset and drift.
#[derive(Debug)]
pub struct SimClock {
    world_us: Arc<AtomicU64>,
    mono_origin_us: AtomicU64,
    wall_offset_ms: AtomicI64,
    drift_ppm: AtomicI64,
}

impl SimClock {
    /// The simulated instant (µs) from which this clock reads `mono_ms` or
    /// more: a lease until `mono_ms` lets the host serve before it.
    fn instant_of(&self, mono_ms: u64) -> u64 {
        if mono_ms == u64::MAX {
            return u64::MAX;
        }
        let origin = self.mono_origin_us.load(Relaxed);
        origin.saturating_add(mono_ms.saturating_sub(1).saturating_mul(1_000))
    }
}

impl Clock for SimClock {
    fn now(&self) -> Now {
        let now_us = self.world_us.load(Relaxed);
        let mono_ms = now_us.saturating_sub(self.mono_origin_us.load(Relaxed)) / 1_000 + 1;
        let elapsed_ms = (now_us / 1_000) as i64;
        let drift = elapsed_ms * self.drift_ppm.load(Relaxed) / 1_000_000;
        let wall_ms = (WALL_BASE_MS + now_us / 1_000)
            .saturating_add_signed(self.wall_offset_ms.load(Relaxed) + drift);
        Now { wall_ms, mono_ms }
    }
}

/// A request the node handed to its driver and waits on.
enum Pending {
    Term {
        request: Request,
        issued: Issued,
        /// A synced write was made since it was handed over.
        synced: bool,
    },
    /// A membership change or a leadership transfer, asked by the nemesis.
    Admin(&'static str),
}

pub struct SimNode {
    pub id: u64,
    pub disk: Disk,
    clock: Arc<SimClock>,
    faults: Arc<GuestFaults>,
    events_tx: UnboundedSender<Event>,
    events_rx: UnboundedReceiver<Event>,
    instance: Option<Instance>,
    /// The process runs (false between a power loss and the restart).
    pub up: bool,
    /// Process starts so far.
    pub incarnation: u64,
    /// Instances built so far (a tick or rebuild for an older one is void).
    pub builds: u64,
    term: TermMachine,
    alloc: Allocator,
    pending: BTreeMap<u64, Pending>,
    next_request: u64,
    backoff_ms: u64,
    /// Serving terms so far, across restarts: names a term in the history.
    serving_terms: u64,
    serving: bool,
    last_report: Option<Leadership>,
    /// A hang was injected and has not fired yet.
    hang_injected: bool,
    /// Why the last client was refused while serving (traced on change).
    refusal: Option<GrantError>,
    /// Events for this node wait until then (a stop-the-world pause)...
    pub paused_until_us: u64,
    /// ... here, in the order they came.
    pub deferred: Vec<Ev>,
}

fn void_report() -> Leadership {
    Leadership {
        role: Role::Follower,
        leader: None,
        epoch: Epoch { hi: 0, lo: 0 },
        lease_until_ms: 0,
    }
}

impl SimNode {
    pub fn new(id: u64, world_us: Arc<AtomicU64>, window_ms: u64) -> SimNode {
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        SimNode {
            id,
            disk: Disk::default(),
            clock: Arc::new(SimClock {
                world_us,
                mono_origin_us: AtomicU64::new(0),
                wall_offset_ms: AtomicI64::new(0),
                drift_ppm: AtomicI64::new(0),
            }),
            faults: Arc::default(),
            events_tx,
            events_rx,
            instance: None,
            up: false,
            incarnation: 0,
            builds: 0,
            term: TermMachine::new(id, 0, false),
            alloc: Allocator::new(window_ms),
            pending: BTreeMap::new(),
            next_request: 1,
            backoff_ms: MIN_BACKOFF.as_millis() as u64,
            serving_terms: 0,
            serving: false,
            last_report: None,
            hang_injected: false,
            refusal: None,
            paused_until_us: 0,
            deferred: Vec::new(),
        }
    }

    pub fn now(&self) -> Now {
        self.clock.now()
    }

    /// The epoch this node leads in, if it does.
    pub fn leading(&self) -> Option<Epoch> {
        self.up.then(|| self.term.epoch()).flatten()
    }

    pub fn inject(&mut self, fault: GuestFault) {
        self.hang_injected |= fault == GuestFault::Hang;
        self.faults.inject(fault);
    }

    /// Withdraw every fault waiting to fire: in the guest, on the disk,
    /// and any pause.
    pub fn calm(&mut self) {
        self.faults.clear();
        self.hang_injected = false;
        self.disk.fail_writes(0);
        self.disk.fail_reads(0);
        self.paused_until_us = 0;
    }

    /// Step the wall clock by `step_ms` and set its drift.
    pub fn skew_clock(&self, step_ms: i64, drift_ppm: i64) {
        self.clock.wall_offset_ms.fetch_add(step_ms, Relaxed);
        self.clock.drift_ppm.store(drift_ppm, Relaxed);
    }

    /// The process starts: a fresh host (term machine, allocator, monotonic
    /// clock) over what the disk kept.
    pub fn start(&mut self, w: &mut World) {
        self.up = true;
        self.incarnation += 1;
        self.clock.mono_origin_us.store(w.now_us, Relaxed);
        self.term = TermMachine::new(self.id, 0, false);
        self.alloc = Allocator::new(w.spec.window_ms);
        self.serving = false;
        self.last_report = None;
        self.backoff_ms = MIN_BACKOFF.as_millis() as u64;
        w.note(self.id, format!("process starts (#{})", self.incarnation));
        w.schedule(0, Ev::HostTick(self.id, self.incarnation));
        self.build(w);
    }

    /// The power goes: the process is gone, and so is every write the
    /// driver did not sync.
    pub fn power_off(&mut self, w: &mut World) {
        let unsynced = self.disk.has_unsynced();
        self.instance = None;
        while self.events_rx.try_recv().is_ok() {}
        self.pending.clear();
        self.disk.power_loss();
        self.up = false;
        self.serving = false;
        w.history.stopped_serving(self.id);
        self.paused_until_us = 0;
        self.deferred.clear();
        w.note(
            self.id,
            if unsynced {
                "POWER LOSS: the process dies; unsynced writes are dropped"
            } else {
                "POWER LOSS: the process dies (no unsynced writes)"
            },
        );
    }

    fn build(&mut self, w: &mut World) {
        self.builds += 1;
        let build = self.builds;
        let setup = Setup {
            config: Config {
                node_id: self.id,
                peers: w.peers.clone(),
                bootstrap: true,
                floor: 0,
                seed: w.spec.seed ^ (self.id << 48) ^ build.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                options: w.spec.options.clone(),
            },
            storage: Arc::new(self.disk.clone()),
            clock: self.clock.clone(),
            events: self.events_tx.clone(),
            faults: self.faults.clone(),
            memory_limit: w.spec.memory_limit,
            call_timeout: w.spec.call_timeout,
            instant_hangs: true,
            observe_writes: true,
        };
        w.calls += 1;
        match Instance::build(&w.driver, setup) {
            Ok(instance) => {
                self.instance = Some(instance);
                self.backoff_ms = MIN_BACKOFF.as_millis() as u64;
                w.note(self.id, format!("driver instance #{build} started"));
                w.schedule(0, Ev::DriverTick(self.id, build));
                self.pump(w);
            }
            Err(BuildError::Crashed(reason)) => {
                self.lost(w, reason);
                self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF.as_millis() as u64);
            }
            Err(BuildError::Refused(error)) => {
                if self.builds == 1 {
                    w.setup_error = Some(format!(
                        "the driver refused its configuration on node {}: {}",
                        self.id,
                        describe(&error)
                    ));
                    return;
                }
                self.lost(w, format!("init refused: {}", describe(&error)));
                self.backoff_ms = MAX_BACKOFF.as_millis() as u64;
            }
        }
    }

    /// The instance is gone (a trap, an overrun, exhausted memory): fail
    /// what it held and rebuild it after the backoff, as the actor does.
    fn lost(&mut self, w: &mut World, reason: String) {
        // A hang the nemesis did not inject is a real loop: it costs real
        // time (the per-call limit) on every call, so the run stops here.
        if reason.contains("ran longer than the per-call limit")
            && !std::mem::take(&mut self.hang_injected)
        {
            w.violation(
                self.id,
                format!(
                    "the driver loops: {} (no hang was injected; a call that does not return \
                     stops the node until the host rebuilds the instance)",
                    summary(&reason)
                ),
            );
            return;
        }
        if let Some(instance) = self.instance.take() {
            instance.release();
        }
        w.note(self.id, format!("instance lost: {}", summary(&reason)));
        self.last_report = None;
        w.instance_losses += 1;
        let effects = self.term.lose(&mut self.alloc);
        self.apply(w, effects);
        w.schedule(self.backoff_ms * 1_000, Ev::Rebuild(self.id, self.builds));
        self.pump(w);
    }

    /// A scheduled rebuild of the instance lost after build `build`.
    pub fn rebuild(&mut self, w: &mut World, build: u64) {
        if self.up && self.instance.is_none() && self.builds == build {
            self.build(w);
        }
    }

    /// The driver's tick, if it is for the running instance.
    pub fn driver_tick(&mut self, w: &mut World, build: u64) {
        if build != self.builds {
            return;
        }
        let Some(instance) = &mut self.instance else {
            return;
        };
        let now_ms = self.clock.now().mono_ms;
        w.calls += 1;
        match instance.tick(now_ms) {
            Ok(wake_at_ms) => {
                let wait_ms = wake_at_ms
                    .saturating_sub(now_ms)
                    .clamp(1, MAX_TICK_INTERVAL.as_millis() as u64);
                w.schedule(wait_ms * 1_000, Ev::DriverTick(self.id, build));
                self.pump(w);
            }
            Err(reason) => self.lost(w, reason),
        }
    }

    /// A peer message arrives (lost if no instance runs, as in the actor).
    pub fn deliver(&mut self, w: &mut World, from: u64, payload: Vec<u8>) {
        let Some(instance) = &mut self.instance else {
            return;
        };
        w.calls += 1;
        match instance.messages(vec![(from, payload)]) {
            Ok(()) => self.pump(w),
            Err(reason) => self.lost(w, reason),
        }
    }

    /// The host's periodic check (as the coordinator's interval).
    pub fn host_tick(&mut self, w: &mut World, incarnation: u64) {
        if !self.up || incarnation != self.incarnation {
            return;
        }
        let every_ms = (w.spec.window_ms / 6).clamp(5, 1000);
        w.schedule(every_ms * 1_000, Ev::HostTick(self.id, incarnation));
        self.term_tick(w);
    }

    fn term_tick(&mut self, w: &mut World) {
        let effects = self.term.on_tick(&mut self.alloc, self.clock.now());
        self.apply(w, effects);
        self.pump(w);
    }

    /// A client asks this node for `count` timestamps.
    pub fn client(&mut self, w: &mut World, count: u64) {
        if !self.up {
            return;
        }
        let now = self.clock.now();
        match self.alloc.grant(count, now) {
            Ok(grant) => {
                let term = (self.id, self.serving_terms);
                if let Err(violation) = w.history.grant(w.now_us, term, grant.first.0, count) {
                    w.violation(self.id, violation);
                    return;
                }
                if self.alloc.extension_due(now).is_some() {
                    self.term_tick(w);
                }
            }
            Err(error) => {
                if self.serving && self.refusal != Some(error) {
                    w.note(self.id, format!("refuses clients while serving: {error}"));
                }
                self.refusal = Some(error);
                if error == GrantError::WindowExhausted {
                    self.term_tick(w);
                }
                return;
            }
        }
        self.refusal = None;
    }

    /// The nemesis asks this node's driver for a membership change or a
    /// leadership transfer.
    pub fn admin(
        &mut self,
        w: &mut World,
        what: &'static str,
        command: impl FnOnce(u64) -> Command,
    ) {
        let request = self.next_request;
        self.next_request += 1;
        self.pending.insert(request, Pending::Admin(what));
        self.send(w, command(request));
        self.pump(w);
    }

    /// Hand a command to the instance; without one, it fails at once.
    fn send(&mut self, w: &mut World, command: Command) {
        let Some(instance) = &mut self.instance else {
            let request = match command {
                Command::LoadHighWater { request }
                | Command::PersistHighWater { request, .. }
                | Command::ChangeMembership { request, .. }
                | Command::TransferLeadership { request, .. } => request,
                Command::Shutdown | Command::Stats { .. } => return,
            };
            let _ = self.events_tx.send(Event::Completed {
                request,
                outcome: Err(DriverError::Internal(
                    "the driver is restarting after a failure".into(),
                )),
            });
            return;
        };
        w.calls += 1;
        if let Err(reason) = instance.command(command) {
            self.lost(w, reason);
        }
    }

    /// Handle everything the driver did, and what that causes, until
    /// nothing is left.
    fn pump(&mut self, w: &mut World) {
        while let Ok(event) = self.events_rx.try_recv() {
            if w.violation.is_some() {
                return;
            }
            self.on_event(w, event);
        }
    }

    fn on_event(&mut self, w: &mut World, event: Event) {
        match event {
            Event::Leadership(report) => {
                let leads = report.role == Role::Leader && report.leader == Some(self.id);
                let last = self.last_report.unwrap_or_else(void_report);
                if (report.role, report.leader, report.epoch)
                    != (last.role, last.leader, last.epoch)
                {
                    w.note(self.id, shown_report(&report, self.clock.now().mono_ms));
                }
                self.last_report = Some(report);
                // A report without a live lease vouches for nothing the host
                // could serve under (an instance that restored a leader vote
                // from storage reports so until it hears from a quorum).
                let vouched = leads && report.lease_until_ms > self.clock.now().mono_ms;
                if vouched
                    && let Err(violation) = w.history.leading(self.id, self.builds, report.epoch)
                {
                    w.violation(self.id, violation);
                    return;
                }
                let effects = self.term.on_leadership(&mut self.alloc, report);
                self.apply(w, effects);
                if vouched && self.serving {
                    // A violation is recorded and stops the run.
                    let _ = self.check_lease(w);
                }
            }
            Event::Completed { request, outcome } => match self.pending.remove(&request) {
                Some(Pending::Term {
                    request,
                    issued,
                    synced,
                }) => self.completed(w, request, issued, synced, outcome),
                Some(Pending::Admin(what)) => {
                    w.note(self.id, format!("{what} → {}", shown(&outcome)));
                    w.admin_answered(what, &outcome);
                }
                None => {}
            },
            Event::Send { to, payload } => w.send(self.id, to, payload),
            Event::Wrote { sync: true } => {
                for pending in self.pending.values_mut() {
                    if let Pending::Term { synced, .. } = pending {
                        *synced = true;
                    }
                }
            }
            Event::Membership(members) => {
                let ids: Vec<String> = members.iter().map(|p| p.id.to_string()).collect();
                w.note(self.id, format!("membership [{}]", ids.join(",")));
            }
            Event::Wrote { sync: false }
            | Event::SendDropped
            | Event::Started(_)
            | Event::Crashed { .. } => {}
        }
    }

    fn completed(
        &mut self,
        w: &mut World,
        request: Request,
        issued: Issued,
        synced: bool,
        outcome: Result<u64, DriverError>,
    ) {
        let what = match request {
            Request::Load { .. } => "load".to_string(),
            Request::Start { target, .. } | Request::Extend { target, .. } => {
                format!("persist ≥ {target}")
            }
        };
        w.note(
            self.id,
            format!("{what} (epoch {}) → {}", request.epoch(), shown(&outcome)),
        );
        if let Ok(value) = outcome {
            let checked = match request.target() {
                None => w.history.loaded(self.id, issued, value),
                Some(at_least) => {
                    if !synced && w.spec.nodes == 1 {
                        Err(format!(
                            "a persist completed before any synced write: node {}'s driver \
                             answered {value} without a storage-write with sync after the \
                             persist was handed to it; the value would not survive a power loss",
                            self.id
                        ))
                    } else {
                        w.history.persisted(self.id, issued, at_least, value)
                    }
                }
            };
            if let Err(violation) = checked {
                w.violation(self.id, violation);
                return;
            }
        }
        let effects = self
            .term
            .on_completed(&mut self.alloc, request, outcome, self.clock.now());
        self.apply(w, effects);
    }

    fn apply(&mut self, w: &mut World, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(request) => {
                    let id = self.next_request;
                    self.next_request += 1;
                    self.pending.insert(
                        id,
                        Pending::Term {
                            request,
                            issued: w.history.issue(),
                            synced: false,
                        },
                    );
                    self.send(w, request.command(id));
                }
                Effect::Serving { high_water } => {
                    self.serving = true;
                    self.serving_terms += 1;
                    w.note(self.id, format!("SERVING below high water {high_water} ms"));
                    if self.check_lease(w).is_err() {
                        return;
                    }
                }
                Effect::Stopped => {
                    w.history.stopped_serving(self.id);
                    if std::mem::take(&mut self.serving) {
                        w.note(self.id, "stopped serving");
                    }
                }
                Effect::Extended { .. } | Effect::Settled => {}
            }
        }
    }

    /// Tell the checker this node serves under the lease its driver
    /// reported last; a violation is recorded (and returned) if another
    /// serving node's lease is still running.
    fn check_lease(&mut self, w: &mut World) -> Result<(), ()> {
        let Some(report) = self.last_report else {
            return Ok(());
        };
        let until_us = self.clock.instant_of(report.lease_until_ms);
        w.history
            .serves_under(w.now_us, self.id, report.epoch, until_us)
            .map_err(|violation| w.violation(self.id, violation))
    }

    /// The cluster's members, for a membership change.
    pub fn peer(&self) -> Peer {
        Peer {
            id: self.id,
            address: address_of(self.id),
        }
    }
}

/// The peer address a simulated node is known by (a label: nothing dials it).
pub fn address_of(id: u64) -> String {
    format!("10.0.0.{id}:7374")
}

fn shown(outcome: &Result<u64, DriverError>) -> String {
    match outcome {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("error: {}", describe(e)),
    }
}

fn shown_report(report: &Leadership, now_ms: u64) -> String {
    let role = match report.role {
        Role::Leader => {
            return format!(
                "LEADER in epoch {}, lease for {} ms",
                report.epoch,
                report.lease_until_ms.saturating_sub(now_ms)
            );
        }
        Role::Follower => "follower",
        Role::Candidate => "candidate",
    };
    match report.leader {
        Some(leader) => format!("{role} of n{leader} in epoch {}", report.epoch),
        None => format!("{role}, no leader known, epoch {}", report.epoch),
    }
}
