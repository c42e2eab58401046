//! Compile time, start-up time and guest memory of each driver component,
//! for docs/benchmarks.md ("Drivers: start-up time and guest memory").
//!
//! ```sh
//! cargo run --release --example drivers -- [BUILDS] [PERSISTS] [LOADS] [DRIVER[:NODES]...]
//! ```
//!
//! A DRIVER is a built-in name or the path of a component; NODES (1, or 3
//! for a replicated driver) is the cluster it is configured for. Without
//! drivers: the built-in `file`, `raft:3` and `paxos:3`, then the example
//! drivers of examples/drivers/ that are built (JavaScript, Python, C, Zig),
//! skipping those that are not. For each one, in this process, through the
//! host's own [`Runtime`] and [`Instance`]:
//!
//! - **cold load**: [`Runtime::load`] on a fresh engine without a
//!   compilation cache (compile, validate, link, and the `info` probe, one
//!   instantiation); then **cached load**: a fresh runtime loading it from
//!   the cache another filled, as a node does on a restart; each LOADS
//!   (default 3) times, the median shown;
//! - **start-up**: BUILDS (default 200) times [`Instance::build`] on the
//!   loaded component (instantiate, `init`) on empty in-memory storage, as
//!   node 1 of its cluster (peers 1, 2, 3 for a replicated driver, none for
//!   a single-node one), with `serve`'s default limits;
//! - **guest memory** ([`Instance::memory_bytes`]): after `init`, and on
//!   the leader after PERSISTS (default 300) completed persists, the nodes
//!   of a replicated driver in this process on a zero-latency network and a
//!   clock stepped by 1 ms (no sleeping: elections cost CPU time only);
//!   and how much of it after `init` is resident: linear memory is address
//!   space under the cap, of which only touched pages take the host's RAM.
//!
//! Prints a Markdown table (the one in docs/benchmarks.md) on stdout and
//! writes the JSON report to target/bench/drivers.json.

#[allow(dead_code, unused_imports)] // this benchmark needs only `percentile`
mod common;

use common::percentile;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tsohost::allocator::Now;
use tsohost::clock::Clock;
use tsohost::driver::actor::MAX_TICK_INTERVAL;
use tsohost::driver::bindings::{Config, Peer};
use tsohost::driver::instance::{BuildError, Instance, Setup};
use tsohost::driver::{
    Command, DriverSource, Epoch, Event, GuestLimits, LoadedDriver, Role, Runtime, builtin,
};
use tsohost::storage::MemStorage;

/// Simulated time a persist run may take before it is given up: an election
/// takes seconds of it, a persist at least one 1 ms step.
const RUN_LIMIT_MS: u64 = 300_000;
/// Unix ms of the manual clock's zero; the high waters persisted start here.
const WALL_ORIGIN_MS: u64 = 1_800_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builds: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let persists: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let loads: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let drivers = if args.len() > 3 {
        args[3..].iter().map(|a| Subject::parse(a)).collect()
    } else {
        Subject::defaults()
    };
    let mut rows = Vec::new();
    for subject in &drivers {
        eprintln!("{}: {} node(s)", subject.label, subject.nodes);
        let row = measure(subject, builds, persists, loads);
        eprintln!("  {row}");
        rows.push(row);
    }
    println!(
        "| driver | nodes | component | cold load s | cached load ms | start-up p50 ms \
         | p99 ms | max ms | memory after init | of it resident | after {persists} persists |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (subject, row) in drivers.iter().zip(&rows) {
        println!("{}", table_row(subject, row));
    }
    let report = serde_json::json!({
        "builds": builds,
        "persists": persists,
        "loads": loads,
        "drivers": rows,
    });
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("drivers.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("JSON report: {}", path.display());
}

/// A driver and the cluster it is configured for.
struct Subject {
    label: String,
    source: DriverSource,
    /// 1: alone, without peers; more: node 1 of peers 1..=nodes.
    nodes: u64,
}

impl Subject {
    /// `NAME_OR_PATH[:NODES]`.
    fn parse(arg: &str) -> Subject {
        let (name, nodes) = arg
            .rsplit_once(':')
            .and_then(|(name, n)| Some((name, n.parse().ok()?)))
            .unwrap_or((arg, 1));
        let source =
            builtin::builtin(name).unwrap_or_else(|| DriverSource::File(PathBuf::from(name)));
        Subject {
            label: name.to_string(),
            source,
            nodes,
        }
    }

