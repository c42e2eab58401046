//! The harness shared by the guest fuzz targets: one driver core started
//! natively on the SDK's simulation host ([`SimHost`]), fed what a fuzz
//! input describes — messages from peers ([`run_messages`]) or the contents
//! of its storage ([`run_storage`]) — and a seed writer for both input
//! formats ([`MessageEvent::encode`], [`encode_storage`]), used by
//! `examples/gen_seeds.rs` with traffic and storage of a real simulated
//! cluster.
//!
//! Time runs as in [`SimCluster`](tsohost_guest_sdk::sim::cluster::SimCluster):
//! the clock starts at 1000 ms and advances one millisecond at a time; in
//! each millisecond the messages due are delivered first, then the instance
//! is ticked if it asked to be. Node `n` gets the config the simulated
//! cluster would give its first instance (seed `n * 1000 + n`, peers
//! 1, 2, 3), so a recorded conversation replays exactly.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::rc::Rc;
use std::sync::{Mutex, Once, OnceLock};

pub use tsohost_driver_paxos::core::PaxosDriver;
pub use tsohost_driver_raft::core::RaftDriver;
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::sim::cluster::{config, options};
use tsohost_guest_sdk::sim::{MemStorage, SimClock, SimHost};
use tsohost_guest_sdk::{Driver, Epoch, NodeId};

/// The driver options of every instance: frequent snapshots, so that
/// snapshot messages and records appear in short runs.
pub const OPTIONS: &[(&str, &str)] = &[("snapshot-every", "8")];

/// The cluster every scenario is a node of.
pub const PEERS: &[NodeId] = &[1, 2, 3];

/// The clock when an instance starts.
pub const START_MS: u64 = 1_000;

/// At most this many events of a message input are delivered.
pub const MAX_EVENTS: usize = 256;

/// Time run after the last message, or after `init` in a storage input.
pub const SETTLE_MS: u64 = 1_500;

/// A cursor over fuzz input.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Read from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader(data)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// One instance of a driver on a simulation host, with the cluster
/// harness's notion of time.
pub struct Instance<D> {
    /// The host (storage, clock, everything emitted).
    pub host: Rc<SimHost>,
    /// The instance.
    pub driver: D,
    next_tick: u64,
    ticked: bool,
    next_request: u64,
}

impl<D: Driver> Instance<D> {
    /// `init` node `node` on `storage` at [`START_MS`]; `peers` as its
    /// `config.peers`. `init`'s error is returned.
    pub fn start(
        node: NodeId,
        peers: &[NodeId],
        bootstrap: bool,
        storage: MemStorage,
    ) -> Result<Self, tsohost_guest_sdk::DriverError> {
        let clock = SimClock::default();
        clock.set(START_MS);
        let host = Rc::new(SimHost::new(node, storage, clock));
        let cfg = config(
            node,
            peers,
            bootstrap,
            node * 1000 + node,
            &options(OPTIONS),
        );
        let driver = D::init(host.clone(), &cfg)?;
        let mut i = Instance {
            host,
            driver,
            next_tick: START_MS,
            // The simulated cluster starts nodes, then steps to 1001.
            ticked: true,
            next_request: 1,
        };
        i.discard();
        Ok(i)
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        self.host.clock.now()
    }

    /// Drop what the instance emitted (nobody routes it).
    fn discard(&mut self) {
        self.host.outbox.borrow_mut().clear();
        self.host.logs.borrow_mut().clear();
        self.host.reports.borrow_mut().clear();
        self.host.completions.borrow_mut().clear();
        self.host.memberships.borrow_mut().clear();
    }

    /// Tick if this millisecond's tick is due and not done yet.
    fn tick_phase(&mut self) {
        let now = self.now();
        if !self.ticked && self.next_tick <= now {
            self.next_tick = self.driver.on_tick(now);
            assert!(
                self.next_tick > now,
                "next tick {} not after {now}",
                self.next_tick
            );
            self.discard();
        }
        self.ticked = true;
    }

    /// Advance `ms` milliseconds, ticking as the simulated cluster does.
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.tick_phase();
            self.host.clock.set(self.now() + 1);
            self.ticked = false;
        }
    }

    /// Deliver `payload` from `from` now.
    pub fn deliver(&mut self, from: NodeId, payload: &[u8]) {
        self.driver.on_message(from, payload);
        self.discard();
    }

    /// Issue `load-high-water` and `persist-high-water` (under the epoch
    /// last reported, if any) so that they read what storage holds.
    pub fn requests(&mut self, at_least: u64) {
        let epoch = self
            .host
            .last_report()
            .map_or(Epoch { hi: 0, lo: 0 }, |r| r.epoch);
        let r = self.next_request;
        self.next_request += 2;
        self.driver.load_high_water(r);
        self.driver.persist_high_water(r + 1, at_least, epoch);
        self.discard();
    }
}

