//! Raft between controller members over our own gRPC service (`ControllerRaft` of
//! `rocketgate/cluster/v1/controller.proto`): [`Network`] is openraft's client side, one lazily
//! connected tonic channel per peer; `service.rs` is the server side. Payloads are openraft's
//! serde types as JSON; every call is signed with the cluster secret when there is one
//! (`auth.rs`) and bounded by openraft's hard TTL.
//!
//! Must not touch the state machine or decide anything.

use prost::Message;
use rocketgate_proto::cluster::v1 as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::auth::{now_ms, Key};
use super::TypeConfig;
use crate::client::ClientTls;

type RaftClient = pb::controller_raft_client::ControllerRaftClient<Channel>;
type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

/// Largest Raft message accepted (a snapshot of many groups is the largest).
pub const MAX_RAFT_BYTES: usize = 64 << 20;

/// Makes a [`Network`] per peer.
#[derive(Clone)]
pub struct Factory {
    pub(super) key: Option<Key>,
    pub(super) tls: Option<ClientTls>,
}

/// The client side of Raft to one peer.
pub struct Network {
    target: u64,
    client: Result<RaftClient, String>,
    key: Option<Key>,
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Network;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Network {
        let timeout = std::time::Duration::from_secs(5);
        let client = crate::client::channel(&node.addr, timeout, self.tls.as_ref())
            .map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(MAX_RAFT_BYTES)
                    .max_encoding_message_size(MAX_RAFT_BYTES)
            })
            .map_err(|e| e.to_string());
        Network {
            target,
            client,
            key: self.key.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

impl Network {
    async fn call<Req, Resp, E>(
        &mut self,
        method: &'static str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&Failure(e.clone())))),
        };
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = pb::RaftPayload { json };
        let body = payload.encode_to_vec();
        let mut req = tonic::Request::new(payload);
        req.set_timeout(option.hard_ttl());
        if let Some(key) = &self.key {
            key.sign(req.metadata_mut(), method, now_ms(), &body);
        }
        let reply = match method {
            "AppendEntries" => client.append_entries(req).await,
            "Vote" => client.vote(req).await,
            _ => client.install_snapshot(req).await,
        };
        let reply = reply.map_err(|s| {
            let failure = Failure(format!("{method} to controller {}: {s}", self.target));
            if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::DeadlineExceeded {
                RPCError::Unreachable(Unreachable::new(&failure))
            } else {
                RPCError::Network(NetworkError::new(&failure))
            }
        })?;
        let result: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&reply.into_inner().json)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call("AppendEntries", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call("InstallSnapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.call("Vote", &rpc, &option).await
    }
}
