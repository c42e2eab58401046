//! `tsohost chaos`: a local cluster of real `tsohost serve` processes
//! ([`crate::tools::cluster`]) under load from many concurrent clients
//! ([`crate::tools::load`]), faults ([`nemesis`]) applied on a schedule
//! drawn from a seed, and every answer judged by [`crate::tools::checker`]
//! (no timestamp twice, real-time order across all clients and nodes). It
//! prints a report and fails on a violation.
//!
//! The run: start the cluster, wait for a leader, start the clients; then
//! until the duration is up, a quiet spell and a fault (each fault heals
//! before the next); then a settling spell so the availability timeline
//! shows recovery; stop the clients and judge.

pub mod nemesis;
mod report;

pub use nemesis::Nemesis;
pub use report::Report;

use crate::client::Answer;
use crate::timestamp::RangeJson;
use crate::tools::checker::Op;
use crate::tools::cluster::{ClusterSpec, LocalCluster};
use crate::tools::load::{Load, LoadSpec, Recorder};
use nemesis::Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A chaos run, as `tsohost chaos` takes it.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// The `tsohost` binary the nodes run.
    pub exe: PathBuf,
    /// `raft`, `paxos` or the path of a replicated driver's component.
    pub driver: String,
    pub nodes: u64,
    pub clients: usize,
    /// How long faults are applied.
    pub duration: Duration,
    pub seed: u64,
    pub nemeses: Vec<Nemesis>,
    /// The nodes' election timeout; faults are scaled to it.
    pub election_timeout_ms: u64,
    /// Node data and logs.
    pub dir: PathBuf,
    /// Self-test: corrupt one recorded answer so that the checker must
    /// report a violation.
    pub inject_violation: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("cannot start the cluster in {dir}: {source}")]
    Start {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no node served within {within} s of the start; read the node logs in {0}",
        within = START_WITHIN.as_secs()
    )]
    NeverServed(PathBuf),
    #[error(
        "--driver {0}: the harness runs a replicated driver: the built-in raft or paxos, \
         or the path of a .wasm component"
    )]
    Driver(String),
    #[error("--driver: {0}")]
    Read(#[from] crate::driver::LoadError),
}

/// The `--driver` flag the nodes get (a component's path made absolute, as
/// the nodes run in their own directories) and the component's bytes, which
/// the swap nemesis uploads.
fn driver_of(driver: &str) -> Result<(String, std::borrow::Cow<'static, [u8]>), ChaosError> {
    use crate::driver::DriverSource;
    let source = match crate::driver::builtin::builtin(driver) {
        Some(source) if driver != "file" => source,
        Some(_) => return Err(ChaosError::Driver(driver.into())),
        None if driver.ends_with(".wasm") => {
            let path =
                std::path::absolute(driver).map_err(|_| ChaosError::Driver(driver.into()))?;
            DriverSource::File(path)
        }
        None => return Err(ChaosError::Driver(driver.into())),
    };
    let bytes = source.bytes()?;
    let flag = match &source {
        DriverSource::File(path) => path.display().to_string(),
        DriverSource::Builtin { name, .. } => name.to_string(),
    };
    Ok((flag, bytes))
}

/// How long the cluster may take to serve at first: each node compiles the
/// component on its first start (a JavaScript or Python component takes
/// 10-30 s on two cores, three nodes at once).
const START_WITHIN: Duration = Duration::from_secs(120);

