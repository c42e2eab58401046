//! A local cluster of real `tsohost serve` processes that the harness can
//! crash, pause, restart and partition; the benchmark programs in
//! `examples/bench` run on it too.

use crate::client::{Answer, ClientError, Connection};
use bytes::Bytes;
use hyper::Method;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A TCP port on loopback that is free now and stays out of other hands
/// until a node binds it: taken below the kernel's ephemeral range
/// (32768-60999 on Linux), where neither `--listen 127.0.0.1:0` nor the
/// source ports of outgoing connections can land, and never handed out
/// twice by this process. (A port from the ephemeral range can be taken by
/// any connection between this call and the node's bind, or while a
/// crashed node is down.)
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread processes that run at once by pid.
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 400) as u16 * 25,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "ran out of local ports below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The admin token of every harness cluster (loopback only).
pub const ADMIN_TOKEN: &str = "chaos-admin-token-0123456789";

/// How the nodes run: which binary, with which flags, where.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `tsohost` binary.
    pub exe: PathBuf,
    /// `serve` flags every node gets (`--driver`, `--driver-option`, ...);
    /// the harness adds listen addresses, data directories, the admin
    /// token, and in a cluster the peers, secret and `--bootstrap`.
    pub flags: Vec<String>,
    /// 1 runs a single node without peers.
    pub nodes: u64,
    /// Node data directories, logs, the secret and the token.
    pub dir: PathBuf,
}

/// The processes of a running cluster, indexed by node id − 1.
pub struct LocalCluster {
    spec: ClusterSpec,
    pub urls: Vec<String>,
    args: Vec<Vec<String>>,
    procs: Vec<Option<Child>>,
    paused: Vec<bool>,
}

impl LocalCluster {
    /// Start every node (in a cluster all with `--bootstrap` and the same
    /// `--peers`).
    pub fn start(spec: ClusterSpec) -> std::io::Result<LocalCluster> {
        std::fs::create_dir_all(&spec.dir)?;
        let secret = spec.dir.join("cluster-secret");
        let token = spec.dir.join("admin-token");
        std::fs::write(&secret, "a-chaos-cluster-secret\n")?;
        std::fs::write(&token, ADMIN_TOKEN)?;
        let peers = (1..=spec.nodes)
            .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let listen: Vec<String> = (1..=spec.nodes)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let args = (1..=spec.nodes)
            .map(|id| {
                let mut a: Vec<String> = vec![
                    "serve".into(),
                    "--listen".into(),
                    listen[id as usize - 1].clone(),
                    "--data-dir".into(),
                    path(&spec.dir.join(format!("node{id}"))),
                    "--admin-token-file".into(),
                    path(&token),
                ];
                if spec.nodes > 1 {
                    a.extend([
                        "--bootstrap".into(),
                        "--node-id".into(),
                        id.to_string(),
                        "--peers".into(),
                        peers.clone(),
                        "--cluster-secret-file".into(),
                        path(&secret),
                    ]);
                }
                a.extend(spec.flags.iter().cloned());
                a
            })
            .collect();
        let n = spec.nodes as usize;
        let mut cluster = LocalCluster {
            urls: listen.iter().map(|l| format!("http://{l}")).collect(),
            spec,
            args,
            procs: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
        };
        for id in 1..=cluster.spec.nodes {
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    /// Where node `id` writes its log.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.spec.dir.join(format!("node{id}.log"))
    }

    /// Start node `id` (again), appending to its log.
    pub fn restart(&mut self, id: u64) -> std::io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(id))?;
        let child = Command::new(&self.spec.exe)
            .args(&self.args[id as usize - 1])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.procs[id as usize - 1] = Some(child);
        self.paused[id as usize - 1] = false;
        Ok(())
    }

    /// kill -9 node `id`, as a crash or power loss would.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.procs[id as usize - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[id as usize - 1] = false;
    }

    /// SIGSTOP (`stop`) or SIGCONT node `id`: a process that stalls, as a
    /// long GC pause or an overloaded VM would, then carries on.
    pub fn pause(&mut self, id: u64, stop: bool) {
        if let Some(child) = &self.procs[id as usize - 1] {
            let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: sends a signal to our own child, which we have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            self.paused[id as usize - 1] = stop;
        }
    }

    /// Drop node `id`'s peer traffic with `peers` (both directions on
    /// `id`); an empty list heals it.
    pub async fn block(&self, id: u64, peers: &[u64]) -> Result<(), String> {
        self.set_faults(id, serde_json::json!({ "blocked_peers": peers }))
            .await
    }

    /// `PUT /v1/admin/faults` `faults` on node `id`.
    pub async fn set_faults(&self, id: u64, faults: serde_json::Value) -> Result<(), String> {
        let body = Bytes::from(faults.to_string());
        match self.admin(id, Method::PUT, "/v1/admin/faults", body).await {
            Ok(a) if a.status.is_success() => Ok(()),
            Ok(a) => Err(format!(
                "{}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// An admin request to node `id`.
    pub async fn admin(
        &self,
        id: u64,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let mut conn = Connection::open(&self.urls[id as usize - 1]).await?;
        conn.send_with(method, path, body, Some(ADMIN_TOKEN)).await
    }

    /// The node that serves timestamps now, if exactly one answers so
    /// within a short timeout.
    pub async fn serving(&self) -> Option<u64> {
        let mut serving = Vec::new();
        for id in 1..=self.spec.nodes {
            if self.procs[id as usize - 1].is_none() || self.paused[id as usize - 1] {
                continue;
            }
            let url = &self.urls[id as usize - 1];
            let status = tokio::time::timeout(Duration::from_millis(500), async {
                let mut conn = Connection::open(url).await.ok()?;
                let a = conn
                    .send(Method::GET, "/v1/status", Bytes::new())
                    .await
                    .ok()?;
                serde_json::from_slice::<serde_json::Value>(&a.body).ok()
            })
            .await;
            if let Ok(Some(s)) = status
                && s["serving"] == true
            {
                serving.push(id);
            }
        }
        (serving.len() == 1).then(|| serving[0])
    }

    /// Wait until a node serves; its id.
    pub async fn wait_serving(&self, within: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Some(id) = self.serving().await {
                return Some(id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Node ids that run (not killed), paused or not.
    pub fn running(&self) -> Vec<u64> {
        (1..=self.spec.nodes)
            .filter(|id| self.procs[*id as usize - 1].is_some())
            .collect()
    }

    pub fn nodes(&self) -> u64 {
        self.spec.nodes
    }

    /// Stop every node: resume paused ones, then kill -9.
    pub fn stop_all(&mut self) {
        for id in 1..=self.spec.nodes {
            if self.paused[id as usize - 1] {
                self.pause(id, false);
            }
            self.kill9(id);
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
