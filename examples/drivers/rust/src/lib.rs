//! `rust-file`: a single-node tsohost driver, written against `wit/driver.wit`
//! (world `consensus-driver`) with wit-bindgen.
//!
//! All durable state lives in host storage, as 8-byte big-endian u64 values:
//! - `high-water`: the durable high water; it never decreases;
//! - `generation`: bumped (synced) by every `init`, so that every instance
//!   leads in an epoch `{hi: generation, lo: 0}` greater than any before it,
//!   and a persist from a replaced instance is fenced.
//!
//! The host may drop an instance between any two calls and start a fresh one
//! on the same storage, so guest memory holds only what `init` derives from
//! storage again, and the statistics, which may start again from 0.
//!
//! Your own driver grows from here: the host's calls are the `Guest`
//! functions, and what an instance keeps between them goes in `Instance`.
//! docs/writing-a-driver.md in the tsohost repository states the contract.

use std::cell::RefCell;

use exports::tsohost::driver::driver::Guest;
use tsohost::driver::host;
use tsohost::driver::types::{
    Config, DriverError, DriverInfo, Epoch, Leadership, LogLevel, Metric, MetricValue, NodeId,
    Peer, Role,
};

// Generates the `tsohost::driver::{types, host}` imports, the
// `exports::tsohost::driver::driver::Guest` trait and the `export!` macro.
// `wit/` holds the contract this driver is built against: replace it to move
// to a newer one, and the compiler lists what changed.
wit_bindgen::generate!({ path: "wit", world: "consensus-driver" });

/// The driver's name. The host keys the driver's storage by it: a driver
/// renamed starts from empty storage.
const NAME: &str = "rust-file";

/// The largest physical time, in ms, that a timestamp can carry.
const MAX_PHYSICAL_MS: u64 = (1 << 46) - 1;

const HIGH_WATER: &[u8] = b"high-water";
const GENERATION: &[u8] = b"generation";

/// What this instance knows, set by `init`.
struct Instance {
    /// The epoch this instance leads in.
    epoch: Epoch,
    /// `load-high-water` never answers less.
    floor: u64,
    /// Synced writes of the high water by this instance (`stats`).
    high_water_writes: u64,
}

