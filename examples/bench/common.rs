//! What the benchmark programs in this folder share: the local cluster of
//! `tsohost::tools` ([`LocalCluster`]) running target/release/tsohost in a
//! temporary directory, a failover-precise leader probe, percentiles.

use bytes::Bytes;
use hyper::Method;
use std::path::Path;
use std::time::{Duration, Instant};
use tsohost::client::once;
use tsohost::tools::cluster::ClusterSpec;
pub use tsohost::tools::cluster::LocalCluster;

/// `nodes` nodes (one without peers) with `serve` flags `flags`, started;
/// keep the directory for as long as the cluster runs. With `KEEP_LOGS`
/// set, the directory (data and `node<id>.log`) outlives the run, and its
/// path goes to stderr: how one reads why an election happened.
pub fn start(nodes: u64, flags: &[&str]) -> (LocalCluster, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("tsohost-bench")
        .disable_cleanup(std::env::var_os("KEEP_LOGS").is_some())
        .tempdir()
        .unwrap();
    if std::env::var_os("KEEP_LOGS").is_some() {
        eprintln!("node logs: {}/cluster/node<id>.log", dir.path().display());
    }
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tsohost");
    let flags = flags.iter().map(|f| f.to_string()).collect();
    let cluster = ClusterSpec::create(exe, dir.path().join("cluster"), nodes)
        .and_then(|spec| LocalCluster::start(spec, flags))
        .expect("run target/release/tsohost (build it first)");
    (cluster, dir)
}

/// The id of the first running node that answers a timestamp request,
/// polling every 2 ms: when a client would first be served.
pub async fn first_serving(cluster: &LocalCluster, within: Duration) -> Option<u64> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        for id in cluster.running() {
            let url = cluster.spec().url(id);
            let answer = once(url, Method::POST, "/v1/timestamps", Bytes::new()).await;
            if answer.is_ok_and(|a| a.status == 200) {
                return Some(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// p-th percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
