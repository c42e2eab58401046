//! openraft's network over the SDK's RPC layer, and the serving side.
//!
//! Each openraft RPC is one [`Rpc::call`] of a [`Kind`]; the body is the
//! postcard encoding of openraft's request, the response body that of
//! `Result<response, String>` (a remote failure is reported as text: the
//! caller only needs to know the call failed). A call that gets no answer
//! before openraft's `hard_ttl` fails with [`RPCError::Timeout`], so
//! openraft retries lost messages.

use std::future::Future;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tsohost_guest_sdk::NodeId;
use tsohost_guest_sdk::runtime::rpc::{Rpc, RpcError};

use crate::store::SmState;
use crate::types::{SnapshotMeta, TypeConfig, Vote};

/// The request kinds on the wire. Numbers are part of the protocol between
/// driver builds: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `AppendEntriesRequest` → `AppendEntriesResponse`.
    Append = 1,
    /// `VoteRequest` → `VoteResponse`.
    Vote = 2,
    /// Pre-vote `VoteRequest` → `VoteResponse`.
    PreVote = 3,
    /// `(Vote, SnapshotMeta, SmState)` → `SnapshotResponse`.
    Snapshot = 4,
    /// `TransferLeaderRequest` → `TransferLeaderResponse`.
    TransferLeader = 5,
}

impl Kind {
    /// The kind of a wire number.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Append,
            2 => Kind::Vote,
            3 => Kind::PreVote,
            4 => Kind::Snapshot,
            5 => Kind::TransferLeader,
            _ => return None,
        })
    }
}

/// A call that failed before openraft saw a response.
#[derive(Debug, Error)]
enum CallError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("undecodable response: {0}")]
    Decode(#[from] postcard::Error),
    #[error("remote error: {0}")]
    Remote(String),
}

/// Encode a message body.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard encodes openraft messages to a Vec")
}

/// Creates a [`Peer`] per target.
#[derive(Clone)]
pub struct Network {
    /// This node.
    pub me: NodeId,
    /// The RPC layer shared with the driver core.
    pub rpc: Rpc,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Peer {
        Peer {
            me: self.me,
            target,
            rpc: self.rpc.clone(),
        }
    }
}

/// The connection to one peer.
pub struct Peer {
    me: NodeId,
    target: NodeId,
    rpc: Rpc,
}

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: Kind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let body = self
            .rpc
            .call(self.target, kind as u8, encode(req), ttl)
            .await?;
        postcard::from_bytes::<Result<Resp, String>>(&body)?.map_err(CallError::Remote)
    }

    fn rpc_error(&self, action: RPCTypes, ttl: Duration, e: CallError) -> RPCError<TypeConfig> {
        match e {
            CallError::Rpc(RpcError::Timeout(_)) => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout: ttl,
            }),
            CallError::Rpc(RpcError::Closed) => RPCError::Unreachable(Unreachable::new(&e)),
            other => RPCError::Network(NetworkError::new(&other)),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = SmState;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(Kind::Append, &rpc, ttl)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::AppendEntries, ttl, e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(Kind::Vote, &rpc, ttl)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::Vote, ttl, e))
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(Kind::PreVote, &rpc, ttl)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::Vote, ttl, e))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(Kind::TransferLeader, &req, ttl)
            .await
            .map_err(|e| self.rpc_error(RPCTypes::TransferLeader, ttl, e))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SmState>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = option.hard_ttl();
        let req: (Vote, SnapshotMeta, SmState) = (vote, snapshot.meta, snapshot.snapshot);
        self.call(Kind::Snapshot, &req, ttl).await.map_err(|e| {
            match self.rpc_error(RPCTypes::InstallSnapshot, ttl, e) {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
            }
        })
    }
}
