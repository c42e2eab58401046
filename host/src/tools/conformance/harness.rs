//! One node of the driver under check, run synchronously: its disk
//! ([`Disk`], with power loss), its current guest [`Instance`], a simulated
//! clock, and the ordered journal of what the instance did.
//!
//! Why synchronous: the checker must see a completion and the storage
//! writes around it as one ordered sequence (the sandbox reports each
//! write as [`Event::Wrote`] in order with the guest's other events), and
//! must be deterministic and fast. Time reaches a driver only as `now-ms`
//! and `on-tick`, so a clock advanced here to the next tick the driver
//! asks for runs timer-driven drivers (elections, retries) without waiting.
//!
//! Invariants:
//! - every (re-)instantiation is preceded by [`Disk::power_loss`], so state
//!   a driver kept in unsynced writes is gone, as after a crash of the
//!   machine;
//! - the component is compiled once, by the caller: every instance is
//!   built from the same [`LoadedDriver`];
//! - every trap or overrun, in `init` or in any later call, is recorded in
//!   the [`Lab`], whatever step it happened in.

use crate::allocator::Now;
use crate::clock::Clock;
use crate::driver::bindings::{Config, DriverError, Epoch, Peer, Role, describe};
use crate::driver::instance::{BuildError, Instance, Setup, summary};
use crate::driver::{Command, Event, LoadedDriver};
use crate::sim::disk::Disk;
use crate::storage::Storage;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The node the driver runs as: alone in its cluster.
pub const NODE: u64 = 1;
/// Guest memory cap: generous, so only a driver that allocates without
/// bound hits it.
pub const MEMORY_LIMIT: usize = 256 << 20;
/// Per-call time limit (real time: it bounds a guest that loops).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Simulated time a driver gets to do what is asked (lead, complete a
/// request): well above any sane election timeout.
pub const BUDGET_MS: u64 = 60_000;
/// Longest simulated step between two ticks, whatever the driver asks:
/// the node's actor's bound.
const MAX_TICK_MS: u64 = crate::driver::actor::MAX_TICK_INTERVAL.as_millis() as u64;

/// A monotonic clock that only moves when the harness moves it; the wall
/// clock is a fixed origin plus it.
pub struct SimClock {
    mono_ms: AtomicU64,
}

/// An arbitrary wall-clock origin (2026-01-01): drivers see only `now-ms`.
const WALL_ORIGIN_MS: u64 = 1_767_225_600_000;

impl SimClock {
    fn new() -> SimClock {
        // From 1: 0 means "never" to the host.
        SimClock {
            mono_ms: AtomicU64::new(1),
        }
    }

    fn mono_ms(&self) -> u64 {
        self.mono_ms.load(Ordering::SeqCst)
    }

    fn advance_to(&self, ms: u64) {
        self.mono_ms.fetch_max(ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Now {
        let mono_ms = self.mono_ms();
        Now {
            wall_ms: WALL_ORIGIN_MS + mono_ms,
            mono_ms,
        }
    }
}

/// What every node of one check shares: the component, its options, the
/// clock, and every instance lost to a trap or an overrun.
pub struct Lab<'a> {
    pub driver: &'a LoadedDriver,
    pub options: &'a [(String, String)],
    clock: Arc<SimClock>,
    crashes: RefCell<Vec<String>>,
    built: Cell<u64>,
}

impl<'a> Lab<'a> {
    pub fn new(driver: &'a LoadedDriver, options: &'a [(String, String)]) -> Lab<'a> {
        Lab {
            driver,
            options,
            clock: Arc::new(SimClock::new()),
            crashes: RefCell::default(),
            built: Cell::default(),
        }
    }

    /// Every trap or overrun so far, described.
    pub fn crashes(&self) -> Vec<String> {
        self.crashes.borrow().clone()
    }

    /// Instances built so far (those whose `init` failed included).
    pub fn instances(&self) -> u64 {
        self.built.get()
    }

    fn crashed(&self, reason: &str) {
        self.crashes.borrow_mut().push(reason.to_string());
    }
}

/// Why an instance did not start.
#[derive(Debug)]
pub enum StartFailure {
    /// `init` returned an error.
    Refused(DriverError),
    /// Instantiation or `init` trapped or overran (already recorded).
    Trapped(String),
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Refused(e) => write!(f, "init refused: {}", describe(e)),
            StartFailure::Trapped(reason) => write!(f, "init trapped: {reason}"),
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Completed through `host.completed`.
    Done(Result<u64, DriverError>),
    /// Not completed within [`BUDGET_MS`] of simulated time.
    Silent,
    /// The call, or a tick while waiting for the completion, trapped or
    /// overran: the instance is gone.
    Trapped(String),
    /// No instance to ask: `init` failed or an earlier call lost it.
    NoInstance,
}

