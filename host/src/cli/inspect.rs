//! `tsohost inspect --data-dir DIR [--json]`: what a stopped node's data
//! directory holds ([`crate::datadir`]), for people or scripts.

use crate::datadir::{self, HighWater, Report};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// The data directory of a stopped node (its `serve --data-dir`), or a
    /// copy of one. Read only; refused while a node runs on it.
    #[arg(long, env = "TSOHOST_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Print the report as JSON (for scripts: `.highest_high_water_ms`).
    #[arg(long)]
    pub json: bool,
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let report = datadir::inspect(&args.data_dir)
        .with_context(|| format!("cannot inspect {}", args.data_dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    let unreadable: Vec<&str> = report
        .namespaces
        .iter()
        .filter(|n| matches!(n.high_water, HighWater::Unreadable { .. }))
        .map(|n| n.prefix.as_str())
        .collect();
    if !unreadable.is_empty() {
        bail!(
            "the high water of {} could not be read (above); the directory is damaged or from \
             another tsohost release",
            unreadable.join(", ")
        );
    }
    Ok(())
}

/// A Unix-ms instant as RFC 3339 UTC, for people comparing with clocks.
pub fn utc(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "out of range".into(),
    }
}

/// The report for people.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "data dir:       {}", r.data_dir.display());
    match &r.record {
        Some(rec) => {
            let _ = writeln!(
                s,
                "driver record:  {}, generation {}, floor {} ms{}, {}",
                rec.driver,
                rec.generation,
                rec.floor,
                if rec.floor > 0 {
                    format!(" ({})", utc(rec.floor))
                } else {
                    String::new()
                },
                if rec.sealed { "SEALED" } else { "not sealed" }
            );
        }
        None => {
            let _ = writeln!(
                s,
                "driver record:  none (never sealed, migrated or recovered: the node runs what \
                 --driver says, generation 0, floor 0)"
            );
        }
    }
    if r.compiled_components.is_empty() {
        let _ = writeln!(s, "digests:        no compiled component cached");
    }
    for (i, c) in r.compiled_components.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}sha256 {}{}",
            if i == 0 {
                "digests:        "
            } else {
                "                "
            },
            c.sha256,
            c.modified_unix_s
                .map(|t| format!(" (compiled {})", utc(t * 1000)))
                .unwrap_or_default()
        );
    }
    if r.namespaces.is_empty() {
        let _ = writeln!(s, "drivers:        no driver stored anything yet");
    }
    for n in &r.namespaces {
        let _ = write!(
            s,
            "driver storage: {} ({}{} keys): ",
            n.prefix,
            if n.current { "current, " } else { "" },
            n.keys
        );
        match &n.high_water {
            HighWater::Stored(hw) => {
                let _ = writeln!(
                    s,
                    "high water {} ms ({}){}",
                    hw.high_water_ms,
                    utc(hw.high_water_ms),
                    hw.format
                        .map(|f| format!(", layout version {f}"))
                        .unwrap_or_default()
                );
                for src in &hw.sources {
                    let _ = writeln!(
                        s,
                        "                  {}: {} ms",
                        src.keys, src.high_water_ms
                    );
                }
            }
            HighWater::UnknownDriver => {
                let _ = writeln!(
                    s,
                    "driver {:?} is not built in; this tsohost does not know how it stores its \
                     high water and does not guess",
                    n.driver
                );
            }
            HighWater::Unreadable { error } => {
                let _ = writeln!(s, "UNREADABLE: {error}");
            }
        }
    }
    let _ = writeln!(
        s,
        "highest high water: {} ms ({}){}",
        r.highest_high_water_ms,
        utc(r.highest_high_water_ms),
        if r.complete {
            ""
        } else {
            " — not counting the namespaces above whose high water was not read"
        }
    );
    let _ = writeln!(
        s,
        "formats:        RocksDB {}; host records {}",
        r.formats.rocksdb.as_deref().unwrap_or("(no OPTIONS file)"),
        r.formats.host_records
    );
    s
}
