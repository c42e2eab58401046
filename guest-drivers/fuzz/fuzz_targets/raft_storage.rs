//! The raft driver core started on storage holding arbitrary records (see
//! `run_storage` for the input format): `init` returns an error or runs.
//! Panics allowed: the driver's deliberate trap when openraft stops on a
//! storage error (`RAFT_TRAPS`) and, unless `TSOHOST_FUZZ_STRICT=1`, panics
//! inside openraft, which trusts its storage (`LIBRARY_SOURCES`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsohost_guest_fuzz::{RAFT_TRAPS, RaftDriver, run_storage};

fuzz_target!(|data: &[u8]| run_storage::<RaftDriver>(RAFT_TRAPS, data));
