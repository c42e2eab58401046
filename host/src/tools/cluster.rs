//! Local `tsohost serve` processes: the one launcher of the chaos harness,
//! the benchmark programs in `examples/bench` and the black-box tests.
//!
//! A [`ClusterSpec`] lays out nodes on loopback: each node's HTTP and peer
//! port, its data directory, the cluster secret and the admin token, and the
//! `serve` flags that say so. A [`Process`] is one running node, killed
//! when dropped. A [`LocalCluster`] runs every node of a spec with the same
//! flags, and crashes, pauses, restarts and partitions them on demand.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tsohost_client::admin::{Admin, AdminError, Faults};

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

/// The admin token of every local cluster (loopback only).
pub const ADMIN_TOKEN: &str = "local-cluster-admin-token-0123456789";

/// The peer secret of every local cluster.
const SECRET: &str = "a-local-cluster-secret\n";

/// The files and addresses of nodes on loopback, and the `serve` flags that
/// name them. Ports are fixed when the spec is made, so that a node
/// restarted on its data directory keeps its URL and peer address.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    exe: PathBuf,
    dir: PathBuf,
    /// Each node's peer address, `127.0.0.1:PORT`, by id − 1.
    peers: Vec<String>,
    /// Each node's HTTP URL, by id − 1.
    pub urls: Vec<String>,
}

impl ClusterSpec {
    /// Lay out `nodes` nodes that run the `tsohost` binary `exe` under `dir`
    /// (created), and write the cluster secret and the admin token
    /// ([`ADMIN_TOKEN`]) there.
    pub fn create(
        exe: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        nodes: u64,
    ) -> io::Result<ClusterSpec> {
        let spec = ClusterSpec {
            exe: exe.into(),
            dir: dir.into(),
            peers: (1..=nodes)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
            urls: (1..=nodes)
                .map(|_| format!("http://127.0.0.1:{}", free_port()))
                .collect(),
        };
        std::fs::create_dir_all(&spec.dir)?;
        std::fs::write(spec.secret_file(), SECRET)?;
        std::fs::write(spec.token_file(), ADMIN_TOKEN)?;
        Ok(spec)
    }

    /// How many nodes there are.
    pub fn nodes(&self) -> u64 {
        self.urls.len() as u64
    }

    /// The `tsohost` binary the nodes run.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// Where node `id` writes its log when it runs with [`Output::Log`].
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.log"))
    }

    /// The file holding [`ADMIN_TOKEN`] (`--admin-token-file`).
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("admin-token")
    }

    /// The file holding the cluster secret (`--cluster-secret-file`).
    pub fn secret_file(&self) -> PathBuf {
        self.dir.join("cluster-secret")
    }

    /// Node `id`'s HTTP URL.
    pub fn url(&self, id: u64) -> &str {
        &self.urls[id as usize - 1]
    }

    /// Node `id`'s peer address.
    pub fn address(&self, id: u64) -> &str {
        &self.peers[id as usize - 1]
    }

    /// The `serve` flags that place node `id`: its listen address and the
    /// admin token, and with more than one node its id, the secret and as
    /// `--peers` nodes `1..=among` (the cluster as it is before later nodes
    /// join). `--bootstrap`, the driver and the rest are the caller's.
    pub fn flags(&self, id: u64, among: usize) -> Vec<String> {
        let mut flags = vec![
            "--listen".into(),
            self.url(id).trim_start_matches("http://").to_string(),
            "--admin-token-file".into(),
            path(&self.token_file()),
        ];
        if self.nodes() > 1 {
            let peers: Vec<String> = (1..=among as u64)
                .map(|p| format!("{p}={}", self.address(p)))
                .collect();
            flags.extend([
                "--node-id".into(),
                id.to_string(),
                "--peers".into(),
                peers.join(","),
                "--cluster-secret-file".into(),
                path(&self.secret_file()),
            ]);
        }
        flags
    }

    /// Start node `id` on its data directory with `flags`, which usually
    /// begin with [`ClusterSpec::flags`].
    pub fn spawn(&self, id: u64, flags: &[String], output: Output) -> io::Result<Process> {
        Process::spawn(&self.exe, &self.data_dir(id), flags, output)
    }
}

/// Where a node's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// stderr appended to this file; stdout dropped.
    Log(PathBuf),
    /// stderr kept in memory ([`Process::stderr`]); stdout read by
    /// [`Process::listening`].
    Capture,
}

/// What a process wrote to stderr, and where.
enum Stderr {
    Log(PathBuf),
    Captured(Arc<Mutex<String>>),
}

/// The URL `tsohost serve` prints as its first line on stdout once it
/// listens; an error (with the line) if it printed something else or
/// exited first.
pub fn listening_url(stdout: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    line.split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("tsohost did not start: stdout {line:?}")))
}

/// A running `tsohost serve`, killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// Set once the child is reaped: its pid may be another's by then.
    reaped: bool,
    stdout: Option<BufReader<ChildStdout>>,
    stderr: Stderr,
}

