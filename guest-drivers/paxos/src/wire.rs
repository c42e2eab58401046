//! Messages between paxos drivers, batched per peer in the SDK's
//! [`frame`](tsohost_guest_sdk::frame) envelope.
//!
//! Every message is one [`Frame::Request`] of kind [`KIND`] whose body is
//! the postcard encoding of a [`Packet`]: the sender's configuration id and
//! a [`Wire`] message. No message expects a framed response (omnipaxos's
//! messages are one-way; the lease acknowledgement is a message of its own),
//! so the frame id is unused (0). The configuration id lets a node notice a
//! peer that runs an older configuration and tell it about the newer one
//! ([`Wire::Join`]). Variant order is part of the protocol: append only.

use omnipaxos::ballot_leader_election::Ballot;
use omnipaxos::messages::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tsohost_guest_sdk::frame::{self, Frame, FrameError};

use crate::state::{Command, HwState};
use crate::store::Membership;

/// The frame kind of every paxos driver message.
pub const KIND: u8 = 1;

/// One message and the configuration its sender runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Packet {
    /// The sender's configuration id (0: none yet).
    pub config: u32,
    /// The message.
    pub wire: Wire,
}

/// The messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Wire {
    /// An omnipaxos message (Sequence Paxos or ballot leader election).
    Paxos(Message<Command>),
    /// The leader of `ballot` asks for a lease acknowledgement.
    Lease {
        /// The leader's ballot.
        ballot: Ballot,
        /// The heartbeat's number within the leadership.
        seq: u64,
    },
    /// A follower promised to `ballot` acknowledges heartbeat `seq`, and
    /// refuses other ballots for the gate window from its receipt.
    LeaseAck {
        /// The leader's ballot.
        ballot: Ballot,
        /// The heartbeat acknowledged.
        seq: u64,
    },
    /// "Configuration `membership.config_id` is decided and runs; start it
    /// from `base`" (or learn that you are no longer a member).
    Join {
        /// The configuration.
        membership: Membership,
        /// The replicated state at its start.
        base: HwState,
    },
    /// The leader of `ballot` steps down and asks the receiver to take over.
    TakeOver {
        /// The stepping-down leader's ballot.
        ballot: Ballot,
    },
    /// Answer to a lease heartbeat of `ballot` from a node that cannot
    /// follow it: it took `promise`, a higher ballot of its own, and the
    /// followers' gates drop that ballot's Prepares.
    Outranked {
        /// The leader's ballot.
        ballot: Ballot,
        /// The sender's promise.
        promise: Ballot,
    },
}

/// A payload that could not be decoded.
#[derive(Debug, Error)]
pub enum WireError {
    /// The envelope.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A body.
    #[error("undecodable message: {0}")]
    Body(#[from] postcard::Error),
    /// A frame this driver does not send.
    #[error("unexpected frame (kind {0:?})")]
    Unexpected(Option<u8>),
}

/// The frame of one packet.
pub fn frame(p: &Packet) -> Frame {
    Frame::Request {
        id: 0,
        kind: KIND,
        body: postcard::to_stdvec(p).expect("postcard encodes driver messages to a Vec"),
    }
}

/// Encode frames into one payload.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    frame::encode(frames)
}

/// Decode a payload into its packets; any bad frame rejects the payload.
pub fn decode(payload: &[u8]) -> Result<Vec<Packet>, WireError> {
    frame::decode(payload)?
        .into_iter()
        .map(|f| match f {
            Frame::Request {
                kind: KIND, body, ..
            } => Ok(postcard::from_bytes(&body)?),
            Frame::Request { kind, .. } => Err(WireError::Unexpected(Some(kind))),
            Frame::Response { .. } => Err(WireError::Unexpected(None)),
        })
        .collect()
}
