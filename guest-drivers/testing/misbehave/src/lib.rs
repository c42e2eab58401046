//! Test-only driver: the single-node register, plus one fault chosen with
//! the option `fault`, so tests can show that the host survives a guest that
//! traps, loops forever or allocates without bound:
//!
//! - `trap-in-init`, `loop-in-init`, `hog-in-init`: misbehave in `init`;
//! - `trap-on-persist=N`, `loop-on-persist=N`, `hog-on-persist=N`: behave for
//!   the first N-1 persists of each instance, misbehave on the Nth;
//! - `print-then-trap` (in `init`), `print-then-trap-on-persist=N`: write a
//!   line to stdout and one to stderr, then panic (the host must show both
//!   and the panic's message in the trap's report);
//! - `flood`: write one line of 10 KiB and 1000 lines in `init` and on every
//!   tick, ticking every 10 ms (the host must rate-limit them, and keep
//!   serving);
//! - `break=RULE`: break one rule of the contract, so that the conformance
//!   checker can be shown to catch it: `no-sync` (persist without a synced
//!   write), `decrease` (a lower persist lowers the high water), `no-fence`,
//!   `no-range`, `no-leader` (never report leadership), `no-floor` (load
//!   ignores the floor), `amnesia` (the high water lives in guest memory),
//!   `complete-before-sync` (a persist completes, then writes the value
//!   with sync in the same call), `fence-only-zero` (only epoch 0.0 is
//!   fenced), `static-epoch` (every instance leads in epoch 1.0),
//!   `unsynced-epoch` (each instance's generation, its epoch, is written
//!   with sync=false);
//! - `escape`: try to leave the sandbox in `init` (read files, the
//!   environment, the real clock, connect to the address in option `probe`)
//!   and refuse to start, naming what worked, if anything did.

use std::rc::Rc;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::register::{self, SingleNode};
use tsohost_guest_sdk::storage;
use tsohost_guest_sdk::{
    Config, Driver, DriverError, Epoch, Leadership, NodeId, Peer, Role, rules,
};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Trap,
    Loop,
    Hog,
    PrintThenTrap,
    Flood,
}

const BREAKABLE: &[&str] = &[
    "no-sync",
    "decrease",
    "no-fence",
    "no-range",
    "no-leader",
    "no-floor",
    "amnesia",
    "complete-before-sync",
    "fence-only-zero",
    "static-epoch",
    "unsynced-epoch",
];

/// Where the register keeps the high water and the generation (as the SDK's
/// [`SingleNode`] does), for the rules broken outside of it.
const HIGH_WATER: &[u8] = b"high-water";
const GENERATION: &[u8] = b"generation";
/// The epoch of the modes that keep no generation (`amnesia`,
/// `static-epoch`).
const STATIC_EPOCH: Epoch = Epoch { hi: 1, lo: 0 };

/// One instance. Everything but `memory` is derived from the config and
/// storage, so a new instance behaves as the old one did (on a fresh count
/// of persists).
struct Misbehave {
    host: Rc<dyn Host>,
    /// The register; `None` for the rules broken in how the epoch is kept
    /// (`no-leader`, `amnesia`, `static-epoch`, `unsynced-epoch`), which
    /// never open it and keep the high water themselves.
    register: Option<SingleNode>,
    /// Without a register: the epoch this instance leads in.
    epoch: Epoch,
    /// The configured floor, for what the broken rules answer themselves.
    floor: u64,
    /// (fault, on which persist; 0 = in init).
    plan: Option<(Fault, u64)>,
    /// Persists seen by this instance.
    persists: u64,
    /// The rule `break=` breaks, if any.
    broken: Option<String>,
    /// `amnesia`: the only copy of the high water.
    memory: u64,
}

impl Misbehave {
    fn broken(&self, rule: &str) -> bool {
        self.broken.as_deref() == Some(rule)
    }

