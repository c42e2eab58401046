//! Test-only driver: the single-node register, plus one fault chosen with
//! the option `fault`, so tests can show that the host survives a guest that
//! traps, loops forever or allocates without bound:
//!
//! - `trap-in-init`, `loop-in-init`, `hog-in-init`: misbehave in `init`;
//! - `trap-on-persist=N`, `loop-on-persist=N`, `hog-on-persist=N`: behave for
//!   the first N-1 persists of each instance, misbehave on the Nth;
//! - `break=RULE`: break one rule of the contract, so that the conformance
//!   checker can be shown to catch it: `no-sync` (persist without a synced
//!   write), `decrease` (a lower persist lowers the high water), `no-fence`,
//!   `no-range`, `no-leader` (never report leadership), `no-floor` (load
//!   ignores the floor), `amnesia` (the high water lives in guest memory);
//! - `escape`: try to leave the sandbox in `init` (read files, the
//!   environment, the real clock, connect to the address in option `probe`)
//!   and refuse to start, naming what worked, if anything did.

use std::cell::{Cell, RefCell};
use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, Leadership, NodeId, Peer, Role, export_driver,
    host, register, rules, storage,
};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Trap,
    Loop,
    Hog,
}

std::thread_local! {
    /// (fault, on which persist; 0 = in init), persists seen by this instance.
    static PLAN: Cell<Option<(Fault, u64)>> = const { Cell::new(None) };
    static PERSISTS: Cell<u64> = const { Cell::new(0) };
    /// The rule `break=` breaks, if any.
    static BROKEN: RefCell<String> = const { RefCell::new(String::new()) };
    /// `amnesia`: the only copy of the high water.
    static MEMORY: Cell<u64> = const { Cell::new(0) };
}

const BREAKABLE: &[&str] = &[
    "no-sync",
    "decrease",
    "no-fence",
    "no-range",
    "no-leader",
    "no-floor",
    "amnesia",
];

fn broken(rule: &str) -> bool {
    BROKEN.with_borrow(|b| b == rule)
}

/// `init` for `break=...`: the register, or a register that breaks a rule.
fn init_broken(cfg: &Config, rule: &str) -> Result<(), DriverError> {
    if !BREAKABLE.contains(&rule) {
        return Err(DriverError::InvalidConfig(format!(
            "break `{rule}`: one of {}",
            BREAKABLE.join(", ")
        )));
    }
    BROKEN.set(rule.to_string());
    let epoch = Epoch { hi: 1, lo: 0 };
    match rule {
        "no-leader" => Ok(()),
        "amnesia" => {
            host::report_leadership(Leadership {
                role: Role::Leader,
                leader: Some(cfg.node_id),
                epoch,
                lease_until_ms: u64::MAX,
            });
            Ok(())
        }
        "no-floor" => register::open_instance(cfg.node_id, 0),
        _ => register::open_instance(cfg.node_id, cfg.floor),
    }
}

/// `persist-high-water` for the rules that break it; `None`: not broken.
fn persist_broken(at_least: u64, epoch: Epoch) -> Option<Result<u64, DriverError>> {
    let stored = || storage::get_u64(b"high-water").map(|v| v.unwrap_or(0));
    let write = |value: u64, sync: bool| {
        host::storage_write(
            &[(b"high-water".to_vec(), value.to_be_bytes().to_vec())],
            &[],
            sync,
        )
        .map(|()| value)
    };
    let current = register::epoch().unwrap_or(Epoch { hi: 1, lo: 0 });
    let result = if broken("amnesia") {
        rules::check_range(at_least).map(|()| {
            MEMORY.set(MEMORY.get().max(at_least));
            MEMORY.get()
        })
    } else if broken("no-sync") {
        rules::check_range(at_least)
            .and_then(|()| rules::check_epoch(epoch, current))
            .and_then(|()| write(stored()?.max(at_least), false))
    } else if broken("decrease") {
        rules::check_range(at_least)
            .and_then(|()| rules::check_epoch(epoch, current))
            .and_then(|()| write(at_least, true))
    } else if broken("no-fence") {
        rules::check_range(at_least).and_then(|()| write(stored()?.max(at_least), true))
    } else if broken("no-range") {
        rules::check_epoch(epoch, current).and_then(|()| write(stored()?.max(at_least), true))
    } else {
        return None;
    };
    Some(result)
}

