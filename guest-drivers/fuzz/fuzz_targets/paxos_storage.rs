//! The paxos driver core started on storage holding arbitrary records (see
//! `run_storage` for the input format): `init` returns an error or runs.
//! Panics allowed: the driver's deliberate trap (`PAXOS_TRAPS`) and, unless
//! `TSOHOST_FUZZ_STRICT=1`, panics inside omnipaxos, which trusts its
//! storage (`LIBRARY_SOURCES`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsohost_guest_fuzz::{PAXOS_TRAPS, PaxosDriver, run_storage};

fuzz_target!(|data: &[u8]| run_storage::<PaxosDriver>(PAXOS_TRAPS, data));