impl Reply {
    pub fn ok(&self) -> Option<u64> {
        match self {
            Reply::Done(Ok(v)) => Some(*v),
            _ => None,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Done(Ok(v)) => write!(f, "ok({v})"),
            Reply::Done(Err(e)) => write!(f, "error: {}", describe(e)),
            Reply::Silent => write!(
                f,
                "no completion within {} s of simulated time, ticked as asked (was \
                 `completed` called?)",
                BUDGET_MS / 1000
            ),
            Reply::Trapped(reason) => write!(f, "the instance was lost: {reason}"),
            Reply::NoInstance => write!(f, "not asked: no instance runs"),
        }
    }
}

/// A persist's reply and where it stands in the ordered journal.
#[derive(Debug, Clone)]
pub struct Persisted {
    pub reply: Reply,
    /// Whether a `storage-write` with `sync` happened after the persist was
    /// handed to the driver and before it completed.
    pub synced_before: bool,
    /// The instance's journal from the hand-over through the completion,
    /// in words (for a failure's detail).
    pub trace: String,
}

/// What an instance did that the rules judge, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Wrote { sync: bool },
    Completed(u64, Result<u64, DriverError>),
    Leader(Epoch),
    NotLeader,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Wrote { sync: true } => write!(f, "storage-write(sync=true)"),
            Seen::Wrote { sync: false } => write!(f, "storage-write(sync=false)"),
            Seen::Completed(request, Ok(v)) => write!(f, "completed({request}, ok {v})"),
            Seen::Completed(request, Err(e)) => {
                write!(f, "completed({request}, {})", describe(e))
            }
            Seen::Leader(epoch) => write!(f, "report-leadership(leader, {epoch})"),
            Seen::NotLeader => write!(f, "report-leadership(not leader)"),
        }
    }
}

/// How a wait ended.
enum Waited<T> {
    Found(T),
    OutOfTime,
    Lost(String),
}

/// One node: a disk and the instance running on it, if any.
pub struct Subject<'l, 'a> {
    lab: &'l Lab<'a>,
    disk: Disk,
    floor: u64,
    tx: UnboundedSender<Event>,
    rx: UnboundedReceiver<Event>,
    instance: Option<Instance>,
    /// The current instance's journal.
    journal: Vec<Seen>,
    /// The epoch the current instance leads in, per its latest report.
    leading: Option<Epoch>,
    /// Every epoch the current instance reported leading in, in order.
    led_in: Vec<Epoch>,
    next_tick_ms: u64,
    next_request: u64,
}

impl<'l, 'a> Subject<'l, 'a> {
    /// A node on an empty disk, started with `floor`; no instance yet.
    pub fn new(lab: &'l Lab<'a>, floor: u64) -> Self {
        let (tx, rx) = unbounded_channel();
        Subject {
            lab,
            disk: Disk::default(),
            floor,
            tx,
            rx,
            instance: None,
            journal: Vec::new(),
            leading: None,
            led_in: Vec::new(),
            next_tick_ms: 0,
            next_request: 1,
        }
    }

    /// Drop the running instance (if any), cut the power, and build a fresh
    /// instance with the lab's options.
    pub fn start(&mut self) -> Result<(), StartFailure> {
        let options = self.lab.options.to_vec();
        self.start_with(options)
    }

    /// [`Subject::start`] with other options.
    pub fn start_with(&mut self, options: Vec<(String, String)>) -> Result<(), StartFailure> {
        self.stop();
        self.disk.power_loss();
        // A seed per instance, as a host gives each start its own.
        let seed = self.lab.built.get() + 1;
        self.lab.built.set(seed);
        let setup = Setup {
            config: Config {
                node_id: NODE,
                peers: vec![Peer {
                    id: NODE,
                    address: "127.0.0.1:0".into(),
                }],
                bootstrap: true,
                floor: self.floor,
                seed,
                options,
            },
            storage: Arc::new(self.disk.clone()) as Arc<dyn Storage>,
            clock: self.lab.clock.clone(),
            events: self.tx.clone(),
            faults: Arc::default(),
            memory_limit: MEMORY_LIMIT,
            call_timeout: CALL_TIMEOUT,
            instant_hangs: true,
            observe_writes: true,
        };
        match Instance::build(self.lab.driver, setup) {
            Ok(instance) => {
                self.instance = Some(instance);
                self.next_tick_ms = self.lab.clock.mono_ms();
                self.drain();
                Ok(())
            }
            Err(BuildError::Refused(error)) => {
                self.discard_events();
                Err(StartFailure::Refused(error))
            }
            Err(BuildError::Crashed(reason)) => {
                let reason = summary(&reason).to_string();
                self.discard_events();
                self.lab.crashed(&reason);
                Err(StartFailure::Trapped(reason))
            }
        }
    }

    /// Drop the instance, failing what it held; its journal goes with it.
    fn stop(&mut self) {
        if let Some(instance) = self.instance.take() {
            instance.release();
        }
        self.discard_events();
        self.journal.clear();
        self.leading = None;
        self.led_in.clear();
    }