impl Process {
    /// `exe serve --data-dir DATA_DIR FLAGS...` with `RUST_LOG=info`.
    pub fn spawn(
        exe: &Path,
        data_dir: &Path,
        flags: &[String],
        output: Output,
    ) -> io::Result<Process> {
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        match output {
            Output::Log(log) => {
                let file = File::options().create(true).append(true).open(&log)?;
                let child = command.stdout(Stdio::null()).stderr(file).spawn()?;
                Ok(Process {
                    child,
                    reaped: false,
                    stdout: None,
                    stderr: Stderr::Log(log),
                })
            }
            Output::Capture => {
                let mut child = command
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()?;
                let text = Arc::new(Mutex::new(String::new()));
                let pipe = child.stderr.take().expect("piped stderr");
                let sink = text.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                        s.push_str(&line);
                        s.push('\n');
                    }
                });
                let stdout = child.stdout.take().map(BufReader::new);
                Ok(Process {
                    child,
                    reaped: false,
                    stdout,
                    stderr: Stderr::Captured(text),
                })
            }
        }
    }

    /// Wait until the node listens (its first line on stdout): its URL. An
    /// error if it exits first, or when its output is not captured.
    pub fn listening(&mut self) -> io::Result<String> {
        let mut out = self.stdout.take().ok_or_else(|| {
            io::Error::other("the node's stdout is not captured, or was read already")
        })?;
        let url = listening_url(&mut out)?;
        std::thread::spawn(move || for _ in out.lines() {});
        Ok(url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        match &self.stderr {
            Stderr::Log(path) => std::fs::read_to_string(path).unwrap_or_default(),
            Stderr::Captured(text) => text.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// kill -9, as a crash or power loss would, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.reaped |= self.child.wait().is_ok();
    }

    /// SIGSTOP (`stop`) or SIGCONT: a process that stalls, as a long GC
    /// pause or an overloaded VM would, then carries on.
    pub fn pause(&self, stop: bool) {
        self.signal(if stop { libc::SIGSTOP } else { libc::SIGCONT });
    }

    /// SIGTERM, then wait up to `within` for the exit status (`None`: it
    /// still runs).
    pub fn terminate(&mut self, within: Duration) -> io::Result<Option<ExitStatus>> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.reaped = true;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory, in bytes (Linux).
    pub fn rss(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    fn signal(&self, signal: libc::c_int) {
        if !self.reaped {
            // SAFETY: sends a signal to our own child, which we have not reaped.
            unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every node of a [`ClusterSpec`] running with the same flags (in a
/// cluster all with `--bootstrap`), logging to [`ClusterSpec::log_path`].
pub struct LocalCluster {
    spec: ClusterSpec,
    flags: Vec<String>,
    procs: Vec<Option<Process>>,
    paused: Vec<bool>,
}

impl LocalCluster {
    /// Start every node of `spec` with `flags` added to its own
    /// (`--driver`, `--driver-option`, ...), and with fault injection on:
    /// a local cluster is for chaos, tests and benchmarks, and
    /// [`LocalCluster::block`] needs it.
    pub fn start(spec: ClusterSpec, mut flags: Vec<String>) -> io::Result<LocalCluster> {
        flags.insert(0, "--enable-fault-injection".into());
        if spec.nodes() > 1 {
            flags.insert(0, "--bootstrap".into());
        }
        let n = spec.nodes() as usize;
        let mut cluster = LocalCluster {
            spec,
            flags,
            procs: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
        };
        for id in 1..=cluster.nodes() {
            cluster.restart(id)?;
        }
        Ok(cluster)
    }

    /// The layout the nodes run in.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Every node's URL, by id − 1.
    pub fn urls(&self) -> &[String] {
        &self.spec.urls
    }

    /// How many nodes there are, running or not.
    pub fn nodes(&self) -> u64 {
        self.spec.nodes()
    }

    /// Start node `id` (again), appending to its log.
    pub fn restart(&mut self, id: u64) -> io::Result<()> {
        let mut flags = self.spec.flags(id, self.spec.urls.len());
        flags.extend(self.flags.iter().cloned());
        let log = Output::Log(self.spec.log_path(id));
        self.procs[id as usize - 1] = Some(self.spec.spawn(id, &flags, log)?);
        self.paused[id as usize - 1] = false;
        Ok(())
    }

    /// kill -9 node `id`, as a crash or power loss would.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut process) = self.procs[id as usize - 1].take() {
            process.kill9();
        }
        self.paused[id as usize - 1] = false;
    }

    /// SIGSTOP (`stop`) or SIGCONT node `id` (see [`Process::pause`]).
    pub fn pause(&mut self, id: u64, stop: bool) {
        if let Some(process) = &self.procs[id as usize - 1] {
            process.pause(stop);
            self.paused[id as usize - 1] = stop;
        }
    }

    /// Drop node `id`'s peer traffic with `peers` (both directions on
    /// `id`); an empty list heals it.
    pub async fn block(&self, id: u64, peers: &[u64]) -> Result<Faults, AdminError> {
        let faults = Faults {
            blocked_peers: Some(peers.to_vec()),
            ..Faults::default()
        };
        self.admin(id).set_faults(&faults).await
    }

    /// The admin client of node `id`, with [`ADMIN_TOKEN`].
    pub fn admin(&self, id: u64) -> Admin {
        Admin::new(self.spec.url(id), ADMIN_TOKEN).expect("a loopback URL")
    }

    /// The node that serves timestamps now, if exactly one answers so
    /// within a short timeout.
    pub async fn serving(&self) -> Option<u64> {
        let mut serving = Vec::new();
        for id in 1..=self.nodes() {
            if self.procs[id as usize - 1].is_none() || self.paused[id as usize - 1] {
                continue;
            }
            let admin = self.admin(id).with_timeout(Duration::from_millis(500));
            if let Ok(status) = admin.status().await
                && status.serving
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
        (1..=self.nodes())
            .filter(|id| self.procs[*id as usize - 1].is_some())
            .collect()
    }

    /// Stop every node: resume paused ones, then kill -9.
    pub fn stop_all(&mut self) {
        for id in 1..=self.nodes() {
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