/// A message input's scenario: which node runs, and how it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Node 3 of 1, 2, 3 with empty storage, not bootstrapping: a learner
    /// waiting for a leader to replicate to it.
    Joiner,
    /// Node 1 of 1, 2, 3 with empty storage, bootstrapping the cluster: it
    /// campaigns (sends requests, so responses have something to answer).
    Bootstrapper,
}

impl Scenario {
    /// The scenario of an input's first byte.
    pub fn from_byte(b: u8) -> Self {
        if b & 1 == 0 {
            Scenario::Joiner
        } else {
            Scenario::Bootstrapper
        }
    }

    /// The first byte of an input of this scenario.
    pub fn byte(self) -> u8 {
        match self {
            Scenario::Joiner => 0,
            Scenario::Bootstrapper => 1,
        }
    }

    /// The node under test.
    pub fn node(self) -> NodeId {
        match self {
            Scenario::Joiner => 3,
            Scenario::Bootstrapper => 1,
        }
    }
}

/// One event of a message input: advance `dt_ms`, then deliver `payload`
/// from `from`.
#[derive(Debug, Clone)]
pub struct MessageEvent {
    /// The sender (any id: the node itself and strangers included).
    pub from: u8,
    /// Milliseconds to advance before delivering (0: the same millisecond).
    pub dt_ms: u16,
    /// The payload, as `host.send` delivers it.
    pub payload: Vec<u8>,
}

impl MessageEvent {
    /// Append this event in the input format: `from: u8, dt_ms: u16 LE,
    /// len: u16 LE, payload`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.payload.len()).expect("payload under 64 KiB");
        out.push(self.from);
        out.extend_from_slice(&self.dt_ms.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }
}

/// A message input: `scenario: u8` ([`Scenario::from_byte`]) then events
/// ([`MessageEvent::encode`]) until the input ends, then [`SETTLE_MS`] of
/// ticks. A driver must survive whatever peers send: any panic is a crash,
/// except one raised inside the consensus library (see [`allowing_traps`]).
pub fn run_messages<D: Driver>(data: &[u8]) {
    allowing_traps(&[], || messages::<D>(data));
}

fn messages<D: Driver>(data: &[u8]) {
    let mut r = Reader::new(data);
    let Some(b) = r.u8() else { return };
    let scenario = Scenario::from_byte(b);
    let bootstrap = scenario == Scenario::Bootstrapper;
    let mut i = Instance::<D>::start(scenario.node(), PEERS, bootstrap, MemStorage::default())
        .expect("init on empty storage");
    for _ in 0..MAX_EVENTS {
        let (Some(from), Some(dt), Some(len)) = (r.u8(), r.u16(), r.u16()) else {
            break;
        };
        let payload = r.bytes(usize::from(len));
        i.advance(u64::from(dt));
        i.deliver(NodeId::from(from), payload);
    }
    i.requests(7);
    i.advance(SETTLE_MS);
}

