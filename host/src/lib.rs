//! tsohost: a timestamp oracle whose consensus logic is a WebAssembly
//! component (see DESIGN.md for the architecture and the contract).
//!
//! One module per concern: [`allocator`] (pure), [`driver`] (wasmtime),
//! [`node`] (the coordinator between them), [`storage`] (RocksDB), [`api`]
//! (HTTP/JSON) served by [`http`] (connection limits), [`peer`] (the
//! authenticated cluster network), [`cli`], [`metrics`], [`migration`] (moving a cluster to another
//! driver); [`client`] and
//! [`bench`] talk to a running node; [`checker`] (pure) judges a history of
//! answers, and [`chaos`] produces one under faults.

pub mod allocator;
pub mod api;
pub mod bench;
pub mod chaos;
pub mod checker;
pub mod cli;
pub mod client;
pub mod clock;
pub mod conformance;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod migration;
pub mod node;
pub mod peer;
pub mod server;
pub mod storage;
pub mod timestamp;
