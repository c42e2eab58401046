//! The timestamp layout and the HTTP client of the CLI and benchmarks,
//! from the `tsohost-client` crate.

pub use tsohost_client::connection::*;
