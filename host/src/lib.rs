//! tsohost: a timestamp oracle whose consensus logic is a WebAssembly
//! component (docs/architecture.md: the parts, the invariants and the contract).
//!
//! The node, one module per part: [`allocator`] (pure), [`clock`],
//! [`driver`] (wasmtime), [`node`] (the coordinator between them),
//! [`storage`] (RocksDB), [`api`] (HTTP/JSON) served by [`http`]
//! (connection limits), over [`tls`] when HTTPS is on, [`peer`] (the
//! authenticated cluster network),
//! [`metrics`], [`migration`] (the driver a node's data belongs to, and the
//! plan of moving a cluster to another), [`timestamp`]; [`server`]
//! assembles them into `tsohost serve`, [`cli`] is the command line, and
//! [`client`] its HTTP client.
//!
//! [`datadir`] reads a stopped node's data directory (`tsohost inspect`),
//! and [`recovery`] seeds a new cluster above it after quorum loss.
//!
//! [`tools`] drive nodes from outside, never from inside one: the load
//! generator, the chaos harness and its checker, the driver conformance
//! check, and `tsohost cluster migrate`.

pub mod allocator;
pub mod api;
pub mod cli;
pub mod client;
pub mod clock;
pub mod datadir;
pub mod driver;
pub mod http;
pub mod metrics;
pub mod migration;
pub mod node;
pub mod peer;
pub mod recovery;
pub mod server;
pub mod sim;
pub mod storage;
pub mod timestamp;
pub mod tls;
pub mod tools;
