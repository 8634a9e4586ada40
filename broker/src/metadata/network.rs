//! Raft transport for the metadata quorum: every RPC crosses the controller listener.

use std::sync::Arc;
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

use super::quorum::PeerAnswers;
use super::rpc::{Request, Response, RpcClient};
use super::TypeConfig;
use crate::security::tls::ClientTls;

type NodeId = u64;

/// Opens connections to the other voters, addressed by the `BasicNode` of the membership.
pub struct QuorumNetwork {
    /// TLS, when the controller listener is SSL.
    pub tls: Option<Arc<ClientTls>>,
    /// Where answers to AppendEntries are recorded, for DescribeQuorum.
    pub answers: Arc<PeerAnswers>,
}

/// A connection to one voter.
pub struct PeerConnection {
    target: NodeId,
    client: RpcClient,
    answers: Arc<PeerAnswers>,
}

impl RaftNetworkFactory<TypeConfig> for QuorumNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            client: RpcClient::from_address(&node.addr, self.tls.clone()),
            answers: self.answers.clone(),
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

fn unexpected<E: std::error::Error>(request: &'static str) -> RPCError<NodeId, BasicNode, E> {
    network_error(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the controller answered {request} with another kind of response"),
    ))
}

type RaftResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Picks the answer out of a response of the expected kind.
type Unpack<T, E> = fn(Response) -> Option<Result<T, RaftError<NodeId, E>>>;

impl PeerConnection {
    /// Sends one Raft RPC named `name` and unpacks its answer with `unpack`.
    async fn call<T, E: std::error::Error>(
        &mut self,
        name: &'static str,
        request: Request,
        option: &RPCOption,
        unpack: Unpack<T, E>,
    ) -> RaftResult<T, E> {
        let timeout = option.hard_ttl().max(Duration::from_millis(50));
        let response = self
            .client
            .call(&request, timeout)
            .await
            .map_err(network_error)?;
        unpack(response)
            .ok_or_else(|| unexpected(name))?
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RaftResult<AppendEntriesResponse<NodeId>> {
        let answer = self
            .call(
                "AppendEntries",
                Request::AppendEntries(rpc),
                &option,
                |r| match r {
                    Response::AppendEntries(r) => Some(r),
                    _ => None,
                },
            )
            .await;
        if answer.is_ok() {
            self.answers.answered(self.target);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RaftResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(
            "InstallSnapshot",
            Request::InstallSnapshot(rpc),
            &option,
            |r| match r {
                Response::InstallSnapshot(r) => Some(r),
                _ => None,
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RaftResult<VoteResponse<NodeId>> {
        self.call("Vote", Request::Vote(rpc), &option, |r| match r {
            Response::Vote(r) => Some(r),
            _ => None,
        })
        .await
    }
}
