//! `tsohost chaos`: a local cluster under faults, every answer checked.

use super::parse::parse_duration;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(super) struct ChaosArgs {
    /// The replicated driver: the built-in raft or paxos, or the path of a
    /// .wasm component (it must take the options election-timeout-ms and
    /// heartbeat-ms).
    #[arg(long, default_value = "raft")]
    driver: String,
    /// How many nodes the cluster has.
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

pub(super) async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
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