    /// The instance trapped or overran: record it and drop the instance;
    /// the reason, on one line. What the release fails is not the driver's
    /// answer, so it is not journaled.
    fn lose(&mut self, reason: &str) -> String {
        let reason = summary(reason).to_string();
        self.lab.crashed(&reason);
        if let Some(instance) = self.instance.take() {
            instance.release();
        }
        self.discard_events();
        self.leading = None;
        reason
    }

    fn discard_events(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Move what the instance did into the journal.
    fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            let seen = match event {
                Event::Wrote { sync } => Seen::Wrote { sync },
                Event::Completed { request, outcome } => Seen::Completed(request, outcome),
                Event::Leadership(l) if l.role == Role::Leader && l.leader == Some(NODE) => {
                    self.leading = Some(l.epoch);
                    if self.led_in.last() != Some(&l.epoch) {
                        self.led_in.push(l.epoch);
                    }
                    Seen::Leader(l.epoch)
                }
                Event::Leadership(_) => {
                    self.leading = None;
                    Seen::NotLeader
                }
                Event::Started(_)
                | Event::Send { .. }
                | Event::SendDropped
                | Event::Membership(_)
                | Event::Crashed { .. } => continue,
            };
            self.journal.push(seen);
        }
    }

    /// Tick the instance as it asks, on the simulated clock, until `found`
    /// finds something in the journal, the instance is lost, or
    /// [`BUDGET_MS`] of simulated time pass.
    fn run_until<T>(&mut self, mut found: impl FnMut(&Self) -> Option<T>) -> Waited<T> {
        let deadline = self.lab.clock.mono_ms() + BUDGET_MS;
        loop {
            self.drain();
            if let Some(t) = found(self) {
                return Waited::Found(t);
            }
            let Some(instance) = self.instance.as_mut() else {
                return Waited::Lost("the instance is gone".into());
            };
            if self.lab.clock.mono_ms() >= deadline {
                return Waited::OutOfTime;
            }
            self.lab.clock.advance_to(self.next_tick_ms);
            let now = self.lab.clock.mono_ms();
            match instance.tick(now) {
                Ok(wake_at) => {
                    self.next_tick_ms = wake_at.clamp(now + 1, now + MAX_TICK_MS);
                }
                Err(reason) => return Waited::Lost(self.lose(&reason)),
            }
        }
    }

    /// Wait until the instance reports that node 1 leads; the epoch.
    pub fn await_leadership(&mut self) -> Result<Epoch, Reply> {
        if self.instance.is_none() {
            return Err(Reply::NoInstance);
        }
        match self.run_until(|s| s.leading) {
            Waited::Found(epoch) => Ok(epoch),
            Waited::OutOfTime => Err(Reply::Silent),
            Waited::Lost(reason) => Err(Reply::Trapped(reason)),
        }
    }

    /// Every epoch the current instance reported leading in, in order.
    pub fn led_in(&self) -> &[Epoch] {
        &self.led_in
    }

    /// Hand the instance a request and wait for its completion; the reply
    /// and the journal position of the hand-over and of the completion.
    fn call(&mut self, make: impl FnOnce(u64) -> Command) -> (Reply, usize, Option<usize>) {
        self.drain();
        let handed_over = self.journal.len();
        let Some(instance) = self.instance.as_mut() else {
            return (Reply::NoInstance, handed_over, None);
        };
        let request = self.next_request;
        self.next_request += 1;
        if let Err(reason) = instance.command(make(request)) {
            return (Reply::Trapped(self.lose(&reason)), handed_over, None);
        }
        let completion = self.run_until(|s| {
            s.journal[handed_over..]
                .iter()
                .position(|seen| matches!(seen, Seen::Completed(r, _) if *r == request))
                .map(|i| handed_over + i)
        });
        match completion {
            Waited::Found(at) => {
                let Seen::Completed(_, outcome) = &self.journal[at] else {
                    unreachable!("the position of a completion")
                };
                (Reply::Done(outcome.clone()), handed_over, Some(at))
            }
            Waited::OutOfTime => (Reply::Silent, handed_over, None),
            Waited::Lost(reason) => (Reply::Trapped(reason), handed_over, None),
        }
    }

    pub fn load(&mut self) -> Reply {
        self.call(|request| Command::LoadHighWater { request }).0
    }

    pub fn persist(&mut self, at_least: u64, epoch: Epoch) -> Persisted {
        let (reply, from, completed_at) = self.call(|request| Command::PersistHighWater {
            request,
            at_least,
            epoch,
        });
        let until = completed_at.map_or(self.journal.len(), |at| at + 1);
        let window = &self.journal[from.min(until)..until];
        let synced_before = completed_at
            .is_some_and(|at| self.journal[from..at].contains(&Seen::Wrote { sync: true }));
        let trace = if window.is_empty() {
            "nothing".to_string()
        } else {
            window
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Persisted {
            reply,
            synced_before,
            trace,
        }
    }
}

impl Drop for Subject<'_, '_> {
    fn drop(&mut self) {
        self.stop();
    }
}
