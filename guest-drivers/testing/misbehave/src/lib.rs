//! Test-only driver: the single-node register, plus one fault chosen with
//! the option `fault`, so tests can show that the host survives a guest that
//! traps, loops forever or allocates without bound:
//!
//! - `trap-in-init`, `loop-in-init`, `hog-in-init`: misbehave in `init`;
//! - `trap-on-persist=N`, `loop-on-persist=N`, `hog-on-persist=N`: behave for
//!   the first N-1 persists of each instance, misbehave on the Nth.

use std::cell::Cell;
use tsohost_guest_sdk::{
    Config, DriverError, DriverInfo, Epoch, Guest, NodeId, export_driver, register, rules,
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

struct Misbehave;

impl Guest for Misbehave {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn init(cfg: Config) -> Result<(), DriverError> {
        rules::check_options(&cfg, &["fault"])?;
        if let Some((_, value)) = cfg.options.iter().find(|(k, _)| k == "fault") {
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
        register::load_high_water(request);
    }

    fn persist_high_water(request: u64, at_least: u64, epoch: Epoch) {
        PERSISTS.set(PERSISTS.get() + 1);
        if let Some((fault, at)) = PLAN.get()
            && at == PERSISTS.get()
        {
            misbehave(fault);
        }
        register::persist_high_water(request, at_least, epoch);
    }
}

export_driver!(Misbehave);
