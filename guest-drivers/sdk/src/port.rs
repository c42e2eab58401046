//! The host imports as a trait, so that a driver's logic is written against
//! [`Host`] and runs unchanged inside a component (with [`WitHost`]) and in a
//! native test or simulation (with an in-memory implementation, see the
//! `sim` feature).
//!
//! The trait mirrors `interface host` of `wit/driver.wit` one to one; the
//! rules stated there (no re-entrancy, atomic and optionally synced writes,
//! fire-and-forget sends) are the contract every implementation keeps.

use crate::bindings::tsohost::driver::host;
use crate::{DriverError, Leadership, LogLevel, NodeId, Peer};

/// The host as a driver sees it.
pub trait Host {
    /// Queue `payload` for peer `to`; no delivery guarantee.
    fn send(&self, to: NodeId, payload: &[u8]);
    /// The value stored under `key`, if any.
    fn storage_get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Apply `puts` then `deletes` atomically; with `sync`, durable before
    /// returning.
    fn storage_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), DriverError>;
    /// Up to `limit` entries with `start <= key < end` in key order; an empty
    /// `end` is unbounded.
    fn storage_scan(&self, start: &[u8], end: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// The host's monotonic clock, in milliseconds.
    fn now_ms(&self) -> u64;
    /// Report the driver's view of leadership (and the lease).
    fn report_leadership(&self, report: Leadership);
    /// Complete a `load-high-water` / `persist-high-water` request, exactly
    /// once.
    fn completed(&self, request: u64, outcome: Result<u64, DriverError>);
    /// A line for the node's log.
    fn log(&self, level: LogLevel, message: &str);
    /// The membership the driver knows (this node included).
    fn report_membership(&self, members: &[Peer]);
}

/// The real host: each method is the wit-bindgen import of the same name.
/// Only meaningful inside a component; natively the imports are unreachable.
#[derive(Debug, Default, Clone, Copy)]
pub struct WitHost;

impl Host for WitHost {
    fn send(&self, to: NodeId, payload: &[u8]) {
        crate::stats::count_sent(payload.len());
        host::send(to, payload);
    }

    fn storage_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        host::storage_get(key)
    }

    fn storage_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), DriverError> {
        host::storage_write(puts, deletes, sync)
    }

    fn storage_scan(&self, start: &[u8], end: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        host::storage_scan(start, end, limit)
    }

    fn now_ms(&self) -> u64 {
        host::now_ms()
    }

    fn report_leadership(&self, report: Leadership) {
        host::report_leadership(report);
    }

    fn completed(&self, request: u64, outcome: Result<u64, DriverError>) {
        host::completed(request, outcome.as_ref().copied());
    }

    fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message);
    }

    fn report_membership(&self, members: &[Peer]) {
        host::report_membership(members);
    }
}
