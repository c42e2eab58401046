//! Shared by the black-box tests: run the real `tsohost` binary as a process
//! on a real socket and a real data directory, talk to it over HTTP, and
//! check every answer against the contract.
#![allow(dead_code)] // each test binary uses a part

pub mod checker;

use bytes::Bytes;
use hyper::Method;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tsohost::client::{Answer, Connection};

pub const BIN: &str = env!("CARGO_BIN_EXE_tsohost");

/// A test guest component built by the guest workspace.
pub fn guest(file: &str) -> PathBuf {
    let path = Path::new(tsohost::driver::builtin::guest_dir()).join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running `tsohost serve`, killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// Everything the process wrote to stderr.
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Start on a free port with `args` added to `serve`; waits until it
    /// listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_path_buf(), args)
    }

    fn spawn(data_dir: PathBuf, args: Vec<String>) -> Server {
        let listen = if args.iter().any(|a| a == "--listen") {
            Vec::new()
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(listen)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tsohost");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("read tsohost stdout");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tsohost did not start: stdout {line:?}, stderr:\n{}",
                    stderr.lock().unwrap()
                )
            })
            .to_string();
        std::thread::spawn(move || for _ in out.lines() {});
        Server {
            child,
            url,
            data_dir,
            args,
            stderr,
        }
    }

    /// Resident memory of the process, in bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// kill -9, as a crash or power loss would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (up to 10 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 and start again on the same data directory.
    pub fn crash_and_restart(mut self) -> Server {
        self.kill9();
        Self::spawn(self.data_dir.clone(), self.args.clone())
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Poll `/readyz` until the node serves.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(a) = get(&self.url, "/readyz").await
                && a.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{} never became ready; stderr:\n{}",
            self.url,
            self.stderr()
        );
    }
}

impl Drop for Server {
    /// When a test fails, the node's log is what explains it: print it.
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- stderr of {} ----\n{}", self.url, self.stderr());
        }
    }
}

pub use tsohost::chaos::free_port;

/// A single node (file driver unless `extra` says otherwise) with the admin
/// API on ([`ADMIN_TOKEN`]); data under `dir/data`.
pub fn start_with_admin(dir: &Path, extra: &[&str]) -> Server {
    let token = dir.join("admin-token");
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let mut args = vec!["--admin-token-file", token.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&dir.join("data"), &args)
}

/// One timestamp from `url`, which must answer 200.
pub async fn timestamp(url: &str) -> u64 {
    let a = post(url, "/v1/timestamps", "").await.unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    json(&a)["timestamp"].as_str().unwrap().parse().unwrap()
}

/// The admin token every test cluster uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Files and flags for an `n`-node cluster on loopback: each node's extra
/// `serve` arguments (node id, peers, secret, admin token).
pub struct ClusterSpec {
    pub dir: tempfile::TempDir,
    pub members: String,
    /// Each node's fixed HTTP URL (fixed so that restarts keep it).
    pub urls: Vec<String>,
}

