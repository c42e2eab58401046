//! The WIT exports, bound to [`PaxosDriver`] with the real host imports.

use crate::core::PaxosDriver;

tsohost_guest_sdk::export_driver!(PaxosDriver);