    /// The built-in drivers and the built example drivers.
    fn defaults() -> Vec<Subject> {
        let mut subjects: Vec<Subject> = ["file", "raft:3", "paxos:3"]
            .iter()
            .map(|a| Subject::parse(a))
            .collect();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/drivers");
        for (file, nodes) in [
            ("javascript-paxos/out/javascript-paxos.wasm", 3),
            ("javascript/out/javascript-file.wasm", 1),
            ("python/out/python-file.wasm", 1),
            ("c/out/c-file.wasm", 1),
            ("zig/out/zig-file.wasm", 1),
        ] {
            let path = examples.join(file);
            if !path.exists() {
                eprintln!("skipping {file}: not built (its build.sh builds it)");
                continue;
            }
            subjects.push(Subject {
                label: format!("examples/drivers/{file}"),
                source: DriverSource::File(path),
                nodes,
            });
        }
        subjects
    }
}

/// What one driver measured; `error` says what stopped the rest.
#[derive(serde::Serialize, Default)]
struct Row {
    driver: String,
    nodes: u64,
    component_bytes: usize,
    /// Medians of `cold_loads_s` and `cached_loads_ms`.
    cold_load_s: f64,
    cached_load_ms: f64,
    cold_loads_s: Vec<f64>,
    cached_loads_ms: Vec<f64>,
    startup_ms: Vec<f64>,
    startup_p50_ms: f64,
    startup_p99_ms: f64,
    startup_max_ms: f64,
    memory_after_init: usize,
    /// Median growth of the process's resident memory over a build: the
    /// pages the instance touched (guest memory, and the host's own small
    /// part), what it costs the host's RAM; Linux only.
    resident_after_init: Option<usize>,
    /// The leader's memory after the persists, then every node's.
    memory_after_persists: Option<usize>,
    memory_after_persists_per_node: Vec<usize>,
    /// Simulated and real time of the persist run.
    persist_run_simulated_ms: u64,
    persist_run_real_ms: f64,
    error: Option<String>,
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cold load {:.2} s, cached {:.1} ms, start-up p50 {:.2} ms, memory {} after init \
             ({} resident), {} after persists",
            self.cold_load_s,
            self.cached_load_ms,
            self.startup_p50_ms,
            mib(self.memory_after_init),
            self.resident_after_init.map_or("-".into(), mib),
            self.memory_after_persists.map_or("-".into(), mib),
        )?;
        if let Some(error) = &self.error {
            write!(f, "; error: {error}")?;
        }
        Ok(())
    }
}

