//! Failover and throughput of a local 3-node cluster, for docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release --example failover -- [KILLS] [DRIVER] [ELECTION_TIMEOUT_MS]
//! LOAD_S=200 cargo run --release --example failover -- 0 raft   # 3 rows of 200 s: 10 minutes
//! ```
//!
//! Starts three `tsohost serve` processes (target/release/tsohost) with the
//! driver's default timing, or ELECTION_TIMEOUT_MS (and heartbeats every
//! tenth of it), then KILLS times: kill -9 the leader and measure the time
//! until the first timestamp from the new leader (clients poll every node
//! every 2 ms), then restart the killed node. Then measures steady-state
//! throughput against the leader with `tsohost bench`'s load generator
//! (LOAD_S seconds per row, 5 by default) and counts the elections the
//! nodes saw meanwhile: under full load on a healthy cluster there should
//! be none (nor refused requests: a lapsed lease). Prints JSON.

mod common;

use common::{first_serving, percentile};
use std::time::{Duration, Instant};
use tsohost::tools::bench::{BenchConfig, run};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let driver = args.get(2).cloned().unwrap_or_else(|| "raft".into());
    let election_ms: Option<u64> = args.get(3).and_then(|a| a.parse().ok());
    let load = Duration::from_secs(
        std::env::var("LOAD_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    let mut flags = vec!["--driver".to_string(), driver.clone()];
    if let Some(e) = election_ms {
        flags.extend([
            "--driver-option".into(),
            format!("election-timeout-ms={e}"),
            "--driver-option".into(),
            format!("heartbeat-ms={}", e / 10),
        ]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (mut cluster, _dir) = common::start(3, &flags);
    // The restarted node catches up within a few election timeouts.
    let settle = Duration::from_millis(3 * election_ms.unwrap_or(500));
    let mut failovers_ms = Vec::new();
    for kill in 0..kills {
        let leader = first_serving(&cluster, Duration::from_secs(30))
            .await
            .expect("no leader");
        let killed = Instant::now();
        cluster.kill9(leader);
        let new = first_serving(&cluster, Duration::from_secs(30))
            .await
            .expect("no new leader");
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        eprintln!("kill {kill}: node {leader} → node {new} in {took:.0} ms");
        failovers_ms.push(took);
        cluster.restart(leader).expect("restart the killed node");
        // Let the restarted node catch up before the next kill.
        tokio::time::sleep(settle).await;
    }
    failovers_ms.sort_by(f64::total_cmp);
    let leader = first_serving(&cluster, Duration::from_secs(30))
        .await
        .unwrap();
    let before = Counters::read(&cluster).await;
    let mut throughput = Vec::new();
    for (connections, count) in [(16, 1), (64, 1), (16, 1000)] {
        let report = run(BenchConfig {
            url: cluster.spec().url(leader).to_string(),
            client: false,
            max_in_flight: None,
            connections,
            count,
            duration: load,
            warmup: Duration::from_secs(1),
            tls: None,
        })
        .await
        .unwrap();
        throughput.push(report);
    }
    let under_load = Counters::read(&cluster).await.since(&before);
    drop(cluster);
    let failover = (!failovers_ms.is_empty()).then(|| {
        serde_json::json!({
            "p50": percentile(&failovers_ms, 0.5),
            "p99": percentile(&failovers_ms, 0.99),
            "min": failovers_ms[0],
            "max": failovers_ms[failovers_ms.len() - 1],
        })
    });
    let report = serde_json::json!({
        "driver": driver,
        "election_timeout_ms": election_ms.map_or("default".to_string(), |e| e.to_string()),
        "kills": kills,
        "failover_ms": failover,
        "load_s_per_row": load.as_secs(),
        "elections_under_load": under_load.elections,
        "refused_under_load": under_load.refused,
        "held_takeovers_under_load": under_load.held_takeovers,
        "throughput": throughput,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// What the running nodes count, summed, that tells whether leadership held
/// under load.
struct Counters {
    /// New epochs seen (`tsohost_elections_total`).
    elections: u64,
    /// Timestamp requests refused with 503 (`tsohost_requests_total{result="unavailable"}`):
    /// an election, or a leader whose lease lapsed.
    refused: u64,
    /// Paxos only: ballot-leader-election rounds that missed the leader
    /// while its lease heartbeats arrived (`tsohost_driver_held_takeovers_total`).
    held_takeovers: u64,
}

impl Counters {
    async fn read(cluster: &common::LocalCluster) -> Counters {
        let mut c = Counters {
            elections: 0,
            refused: 0,
            held_takeovers: 0,
        };
        for id in cluster.running() {
            let url = cluster.spec().url(id);
            let answer =
                tsohost::client::once(url, hyper::Method::GET, "/metrics", bytes::Bytes::new())
                    .await
                    .expect("GET /metrics");
            let text = String::from_utf8_lossy(&answer.body);
            let sum = |name: &str, having: &str| -> u64 {
                text.lines()
                    .filter(|l| l.starts_with(name) && l.contains(having))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            c.elections += sum("tsohost_elections_total ", "");
            c.refused += sum("tsohost_requests_total{", "result=\"unavailable\"");
            c.held_takeovers += sum("tsohost_driver_held_takeovers_total", "");
        }
        c
    }

    fn since(&self, before: &Counters) -> Counters {
        Counters {
            elections: self.elections - before.elections,
            refused: self.refused - before.refused,
            held_takeovers: self.held_takeovers.saturating_sub(before.held_takeovers),
        }
    }
}
