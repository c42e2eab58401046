//! Flag values: each parser's error names the value and the form it wants.

use crate::driver::{DriverSource, builtin};
use anyhow::{Context, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// `250ms`, `3s`, `2m`, `1m30s`, `1h` (humantime's forms).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 250ms, 3s, 1m30s or 1h ({e})"))
}

/// A listen address, `HOST:PORT`, where HOST is an IP address or a name
/// (`localhost:7373`), resolved now; an IPv4 address is preferred when the
/// name has several, as clients given `localhost` usually try it first.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("`{s}` is not HOST:PORT with a host that resolves ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
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