/// Bytes in MiB, or KiB below one MiB.
fn mib(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

fn table_row(subject: &Subject, row: &Row) -> String {
    let name = match &subject.source {
        DriverSource::Builtin { name, .. } => format!("built-in `{name}`"),
        DriverSource::File(path) => match path.file_name() {
            Some(file) => format!("`{}`", file.to_string_lossy()),
            None => format!("`{}`", subject.label),
        },
    };
    if let Some(error) = &row.error {
        return format!("| {name} | {} | error: {error} ||||||||", row.nodes);
    }
    let size = if row.component_bytes >= 1_000_000 {
        format!("{:.1} MB", row.component_bytes as f64 / 1e6)
    } else {
        format!("{} KB", row.component_bytes.div_ceil(1000))
    };
    format!(
        "| {name} | {} | {size} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
        row.nodes,
        row.cold_load_s,
        row.cached_load_ms,
        row.startup_p50_ms,
        row.startup_p99_ms,
        row.startup_max_ms,
        mib(row.memory_after_init),
        row.resident_after_init.map_or("-".into(), mib),
        row.memory_after_persists.map_or("-".into(), mib),
    )
}

fn measure(subject: &Subject, builds: usize, persists: u64, loads: usize) -> Row {
    let mut row = Row {
        driver: subject.label.clone(),
        nodes: subject.nodes,
        ..Row::default()
    };
    if let Err(error) = measure_into(&mut row, subject, builds, persists, loads) {
        row.error = Some(error);
    }
    row
}

fn measure_into(
    row: &mut Row,
    subject: &Subject,
    builds: usize,
    persists: u64,
    loads: usize,
) -> Result<(), String> {
    let bytes = subject.source.bytes().map_err(|e| e.to_string())?;
    row.component_bytes = bytes.len();

    let mut driver = None;
    for _ in 0..loads.max(1) {
        let started = Instant::now();
        let loaded = Runtime::new(None)
            .and_then(|r| r.load(&subject.source))
            .map_err(|e| e.to_string())?;
        row.cold_loads_s.push(started.elapsed().as_secs_f64());
        driver = Some(loaded);
    }
    let driver = driver.expect("loaded at least once");
    row.cold_load_s = median(&row.cold_loads_s);

    let cache = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cached = || {
        Runtime::new(Some(cache.path().to_path_buf()))
            .and_then(|r| r.load(&subject.source))
            .map_err(|e| e.to_string())
    };
    cached()?;
    for _ in 0..loads.max(1) {
        let started = Instant::now();
        cached()?;
        row.cached_loads_ms
            .push(started.elapsed().as_secs_f64() * 1e3);
    }
    row.cached_load_ms = median(&row.cached_loads_ms);

    let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
    let mut resident = Vec::new();
    for build in 0..builds {
        let (events, _) = unbounded_channel();
        let setup = setup(subject, 1, build as u64, clock.clone(), events);
        let before = resident_bytes();
        let started = Instant::now();
        let instance = Instance::build(&driver, setup).map_err(built)?;
        row.startup_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if let (Some(before), Some(after)) = (before, resident_bytes()) {
            resident.push(after.saturating_sub(before) as f64);
        }
        row.memory_after_init = row.memory_after_init.max(instance.memory_bytes());
        instance.release();
    }
    if !resident.is_empty() {
        row.resident_after_init = Some(median(&resident) as usize);
    }
    let mut sorted = row.startup_ms.clone();
    sorted.sort_by(f64::total_cmp);
    row.startup_p50_ms = percentile(&sorted, 0.5);
    row.startup_p99_ms = percentile(&sorted, 0.99);
    row.startup_max_ms = sorted[sorted.len() - 1];

    let started = Instant::now();
    let run = PersistRun::start(&driver, subject)?.run(persists)?;
    row.persist_run_real_ms = started.elapsed().as_secs_f64() * 1e3;
    row.persist_run_simulated_ms = run.simulated_ms;
    row.memory_after_persists = Some(run.leader_memory);
    row.memory_after_persists_per_node = run.memory;
    Ok(())
}

/// The process's resident set (`VmRSS`), if the system tells it.
fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 0.5)
}

fn built(e: BuildError) -> String {
    match e {
        BuildError::Crashed(reason) => reason,
        BuildError::Refused(error) => format!("init refused: {error:?}"),
    }
}

/// How node `id` of `subject`'s cluster is built: a fresh in-memory
/// storage, `serve`'s default limits, a seed per build.
fn setup(
    subject: &Subject,
    id: u64,
    seed: u64,
    clock: Arc<dyn Clock>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
) -> Setup {
    let limits = GuestLimits::default();
    let peers = if subject.nodes > 1 {
        (1..=subject.nodes)
            .map(|id| Peer {
                id,
                address: format!("127.0.0.1:{}", 7000 + id),
            })
            .collect()
    } else {
        Vec::new()
    };
    Setup {
        config: Config {
            node_id: id,
            peers,
            bootstrap: true,
            floor: 0,
            seed,
            options: Vec::new(),
        },
        storage: Arc::new(MemStorage::default()),
        clock,
        events,
        faults: Arc::default(),
        memory_limit: limits.memory,
        call_timeout: limits.call_timeout,
        instant_hangs: false,
        observe_writes: false,
    }
}

/// A monotonic clock that moves only when stepped, so that a persist run
/// takes the CPU time of its calls rather than its elections' timeouts.
#[derive(Default)]
struct ManualClock(AtomicU64);

impl ManualClock {
    fn step(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        // From 1: 0 means "never" to the host.
        let mono_ms = self.0.load(Ordering::SeqCst) + 1;
        Now {
            wall_ms: WALL_ORIGIN_MS + mono_ms,
            mono_ms,
        }
    }
}

struct Node {
    id: u64,
    instance: Instance,
    events: UnboundedReceiver<Event>,
    next_tick_ms: u64,
    /// The epoch it leads in, per its latest report.
    leading: Option<Epoch>,
}