    /// `init` for `break=...`: the register, or a register that breaks a rule.
    fn init_broken(host: Rc<dyn Host>, cfg: &Config, rule: &str) -> Result<Self, DriverError> {
        if !BREAKABLE.contains(&rule) {
            return Err(DriverError::InvalidConfig(format!(
                "break `{rule}`: one of {}",
                BREAKABLE.join(", ")
            )));
        }
        let lead = |epoch: Epoch| {
            host.report_leadership(Leadership {
                role: Role::Leader,
                leader: Some(cfg.node_id),
                epoch,
                lease_until_ms: u64::MAX,
            });
            epoch
        };
        let mut epoch = STATIC_EPOCH;
        let register = match rule {
            "no-leader" => None,
            "amnesia" | "static-epoch" => {
                lead(epoch);
                None
            }
            "unsynced-epoch" => {
                let generation = storage::get_u64(&*host, GENERATION)?.unwrap_or(0) + 1;
                host.storage_write(
                    &[(GENERATION.to_vec(), generation.to_be_bytes().to_vec())],
                    &[],
                    false,
                )?;
                epoch = lead(Epoch {
                    hi: generation,
                    lo: 0,
                });
                None
            }
            "no-floor" => Some(SingleNode::open(host.clone(), cfg.node_id, 0)?),
            _ => Some(SingleNode::open(host.clone(), cfg.node_id, cfg.floor)?),
        };
        Ok(Misbehave {
            host,
            register,
            epoch,
            floor: cfg.floor,
            plan: None,
            persists: 0,
            broken: Some(rule.to_string()),
            memory: 0,
        })
    }

    /// `persist-high-water` for the rules that break it, completing
    /// `request`; false: not broken, the register answers. Each breaks its
    /// rule only: otherwise it answers as the register does (the floor
    /// included).
    fn persist_broken(&mut self, request: u64, at_least: u64, epoch: Epoch) -> bool {
        let host = self.host.clone();
        let floor = self.floor;
        let high = || stored(&*host).map(|v| v.max(floor));
        let write = |value: u64, sync: bool| {
            host.storage_write(
                &[(HIGH_WATER.to_vec(), value.to_be_bytes().to_vec())],
                &[],
                sync,
            )
            .map(|()| value)
        };
        // The register's persist once the request passed whatever checks
        // the rule leaves: write only to raise the high water.
        let raise = |sync: bool| {
            let current = high()?;
            if at_least <= current {
                Ok(current)
            } else {
                write(at_least, sync)
            }
        };
        let current = self.register.as_ref().map_or(self.epoch, SingleNode::epoch);
        let checked =
            || rules::check_range(at_least).and_then(|()| rules::check_epoch(epoch, current));
        let result = if self.broken("amnesia") {
            rules::check_range(at_least).map(|()| {
                self.memory = self.memory.max(at_least);
                self.memory
            })
        } else if self.broken("no-sync") {
            checked().and_then(|()| raise(false))
        } else if self.broken("decrease") {
            checked().and_then(|()| write(at_least.max(floor), true))
        } else if self.broken("no-fence") {
            rules::check_range(at_least).and_then(|()| raise(true))
        } else if self.broken("no-range") {
            rules::check_epoch(epoch, current).and_then(|()| raise(true))
        } else if self.broken("fence-only-zero") {
            rules::check_range(at_least).and_then(|()| {
                if epoch == rules::ZERO_EPOCH {
                    Err(DriverError::Fenced(current))
                } else {
                    raise(true)
                }
            })
        } else if self.broken("complete-before-sync") {
            // The right value, durable in the end, but announced first.
            let value = checked().and_then(|()| Ok(high()?.max(at_least)));
            host.completed(request, value.clone());
            if let Ok(value) = value {
                let _ = write(value, true);
            }
            return true;
        } else if self.broken("static-epoch") || self.broken("unsynced-epoch") {
            checked().and_then(|()| raise(true))
        } else {
            return false;
        };
        host.completed(request, result);
        true
    }

    /// Run `f` on the register, or fail `request` if this instance has none.
    fn with_register(&mut self, request: u64, f: impl FnOnce(&mut SingleNode)) {
        match self.register.as_mut() {
            Some(r) => f(r),
            None => self.host.completed(
                request,
                Err(DriverError::Internal(
                    "no register: leadership was never taken".into(),
                )),
            ),
        }
    }
}

