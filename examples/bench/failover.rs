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

use common::{first_serving, percentile};
use std::time::{Duration, Instant};
use tsohost::tools::bench::{BenchConfig, run};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let driver = args.get(2).cloned().unwrap_or_else(|| "raft".into());
    let election_ms: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let election = format!("election-timeout-ms={election_ms}");
    let heartbeat = format!("heartbeat-ms={}", election_ms / 10);
    let flags = [
        "--driver",
        &driver,
        "--driver-option",
        &election,
        "--driver-option",
        &heartbeat,
    ];
    let (mut cluster, _dir) = common::start(3, &flags);
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
        tokio::time::sleep(Duration::from_millis(3 * election_ms)).await;
    }
    failovers_ms.sort_by(f64::total_cmp);
    let leader = first_serving(&cluster, Duration::from_secs(30))
        .await
        .unwrap();
    let mut throughput = Vec::new();
    for (connections, count) in [(16, 1), (64, 1), (16, 1000)] {
        let report = run(BenchConfig {
            url: cluster.spec().url(leader).to_string(),
            client: false,
            connections,
            count,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            tls: None,
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
