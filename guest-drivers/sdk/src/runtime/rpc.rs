//! Request/response calls between drivers over fire-and-forget `host.send`.
//!
//! - [`Rpc::call`] frames a request with a fresh id, queues it and awaits the
//!   response with that id from that peer, or fails when its deadline on the
//!   virtual clock passes: the host may lose any message, and a consensus
//!   library retries only calls that return.
//! - Frames queued during one host call leave together, one `host.send` per
//!   peer, at [`Rpc::flush`] (batching; see [`crate::frame`]).
//! - Ids are `nonce << 32 | counter`, the nonce derived from the instance's
//!   seed, so that a late response to a previous instance of this node is
//!   not taken for the answer to a new request with the same counter.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use openraft_rt::AsyncRuntime;
use thiserror::Error;
use tokio::sync::oneshot;

use super::GuestRuntime;
use crate::NodeId;
use crate::frame::{self, Frame, FrameError};
use crate::port::Host;

/// Why a call produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RpcError {
    /// No response before the deadline.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The RPC layer was dropped while the call was pending.
    #[error("rpc layer closed")]
    Closed,
}

/// A request from a peer, to be answered with [`Rpc::respond`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The peer that sent it.
    pub from: NodeId,
    /// The id the response must carry.
    pub id: u64,
    /// The protocol's request kind.
    pub kind: u8,
    /// The protocol's encoding of the request.
    pub body: Vec<u8>,
}

struct Pending {
    to: NodeId,
    reply: oneshot::Sender<Vec<u8>>,
}

struct Inner {
    nonce: u64,
    counter: Cell<u32>,
    pending: RefCell<HashMap<u64, Pending>>,
    outbox: RefCell<BTreeMap<NodeId, Vec<Frame>>>,
}

/// The RPC layer of one driver instance. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Rpc {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("pending", &self.inner.pending.borrow().len())
            .finish()
    }
}

/// Removes a call's pending entry however the call ends (response, timeout,
/// or the caller dropping the future).
struct Unregister<'a> {
    rpc: &'a Inner,
    id: u64,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.rpc.pending.borrow_mut().remove(&self.id);
    }
}

impl Rpc {
    /// A new RPC layer whose request ids derive from `seed`.
    pub fn new(seed: u64) -> Self {
        let z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rpc {
            inner: Rc::new(Inner {
                nonce: (z ^ (z >> 31)) << 32,
                counter: Cell::new(0),
                pending: RefCell::new(HashMap::new()),
                outbox: RefCell::new(BTreeMap::new()),
            }),
        }
    }

    /// Send a request of `kind` to `to` and await its response body. Must be
    /// awaited on the guest executor (the deadline is on its clock).
    pub async fn call(
        &self,
        to: NodeId,
        kind: u8,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let n = self.inner.counter.get();
        self.inner.counter.set(n.wrapping_add(1));
        let id = self.inner.nonce | u64::from(n);
        let (reply, rx) = oneshot::channel();
        self.inner
            .pending
            .borrow_mut()
            .insert(id, Pending { to, reply });
        let _unregister = Unregister {
            rpc: &self.inner,
            id,
        };
        self.queue(to, Frame::Request { id, kind, body });
        match GuestRuntime::timeout(timeout, rx).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    /// Queue the response to request `id` of peer `to`.
    pub fn respond(&self, to: NodeId, id: u64, body: Vec<u8>) {
        self.queue(to, Frame::Response { id, body });
    }

    fn queue(&self, to: NodeId, frame: Frame) {
        self.inner
            .outbox
            .borrow_mut()
            .entry(to)
            .or_default()
            .push(frame);
    }

    /// Take a payload from `from`: responses complete their calls (a
    /// response to no pending call of that peer is a duplicate or too late,
    /// and is dropped); requests are returned for the protocol to serve.
    pub fn receive(&self, from: NodeId, payload: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut requests = Vec::new();
        for frame in frame::decode(payload)? {
            match frame {
                Frame::Request { id, kind, body } => requests.push(Incoming {
                    from,
                    id,
                    kind,
                    body,
                }),
                Frame::Response { id, body } => {
                    let mut pending = self.inner.pending.borrow_mut();
                    if pending.get(&id).is_some_and(|p| p.to == from)
                        && let Some(p) = pending.remove(&id)
                    {
                        // The caller may have given up in the meantime.
                        let _ = p.reply.send(body);
                    }
                }
            }
        }
        Ok(requests)
    }

    /// Send everything queued: one payload per peer.
    pub fn flush(&self, host: &dyn Host) {
        let outbox = std::mem::take(&mut *self.inner.outbox.borrow_mut());
        for (to, frames) in outbox {
            host.send(to, &frame::encode(&frames));
        }
    }

    /// Calls awaiting a response.
    pub fn pending(&self) -> usize {
        self.inner.pending.borrow().len()
    }
}
