//! The controller listener's protocol: Raft RPCs between voters, and the calls brokers make
//! to the quorum (forwarded proposals, metadata fetches, heartbeats).
//!
//! Each message is a `[len u32][json]` frame; a connection carries one request at a time.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::image::{MetadataImage, MetadataRecord};
use super::quorum::QuorumDescription;
use super::{ApplyResult, TypeConfig};
use crate::network::Transport;
use crate::security::tls::ClientTls;

type NodeId = u64;

/// Frames larger than this are refused (a snapshot of a large image still fits).
const MAX_FRAME: usize = 256 << 20;

/// A broker's periodic liveness report to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `node.id`.
    pub id: i32,
    /// The incarnation it registered with.
    pub incarnation: Uuid,
    /// The metadata offset the broker has applied.
    pub applied_index: u64,
    /// Set during controlled shutdown: move leadership away and do not unfence.
    pub want_shutdown: bool,
}

/// The active controller's answer to a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// False when the controller has no registration for this incarnation.
    pub registered: bool,
    /// Whether the broker is fenced after this heartbeat.
    pub fenced: bool,
}

/// Why the quorum did not take a call.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum QuorumError {
    /// The node asked is not the active controller; the leader it knows, if any.
    #[error("not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    /// The quorum cannot answer now.
    #[error("{0}")]
    Unavailable(String),
}

/// A request on the controller listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Raft: request a vote.
    Vote(VoteRequest<NodeId>),
    /// Raft: replicate entries.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: a snapshot chunk.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Commit a record through this node, which must be the leader.
    Propose(MetadataRecord),
    /// The image once it is past `after` (a long poll of at most `max_wait_ms`).
    FetchImage { after: u64, max_wait_ms: u64 },
    /// A broker heartbeat.
    Heartbeat(Heartbeat),
    /// The quorum's state, from the active controller (DescribeQuorum).
    DescribeQuorum,
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Response {
    /// Answer to [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answer to [`Request::Propose`].
    Proposed(Result<ApplyResult, QuorumError>),
    /// Answer to [`Request::FetchImage`]: the newer image if there is one, and the leader.
    Image {
        image: Option<Arc<MetadataImage>>,
        leader: Option<i32>,
    },
    /// Answer to [`Request::Heartbeat`].
    Heartbeat(Result<HeartbeatReply, QuorumError>),
    /// Answer to [`Request::DescribeQuorum`].
    Quorum(Result<QuorumDescription, QuorumError>),
    /// The request cannot be served by this node (for example Raft RPCs to a broker).
    Refused(String),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(
    stream: &mut (impl AsyncWrite + Unpin),
    message: &T,
) -> io::Result<()> {
    let json = serde_json::to_vec(message)?;
    let mut frame = Vec::with_capacity(json.len() + 4);
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    stream.write_all(&frame).await?;
    // TLS holds written bytes until flushed.
    stream.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut (impl AsyncRead + Unpin),
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_length(len)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    decode_frame(&body).map(Some)
}

/// The body length a frame's 4-byte prefix announces, refused above the limit before anything
/// is allocated for it.
pub fn frame_length(prefix: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("controller frame of {len} bytes is over the {MAX_FRAME} byte limit"),
        ));
    }
    Ok(len)
}

/// Decodes a frame's JSON body.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    Ok(serde_json::from_slice(body)?)
}

/// A connection to one controller, opened on first use and reopened after any error.
pub struct RpcClient {
    address: String,
    host: String,
    tls: Option<Arc<ClientTls>>,
    stream: Option<Box<dyn Transport>>,
}

impl RpcClient {
    /// A client for `host:port`, over TLS when `tls` is given; nothing is connected yet.
    pub fn new(host: &str, port: u16, tls: Option<Arc<ClientTls>>) -> Self {
        RpcClient {
            address: format!("{host}:{port}"),
            host: host.to_string(),
            tls,
            stream: None,
        }
    }

    /// A client for an address written `host:port`.
    pub fn from_address(address: &str, tls: Option<Arc<ClientTls>>) -> Self {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_matches(['[', ']']);
        RpcClient {
            address: address.to_string(),
            host: host.to_string(),
            tls,
            stream: None,
        }
    }

    /// Sends one request and waits for its answer, all within `timeout`.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> io::Result<Response> {
        let result = tokio::time::timeout(timeout, self.exchange(request)).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not answer within {timeout:?}", self.address),
            )),
        };
        if outcome.is_err() {
            self.stream = None;
        }
        outcome
    }

    async fn exchange(&mut self, request: &Request) -> io::Result<Response> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.address).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(match &self.tls {
                Some(tls) => Box::new(tls.connect(stream, &self.host).await?),
                None => Box::new(stream),
            });
        }
        let stream = self.stream.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "controller closed the connection",
            )
        })
    }
}
