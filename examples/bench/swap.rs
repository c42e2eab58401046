//! Serving pause of a hot swap (same driver, new build) and of a migration
//! (another driver), for docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release --example swap -- [SWAPS]
//! ```
//!
//! A client ([`tsohost::tools::load`]) sends timestamp requests back to
//! back (following 307s); the pause of a swap is the longest gap between
//! two answered requests from just before the swap request until the node
//! serves again. Measured on a
//! single node (file driver) and on a 3-node raft cluster, swapping a
//! follower and swapping the leader; then migrating that cluster between
//! raft and paxos (`tsohost cluster migrate`) back and forth. Prints JSON.

mod common;

use bytes::Bytes;
use common::{LocalCluster, first_serving, percentile};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tsohost::client::Answer;
use tsohost::tools::cluster::ADMIN_TOKEN;
use tsohost::tools::load::{Load, LoadSpec, Recorder};

/// When the client was answered.
struct Answers(Arc<Mutex<Vec<Instant>>>);

impl Recorder for Answers {
    fn answered(&mut self, _sent: Instant, received: Instant, _answer: &Answer) -> bool {
        self.0.lock().unwrap().push(received);
        true
    }
}

async fn swap(cluster: &LocalCluster, id: u64, bytes: &[u8]) {
    if let Err(e) = cluster.admin(id).swap(Bytes::copy_from_slice(bytes)).await {
        panic!("swap on node {id}: {e}");
    }
}

/// What each round of [`pauses`] does.
enum Action<'a> {
    /// Swap in `component` on the serving node (`leader`) or the next one.
    Swap { component: &'a [u8], leader: bool },
    /// Migrate the whole cluster, to each of `to` in turn.
    Migrate { to: [(&'a str, &'a [u8]); 2] },
}

/// Do `action` `rounds` times; the pauses in ms, sorted.
async fn pauses(cluster: &LocalCluster, action: Action<'_>, rounds: usize) -> Vec<f64> {
    let urls = cluster.urls();
    let answers = Arc::new(Mutex::new(Vec::new()));
    // One client, back to back, retrying at once: the gaps are the pauses.
    let spec = LoadSpec {
        count: 1,
        timeout: Duration::from_secs(30),
        backoff: Duration::from_millis(1),
    };
    let load = Load::start(urls, &spec, [Answers(answers.clone())]);
    let mut pauses = Vec::new();
    for round in 0..rounds {
        let serving = first_serving(cluster, Duration::from_secs(30))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        match &action {
            Action::Swap { component, leader } => {
                let target = if *leader {
                    serving
                } else {
                    serving % cluster.nodes() + 1
                };
                swap(cluster, target, component).await;
            }
            Action::Migrate { to } => {
                let (label, bytes) = to[round % 2];
                let target = tsohost::tools::migrate::Target {
                    label: label.to_string(),
                    bytes: Bytes::copy_from_slice(bytes),
                };
                tsohost::tools::migrate::run(&urls[0], ADMIN_TOKEN, Some(target))
                    .await
                    .unwrap();
            }
        }
        // Until the client has been answered well after the swap.
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let last = *answers.lock().unwrap().last().unwrap();
            if last > started + Duration::from_millis(100) {
                break;
            }
        }
        let answers = answers.lock().unwrap();
        let from = answers.partition_point(|t| *t < started).saturating_sub(1);
        let gap = answers[from..]
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
            .fold(0.0, f64::max);
        pauses.push(gap);
    }
    load.stop().await;
    pauses.sort_by(f64::total_cmp);
    pauses
}

fn summary(pauses: &[f64]) -> serde_json::Value {
    serde_json::json!({
        "rounds": pauses.len(),
        "p50_ms": percentile(pauses, 0.5),
        "p99_ms": percentile(pauses, 0.99),
        "max_ms": pauses[pauses.len() - 1],
    })
}

#[tokio::main]
async fn main() {
    let swaps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let guests = Path::new(tsohost::driver::builtin::guest_dir());
    let file = std::fs::read(guests.join("tsohost_driver_file.wasm")).unwrap();
    let raft = std::fs::read(guests.join("tsohost_driver_raft.wasm")).unwrap();
    let paxos = std::fs::read(guests.join("tsohost_driver_paxos.wasm")).unwrap();

    let (single, dir) = common::start(1, &[]);
    let swap_file = Action::Swap {
        component: &file,
        leader: true,
    };
    let file_pauses = pauses(&single, swap_file, swaps).await;
    drop((single, dir));

    let flags = [
        "--driver",
        "raft",
        "--driver-option",
        "election-timeout-ms=300",
        "--driver-option",
        "heartbeat-ms=30",
    ];
    let (cluster, _dir) = common::start(3, &flags);
    let swap_raft = |leader| Action::Swap {
        component: &raft,
        leader,
    };
    let follower = pauses(&cluster, swap_raft(false), swaps).await;
    let leader = pauses(&cluster, swap_raft(true), swaps).await;
    let migrate = Action::Migrate {
        to: [("paxos", &paxos), ("raft", &raft)],
    };
    let migrations = pauses(&cluster, migrate, swaps).await;
    let report = serde_json::json!({
        "single_node_file": summary(&file_pauses),
        "raft_follower": summary(&follower),
        "raft_leader": summary(&leader),
        "migration_raft_paxos": summary(&migrations),
        "raft_election_timeout_ms": 300,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
