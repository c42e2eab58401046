//! The command line (docs/architecture.md §7). Every flag of `serve` can also be given in
//! the environment (`TSOHOST_<FLAG>`).

use crate::client;
use crate::driver::DriverSource;
use crate::driver::builtin;
use crate::node::Status;
use crate::server::{self, ServeConfig};
use crate::timestamp::{LOGICAL_PER_MS, RangeJson};
use crate::tools::bench::{self, BenchConfig};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hyper::Method;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The address `serve` listens on and the other commands talk to by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7373";
const DEFAULT_URL: &str = "http://127.0.0.1:7373";

#[derive(Parser, Debug)]
#[command(
    name = "tsohost",
    version,
    about = "A timestamp oracle with WebAssembly consensus drivers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node.
    Serve(Box<ServeArgs>),
    /// Get timestamps from a running node.
    Ts {
        /// How many consecutive timestamps (1 to 262144).
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// Print the JSON answer instead of the bare timestamp.
        #[arg(long)]
        json: bool,
        /// Give up after this long (redirects and retries included).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Show a running node's status: a short summary, or its JSON.
    Status {
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// Print the node's `/v1/status` JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Operate on the driver of a running node (admin token required).
    Driver {
        #[command(subcommand)]
        action: DriverCmd,
    },
    /// Change a running cluster (admin token required); sent to the leader.
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL, global = true)]
        url: String,
        /// The file holding the admin token.
        #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE", global = true)]
        admin_token_file: Option<PathBuf>,
    },
    /// Check a driver component against the contract; exit 0 only if every
    /// rule holds.
    CheckDriver {
        /// The component, or a built-in name.
        driver: String,
        /// Passed to the driver's init, KEY=VALUE; repeatable.
        #[arg(long = "driver-option", value_parser = parse_option)]
        driver_options: Vec<(String, String)>,
        /// Print the verdicts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a local cluster under load while applying faults on a seeded
    /// schedule; check every answer for duplicates and real-time order.
    /// Exit 0 only if the contract held.
    Chaos(ChaosArgs),
    /// Load-test a running node; prints a JSON report.
    Bench {
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Timestamps per request.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// How long to measure (e.g. 10s, 500ms).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Load before measuring starts.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        warmup: Duration,
        /// Make --connections callers of one coalescing tsohost-client
        /// instead of raw connections.
        #[arg(long)]
        client: bool,
    },
}

