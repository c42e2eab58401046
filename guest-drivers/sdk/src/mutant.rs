//! What the deliberately broken copies of the built-in drivers share
//! (`guest-drivers/testing/README.md`): choosing a mutant by the driver
//! option `mutant`, and a host that drops `sync` from some writes. Only the
//! copies built with `cfg(tsohost_mutants)` call it; the real drivers never
//! do.

use std::rc::Rc;

use crate::port::Host;
use crate::{Config, DriverError, Leadership, LogLevel, NodeId, Peer};

/// The mutant of `mutants` that `cfg` selects with `mutant=NAME`, and `cfg`
/// without that option (for the driver's own option parsing, which refuses
/// unknown keys).
pub fn take<M: Copy>(
    cfg: &Config,
    mutants: &[(&str, M)],
) -> Result<(Option<M>, Config), DriverError> {
    let mut rest = cfg.clone();
    let mut chosen = None;
    rest.options.retain(|(k, _)| k != "mutant");
    for (k, v) in &cfg.options {
        if k != "mutant" {
            continue;
        }
        let m = mutants.iter().find(|(n, _)| n == v).ok_or_else(|| {
            let names: Vec<&str> = mutants.iter().map(|(n, _)| *n).collect();
            DriverError::InvalidConfig(format!(
                "option `mutant`: `{v}` is not one of {}",
                names.join(", ")
            ))
        })?;
        if chosen.replace(m.1).is_some() {
            return Err(DriverError::InvalidConfig(
                "option `mutant` given twice".into(),
            ));
        }
    }
    Ok((chosen, rest))
}

/// `inner`, but a write that puts a key `unsynced` matches is made without
/// sync.
pub fn unsynced(inner: Rc<dyn Host>, unsynced: fn(&[u8]) -> bool) -> Rc<dyn Host> {
    Rc::new(Unsynced { inner, unsynced })
}

struct Unsynced {
    inner: Rc<dyn Host>,
    unsynced: fn(&[u8]) -> bool,
}

impl Host for Unsynced {
    fn send(&self, to: NodeId, payload: &[u8]) {
        self.inner.send(to, payload);
    }

    fn storage_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.storage_get(key)
    }

    fn storage_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), DriverError> {
        let sync = sync && !puts.iter().any(|(k, _)| (self.unsynced)(k));
        self.inner.storage_write(puts, deletes, sync)
    }

    fn storage_scan(&self, start: &[u8], end: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner.storage_scan(start, end, limit)
    }

    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }

    fn report_leadership(&self, report: Leadership) {
        self.inner.report_leadership(report);
    }

    fn completed(&self, request: u64, outcome: Result<u64, DriverError>) {
        self.inner.completed(request, outcome);
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level, message);
    }

    fn report_membership(&self, members: &[Peer]) {
        self.inner.report_membership(members);
    }
}
