//! The timestamp layout, from the `tsohost-client` crate (clients and the
//! server share one definition).

pub use tsohost_client::timestamp::*;