/// The nodes of one cluster of a driver, called as the host would (ticks
/// when asked, at least every `MAX_TICK_INTERVAL`; every message delivered
/// at once, in order), and a client of its leader: a load per leadership,
/// then persists one at a time.
struct PersistRun {
    clock: Arc<ManualClock>,
    nodes: Vec<Node>,
    /// Messages sent and not yet delivered: (from, to, payload).
    network: VecDeque<(u64, u64, Vec<u8>)>,
    /// The request in flight: its node, its id, whether it is a persist.
    asked: Option<(usize, u64, bool)>,
    next_request: u64,
    /// The epoch the last load was made in.
    loaded_in: Option<Epoch>,
    completed: u64,
}

struct RunOutcome {
    simulated_ms: u64,
    leader_memory: usize,
    memory: Vec<usize>,
}

impl PersistRun {
    fn start(driver: &LoadedDriver, subject: &Subject) -> Result<PersistRun, String> {
        let clock = Arc::new(ManualClock::default());
        let mut nodes = Vec::new();
        for id in 1..=subject.nodes {
            let (tx, events) = unbounded_channel();
            let setup = setup(subject, id, id, clock.clone(), tx);
            let instance = Instance::build(driver, setup).map_err(built)?;
            nodes.push(Node {
                id,
                instance,
                events,
                next_tick_ms: 0,
                leading: None,
            });
        }
        Ok(PersistRun {
            clock,
            nodes,
            network: VecDeque::new(),
            asked: None,
            next_request: 1,
            loaded_in: None,
            completed: 0,
        })
    }

    fn run(mut self, persists: u64) -> Result<RunOutcome, String> {
        let mut leader = 0;
        while self.completed < persists {
            let now = self.clock.step();
            if now > RUN_LIMIT_MS {
                return Err(format!(
                    "{} of {persists} persists completed in {RUN_LIMIT_MS} simulated ms",
                    self.completed
                ));
            }
            for node in &mut self.nodes {
                if now >= node.next_tick_ms {
                    let asked = node.instance.tick(now)?;
                    node.next_tick_ms =
                        asked.clamp(now + 1, now + MAX_TICK_INTERVAL.as_millis() as u64);
                }
            }
            self.settle()?;
            if self.asked.is_none()
                && let Some(i) = self.nodes.iter().position(|n| n.leading.is_some())
            {
                leader = i;
                self.ask(i)?;
                self.settle()?;
            }
        }
        let memory: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| n.instance.memory_bytes())
            .collect();
        Ok(RunOutcome {
            simulated_ms: self.clock.now().mono_ms,
            leader_memory: memory[leader],
            memory,
        })
    }

    /// The leader's next request: a load once per leadership, then a persist.
    fn ask(&mut self, i: usize) -> Result<(), String> {
        let epoch = self.nodes[i].leading.expect("asked a leader");
        let request = self.next_request;
        self.next_request += 1;
        let persist = self.loaded_in == Some(epoch);
        let command = if persist {
            Command::PersistHighWater {
                request,
                at_least: WALL_ORIGIN_MS + 1000 * (self.completed + 1),
                epoch,
            }
        } else {
            self.loaded_in = Some(epoch);
            Command::LoadHighWater { request }
        };
        self.asked = Some((i, request, persist));
        self.nodes[i].instance.command(command)
    }

    /// Handle every event and deliver every message until none is left.
    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..1_000_000 {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Ok(event) = node.events.try_recv() {
                    match event {
                        Event::Send { to, payload } => {
                            self.network.push_back((node.id, to, payload));
                        }
                        Event::Leadership(l) => {
                            node.leading = (l.role == Role::Leader).then_some(l.epoch);
                        }
                        Event::Completed { request, outcome } => {
                            if let Some((at, asked, persist)) = self.asked
                                && (at, asked) == (i, request)
                            {
                                self.asked = None;
                                if persist && outcome.is_ok() {
                                    self.completed += 1;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            let Some((from, to, payload)) = self.network.pop_front() else {
                return Ok(());
            };
            if let Some(node) = self.nodes.iter_mut().find(|n| n.id == to) {
                node.instance.messages(vec![(from, payload)])?;
            }
        }
        Err("the nodes kept messaging each other without end".into())
    }
}
