//! Failover and throughput of a local 3-node cluster, for docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release --example failover -- [KILLS] [DRIVER] [ELECTION_TIMEOUT_MS]
//! LOAD_S=600 cargo run --release --example failover -- 0 raft   # 10 min per row
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
//! be none. Prints JSON.

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
    let elections_before = elections(&cluster).await;
    let mut throughput = Vec::new();
    for (connections, count) in [(16, 1), (64, 1), (16, 1000)] {
        let report = run(BenchConfig {
            url: cluster.spec().url(leader).to_string(),
            client: false,
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
    let elections_under_load = elections(&cluster).await - elections_before;
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
        "elections_under_load": elections_under_load,
        "throughput": throughput,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// New epochs the running nodes have seen, summed (`tsohost_elections_total`).
async fn elections(cluster: &common::LocalCluster) -> u64 {
    let mut total = 0;
    for id in cluster.running() {
        let url = cluster.spec().url(id);
        let answer =
            tsohost::client::once(url, hyper::Method::GET, "/metrics", bytes::Bytes::new())
                .await
                .expect("GET /metrics");
        let text = String::from_utf8_lossy(&answer.body);
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("tsohost_elections_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("node {id} has no tsohost_elections_total"));
    }
    total
}