/// The high water as stored, 0 if none.
fn stored(host: &dyn Host) -> Result<u64, DriverError> {
    storage::get_u64(host, HIGH_WATER).map(|v| v.unwrap_or(0))
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
        "print-then-trap" => Fault::PrintThenTrap,
        "flood" => Fault::Flood,
        _ => None.ok_or_else(|| DriverError::InvalidConfig(format!("fault `{value}`")))?,
    };
    let at = at.ok_or_else(|| DriverError::InvalidConfig(format!("fault `{value}`: count")))?;
    Ok((fault, at))
}

fn misbehave(fault: Fault) {
    match fault {
        Fault::Trap => panic!("misbehave: trapping on purpose"),
        Fault::PrintThenTrap => {
            println!("misbehave: a line on stdout before the trap");
            eprintln!("misbehave: a line on stderr before the trap");
            panic!("misbehave: trapping on purpose after printing");
        }
        Fault::Flood => flood(),
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

/// More output than a host should log: a line of 10 KiB, then a thousand.
fn flood() {
    eprintln!("misbehave: a long line {}", "x".repeat(10 << 10));
    for i in 0..1000 {
        println!("misbehave: flood line {i}");
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

impl Driver for Misbehave {
    const NAME: &'static str = "misbehave";

    fn init(host: Rc<dyn Host>, cfg: &Config) -> Result<Self, DriverError> {
        let option = |key: &str| cfg.options.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        // A fault in `init` fires before the options are checked, as in a
        // driver that dies whatever it is given: check-driver's probe with
        // an unknown option must report the trap, not an answer.
        if let Some(Ok((fault, 0))) = option("fault").map(|v| parse(v))
            && fault != Fault::Flood
        {
            misbehave(fault);
        }
        rules::check_options(cfg, &["fault", "probe", "break"])?;
        if let Some(rule) = option("break") {
            return Self::init_broken(host, cfg, rule);
        }
        let mut plan = None;
        if option("fault").map(String::as_str) == Some("escape") {
            let escaped = try_to_escape(option("probe").map(String::as_str));
            if !escaped.is_empty() {
                return Err(DriverError::Internal(format!(
                    "sandbox escaped: {}",
                    escaped.join("; ")
                )));
            }
        } else if let Some(value) = option("fault") {
            let p = parse(value)?;
            plan = Some(p);
            if p.1 == 0 {
                misbehave(p.0);
            }
        }
        let register = SingleNode::init(host.clone(), cfg)?;
        Ok(Misbehave {
            host,
            register: Some(register),
            epoch: STATIC_EPOCH,
            floor: cfg.floor,
            plan,
            persists: 0,
            broken: None,
            memory: 0,
        })
    }

    fn on_message(&mut self, _from: NodeId, _payload: &[u8]) {}

    fn on_tick(&mut self, now_ms: u64) -> u64 {
        if let Some((Fault::Flood, _)) = self.plan {
            flood();
            return now_ms + 10;
        }
        u64::MAX
    }

    fn load_high_water(&mut self, request: u64) {
        if self.broken("amnesia") {
            self.host.completed(request, Ok(self.memory));
        } else if self.broken("static-epoch") || self.broken("unsynced-epoch") {
            let loaded = stored(&*self.host).map(|v| v.max(self.floor));
            self.host.completed(request, loaded);
        } else {
            self.with_register(request, |r| r.load_high_water(request));
        }
    }

    fn persist_high_water(&mut self, request: u64, at_least: u64, epoch: Epoch) {
        self.persists += 1;
        if let Some((fault, at)) = self.plan
            && at == self.persists
        {
            misbehave(fault);
        }
        if !self.persist_broken(request, at_least, epoch) {
            self.with_register(request, |r| r.persist_high_water(request, at_least, epoch));
        }
    }

    fn change_membership(&mut self, request: u64, _members: &[Peer]) {
        register::refuse_cluster_operation(&*self.host, request, "change-membership");
    }

    fn transfer_leadership(&mut self, request: u64, _to: Option<NodeId>) {
        register::refuse_cluster_operation(&*self.host, request, "transfer-leadership");
    }
}

tsohost_guest_sdk::export_driver!(Misbehave);