thread_local! {
    // wit-bindgen's exports are plain functions, so the instance lives here.
    // A component instance is single-threaded and the host never re-enters
    // it, so the `RefCell` is never borrowed twice.
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

/// Runs `f` on the instance, or fails if `init` has not made one.
fn with_instance<T>(
    f: impl FnOnce(&mut Instance) -> Result<T, DriverError>,
) -> Result<T, DriverError> {
    INSTANCE.with_borrow_mut(|instance| match instance {
        Some(instance) => f(instance),
        None => Err(DriverError::Internal("called before init".into())),
    })
}

fn get_u64(key: &[u8]) -> Result<Option<u64>, DriverError> {
    let Some(raw) = host::storage_get(key) else {
        return Ok(None);
    };
    let bytes: [u8; 8] = raw.try_into().map_err(|raw: Vec<u8>| {
        DriverError::Storage(format!(
            "key `{}` holds {} bytes, expected an 8-byte u64: storage is corrupt",
            String::from_utf8_lossy(key),
            raw.len()
        ))
    })?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// A failed write is passed on as the error, never a trap: the host then
/// assumes nothing was written.
fn put_u64_synced(key: &[u8], value: u64) -> Result<(), DriverError> {
    let puts = [(key.to_vec(), value.to_be_bytes().to_vec())];
    host::storage_write(&puts, &[], true)
}

impl Instance {
    fn load(&self) -> Result<u64, DriverError> {
        Ok(get_u64(HIGH_WATER)?.unwrap_or(0).max(self.floor))
    }

    fn persist(&mut self, at_least: u64, epoch: Epoch) -> Result<u64, DriverError> {
        if at_least > MAX_PHYSICAL_MS {
            return Err(DriverError::OutOfRange(at_least));
        }
        // Epochs are ordered by (hi, lo). An older one is a replaced
        // instance's, which must not write; a newer one cannot come from a
        // correct host, since only this driver issues epochs for its storage.
        let (own, asked) = ((self.epoch.hi, self.epoch.lo), (epoch.hi, epoch.lo));
        if asked < own {
            return Err(DriverError::Fenced(self.epoch));
        }
        if asked > own {
            return Err(DriverError::Internal(format!(
                "persist carries epoch {}.{}, newer than this driver's {}.{}: only this \
                 node issues epochs for its storage",
                epoch.hi, epoch.lo, self.epoch.hi, self.epoch.lo
            )));
        }
        let current = self.load()?;
        if at_least <= current {
            return Ok(current);
        }
        put_u64_synced(HIGH_WATER, at_least)?;
        self.high_water_writes += 1;
        Ok(at_least)
    }
}

/// Every request is completed exactly once, with the error if there is one:
/// a trap would fail it too, but would also cost the instance.
fn complete(request: u64, outcome: Result<u64, DriverError>) {
    host::completed(request, outcome.as_ref().copied());
}

fn refuse_cluster_operation(request: u64, operation: &str) {
    complete(
        request,
        Err(DriverError::InvalidConfig(format!(
            "{operation}: this is a single-node driver; use a replicated driver (raft)"
        ))),
    );
}

struct Driver;

impl Guest for Driver {
    fn info() -> DriverInfo {
        DriverInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        // A panic traps, and the host's log would show only the trap: say why
        // first. `init` comes before every other call but `info`.
        std::panic::set_hook(Box::new(|info| {
            host::log(LogLevel::Error, &format!("driver panicked: {info}"));
        }));

        // Refused rather than ignored, so that a typo surfaces.
        if let Some((key, _)) = cfg.options.first() {
            return Err(DriverError::InvalidConfig(format!(
                "unknown driver option `{key}`; this driver knows none"
            )));
        }
        if let Some(other) = cfg.peers.iter().find(|p| p.id != cfg.node_id) {
            return Err(DriverError::InvalidConfig(format!(
                "peers: this is a single-node driver, but node {} ({}) is configured; use a \
                 replicated driver (raft, paxos) for a cluster",
                other.id, other.address
            )));
        }

        // The new epoch is durable before it is reported, so that no later
        // instance leads in it again.
        let generation = get_u64(GENERATION)?
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| DriverError::Internal("generation overflow".into()))?;
        put_u64_synced(GENERATION, generation)?;
        let epoch = Epoch {
            hi: generation,
            lo: 0,
        };
        INSTANCE.set(Some(Instance {
            epoch,
            floor: cfg.floor,
            high_water_writes: 0,
        }));
        // Nothing else can lead this node's storage: lead for good.
        host::report_leadership(Leadership {
            role: Role::Leader,
            leader: Some(cfg.node_id),
            epoch,
            lease_until_ms: u64::MAX,
        });
        Ok(())
    }

    fn on_message(from: NodeId, payload: Vec<u8>) {
        host::log(
            LogLevel::Warn,
            &format!(
                "ignored {} bytes from node {from}: the {NAME} driver has no peers",
                payload.len()
            ),
        );
    }

    fn on_tick(_now_ms: u64) -> u64 {
        u64::MAX // nothing to do over time
    }

    fn load_high_water(request: u64) {
        complete(request, with_instance(|instance| instance.load()));
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        complete(
            request,
            with_instance(|instance| instance.persist(at_least, epoch)),
        );
    }

    fn change_membership(request: u64, _members: Vec<Peer>) {
        refuse_cluster_operation(request, "change-membership");
    }

    fn transfer_leadership(request: u64, _to: Option<NodeId>) {
        refuse_cluster_operation(request, "transfer-leadership");
    }

    // Answered from memory, without calling the host: it must be quick.
    fn stats() -> Vec<Metric> {
        let writes = INSTANCE.with_borrow(|instance| {
            instance
                .as_ref()
                .map_or(0, |instance| instance.high_water_writes)
        });
        vec![Metric {
            name: "high_water_writes".into(),
            help: "synced writes of the high water by this instance".into(),
            value: MetricValue::Counter(writes),
            labels: Vec::new(),
        }]
    }
}

export!(Driver);
