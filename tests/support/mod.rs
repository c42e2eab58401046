//! Shared by the black-box tests: run the real `tsohost` binary as a process
//! on a real socket and a real data directory, talk to it over HTTP, and
//! check every answer against the contract.
#![allow(dead_code)] // each test binary uses a part

pub mod checker;

use bytes::Bytes;
use hyper::Method;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsohost::client::{Answer, Connection};
pub use tsohost::tools::cluster::ADMIN_TOKEN;
use tsohost::tools::cluster::{Output, Process};
use tsohost::tools::load::LoadSpec;
use tsohost_client::admin::Admin;
use tsohost_client::status::Status;

pub const BIN: &str = env!("CARGO_BIN_EXE_tsohost");

/// A test guest component built by the guest workspace.
pub fn guest(file: &str) -> PathBuf {
    let path = Path::new(tsohost::driver::builtin::guest_dir()).join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Run `examples/drivers/<dir>/build.sh` (it installs its toolchain from
/// the package registries); the component it built, `out/<component>`.
/// Call it once per test binary for a given example (see
/// [`javascript_paxos`]): two builds of one example at once would race.
pub fn build_example(dir: &str, component: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/drivers")
        .join(dir);
    let out = Command::new(dir.join("build.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "{}/build.sh failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = dir.join("out").join(component);
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm
}

/// The replicated driver written in JavaScript
/// (examples/drivers/javascript-paxos), built once per test binary, with
/// the cluster tests' fast timing.
pub fn javascript_paxos() -> Replicated {
    static BUILT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    let path = BUILT.get_or_init(|| {
        let wasm = build_example("javascript-paxos", "javascript-paxos.wasm");
        Box::leak(wasm.to_str().unwrap().to_string().into_boxed_str())
    });
    Replicated {
        driver: path,
        component: path,
        exact_transfer: false,
    }
}

/// A running `tsohost serve` whose stderr is kept, killed (SIGKILL) when
/// dropped.
pub struct Server {
    process: Process,
    pub url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Start on a free port (unless `args` has a `--listen`) with `args`
    /// added to `serve`; waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_path_buf(), args)
    }

    fn spawn(data_dir: PathBuf, args: Vec<String>) -> Server {
        let mut flags = Vec::new();
        if !args.iter().any(|a| a == "--listen") {
            flags.extend(["--listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        flags.extend(args.iter().cloned());
        let mut process = Process::spawn(Path::new(BIN), &data_dir, &flags, Output::Capture)
            .expect("spawn tsohost");
        let url = process
            .listening()
            .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", process.stderr()));
        Server {
            process,
            url,
            data_dir,
            args,
        }
    }

    /// Resident memory of the process, in bytes (Linux).
    pub fn rss(&self) -> u64 {
        self.process.rss().expect("VmRSS in /proc/PID/status")
    }

    /// kill -9, as a crash or power loss would.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, then wait (up to 10 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process
            .terminate(Duration::from_secs(10))
            .unwrap()
            .expect("no exit 10 s after SIGTERM")
    }

    /// kill -9 and start again on the same data directory.
    pub fn crash_and_restart(mut self) -> Server {
        self.kill9();
        Self::spawn(self.data_dir.clone(), self.args.clone())
    }

    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Poll `/readyz` until the node serves.
    pub async fn wait_ready(&self) {
        if !ready_within(&self.url, Duration::from_secs(30)).await {
            panic!(
                "{} never became ready; stderr:\n{}",
                self.url,
                self.stderr()
            );
        }
    }
}

/// Poll `url`'s `/readyz` every 20 ms until it answers 200 (true) or
/// `within` has passed (false).
pub async fn ready_within(url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if get(url, "/readyz").await.is_ok_and(|a| a.status == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
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

/// An `n`-node cluster on loopback laid out by
/// [`tsohost::tools::cluster::ClusterSpec`] (its URLs, data directories,
/// addresses and flags, through `Deref`) in a temporary directory, with
/// nodes started one by one as [`Server`]s.
pub struct ClusterSpec {
    pub dir: tempfile::TempDir,
    spec: tsohost::tools::cluster::ClusterSpec,
}

impl Deref for ClusterSpec {
    type Target = tsohost::tools::cluster::ClusterSpec;

    fn deref(&self) -> &Self::Target {
        &self.spec
    }
}

impl ClusterSpec {
    pub fn new(n: u64) -> ClusterSpec {
        let dir = tempfile::tempdir().unwrap();
        let spec = tsohost::tools::cluster::ClusterSpec::create(BIN, dir.path(), n).unwrap();
        ClusterSpec { dir, spec }
    }

    /// `serve` arguments of node `id` (node id, peers, secret, admin token,
    /// listen address), then `extra`.
    pub fn args(&self, id: u64, extra: &[&str]) -> Vec<String> {
        self.args_among(id, self.urls.len(), extra)
    }

    /// As [`ClusterSpec::args`], naming only nodes `1..=n` in `--peers`: the
    /// cluster as it is before later nodes join.
    pub fn args_among(&self, id: u64, n: usize, extra: &[&str]) -> Vec<String> {
        let mut args = self.spec.flags(id, n);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub fn start(&self, id: u64, extra: &[&str]) -> Server {
        self.start_among(id, self.urls.len(), extra)
    }

    /// Start node `id` knowing only nodes `1..=n` (and itself).
    pub fn start_among(&self, id: u64, n: usize, extra: &[&str]) -> Server {
        Server::spawn(self.data_dir(id), self.args_among(id, n, extra))
    }
}

/// `tsohost certs init DIR [args]`: (exit code, stdout, stderr).
pub fn certs_init(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["certs", "init"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run tsohost certs init");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh CA with node, client and peer (nodes 1 to 3) certificates in
/// `parent/name` (`tsohost certs init`).
pub fn ca(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    let (code, _, err) = certs_init(&dir, &[]);
    assert_eq!(code, 0, "certs init failed: {err}");
    dir
}

/// The peer TLS flags of node `id` with the certificates of [`ca`] in `certs`.
pub fn peer_tls_flags(certs: &Path, id: u64) -> Vec<String> {
    let file = |name: String| certs.join(name).to_str().unwrap().to_string();
    vec![
        "--peer-tls-cert".into(),
        file(format!("peer-{id}.pem")),
        "--peer-tls-key".into(),
        file(format!("peer-{id}.key")),
        "--peer-ca".into(),
        file("ca.pem".into()),
    ]
}

/// A certificate for the DNS name `name`, for servers and clients, signed
/// by the CA of [`ca`] in `certs`, valid from `from` to `to` days from
/// now: the certificates `certs init` does not make (expired ones).
pub fn ca_signed(certs: &Path, name: &str, from: i64, to: i64) -> (PathBuf, PathBuf) {
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(certs.join("ca.key")).unwrap()).unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "tsohost CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(to);
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = certs.join(format!("made-{name}-{from}-{to}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, key_file) = (dir.join("cert.pem"), dir.join("cert.key"));
    std::fs::write(&pem, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (pem, key_file)
}

/// The stdout of a command that must have succeeded; its stdout and
/// stderr are the failure's message.
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
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

/// The admin client of the node at `url`, with [`ADMIN_TOKEN`].
pub fn admin_client(url: &str) -> Admin {
    Admin::new(url, ADMIN_TOKEN).unwrap()
}

/// The node's `GET /v1/status`, typed.
pub async fn status(url: &str) -> Status {
    admin_client(url)
        .status()
        .await
        .unwrap_or_else(|e| panic!("status of {url}: {e}"))
}

/// An admin request as raw HTTP with (or without) the token: for the tests
/// of the wire itself (bad tokens, bad bodies); others use [`admin_client`].
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
/// (exit code, stderr). A node still running after 30 s started although it
/// should not have: it is killed and the test fails (rather than hangs).
pub fn serve_refused(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let mut serve = Command::new(BIN);
    serve.arg("serve");
    if !args.contains(&"--listen") {
        serve.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = serve
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tsohost");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for tsohost").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect tsohost's output");
            panic!(
                "tsohost started although it should have refused: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect tsohost's output");
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

/// The value of metric `name` at `url`'s `/metrics`.
pub async fn metric(url: &str, name: &str) -> u64 {
    metric_in(&metrics_text(url).await, name)
}

/// The node's `/metrics` text.
pub async fn metrics_text(url: &str) -> String {
    let answer = get(url, "/metrics").await.expect("metrics");
    String::from_utf8_lossy(&answer.body).into_owned()
}

/// The value of the series `name` (with its labels, as rendered) in
/// `text`, a fractional one.
pub fn value_in(text: &str, name: &str) -> f64 {
    sample(text, name).parse().unwrap()
}

fn sample<'t>(text: &'t str, name: &str) -> &'t str {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
}

/// The value of metric `name` in a Prometheus text body.
pub fn metric_in(text: &str, name: &str) -> u64 {
    sample(text, name).parse().unwrap()
}

/// Clients that hammer `url` until `stop`, recording every answer in
/// `history`.
pub fn spawn_clients(
    url: &str,
    clients: usize,
    count: u64,
    history: checker::History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<checker::History>> {
    spawn_cluster_clients(&[url.to_string()], clients, count, history, stop)
}

/// How the cluster tests run a replicated driver: `serve` flags with short
/// timeouts so that the tests are quick (the lease arguments only need every
/// node to use the same), and the component a swap uploads.
pub struct Replicated {
    /// The built-in driver's name, or the path of a component.
    pub driver: &'static str,
    /// The driver's component in the guest build (or its path), for swaps.
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
        .arg(spec.token_file())
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
/// moves to the next node when one fails or answers 503
/// ([`tsohost::tools::load`]).
pub fn spawn_cluster_clients(
    urls: &[String],
    clients: usize,
    count: u64,
    history: checker::History,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<checker::History>> {
    let spec = LoadSpec {
        count,
        timeout: Duration::from_secs(30),
        backoff: Duration::from_millis(5),
    };
    let histories = std::iter::repeat_n(history, clients);
    tsohost::tools::load::spawn(urls, &spec, &stop, histories)
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
