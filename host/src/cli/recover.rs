//! `tsohost recover --from DIR... --to NEWDIR... [--floor-ms MS]`: seed the
//! data directories of a new cluster above every timestamp an old one
//! served ([`crate::recovery`]; the runbook is docs/operations.md).

use super::inspect::utc;
use crate::recovery;
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// A data directory of the old cluster: a surviving node's (stopped)
    /// or a backup. Repeatable; give every one there is.
    #[arg(long)]
    pub from: Vec<PathBuf>,
    /// A new node's data directory to create (absent or empty), one per
    /// node of the new cluster. Repeatable.
    #[arg(long, required = true)]
    pub to: Vec<PathBuf>,
    /// The floor, Unix ms: at least the highest high water of the --from
    /// directories (refused if lower). Default: exactly that. Needed
    /// without --from (seeding a node on another machine with the floor
    /// printed there).
    #[arg(long)]
    pub floor_ms: Option<u64>,
    /// The driver the new cluster runs (default: the one the --from
    /// directories ran).
    #[arg(long)]
    pub driver: Option<String>,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Outcome<'a> {
    #[serde(flatten)]
    plan: &'a recovery::Plan,
    seeded: &'a [PathBuf],
}

pub fn recover(args: RecoverArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for dir in &args.from {
        reports.push(
            crate::datadir::inspect(dir)
                .with_context(|| format!("--from {}: cannot read it", dir.display()))?,
        );
    }
    let plan = recovery::plan(&reports, args.floor_ms, args.driver.as_deref())?;
    // Every target is checked before any is created: a refused run leaves
    // nothing behind.
    for to in &args.to {
        recovery::check_target(to).with_context(|| format!("--to {}", to.display()))?;
    }
    let record = recovery::record(&plan);
    for to in &args.to {
        recovery::seed(to, &record).with_context(|| format!("--to {}", to.display()))?;
    }
    if args.json {
        let out = Outcome {
            plan: &plan,
            seeded: &args.to,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for e in &plan.evidence {
        println!(
            "{} holds high water {} ms ({})",
            e.data_dir.display(),
            e.highest_high_water_ms,
            utc(e.highest_high_water_ms)
        );
    }
    for u in &plan.unchecked {
        println!("not checked (--floor-ms taken on trust): {u}");
    }
    println!(
        "floor {} ms ({}), driver {}",
        plan.floor_ms,
        utc(plan.floor_ms),
        plan.driver
    );
    for to in &args.to {
        println!("seeded {}", to.display());
    }
    println!(
        "next: start each new node with `tsohost serve --data-dir NEWDIR --driver {}` and a new \
         cluster's --node-id, --peers, --cluster-secret-file (a new secret) and --bootstrap; every timestamp it \
         serves lies above {} ms",
        plan.driver, plan.floor_ms
    );
    Ok(())
}
