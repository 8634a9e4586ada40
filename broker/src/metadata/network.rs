//! Raft transport for the metadata quorum: every RPC crosses the controller listener.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::rpc::{Request, Response, RpcClient};
use super::TypeConfig;

type NodeId = u64;

/// Opens connections to the other voters, addressed by the `BasicNode` of the membership.
pub struct QuorumNetwork;

/// A connection to one voter.
pub struct PeerConnection {
    target: NodeId,
    client: RpcClient,
}

impl RaftNetworkFactory<TypeConfig> for QuorumNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            client: RpcClient::new(node.addr.clone()),
        }
    }
}

/// A peer that refuses or does not accept connections is `Unreachable`, which openraft
/// retries with backoff; other failures are network errors, retried at once.
fn network_error<E: std::error::Error>(e: std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::TimedOut
        | std::io::ErrorKind::UnexpectedEof => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

fn unexpected<E: std::error::Error>(response: Response) -> RPCError<NodeId, BasicNode, E> {
    network_error(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected controller response: {response:?}"),
    ))
}

impl PeerConnection {
    async fn call(&mut self, request: Request, option: &RPCOption) -> std::io::Result<Response> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        self.client.call(&request, timeout).await
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .call(Request::AppendEntries(rpc), &option)
            .await
            .map_err(network_error)?
        {
            Response::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(Request::InstallSnapshot(rpc), &option)
            .await
            .map_err(network_error)?
        {
            Response::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .call(Request::Vote(rpc), &option)
            .await
            .map_err(network_error)?
        {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(unexpected(other)),
        }
    }
}
