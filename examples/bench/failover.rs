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

use bytes::Bytes;
use hyper::Method;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tsohost::bench::{BenchConfig, run};
use tsohost::client::once;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    dir: tempfile::TempDir,
    peers: String,
    http: Vec<u16>,
    driver: String,
    election_ms: u64,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start(&mut self, i: usize) {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tsohost");
        let child = Command::new(bin)
            .args(["serve", "--driver", &self.driver, "--bootstrap"])
            .args(["--node-id", &(i + 1).to_string(), "--peers", &self.peers])
            .args(["--listen", &format!("127.0.0.1:{}", self.http[i])])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{i}")))
            .arg("--cluster-secret-file")
            .arg(self.dir.path().join("secret"))
            .args([
                "--driver-option",
                &format!("election-timeout-ms={}", self.election_ms),
            ])
            .args([
                "--driver-option",
                &format!("heartbeat-ms={}", self.election_ms / 10),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run target/release/tsohost (build it first)");
        self.children[i] = Some(child);
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.http[i])
    }

    /// The index of the node that answers a timestamp request first.
    async fn first_serving(&self, deadline: Duration) -> Option<usize> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            for i in 0..3 {
                if self.children[i].is_none() {
                    continue;
                }
                let answer = once(&self.url(i), Method::POST, "/v1/timestamps", Bytes::new()).await;
                if answer.is_ok_and(|a| a.status == 200) {
                    return Some(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let driver = args.get(2).cloned().unwrap_or_else(|| "raft".into());
    let election_ms: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret"),
        "benchmark-cluster-secret-0123456789",
    )
    .unwrap();
    let peers = (1..=3)
        .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut cluster = Cluster {
        dir,
        peers,
        http: (0..3).map(|_| free_port()).collect(),
        driver,
        election_ms,
        children: vec![None, None, None],
    };
    for i in 0..3 {
        cluster.start(i);
    }
    let mut failovers_ms = Vec::new();
    for kill in 0..kills {
        let leader = cluster
            .first_serving(Duration::from_secs(30))
            .await
            .expect("no leader");
        let mut child = cluster.children[leader].take().unwrap();
        let killed = Instant::now();
        child.kill().unwrap();
        let _ = child.wait();
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
        cluster.start(leader);
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
            connections,
            count,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
        })
        .await
        .unwrap();
        throughput.push(report);
    }
    for child in cluster.children.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let report = serde_json::json!({
        "driver": cluster.driver,
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