#[derive(clap::Args, Debug)]
struct ChaosArgs {
    /// The built-in replicated driver: raft or paxos.
    #[arg(long, default_value = "raft")]
    driver: String,
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to apply faults (e.g. 30s, 10m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// The schedule's seed (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Faults to draw from, comma-separated: kill, pause, isolate-leader,
    /// isolate-follower, one-way, swap, clock-jump, storage-fault,
    /// guest-fault (default: all).
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<crate::tools::chaos::Nemesis>,
    /// The nodes' election timeout; faults are scaled to it.
    #[arg(long, default_value_t = 300)]
    election_timeout_ms: u64,
    /// Where the nodes keep data and logs (default: a new directory under
    /// the system's temporary directory, removed if the contract held).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Self-test: corrupt one recorded answer; the run must then fail.
    #[arg(long)]
    inject_violation: bool,
}

#[derive(Subcommand, Debug)]
enum DriverCmd {
    /// Hot-swap the running driver for a new build of it (.wasm); the node
    /// keeps serving, and keeps the old driver if the new one is refused.
    Swap {
        /// The new component.
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// The file holding the node's admin token.
        #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE")]
        admin_token_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Add a node (started with --peers naming the cluster and itself, and
    /// without --bootstrap) as a voter.
    Add {
        #[arg(long)]
        id: u64,
        /// Its peer address, HOST:PORT.
        #[arg(long)]
        address: String,
    },
    /// Remove a node from the voters.
    Remove {
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to another node (any, without --to).
    TransferLeader {
        #[arg(long)]
        to: Option<u64>,
    },
    /// Move every node to another driver: seal the running one, read its
    /// high water, start the new one above it. Every node must be up.
    /// Re-run to finish after a failure; --abort unseals if no node has
    /// switched yet.
    Migrate {
        /// A built-in driver name or a path to a .wasm component.
        #[arg(long, required_unless_present = "abort", conflicts_with = "abort")]
        to: Option<String>,
        /// Unseal the nodes of a migration that switched none of them.
        #[arg(long)]
        abort: bool,
    },
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A built-in driver (file, raft, paxos) or the path of a driver component (.wasm).
    #[arg(long, env = "TSOHOST_DRIVER", default_value = "file")]
    driver: String,
    /// A driver-specific setting, KEY=VALUE; repeatable.
    #[arg(long = "driver-option", env = "TSOHOST_DRIVER_OPTIONS", value_delimiter = ',', value_parser = parse_option)]
    driver_options: Vec<(String, String)>,
    /// Where the node keeps its state.
    #[arg(long, env = "TSOHOST_DATA_DIR", default_value = "./tsohost-data")]
    data_dir: PathBuf,
    /// HTTP listen address (port 0: any free port, printed at start).
    #[arg(long, env = "TSOHOST_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// How far ahead of the clock the durable high water is kept (10ms..60s).
    #[arg(long, env = "TSOHOST_WINDOW", default_value = "3s", value_parser = parse_duration)]
    window: Duration,
    /// This node's id.
    #[arg(long, env = "TSOHOST_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Guest memory cap in MiB.
    #[arg(long, env = "TSOHOST_GUEST_MEMORY_MIB", default_value_t = 128)]
    guest_memory_mib: usize,
    /// Longest a single call into the driver may run (e.g. 1s).
    #[arg(long, env = "TSOHOST_GUEST_CALL_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    guest_call_timeout: Duration,
    /// A file holding the bearer token of the admin API (off without it).
    #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Cluster members and their peer addresses, `ID=HOST:PORT,...`, this
    /// node included. Without it the node runs alone.
    #[arg(long, env = "TSOHOST_PEERS", value_delimiter = ',', value_parser = parse_member)]
    peers: Vec<(u64, String)>,
    /// Peer listen address (default: this node's address in --peers).
    #[arg(long, env = "TSOHOST_PEER_LISTEN")]
    peer_listen: Option<SocketAddr>,
    /// A file holding the cluster secret (at least 16 bytes), the same on
    /// every node.
    #[arg(long, env = "TSOHOST_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Create the cluster on first start (on one node, or on all with the
    /// same --peers).
    #[arg(long, env = "TSOHOST_BOOTSTRAP")]
    bootstrap: bool,
    /// The URL other nodes redirect clients to (default: http:// + --listen).
    #[arg(long, env = "TSOHOST_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Most HTTP connections open at once; more are closed on accept.
    #[arg(long, env = "TSOHOST_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// How long a client may take to send a request's headers; an idle
    /// keep-alive connection is closed after as long (e.g. 30s).
    #[arg(long, env = "TSOHOST_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    header_timeout: Duration,
}

/// `500ms`, `3s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 3s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}` is not a duration like 500ms, 3s or 2m")),
    }
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    match s.split_once('=') {
        Some((id, addr)) if !addr.is_empty() => Ok((
            id.parse()
                .map_err(|_| format!("`{s}`: the node id must be a number"))?,
            addr.to_string(),
        )),
        _ => Err(format!("`{s}` is not ID=HOST:PORT")),
    }
}

/// A secret-bearing file, trimmed; errors name the flag.
fn read_secret_file(path: &std::path::Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    Ok(bytes.trim_ascii().to_vec())
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs what it does; a client command only what went wrong.
    let default_level = match cli.command {
        Cmd::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve(args) => server::serve(serve_config(*args)?).await,
        Cmd::Ts {
            count,
            url,
            json,
            timeout,
        } => {
            if !(1..=LOGICAL_PER_MS).contains(&count) {
                bail!("--count must be from 1 to {LOGICAL_PER_MS}, got {count}");
            }
            // Any node will do: the client follows redirects to the leader
            // and retries until the timeout.
            let config = tsohost_client::Config {
                deadline: timeout,
                ..Default::default()
            };
            let range = tsohost_client::Client::with_config([url.as_str()], config)?
                .get_range(count)
                .await?;
            if json || count > 1 {
                let body = RangeJson::new(range.first, range.count);
                println!("{}", serde_json::to_string(&body)?);
            } else {
                println!("{}", range.first);
            }
            Ok(())
        }
        Cmd::Status { url, json, timeout } => {
            let status = node_status(&url, timeout).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", summary(&status));
            }
            Ok(())
        }
        Cmd::Driver {
            action:
                DriverCmd::Swap {
                    to,
                    url,
                    admin_token_file,
                },
        } => {
            let token =
                String::from_utf8(read_secret_file(&admin_token_file, "--admin-token-file")?)
                    .context("--admin-token-file: the token is not text")?;
            let bytes = std::fs::read(&to)
                .with_context(|| format!("--to {}: cannot read it", to.display()))?;
            let mut conn = client::Connection::open(&url).await?;
            let answer = conn
                .send_with(
                    Method::PUT,
                    "/v1/admin/driver",
                    Bytes::from(bytes),
                    Some(&token),
                )
                .await?;
            let body = String::from_utf8_lossy(&answer.body);
            if !answer.status.is_success() {
                bail!("{url} refused the swap ({}): {body}", answer.status);
            }
            println!("{body}");
            Ok(())
        }
        Cmd::Cluster {
            action,
            url,
            admin_token_file,
        } => cluster(action, &url, admin_token_file).await,
        Cmd::Chaos(args) => chaos(args).await,
        Cmd::CheckDriver {
            driver,
            driver_options,
            json,
        } => {
            let source = driver_source(&driver)?;
            let verdicts = tokio::task::spawn_blocking(move || {
                crate::tools::conformance::check(&source, &driver_options)
            })
            .await?;
            let (text, ok) = crate::tools::conformance::render(&verdicts);
            if json {
                println!("{}", serde_json::to_string_pretty(&verdicts)?);
            } else {
                print!("{text}");
            }
            if !ok {
                bail!("the driver breaks the contract");
            }
            Ok(())
        }
        Cmd::Bench {
            url,
            connections,
            count,
            duration,
            warmup,
            client,
        } => {
            if connections == 0 || !(1..=LOGICAL_PER_MS).contains(&count) || duration.is_zero() {
                bail!(
                    "--connections and --duration must be positive, --count from 1 to {LOGICAL_PER_MS}"
                );
            }
            let report = bench::run(BenchConfig {
                url,
                client,
                connections,
                count,
                duration,
                warmup,
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

/// `tsohost cluster ...`: find the leader through `url`, then ask it.
async fn cluster(action: ClusterCmd, url: &str, token_file: Option<PathBuf>) -> anyhow::Result<()> {
    let token_file = token_file.context("--admin-token-file is required")?;
    let token = String::from_utf8(read_secret_file(&token_file, "--admin-token-file")?)
        .context("--admin-token-file: the token is not text")?;
    if let ClusterCmd::Migrate { to, .. } = &action {
        let target = match to {
            Some(to) => {
                let source = driver_source(to)?;
                Some(crate::tools::migrate::Target {
                    label: to.clone(),
                    bytes: match source.bytes()? {
                        std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                        std::borrow::Cow::Owned(b) => Bytes::from(b),
                    },
                })
            }
            None => None,
        };
        return crate::tools::migrate::run(url, &token, target).await;
    }
    // A node that just started or lost its leader learns the next within an
    // election; wait that long rather than fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = node_status(url, Duration::from_secs(5)).await?;
        if status.leadership.leader.is_some() || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let members = status
        .members
        .as_ref()
        .with_context(|| format!("{url} is not part of a cluster"))?;
    let leader = status
        .leadership
        .leader
        .with_context(|| format!("{url} has known no leader for 10 s; is a majority up?"))?;
    let leader_url = if leader == status.node_id {
        url.to_string()
    } else {
        members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.url.clone())
            .with_context(|| format!("node {leader} leads, but its URL is not known yet"))?
    };
    let current: Vec<(u64, String)> = members.iter().map(|m| (m.id, m.address.clone())).collect();
    let (path, body) = match action {
        ClusterCmd::Add { id, address } => {
            if current.iter().any(|(m, _)| *m == id) {
                bail!("node {id} is already a member");
            }
            let mut next = current.clone();
            next.push((id, address));
            ("/v1/admin/members", members_json(&next))
        }
        ClusterCmd::Remove { id } => {
            if !current.iter().any(|(m, _)| *m == id) {
                bail!("node {id} is not a member");
            }
            let next: Vec<_> = current.into_iter().filter(|(m, _)| *m != id).collect();
            ("/v1/admin/members", members_json(&next))
        }
        ClusterCmd::TransferLeader { to } => (
            "/v1/admin/leader",
            serde_json::json!({ "to": to }).to_string(),
        ),
        ClusterCmd::Migrate { .. } => unreachable!("handled above"),
    };
    let method = if path == "/v1/admin/members" {
        Method::PUT
    } else {
        Method::POST
    };
    let mut conn = client::Connection::open(&leader_url).await?;
    let answer = conn
        .send_with(method, path, Bytes::from(body), Some(&token))
        .await?;
    let text = String::from_utf8_lossy(&answer.body);
    if !answer.status.is_success() {
        bail!("{leader_url} refused ({}): {text}", answer.status);
    }
    println!("{text}");
    Ok(())
}

/// The status of the node at `url`, within `timeout`.
async fn node_status(url: &str, timeout: Duration) -> anyhow::Result<Status> {
    let config = tsohost_client::Config {
        deadline: timeout,
        ..Default::default()
    };
    Ok(tsohost_client::Client::with_config([url], config)?
        .status()
        .await?)
}

/// `tsohost status` without `--json`: what an operator looks at first.
fn summary(s: &Status) -> String {
    let mut out = String::new();
    let serving = if s.serving { "serving" } else { "not serving" };
    let leader = match s.leadership.leader {
        Some(id) if id == s.node_id => "this node leads".to_string(),
        Some(id) => format!("node {id} leads"),
        None => "no known leader".to_string(),
    };
    let epoch = s.leadership.epoch.as_deref().unwrap_or("none yet");
    let _ = writeln!(out, "node {}: {serving}", s.node_id);
    let _ = writeln!(
        out,
        "role:       {} ({leader}), epoch {epoch}",
        s.leadership.role
    );
    let _ = writeln!(
        out,
        "high water: {} ms (window {} ms), last issued {}",
        s.high_water_ms, s.window_ms, s.last_issued
    );
    let d = &s.driver;
    let health = if d.healthy { "healthy" } else { "not healthy" };
    let _ = write!(
        out,
        "driver:     {} {} ({health}, {} crashes, {} swaps)",
        d.name, d.version, d.crashes, d.swaps
    );
    match &d.last_crash {
        Some(why) => {
            let _ = writeln!(out, "; last crash: {why}");
        }
        None => out.push('\n'),
    }
    match &s.members {
        None => out.push_str("members:    none (a single node)\n"),
        Some(members) => {
            let listed: Vec<String> = members
                .iter()
                .map(|m| {
                    let mark = if s.leadership.leader == Some(m.id) {
                        "*"
                    } else {
                        ""
                    };
                    format!("{}{mark} {}", m.id, m.address)
                })
                .collect();
            let _ = writeln!(out, "members:    {} (* leads)", listed.join(", "));
        }
    }
    if let Some(blocked) = s.blocked_peers.as_ref().filter(|b| !b.is_empty()) {
        let _ = writeln!(out, "faults:     blocking peers {blocked:?}");
    }
    let m = &s.migration;
    let sealed = if m.sealed {
        "SEALED for a migration"
    } else {
        "not sealed"
    };
    let _ = writeln!(
        out,
        "data:       driver {} generation {}, floor {} ms, {sealed}",
        m.driver, m.generation, m.floor
    );
    out
}

fn members_json(members: &[(u64, String)]) -> String {
    let list: Vec<_> = members
        .iter()
        .map(|(id, address)| serde_json::json!({"id": id, "address": address}))
        .collect();
    serde_json::json!({ "members": list }).to_string()
}

/// `--driver`: a built-in name or a path.
fn driver_source(driver: &str) -> anyhow::Result<DriverSource> {
    match builtin::builtin(driver) {
        Some(source) => Ok(source),
        None if driver.ends_with(".wasm") || driver.contains('/') => {
            Ok(DriverSource::File(PathBuf::from(driver)))
        }
        None => bail!(
            "--driver {driver}: not a built-in driver ({}) nor a path to a .wasm component",
            builtin::NAMES.join(", ")
        ),
    }
}

fn serve_config(args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let driver = driver_source(&args.driver)?;
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&args.window) {
        bail!("--window must be from 10ms to 60s, got {:?}", args.window);
    }
    if args.guest_call_timeout < Duration::from_millis(10) {
        bail!("--guest-call-timeout must be at least 10ms");
    }
    if !(16..=4096).contains(&args.guest_memory_mib) {
        bail!("--guest-memory-mib must be from 16 to 4096");
    }
    if !(1..=1_000_000).contains(&args.max_connections) {
        bail!("--max-connections must be from 1 to 1000000");
    }
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&args.header_timeout) {
        bail!("--header-timeout must be from 100ms to 1h");
    }
    let admin_token = match &args.admin_token_file {
        None => None,
        Some(path) => {
            let token = read_secret_file(path, "--admin-token-file")?;
            let token = String::from_utf8(token)
                .ok()
                .filter(|t| t.len() >= 16)
                .with_context(|| {
                    format!(
                        "--admin-token-file {}: the token must be at least 16 characters of text",
                        path.display()
                    )
                })?;
            Some(token)
        }
    };
    let cluster = if args.peers.is_empty() {
        if args.peer_listen.is_some() || args.cluster_secret_file.is_some() {
            bail!("--peer-listen and --cluster-secret-file need --peers");
        }
        None
    } else {
        let members: std::collections::BTreeMap<u64, String> = args.peers.iter().cloned().collect();
        if members.len() != args.peers.len() {
            bail!("--peers names a node id twice");
        }
        let Some(own) = members.get(&args.node_id) else {
            bail!(
                "--peers must include this node (--node-id {}) with its peer address",
                args.node_id
            );
        };
        let peer_listen = match args.peer_listen {
            Some(addr) => addr,
            None => own.parse().with_context(|| {
                format!("--peers gives this node the address {own}; pass --peer-listen HOST:PORT")
            })?,
        };
        let path = args
            .cluster_secret_file
            .as_ref()
            .context("a cluster needs --cluster-secret-file (the same secret on every node)")?;
        let secret =
            crate::peer::auth::Secret::new(&read_secret_file(path, "--cluster-secret-file")?)
                .with_context(|| {
                    format!(
                        "--cluster-secret-file {}: the secret must be at least 16 bytes",
                        path.display()
                    )
                })?;
        Some(server::ClusterConfig {
            peer_listen,
            members,
            secret,
            bootstrap: args.bootstrap,
            advertise_url: args.advertise_url,
        })
    };
    Ok(ServeConfig {
        cluster,
        admin_token,
        driver,
        driver_options: args.driver_options,
        data_dir: args.data_dir,
        listen: args.listen,
        window: args.window,
        node_id: args.node_id,
        guest_memory: args.guest_memory_mib << 20,
        guest_call_timeout: args.guest_call_timeout,
        http: crate::http::Limits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
        },
    })
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    if !(3..=7).contains(&args.nodes) {
        bail!("--nodes must be from 3 to 7");
    }
    if !(1..=1024).contains(&args.clients) {
        bail!("--clients must be from 1 to 1024");
    }
    if !(50..=60_000).contains(&args.election_timeout_ms) {
        bail!("--election-timeout-ms must be from 50 to 60000");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let temporary = args.dir.is_none();
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tsohost-chaos-{}-{seed}", std::process::id()))
    });
    let config = crate::tools::chaos::ChaosConfig {
        exe: std::env::current_exe().context("cannot find the tsohost binary to run nodes")?,
        driver: args.driver,
        nodes: args.nodes,
        clients: args.clients,
        duration: args.duration,
        seed,
        nemeses: if args.nemesis.is_empty() {
            crate::tools::chaos::Nemesis::ALL.to_vec()
        } else {
            args.nemesis
        },
        election_timeout_ms: args.election_timeout_ms,
        dir: dir.clone(),
        inject_violation: args.inject_violation,
    };
    eprintln!("chaos: seed {seed} (rerun with --seed {seed})");
    let report = crate::tools::chaos::run(&config, |line| eprintln!("chaos: {line}")).await?;
    print!("{report}");
    if !report.kept() {
        bail!(
            "the contract was violated; the nodes' logs are in {}",
            dir.display()
        );
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{DriverStatus, LeadershipStatus, Member, MigrationStatus, StatusRole};
    use crate::timestamp::Timestamp;

    #[test]
    fn the_summary_names_the_leader_and_the_seal() {
        let member = |id: u64| Member {
            address: format!("127.0.0.1:750{id}"),
            id,
            url: None,
        };
        let status = Status {
            blocked_peers: Some(vec![]),
            driver: DriverStatus {
                crashes: 1,
                digest: "ab".into(),
                healthy: true,
                last_crash: Some("trap".into()),
                loaded_at_ms: 0,
                name: "raft".into(),
                source: "built-in driver \"raft\"".into(),
                swaps: 0,
                version: "0.3.0".into(),
                wit_version: "0.1.0".into(),
            },
            high_water_ms: 5,
            last_issued: Timestamp(7),
            leadership: LeadershipStatus {
                epoch: Some("3.0".into()),
                leader: Some(2),
                role: StatusRole::Follower,
            },
            members: Some(vec![member(1), member(2)]),
            migration: MigrationStatus {
                driver: "raft".into(),
                floor: 9,
                generation: 1,
                sealed: true,
            },
            node_id: 1,
            serving: false,
            window_ms: 3000,
        };
        let text = summary(&status);
        assert!(text.starts_with("node 1: not serving\n"), "{text}");
        assert!(
            text.contains("follower (node 2 leads), epoch 3.0"),
            "{text}"
        );
        assert!(text.contains("raft 0.3.0 (healthy, 1 crashes, 0 swaps); last crash: trap"));
        assert!(
            text.contains("1 127.0.0.1:7501, 2* 127.0.0.1:7502"),
            "{text}"
        );
        assert!(text.contains("generation 1, floor 9 ms, SEALED"), "{text}");
        assert!(!text.contains("faults"), "{text}");
    }
}
