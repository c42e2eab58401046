//! Flag values: each parser's error names the value and the form it wants.

use crate::driver::{DriverSource, builtin};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::time::Duration;

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

pub(super) fn parse_member(s: &str) -> Result<(u64, String), String> {
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
pub(super) fn read_secret_file(path: &std::path::Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    Ok(bytes.trim_ascii().to_vec())
}

pub(super) fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `--driver`: a built-in name or a path.
pub(super) fn driver_source(driver: &str) -> anyhow::Result<DriverSource> {
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
