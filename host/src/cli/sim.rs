//! `tsohost sim`: a deterministic cluster simulation of a driver component
//! (see [`crate::sim`]).

use super::parse::{driver_source, parse_duration, parse_option};
use crate::driver::Runtime;
use crate::sim::{self, Faults, Spec};
use anyhow::{Context, bail};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub(super) struct SimArgs {
    /// The driver: a built-in name (raft, paxos, file) or a .wasm path.
    driver: String,
    /// Nodes in the simulated cluster (1 to 7).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run this seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run every seed of an inclusive range, A..B (e.g. 1..200); stops at
    /// the first violation.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Option<(u64, u64)>,
    /// Simulated time per seed (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Faults to inject: `all`, `none`, or a comma list of partition,
    /// one-way, isolate-leader, bridge, storm, power-loss, pause, trap, hang,
    /// exhaust, clock, disk, transfer, membership.
    #[arg(long, default_value = "all")]
    faults: Faults,
    /// Passed to every node's driver, KEY=VALUE; repeatable.
    #[arg(long = "driver-option", value_parser = parse_option)]
    driver_options: Vec<(String, String)>,
    /// The host's window (as `serve --window`).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    window: Duration,
    /// Once the faults stop, some node must serve within this; the last
    /// stretch of each run, this long, is free of faults.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    liveness: Duration,
    /// Print every event of the run as it happens (use with one --seed).
    #[arg(long)]
    trace: bool,
}

fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{s}` is not a seed range like 1..200");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a > b {
        return Err(format!("`{s}`: the first seed is above the last"));
    }
    Ok((a, b))
}

pub(super) fn sim(args: SimArgs) -> anyhow::Result<()> {
    if !(1..=7).contains(&args.nodes) {
        bail!("--nodes must be from 1 to 7, got {}", args.nodes);
    }
    if args.liveness >= args.duration {
        bail!(
            "--liveness ({:?}) must be shorter than --duration ({:?}): faults happen before it",
            args.liveness,
            args.duration
        );
    }
    let source = driver_source(&args.driver)?;
    let runtime = Runtime::new(None).context("setting up wasmtime")?;
    let driver = runtime.load(&source).context("loading the driver")?;
    let (first, last) = args
        .seeds
        .unwrap_or_else(|| args.seed.map(|s| (s, s)).unwrap_or((1, 1)));
    let mut spec = Spec {
        nodes: args.nodes,
        duration_ms: args.duration.as_millis() as u64,
        faults: args.faults,
        options: args.driver_options,
        window_ms: args.window.as_millis() as u64,
        liveness_ms: args.liveness.as_millis() as u64,
        print_trace: args.trace,
        ..Spec::default()
    };
    let started = Instant::now();
    let mut simulated_ms = 0;
    for seed in first..=last {
        spec.seed = seed;
        let summary = sim::run(&driver, &spec).map_err(anyhow::Error::msg)?;
        simulated_ms += summary.simulated_ms;
        println!("seed {seed}: {}", summary.line());
        if let Some(report) = summary.report(&spec, &args.driver) {
            print!("\n{report}");
            bail!("the cluster broke a promise with seed {seed}");
        }
    }
    let took = started.elapsed();
    eprintln!(
        "{} seed(s), {:.1} s simulated in {:.1} s: {:.0}× real time",
        last - first + 1,
        simulated_ms as f64 / 1e3,
        took.as_secs_f64(),
        simulated_ms as f64 / 1e3 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}