fn parse(value: &str) -> Result<(Fault, u64), DriverError> {
    let (kind, at) = match value.split_once('=') {
        Some((kind, n)) => (kind, n.parse::<u64>().ok().filter(|n| *n > 0)),
        None => (value, Some(0)),
    };
    let fault = match kind
        .trim_end_matches("-on-persist")
        .trim_end_matches("-in-init")
    {
        "trap" => Fault::Trap,
        "loop" => Fault::Loop,
        "hog" => Fault::Hog,
        _ => None.ok_or_else(|| DriverError::InvalidConfig(format!("fault `{value}`")))?,
    };
    let at = at.ok_or_else(|| DriverError::InvalidConfig(format!("fault `{value}`: count")))?;
    Ok((fault, at))
}

fn misbehave(fault: Fault) {
    match fault {
        Fault::Trap => panic!("misbehave: trapping on purpose"),
        Fault::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Fault::Hog => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
    }
}

/// Every way out this guest could find; empty when the sandbox holds.
fn try_to_escape(probe: Option<&str>) -> Vec<String> {
    let mut escaped = Vec::new();
    for path in ["/", ".", "/etc/hostname", "/proc/self/environ"] {
        if std::fs::metadata(path).is_ok() || std::fs::read_dir(path).is_ok() {
            escaped.push(format!("file system: {path}"));
        }
    }
    if std::env::vars_os().next().is_some() {
        escaped.push("environment variables".into());
    }
    if std::env::args_os().next().is_some() {
        escaped.push("command-line arguments".into());
    }
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if wall.as_secs() > 0 {
        escaped.push(format!("the real wall clock ({} s)", wall.as_secs()));
    }
    if let Some(addr) = probe
        && std::net::TcpStream::connect(addr).is_ok()
    {
        escaped.push(format!("a TCP connection to {addr}"));
    }
    escaped
}

struct Misbehave;

impl Guest for Misbehave {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        rules::check_options(&cfg, &["fault", "probe", "break"])?;
        let option = |key: &str| cfg.options.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if let Some(rule) = option("break") {
            return init_broken(&cfg, rule);
        }
        if option("fault").map(String::as_str) == Some("escape") {
            let escaped = try_to_escape(option("probe").map(String::as_str));
            if !escaped.is_empty() {
                return Err(DriverError::Internal(format!(
                    "sandbox escaped: {}",
                    escaped.join("; ")
                )));
            }
            return register::init(&cfg);
        }
        if let Some(value) = option("fault") {
            let plan = parse(value)?;
            PLAN.set(Some(plan));
            if plan.1 == 0 {
                misbehave(plan.0);
            }
        }
        register::init(&cfg)
    }

    fn on_message(_from: NodeId, _payload: Vec<u8>) {}

    fn on_tick(_now_ms: u64) -> u64 {
        u64::MAX
    }

    fn load_high_water(request: u64) {
        if broken("amnesia") {
            tsohost_guest_sdk::complete(request, Ok(MEMORY.get()));
        } else {
            register::load_high_water(request);
        }
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        PERSISTS.set(PERSISTS.get() + 1);
        if let Some((fault, at)) = PLAN.get()
            && at == PERSISTS.get()
        {
            misbehave(fault);
        }
        match persist_broken(at_least, epoch) {
            Some(result) => tsohost_guest_sdk::complete(request, result),
            None => register::persist_high_water(request, at_least, epoch),
        }
    }

    fn change_membership(request: u64, _members: Vec<Peer>) {
        register::refuse_cluster_operation(request, "change-membership");
    }

    fn transfer_leadership(request: u64, _to: Option<NodeId>) {
        register::refuse_cluster_operation(request, "transfer-leadership");
    }
}

export_driver!(Misbehave);
