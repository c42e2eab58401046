//! A local cluster of `tsohost serve` processes (target/release/tsohost) for
//! the benchmark programs in this folder.

use bytes::Bytes;
use hyper::Method;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tsohost::client::once;

pub const ADMIN_TOKEN: &str = "benchmark-admin-token-0123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tsohost")
}

pub struct LocalCluster {
    dir: tempfile::TempDir,
    peers: String,
    http: Vec<u16>,
    /// `serve` flags every node gets.
    flags: Vec<String>,
    pub children: Vec<Option<Child>>,
}

impl LocalCluster {
    /// `n` nodes (a single node without peers when `n` is 1), all started.
    pub fn start(n: usize, flags: &[String]) -> LocalCluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            "benchmark-cluster-secret-0123456789",
        )
        .unwrap();
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).unwrap();
        let peers = (1..=n)
            .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalCluster {
            dir,
            peers,
            http: (0..n).map(|_| free_port()).collect(),
            flags: flags.to_vec(),
            children: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.start_node(i);
        }
        cluster
    }

    pub fn start_node(&mut self, i: usize) {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .args(&self.flags)
            .args(["--listen", &format!("127.0.0.1:{}", self.http[i])])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{i}")))
            .arg("--admin-token-file")
            .arg(self.dir.path().join("admin-token"));
        if self.http.len() > 1 {
            cmd.args(["--node-id", &(i + 1).to_string(), "--peers", &self.peers])
                .arg("--cluster-secret-file")
                .arg(self.dir.path().join("secret"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run target/release/tsohost (build it first)");
        self.children[i] = Some(child);
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.http[i])
    }

    /// The index of the first running node that answers a timestamp
    /// request, polling every 2 ms.
    pub async fn first_serving(&self, within: Duration) -> Option<usize> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            for i in 0..self.http.len() {
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

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

/// p-th percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
