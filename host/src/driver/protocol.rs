//! The protocol between the node and a driver's actor: [`Command`]s in,
//! [`Event`]s out. Its own module so that the actor, its mailbox and the
//! sandbox (whose imports turn into events) share it without importing
//! each other.
//!
//! Guarantees the actor gives: events arrive in the
//! order they happened; every request id given in a command is answered by
//! exactly one [`Event::Completed`].

use super::bindings::{DriverError, DriverInfo, Epoch, Leadership, Metric, Peer};

/// Into the actor.
#[derive(Debug)]
pub enum Command {
    LoadHighWater {
        request: u64,
    },
    PersistHighWater {
        request: u64,
        at_least: u64,
        epoch: Epoch,
    },
    ChangeMembership {
        request: u64,
        members: Vec<Peer>,
    },
    TransferLeadership {
        request: u64,
        to: Option<u64>,
    },
    /// Ask the guest its statistics (`stats`, empty for a 0.1 driver). No
    /// answer (the reply dropped) when no instance is up.
    Stats {
        reply: tokio::sync::oneshot::Sender<Vec<Metric>>,
    },
    Shutdown,
}

/// Out of the actor, in the order they happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A fresh instance finished `init`.
    Started(DriverInfo),
    Leadership(Leadership),
    Completed {
        request: u64,
        outcome: Result<u64, DriverError>,
    },
    Send {
        to: u64,
        payload: Vec<u8>,
    },
    /// A message the guest sent over its per-call budget, dropped.
    SendDropped,
    /// The membership the driver knows, this node included.
    Membership(Vec<Peer>),
    /// A `storage-write` succeeded (`sync`: durable). Only instances built
    /// to observe their writes report it (the simulator and check-driver,
    /// which check that a completion comes after the write it depends on).
    Wrote {
        sync: bool,
    },
    /// The instance is gone; a new one will be built after a backoff.
    Crashed {
        reason: String,
    },
}
