//! Failover and throughput of a local 3-node cluster, for docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release --example failover -- [KILLS] [DRIVER] [ELECTION_TIMEOUT_MS]
//! ```
//!
//! Starts three `tsohost serve` processes (target/release/tsohost), then
//! KILLS times: kill -9 the leader and measure the time until the first
//! timestamp from the new leader (clients poll every node every 2 ms), then
//! restart the killed node. Then measures steady-state throughput against
//! the leader with `tsohost bench`'s load generator. Prints JSON.

mod common;

use common::{LocalCluster, percentile};
use std::time::{Duration, Instant};
use tsohost::bench::{BenchConfig, run};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let driver = args.get(2).cloned().unwrap_or_else(|| "raft".into());
    let election_ms: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let flags: Vec<String> = [
        "--driver".to_string(),
        driver.clone(),
        "--bootstrap".into(),
        "--driver-option".into(),
        format!("election-timeout-ms={election_ms}"),
        "--driver-option".into(),
        format!("heartbeat-ms={}", election_ms / 10),
    ]
    .into();
    let mut cluster = LocalCluster::start(3, &flags);
    let mut failovers_ms = Vec::new();
    for kill in 0..kills {
        let leader = cluster
            .first_serving(Duration::from_secs(30))
            .await
            .expect("no leader");
        let killed = Instant::now();
        cluster.kill(leader);
        let new = cluster
            .first_serving(Duration::from_secs(30))
            .await
            .expect("no new leader");
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "kill {kill}: node {} → node {} in {took:.0} ms",
            leader + 1,
            new + 1
        );
        failovers_ms.push(took);
        cluster.start_node(leader);
        // Let the restarted node catch up before the next kill.
        tokio::time::sleep(Duration::from_millis(3 * election_ms)).await;
    }
    failovers_ms.sort_by(f64::total_cmp);
    let leader = cluster
        .first_serving(Duration::from_secs(30))
        .await
        .unwrap();
    let mut throughput = Vec::new();
    for (connections, count) in [(16, 1), (64, 1), (16, 1000)] {
        let report = run(BenchConfig {
            url: cluster.url(leader),
            client: false,
            connections,
            count,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
        })
        .await
        .unwrap();
        throughput.push(report);
    }
    drop(cluster);
    let report = serde_json::json!({
        "driver": driver,
        "election_timeout_ms": election_ms,
        "kills": kills,
        "failover_ms": {
            "p50": percentile(&failovers_ms, 0.5),
            "p99": percentile(&failovers_ms, 0.99),
            "min": failovers_ms[0],
            "max": failovers_ms[failovers_ms.len() - 1],
        },
        "throughput": throughput,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
