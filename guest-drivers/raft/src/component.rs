//! The WIT exports, bound to [`RaftDriver`] with the real host imports.

use crate::core::RaftDriver;

tsohost_guest_sdk::export_driver!(RaftDriver);
