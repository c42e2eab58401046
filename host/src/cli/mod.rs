//! The command line (docs/architecture.md §7). Every flag of `serve` can
//! also be given in the environment (`TSOHOST_<FLAG>`).
//!
//! - this module: the commands and their dispatch;
//! - [`parse`]: flag values (durations, members, options, driver names);
//! - [`serve`]: `serve`'s flags, checked into a [`ServeConfig`];
//! - [`config`]: `serve --config FILE`, the same settings in a TOML file;
//! - [`remote`]: commands that talk to running nodes (`status`, `cluster`);
//! - [`inspect`], [`recover`]: `tsohost inspect` and `tsohost recover`
//!   (a stopped node's data directory; recovery after quorum loss);
//! - [`new_driver`]: `tsohost new-driver`, a driver project from a template;
//! - [`chaos`]: `tsohost chaos`;
//! - [`sim`]: `tsohost sim`.

mod certs;
mod chaos;
mod config;
mod inspect;
mod new_driver;
mod parse;
mod recover;
mod remote;
mod serve;
mod sim;
mod tls;

pub use parse::parse_duration;

use crate::server;
use crate::timestamp::{LOGICAL_PER_MS, RangeJson};
use crate::tools::bench::{self, BenchConfig};
use anyhow::{Context, bail};
use chaos::ChaosArgs;
use clap::{Parser, Subcommand};
use parse::{driver_source, parse_option, read_secret_file};
use remote::{cluster, node_status, status_report};
use serve::{ServeArgs, serve_config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tsohost_client::admin::Admin;

/// The address `serve` listens on and the other commands talk to by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7373";

/// `--version`: the host's version, the commit it was built from, the WIT
/// package its own drivers implement and every version it loads, e.g.
/// `0.1.0 (commit 49c85f1a2b3c, WIT tsohost:driver@0.2.0, loads 0.1.0 0.2.0)`.
fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (commit {}, WIT tsohost:driver@{}, loads {})",
            env!("CARGO_PKG_VERSION"),
            env!("TSOHOST_GIT_COMMIT"),
            crate::driver::bindings::WIT_VERSION,
            crate::driver::bindings::WIT_VERSIONS.join(" ")
        )
    })
}
const DEFAULT_URL: &str = "http://127.0.0.1:7373";