/// Run `cfg`, reporting each fault through `progress` as it happens.
pub async fn run(cfg: &ChaosConfig, progress: impl Fn(&str)) -> Result<Report, ChaosError> {
    let (driver, driver_bytes) = driver_of(&cfg.driver)?;
    let e = cfg.election_timeout_ms;
    let flags = vec![
        "--driver".into(),
        driver,
        "--driver-option".into(),
        format!("election-timeout-ms={e}"),
        "--driver-option".into(),
        format!("heartbeat-ms={}", (e / 10).max(1)),
    ];
    let mut cluster = ClusterSpec::create(&cfg.exe, &cfg.dir, cfg.nodes)
        .and_then(|spec| LocalCluster::start(spec, flags))
        .map_err(|source| ChaosError::Start {
            dir: cfg.dir.clone(),
            source,
        })?;
    progress(&format!(
        "started {} {} nodes in {}; waiting for a leader",
        cfg.nodes,
        cfg.driver,
        cfg.dir.display()
    ));
    if cluster.wait_serving(START_WITHIN).await.is_none() {
        return Err(ChaosError::NeverServed(cfg.dir.clone()));
    }

    let start = Instant::now();
    let load = Load::start(
        cluster.urls(),
        &LoadSpec {
            count: 1,
            timeout: REQUEST_TIMEOUT,
            backoff: Duration::from_millis(10),
        },
        (0..cfg.clients as u32).map(|client| Seen::new(client, start)),
    );
    let mut rng = Rng::new(cfg.seed);
    let cx = nemesis::Context {
        start,
        election_timeout_ms: e,
        driver_bytes: &driver_bytes,
    };
    let mut faults = Vec::new();
    loop {
        tokio::time::sleep(rng.millis(2 * e, 6 * e)).await;
        if start.elapsed() >= cfg.duration || cfg.nemeses.is_empty() {
            break;
        }
        let nemesis = *rng.pick(&cfg.nemeses);
        let fault = nemesis::apply(nemesis, &mut cluster, &mut rng, &cx).await;
        progress(&fault.to_string());
        faults.push(fault);
    }
    // Let the cluster recover under load, so the timeline shows it.
    tokio::time::sleep(Duration::from_millis(10 * e)).await;
    let (mut ops, failed_at) = Seen::merge(load.stop().await);
    let duration_ms = start.elapsed().as_millis() as u64;
    cluster.stop_all();

    if cfg.inject_violation {
        inject_violation(&mut ops, &mut rng);
    }
    let answered_at: Vec<u64> = ops.iter().map(|o| o.received).collect();
    let slice_ms = (duration_ms / 40).max(1000).div_ceil(1000) * 1000;
    Ok(Report {
        driver: cfg.driver.clone(),
        nodes: cfg.nodes,
        clients: cfg.clients,
        seed: cfg.seed,
        duration_ms,
        timeline: Report::timeline(&answered_at, &failed_at, duration_ms, slice_ms),
        faults,
        answered: ops.len() as u64,
        timestamps: ops.iter().map(|o| o.count).sum(),
        failed: failed_at.len() as u64,
        violations: crate::tools::checker::violations(&ops, 10),
        dir: cfg.dir.clone(),
    })
}

/// A request that takes longer than this counts as failed (its answer, if
/// any, constrains nothing).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What one client saw.
struct Seen {
    client: u32,
    /// Times count from here.
    start: Instant,
    ops: Vec<Op>,
    /// Requests that got no timestamp (error, refusal, timeout), by the
    /// time they were sent, in microseconds since the start.
    failed_at: Vec<u64>,
}

impl Seen {
    fn new(client: u32, start: Instant) -> Seen {
        Seen {
            client,
            start,
            ops: Vec::new(),
            failed_at: Vec::new(),
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        at.duration_since(self.start).as_micros() as u64
    }

    /// Every client's record in one.
    fn merge(all: Vec<Seen>) -> (Vec<Op>, Vec<u64>) {
        let (mut ops, mut failed_at) = (Vec::new(), Vec::new());
        for seen in all {
            ops.extend(seen.ops);
            failed_at.extend(seen.failed_at);
        }
        (ops, failed_at)
    }
}

impl Recorder for Seen {
    fn answered(&mut self, sent: Instant, received: Instant, answer: &Answer) -> bool {
        let range = serde_json::from_slice::<RangeJson>(&answer.body)
            .ok()
            .and_then(|r| Some((r.first()?.0, r.count)));
        match range {
            Some((first, count)) => self.ops.push(Op {
                sent: self.micros(sent),
                received: self.micros(received),
                first,
                count,
                client: self.client,
            }),
            None => self.failed(sent),
        }
        range.is_some()
    }

    fn failed(&mut self, sent: Instant) {
        let at = self.micros(sent);
        self.failed_at.push(at);
    }
}

/// Make a later request repeat an earlier one's timestamp: both a duplicate
/// and a real-time order violation, which the checker must report.
fn inject_violation(ops: &mut [Op], rng: &mut Rng) {
    if ops.len() < 2 {
        return;
    }
    ops.sort_by_key(|o| o.sent);
    let a = rng.between(0, ops.len() as u64 / 2) as usize;
    let earlier = ops[a];
    if let Some(b) = ops.iter_mut().find(|b| b.sent > earlier.received) {
        b.first = earlier.first;
    }
}