impl ClusterSpec {
    pub fn new(n: u64) -> ClusterSpec {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "a-cluster-secret-for-tests\n").unwrap();
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).unwrap();
        let members = (1..=n)
            .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let urls = (1..=n)
            .map(|_| format!("http://127.0.0.1:{}", free_port()))
            .collect();
        ClusterSpec { dir, members, urls }
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// `serve` arguments of node `id`, then `extra`.
    pub fn args(&self, id: u64, extra: &[&str]) -> Vec<String> {
        self.args_among(id, self.urls.len(), extra)
    }

    /// The peer address of node `id`.
    pub fn address(&self, id: u64) -> String {
        self.members
            .split(',')
            .nth(id as usize - 1)
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    }

    /// As [`ClusterSpec::args`], naming only nodes `1..=n` in `--peers`: the
    /// cluster as it is before later nodes join.
    pub fn args_among(&self, id: u64, n: usize, extra: &[&str]) -> Vec<String> {
        let members: Vec<&str> = self.members.split(',').take(n).collect();
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--peers".into(),
            members.join(","),
            "--cluster-secret-file".into(),
            self.dir.path().join("secret").display().to_string(),
            "--admin-token-file".into(),
            self.dir.path().join("admin-token").display().to_string(),
            "--listen".into(),
            self.urls[id as usize - 1]
                .trim_start_matches("http://")
                .to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn start(&self, id: u64, extra: &[&str]) -> Server {
        self.start_among(id, self.urls.len(), extra)
    }

    /// Start node `id` knowing only nodes `1..=n` (and itself).
    pub fn start_among(&self, id: u64, n: usize, extra: &[&str]) -> Server {
        let args = self.args_among(id, n, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start(&self.data_dir(id), &args)
    }
}

/// Poll until `stderr` of `server` contains `text`.
pub async fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "{text:?} never logged:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin request with (or without) the token.
pub async fn admin(
    url: &str,
    method: Method,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Answer {
    let mut conn = Connection::open(url).await.unwrap();
    conn.send_with(method, path, Bytes::from(body.to_string()), token)
        .await
        .unwrap()
}

/// Run `tsohost serve` with `args` expecting it to refuse to start; returns
/// (exit code, stderr).
pub fn serve_refused(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tsohost");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening"),
        "tsohost started although it should have refused: {stdout}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn get(url: &str, path: &str) -> Result<Answer, tsohost::client::ClientError> {
    tsohost::client::once(url, Method::GET, path, Bytes::new()).await
}

pub async fn post(
    url: &str,
    path: &str,
    body: &str,
) -> Result<Answer, tsohost::client::ClientError> {
    tsohost::client::once(url, Method::POST, path, Bytes::from(body.to_string())).await
}

pub fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "answer {} is not JSON ({e}): {:?}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// The value of metric `name` in a Prometheus text body.
pub async fn metric(url: &str, name: &str) -> u64 {
    let answer = get(url, "/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Clients that hammer `url` until `stop`, recording every answer in
/// `history`.
pub fn spawn_clients(
    url: &str,
    clients: usize,
    count: u64,
    history: checker::History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    spawn_cluster_clients(&[url.to_string()], clients, count, history, stop)
}

/// How the cluster tests run a replicated driver: `serve` flags with short
/// timeouts so that the tests are quick (the lease arguments only need every
/// node to use the same), and the component a swap uploads.
pub struct Replicated {
    /// The built-in driver's name.
    pub driver: &'static str,
    /// The driver's component in the guest build, for swaps.
    pub component: &'static str,
    /// Whether `transfer-leadership` makes the named node the leader (raft),
    /// or only steps down in its favour (paxos: omnipaxos elects whoever
    /// wins, usually but not always the named node).
    pub exact_transfer: bool,
}

impl Replicated {
    /// Flags of a node that joins later (does not bootstrap): fast
    /// elections for tests.
    pub fn joiner(&self) -> Vec<&'static str> {
        vec![
            "--driver",
            self.driver,
            "--driver-option",
            "election-timeout-ms=300",
            "--driver-option",
            "heartbeat-ms=30",
        ]
    }

    /// Flags of a node of the first membership (bootstraps).
    pub fn founder(&self) -> Vec<&'static str> {
        let mut flags = self.joiner();
        flags.push("--bootstrap");
        flags
    }
}

pub const RAFT: Replicated = Replicated {
    driver: "raft",
    component: "tsohost_driver_raft.wasm",
    exact_transfer: true,
};

pub const PAXOS: Replicated = Replicated {
    driver: "paxos",
    component: "tsohost_driver_paxos.wasm",
    exact_transfer: false,
};

/// `tsohost ARGS` with the cluster's admin token; panics with its output
/// unless it succeeds.
pub fn cli(spec: &ClusterSpec, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--admin-token-file")
        .arg(spec.dir.path().join("admin-token"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tsohost {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Clients that spread load over a cluster as a real client would: each
/// sends to the node it last found serving, follows 307s to the leader, and
/// moves to the next node when one fails or answers 503.
pub fn spawn_cluster_clients(
    urls: &[String],
    clients: usize,
    count: u64,
    history: checker::History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let urls = urls.to_vec();
            let history = history.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut at = c % urls.len();
                let mut conn: Option<Connection> = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if conn.is_none() {
                        conn = Connection::open(&urls[at]).await.ok();
                    }
                    let Some(c) = conn.as_mut() else {
                        at = (at + 1) % urls.len();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let body = Bytes::from(format!("{{\"count\":{count}}}"));
                    let sent = Instant::now();
                    let answer = c.send(Method::POST, "/v1/timestamps", body).await;
                    let received = Instant::now();
                    match answer {
                        Ok(a) if a.status == 200 => history.record(sent, received, &a),
                        Ok(a) if a.status == 307 => {
                            let location = a.headers["location"].to_str().unwrap_or_default();
                            if let Some(i) =
                                urls.iter().position(|u| location.starts_with(u.as_str()))
                            {
                                at = i;
                            }
                            conn = None;
                        }
                        _ => {
                            at = (at + 1) % urls.len();
                            conn = None;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// The node (0-based index) serving timestamps, waiting up to `within`.
pub async fn serving_node(urls: &[String], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        for (i, url) in urls.iter().enumerate() {
            if let Ok(a) = get(url, "/readyz").await
                && a.status == 200
            {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node serves within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