/// Append a storage record in the input format: `key_len: u8, key,
/// value_len: u16 LE, value`.
pub fn encode_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.push(u8::try_from(key.len()).expect("key under 256 bytes"));
    out.extend_from_slice(key);
    let len = u16::try_from(value.len()).expect("value under 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

/// A storage input's first byte: bits 0-1 pick the node (1, 2, 3; 3 → 1),
/// bit 2 bootstraps, bit 3 starts it without peers (a single-node cluster).
pub fn storage_header(node: NodeId, bootstrap: bool, peerless: bool) -> u8 {
    (node as u8 & 3) | (u8::from(bootstrap) << 2) | (u8::from(peerless) << 3)
}

/// A whole storage input.
pub fn encode_storage(header: u8, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![header];
    for (k, v) in records {
        encode_record(&mut out, k, v);
    }
    out
}

/// A storage input ([`storage_header`], then records as
/// [`encode_record`] writes them): storage holding those records, then
/// `init`, which must fail with an error or run; then a load and a persist
/// and [`SETTLE_MS`] of ticks. A panic whose message starts with one of
/// `traps` is a deliberate trap of the driver (the host re-creates the
/// instance) and passes; so does, unless strict, one raised inside the
/// consensus library (see [`allowing_traps`]); any other is a crash.
pub fn run_storage<D: Driver>(traps: &'static [&'static str], data: &[u8]) {
    let mut r = Reader::new(data);
    let Some(header) = r.u8() else { return };
    let node = match header & 3 {
        0 | 1 => 1,
        n => NodeId::from(n),
    };
    let bootstrap = header & 4 != 0;
    let peers: &[NodeId] = if header & 8 != 0 { &[] } else { PEERS };
    let storage = MemStorage::default();
    let writer = SimHost::new(node, storage.clone(), SimClock::default());
    let mut puts = Vec::new();
    while !r.is_empty() {
        let klen = r.u8().unwrap_or(0);
        let key = r.bytes(usize::from(klen)).to_vec();
        let vlen = r.u16().unwrap_or(0);
        let value = r.bytes(usize::from(vlen)).to_vec();
        puts.push((key, value));
    }
    writer
        .storage_write(&puts, &[], true)
        .expect("memory storage");
    allowing_traps(traps, || {
        let Ok(mut i) = Instance::<D>::start(node, peers, bootstrap, storage) else {
            return;
        };
        i.advance(1);
        i.requests(9);
        i.advance(SETTLE_MS);
    });
}

/// Source paths of the consensus libraries. openraft (with `validit`, its
/// invariant checker) and omnipaxos trust their peers and their storage
/// (crash faults only): fed a well-formed message that no correct peer
/// sends (a forged vote, an append past the log's end) or records no
/// correct store holds, they panic by design. The host survives that (a
/// guest panic is a trap; the instance is re-created), so by default such
/// panics pass, each place reported once on stderr; with
/// `TSOHOST_FUZZ_STRICT=1` in the environment they are crashes. Both are
/// vendored (`vendor/openraft/src/`, `vendor/omnipaxos/src/`); the
/// registry paths cover their own dependencies' crates.
pub const LIBRARY_SOURCES: &[&str] = &[
    "/openraft/src/",
    "/openraft-",
    "/validit-",
    "/omnipaxos/src/",
    "/omnipaxos-",
];

thread_local! {
    static TRAPS: Cell<Option<&'static [&'static str]>> = const { Cell::new(None) };
}

fn strict() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("TSOHOST_FUZZ_STRICT").is_ok_and(|v| v == "1"))
}

/// The message of a panic.
fn message(info: &PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        String::new()
    }
}

/// Whether a panic passes (see [`run_storage`], [`LIBRARY_SOURCES`]).
fn passes(info: &PanicHookInfo<'_>, traps: &[&str]) -> bool {
    let msg = message(info);
    if traps.iter().any(|t| msg.starts_with(t)) {
        return true;
    }
    let Some(loc) = info.location() else {
        return false;
    };
    if strict() || !LIBRARY_SOURCES.iter().any(|p| loc.file().contains(p)) {
        return false;
    }
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let place = format!("{}:{}", loc.file(), loc.line());
    if SEEN.lock().unwrap().insert(place.clone()) {
        let first = msg.lines().next().unwrap_or("");
        let first: String = first.chars().take(300).collect();
        eprintln!("fuzz: passed a consensus-library panic at {place}: {first}");
    }
    true
}

/// Run `f` as the host runs a guest call: a panic that passes (`traps`, or
/// [`LIBRARY_SOURCES`]) unwinds out of it (returning `None`, the instance
/// is dropped) instead of reaching libFuzzer's hook, which aborts; any
/// other panic goes to that hook (a crash).
pub fn allowing_traps<R>(traps: &'static [&'static str], f: impl FnOnce() -> R) -> Option<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let pass = TRAPS
                .with(Cell::get)
                .is_some_and(|traps| passes(info, traps));
            if !pass {
                previous(info);
            }
        }));
    });
    TRAPS.with(|t| t.set(Some(traps)));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    TRAPS.with(|t| t.set(None));
    out.ok()
}

/// The raft driver's deliberate trap: openraft stopped on a storage error
/// (`RaftDriver::leadership`), so the host re-creates the instance.
pub const RAFT_TRAPS: &[&str] = &["openraft stopped"];

/// The paxos driver's deliberate trap: a failed storage write while
/// switching configuration (`PaxosDriver`), so the host re-creates the
/// instance from storage.
pub const PAXOS_TRAPS: &[&str] = &["switching configuration failed"];
