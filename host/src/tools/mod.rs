//! Tools: programs that drive nodes from outside, never from inside one.
//!
//! A tool talks to nodes over HTTP, or starts them as processes, and judges
//! what they answer; no part of a node calls into this module. The one
//! tool that runs node code in its own process, [`conformance`]
//! (`tsohost check-driver`), runs a driver in the real sandbox alone,
//! synchronously on a simulated clock and an in-memory disk with power
//! loss, with no node around it, to judge the driver against the contract.
//!
//! - [`bench`]: `tsohost bench`, load on one node and its latency.
//! - [`chaos`]: `tsohost chaos`, a local cluster under load and faults,
//!   judged by [`checker`] (pure: uniqueness and real-time order of a
//!   history of answers).
//! - [`cluster`]: starting local `tsohost serve` processes with their ports,
//!   data directories, peers and secret; chaos, the benchmark programs and
//!   the black-box tests all launch nodes with it.
//! - [`load`]: clients that follow the leader of a cluster and record what
//!   they are answered.
//! - [`conformance`]: `tsohost check-driver`.
//! - [`migrate`]: `tsohost cluster migrate`, the operator's side of
//!   [`crate::migration`].

pub mod bench;
pub mod chaos;
pub mod checker;
pub mod cluster;
pub mod conformance;
pub mod load;
pub mod migrate;