#[derive(Parser, Debug)]
#[command(
    name = "tsohost",
    version = version_line(),
    about = "A timestamp oracle with WebAssembly consensus drivers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    client_tls: tls::ClientTlsArgs,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line, with the fields of structured events: event, node,
    /// epoch, driver, digest, ...) for log collectors. `RUST_LOG` sets the
    /// levels (e.g. `RUST_LOG=info,tsohost::peer=debug`).
    #[arg(long, env = "TSOHOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
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
        /// The node to ask (any node of a cluster: followers redirect).
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
        /// The node to ask (any node of a cluster: followers redirect).
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// Print the node's `/v1/status` JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// Give up after this long.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// The summary's rates and latencies are measured over this long
        /// (two reads of `/metrics`); `0s` reads them once, without rates.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
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
        /// A node of the cluster; the command finds the leader through it.
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL, global = true)]
        url: String,
        /// The file holding the admin token.
        #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE", global = true)]
        admin_token_file: Option<PathBuf>,
        /// For nodes started with --admin-listen: their admin URLs,
        /// comma-separated (the leader's among them; for migrate, every
        /// node's). Default: the URLs the nodes advertise.
        #[arg(long, env = "TSOHOST_ADMIN_URL", value_delimiter = ',', global = true)]
        admin_url: Vec<String>,
        /// Give up on a node that does not answer a request within this.
        #[arg(long, default_value = "60s", value_parser = parse_duration, global = true)]
        timeout: Duration,
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
        /// Keep compiled components here and reuse them, as `serve` does in
        /// its data directory, so that a second check of an unchanged
        /// component starts at once. Default: $XDG_CACHE_HOME/tsohost, else
        /// ~/.cache/tsohost.
        #[arg(long, env = "TSOHOST_CACHE_DIR", value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Compile the component afresh, without the cache.
        #[arg(long, conflicts_with = "cache_dir")]
        no_cache: bool,
    },
    /// Start a driver in Rust, Python, JavaScript, C or Zig: write a small,
    /// working single-node driver project (source, build script, README)
    /// that passes check-driver as it is.
    NewDriver(new_driver::NewDriverArgs),
    /// Simulate a cluster of a driver deterministically (simulated time,
    /// network, disks with power loss, faults) and check every promise.
    /// Exit 0 only if no seed broke one.
    Sim(sim::SimArgs),
    /// Print a shell completion script: `tsohost completions bash >
    /// /etc/bash_completion.d/tsohost` (zsh, fish, elvish, powershell too).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Show what a stopped node's data directory holds: the driver record,
    /// each driver's durable high water, the storage formats. Read only;
    /// refused while a node runs on it.
    Inspect(inspect::InspectArgs),
    /// After a cluster lost its majority for good: create the data
    /// directories of a new cluster whose timestamps all lie above the
    /// highest high water of the old one's surviving directories
    /// (docs/operations.md, "Recovery after quorum loss").
    Recover(recover::RecoverArgs),
    /// Make certificates for HTTPS: a CA, a node and a client certificate.
    Certs {
        #[command(subcommand)]
        action: certs::CertsCmd,
    },
    /// Run a local cluster under load while applying faults on a seeded
    /// schedule; check every answer for duplicates and real-time order.
    /// Exit 0 only if the contract held.
    Chaos(ChaosArgs),
    /// Load-test a running node; prints a JSON report.
    Bench {
        /// The node to ask (any node of a cluster: followers redirect).
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
        /// With --client: coalesced requests in flight at once (the
        /// client's `Config::max_in_flight`; its default when absent).
        #[arg(long, requires = "client")]
        max_in_flight: Option<usize>,
        /// Give up if the last answers have not come this long after
        /// --warmup and --duration (a stopped node never answers).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum DriverCmd {
    /// Hot-swap the running driver for a new build of it (.wasm); the node
    /// keeps serving, and keeps the old driver if the new one is refused.
    Swap {
        /// The new component.
        #[arg(long)]
        to: PathBuf,
        /// The node to ask (any node of a cluster: followers redirect).
        #[arg(long, env = "TSOHOST_URL", default_value = DEFAULT_URL)]
        url: String,
        /// The file holding the node's admin token.
        #[arg(long, env = "TSOHOST_ADMIN_TOKEN_FILE")]
        admin_token_file: PathBuf,
        /// The node's admin URL, if it was started with --admin-listen
        /// (default: --url).
        #[arg(long, env = "TSOHOST_ADMIN_URL")]
        admin_url: Option<String>,
        /// Give up if the node has not answered within this (it compiles
        /// the component first).
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Add a node (started with --peers naming the cluster and itself, and
    /// without --bootstrap) as a voter.
    Add {
        /// The new node's id (its --node-id).
        #[arg(long)]
        id: u64,
        /// Its peer address, HOST:PORT.
        #[arg(long)]
        address: String,
    },
    /// Remove a node from the voters.
    Remove {
        /// The id of the node to remove.
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to another node (any, without --to).
    TransferLeader {
        /// The node to hand leadership to (default: the driver picks one).
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

/// Where `check-driver` keeps compiled components by default:
/// `$XDG_CACHE_HOME/tsohost`, else `~/.cache/tsohost` (the XDG base
/// directory convention); none if neither variable is set.
fn user_cache_dir() -> Option<PathBuf> {
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("tsohost"))
}

pub fn main() -> ExitCode {
    let cli = parse_command_line();
    // A server logs what it does; a client command only what went wrong.
    // A simulation's drivers fail on purpose all the time; what matters is
    // in its report.
    let default_level = match cli.command {
        Cmd::Serve(_) => "info",
        Cmd::Sim(_) => "off",
        // What the check found is in its report; the log says only whether
        // the component was compiled or came from the cache (the first
        // check of a large component takes a while). `RUST_LOG=info` adds
        // the driver's own output.
        Cmd::CheckDriver { .. } => "off,tsohost::driver::component=info",
        _ => "warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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

/// The command line, with `serve --config FILE`'s settings added as flags
/// ([`config`]); exits with clap's status 2 on an error of either.
fn parse_command_line() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Cli::command();
    let (argv, file) = match config::with_config_file(&cmd, std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let Some(file) = file else {
        return Cli::parse_from(argv);
    };
    match cmd
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                eprintln!(
                    "note: the settings of {} are passed as the flags they name (flags and \
                     TSOHOST_* variables override them)",
                    file.display()
                );
            }
            std::process::exit(e.exit_code());
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if !matches!(
        cli.command,
        Cmd::Serve(_)
            | Cmd::Certs { .. }
            | Cmd::Completions { .. }
            | Cmd::Inspect(_)
            | Cmd::Recover(_)
            | Cmd::NewDriver(_)
    ) {
        cli.client_tls.install()?;
    }
    match cli.command {
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tsohost",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cmd::Certs { action } => certs::certs(action),
        Cmd::Inspect(args) => inspect::inspect(args),
        Cmd::Recover(args) => recover::recover(args),
        Cmd::NewDriver(args) => new_driver::new_driver(args),
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
                tls: tls::client(),
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
        Cmd::Status {
            url,
            json,
            timeout,
            interval,
        } => {
            if json {
                let status = node_status(&url, timeout).await?;
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_report(&url, timeout, interval).await?);
            }
            Ok(())
        }
        Cmd::Driver {
            action:
                DriverCmd::Swap {
                    to,
                    url,
                    admin_token_file,
                    admin_url,
                    timeout,
                },
        } => {
            let token =
                String::from_utf8(read_secret_file(&admin_token_file, "--admin-token-file")?)
                    .context("--admin-token-file: the token is not text")?;
            let bytes = std::fs::read(&to)
                .with_context(|| format!("--to {}: cannot read it", to.display()))?;
            let admin = Admin::new(admin_url.unwrap_or(url), token)?
                .with_timeout(timeout)
                .with_tls(tls::client());
            let driver = admin.swap(bytes).await?;
            println!("{}", serde_json::json!({ "driver": driver }));
            Ok(())
        }
        Cmd::Cluster {
            action,
            url,
            admin_token_file,
            admin_url,
            timeout,
        } => {
            let access = crate::tools::migrate::Access {
                admin_urls: admin_url,
                timeout,
                tls: tls::client(),
            };
            cluster(action, &url, admin_token_file, &access).await
        }
        Cmd::Chaos(args) => chaos::chaos(args).await,
        Cmd::Sim(args) => tokio::task::spawn_blocking(move || sim::sim(args)).await?,
        Cmd::CheckDriver {
            driver,
            driver_options,
            json,
            cache_dir,
            no_cache,
        } => {
            let source = driver_source(&driver)?;
            let cache_dir = match (no_cache, cache_dir) {
                (true, _) => None,
                (false, Some(dir)) => Some(dir),
                (false, None) => user_cache_dir(),
            };
            let report = tokio::task::spawn_blocking(move || {
                let cluster = |loaded: &_, options: &[(String, String)]| {
                    crate::sim::gate(loaded, options, &driver)
                };
                crate::tools::conformance::check(
                    &source,
                    &driver_options,
                    Some(&cluster),
                    cache_dir,
                )
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if let Some(why) = report.refused_options() {
                bail!("{why}");
            }
            if !report.passed() {
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
            max_in_flight,
            timeout,
        } => {
            if max_in_flight == Some(0) {
                bail!("--max-in-flight must be positive");
            }
            if connections == 0 || !(1..=LOGICAL_PER_MS).contains(&count) || duration.is_zero() {
                bail!(
                    "--connections and --duration must be positive, --count from 1 to {LOGICAL_PER_MS}"
                );
            }
            let within = warmup + duration + timeout;
            let bench_url = url.clone();
            let report = bench::run(BenchConfig {
                url,
                client,
                max_in_flight,
                connections,
                count,
                duration,
                warmup,
                tls: tls::client(),
            });
            let report = tokio::time::timeout(within, report).await.map_err(|_| {
                anyhow::anyhow!(
                    "{bench_url} did not answer: the bench had not finished {within:?} after \
                         it began (--warmup + --duration + --timeout); is the node stopped?"
                )
            })??;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and every flag says what it is for in `--help`.
    #[test]
    fn every_subcommand_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != "tsohost" {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
