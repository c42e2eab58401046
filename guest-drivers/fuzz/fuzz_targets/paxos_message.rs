//! The paxos driver core fed arbitrary messages from peers (`on_message`),
//! on the SDK's simulation host: see `run_messages` for the input format.
//! The driver must never panic, whatever a peer sends; unless
//! `TSOHOST_FUZZ_STRICT=1`, panics inside the consensus library, which
//! trusts its peers, pass (`LIBRARY_SOURCES`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsohost_guest_fuzz::{PaxosDriver, run_messages};

fuzz_target!(|data: &[u8]| run_messages::<PaxosDriver>(data));
