//! The driver runtime: wasmtime, loading and validating components, and the
//! actor that owns one guest instance.
//!
//! - [`component`]: bytes → a validated, precompiled, linked component.
//! - [`sandbox`]: what a guest can touch (the `host` interface, virtual WASI).
//! - [`instance`]: one live guest, called synchronously; how a failed call
//!   is described and its requests failed (shared by the actor and the
//!   simulator).
//! - [`actor`]: one thread per instance; all events through one queue, so the
//!   guest is never re-entered; traps and overruns rebuild the instance.
//! - [`protocol`]: the commands into an actor and the events out of it.
//! - [`mailbox`]: the actor's bounded inbox.
//! - [`toolchain`]: the fix for an import a guest toolchain added that the
//!   sandbox does not link.
//! - [`fault`]: traps and hangs injected into a running guest, for chaos.
//! - [`guest_output`]: the guest's stdout, stderr and `log` lines into the
//!   node's log, rate-limited; the last ones for a trap's report.

pub mod actor;
pub mod bindings;
pub mod builtin;
pub mod component;
pub mod fault;
pub mod guest_output;
pub mod instance;
pub mod mailbox;
pub mod protocol;
pub mod sandbox;
#[cfg(test)]
mod tests;
pub mod toolchain;

pub use actor::{ActorConfig, DriverHandle, Spawner, StatsProbe};
pub use bindings::{DriverError, Epoch, Leadership, Role};
pub use component::{DriverSource, GuestLimits, LoadError, LoadedDriver, Runtime};
pub use protocol::{Command, Event};
