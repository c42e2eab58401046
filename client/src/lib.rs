//! A Rust client for tsohost, the timestamp oracle.
//!
//! [`Client`] is what an application uses: give it the URLs of any nodes of
//! a cluster and call [`Client::get_ts`] from as many tasks as you like;
//! concurrent calls share one HTTP request, the leader is found and
//! followed, and failures are retried until a deadline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tsohost_client::Error> {
//! let client = tsohost_client::Client::new(["http://127.0.0.1:7401", "http://127.0.0.1:7402"])?;
//! let ts = client.get_ts().await?;
//! println!("{ts} = {} ms + {}", ts.physical_ms(), ts.logical());
//! let range = client.get_range(1000).await?; // [first, first + 1000)
//! assert_eq!(range.iter().count(), 1000);
//! # Ok(()) }
//! ```
//!
//! - [`timestamp`]: the 64-bit layout (46 bits of milliseconds, 18 logical
//!   bits) and its JSON form, shared with the server.
//! - [`status`]: the typed answer of `GET /v1/status`, shared with the
//!   server ([`Client::status`] fetches it).
//! - [`admin`]: one node's admin API (hot swaps, migration steps,
//!   membership, leadership transfer, fault injection), typed; the CLI,
//!   the migration, chaos and the tests all use it.
//! - [`connection`]: one keep-alive HTTP/1.1 connection without retries or
//!   pooling, for tools that measure the server itself.
//! - [`tls`]: `https://` nodes: the CA to trust and an optional client
//!   certificate ([`Config::tls`], [`admin::Admin::with_tls`]).

#![deny(missing_docs)]

pub mod admin;
mod client;
pub mod connection;
/// Statistics of a load run: latency percentiles, rates, answers out of order.
pub mod stats;
pub mod status;
pub mod timestamp;
pub mod tls;

pub use client::{Client, Config, Error, TimestampRange};
pub use status::Status;
pub use timestamp::Timestamp;
