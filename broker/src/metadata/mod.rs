//! The KRaft part: an openraft group whose log holds metadata records and whose state
//! machine is the metadata image. A single node is a quorum of one on the same code path.

pub mod image;
pub mod listener;
mod liveness;
mod network;
pub mod quorum;
pub mod quotas;
pub mod rpc;
pub mod runtime;
pub mod security;
mod state_machine;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{BrokerConfig, Role, Voter};
use crate::log::write_file_atomic;
use crate::security::tls::ClientTls;
use image::{MetadataImage, MetadataRecord};
use rpc::{Heartbeat, HeartbeatReply, QuorumError, Request, Response, RpcClient};

openraft::declare_raft_types!(
    /// Raft types of the metadata quorum.
    pub TypeConfig:
        D = MetadataRecord,
        R = ApplyResult,
);

/// What applying one record produced, returned to the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// Why the record was rejected, if it was.
    pub error: Option<String>,
    /// A value the record produced (the start of an allocated producer id block).
    #[serde(default)]
    pub value: Option<i64>,
    /// The changes of a batch refused while the others applied, by index.
    #[serde(default)]
    pub refused: Vec<u32>,
}

/// Errors from the metadata quorum.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The record was committed but the state machine refused it.
    #[error("{0}")]
    Rejected(String),
    /// The quorum cannot take writes now (no leader, shutting down).
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
    /// The quorum could not start.
    #[error("metadata quorum failed to start: {0}")]
    Startup(String),
}

/// How long a proposal or heartbeat keeps looking for the active controller.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one call to a controller may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The most partitions one ElectLeaders record elects, which bounds the record's size.
pub const ELECTIONS_PER_RECORD: usize = 10_000;
/// Where a broker-only node keeps its copy of the metadata image.
const BROKER_IMAGE_FILE: &str = "broker-metadata-image.json";

/// The controller API: proposes records to the quorum and exposes the latest image.
///
/// On a node with the controller role it runs a voter of the Raft group; on a broker-only
/// node it follows the image from the voters and forwards writes to the active controller.
pub struct Controller {
    node_id: i32,
    voters: Vec<Voter>,
    raft: Option<Raft<TypeConfig>>,
    image: watch::Receiver<Arc<MetadataImage>>,
    publisher: Arc<watch::Sender<Arc<MetadataImage>>>,
    /// The active controller as last reported by a voter (broker-only nodes).
    reported_leader: Mutex<Option<i32>>,
    /// Which brokers are alive, as the active controller sees them.
    liveness: liveness::Liveness,
    /// This broker's connection for heartbeats, kept open so that the active controller sees
    /// it close when this process dies: (voter id, connection).
    heartbeat_connection: tokio::sync::Mutex<Option<(i32, RpcClient)>>,
    /// When this broker's last heartbeat was answered, and whether it was fenced then.
    answered_heartbeat: Mutex<Option<(Instant, bool)>>,
    broker_image_path: PathBuf,
    /// TLS for connections to the other voters, when the controller listener is SSL.
    tls: Option<Arc<ClientTls>>,
    /// When each other voter last answered this node's AppendEntries.
    peer_answers: Arc<quorum::PeerAnswers>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Controller {
    /// Opens the metadata log under the first `log.dirs` entry and starts the Raft voter
    /// (controller role), or loads the local copy of the image (broker-only).
    pub async fn start(
        config: &BrokerConfig,
        tls: Option<Arc<ClientTls>>,
    ) -> Result<Self, ControllerError> {
        let startup = |e: &dyn std::fmt::Display| ControllerError::Startup(e.to_string());
        let dir = config.log_dirs[0].join("__cluster_metadata-0");
        std::fs::create_dir_all(&dir).map_err(|e| startup(&e))?;
        let broker_image_path = dir.join(BROKER_IMAGE_FILE);
        let (publisher, image) = watch::channel(Arc::new(MetadataImage::default()));
        let publisher = Arc::new(publisher);
        let peer_answers = Arc::new(quorum::PeerAnswers::default());
        let raft = if config.has_role(Role::Controller) {
            let network = network::QuorumNetwork {
                tls: tls.clone(),
                answers: peer_answers.clone(),
            };
            Some(Self::start_voter(config, &dir, publisher.clone(), network).await?)
        } else {
            if let Ok(bytes) = std::fs::read(&broker_image_path) {
                match serde_json::from_slice::<MetadataImage>(&bytes) {
                    Ok(local) => {
                        publisher.send_replace(Arc::new(local));
                    }
                    Err(e) => warn!(error = %e, "ignoring an unreadable local metadata image"),
                }
            }
            None
        };
        Ok(Controller {
            node_id: config.node_id,
            voters: config.voters.clone(),
            raft,
            image,
            publisher,
            reported_leader: Mutex::new(None),
            liveness: liveness::Liveness::default(),
            heartbeat_connection: tokio::sync::Mutex::new(None),
            answered_heartbeat: Mutex::new(None),
            broker_image_path,
            tls,
            peer_answers,
        })
    }

    async fn start_voter(
        config: &BrokerConfig,
        dir: &std::path::Path,
        publisher: Arc<watch::Sender<Arc<MetadataImage>>>,
        network: network::QuorumNetwork,
    ) -> Result<Raft<TypeConfig>, ControllerError> {
        let startup = |e: &dyn std::fmt::Display| ControllerError::Startup(e.to_string());
        let log_store = store::LogStore::open(dir).map_err(|e| startup(&e))?;
        let fresh = log_store.is_empty().await;
        let state_machine =
            state_machine::StateMachine::open(dir, publisher).map_err(|e| startup(&e))?;
        let snapshot_every = config.long("metadata.max.snapshot.entries") as u64;
        // A follower that knows a leader waits out the leader's lease (the longest election
        // timeout) and then its own random election timeout, so it stands for election 2.5 to 3
        // election timeouts after the last heartbeat.
        let election_timeout = config.long("controller.quorum.election.timeout.ms") as u64;
        let raft_config = openraft::Config {
            cluster_name: "strom-metadata".into(),
            heartbeat_interval: election_timeout / 5,
            election_timeout_min: election_timeout,
            election_timeout_max: election_timeout * 3 / 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .map_err(|e| startup(&e))?;
        // Started on the quorum runtime, where openraft spawns its tasks.
        let raft = runtime::spawn_on_quorum(Raft::new(
            config.node_id as u64,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        ))
        .map_err(|e| startup(&e))?
        .await
        .map_err(|e| startup(&e))?
        .map_err(|e| startup(&e))?;
        if fresh {
            // Every voter initializes with the same membership, which openraft allows.
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|v| {
                    (
                        v.id as u64,
                        BasicNode::new(format!("{}:{}", v.host, v.port)),
                    )
                })
                .collect();
            match raft.initialize(members).await {
                Ok(()) => info!("initialized a new metadata quorum"),
                Err(e) => warn!(error = %e, "metadata quorum was already initialized"),
            }
        }
        Ok(raft)
    }

    /// Waits until the quorum has a leader and the image has a cluster id, proposing one
    /// on a new cluster. Waits as long as it takes: a node may start before its peers.
    pub async fn wait_ready(&self) -> Result<(), ControllerError> {
        let mut images = self.subscribe();
        let mut waited = 0u64;
        loop {
            if !self.image().cluster_id.is_empty() {
                break;
            }
            if self.raft.is_some() && self.active_controller().is_some() {
                let cluster_id = uuid::Uuid::new_v4().simple().to_string();
                match self
                    .propose(MetadataRecord::InitCluster { cluster_id })
                    .await
                {
                    Ok(()) => continue,
                    Err(e) => warn!(error = %e, "could not fix the cluster id yet"),
                }
            }
            if tokio::time::timeout(Duration::from_secs(1), images.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return Err(ControllerError::Unavailable("metadata stopped".into()));
            }
            waited += 1;
            if waited.is_multiple_of(10) {
                info!(
                    seconds = waited,
                    voters = self.voters.len(),
                    "waiting for the metadata quorum"
                );
            }
        }
        info!(cluster_id = %self.image().cluster_id, "metadata quorum ready");
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Whether this node runs a voter.
    pub fn is_voter(&self) -> bool {
        self.raft.is_some()
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The Raft node's own view (voters only): term, leader, log and applied indexes.
    pub fn raft_metrics(&self) -> Option<openraft::RaftMetrics<u64, BasicNode>> {
        self.raft.as_ref().map(|r| r.metrics().borrow().clone())
    }

    /// The node id of the active controller, if there is one.
    pub fn active_controller(&self) -> Option<i32> {
        match &self.raft {
            Some(raft) => raft.metrics().borrow().current_leader.map(|id| id as i32),
            None => *lock(&self.reported_leader),
        }
    }

    /// Why this node should not take traffic now, if it should not: as a voter, the quorum has
    /// no leader it knows of, or it leads without a majority's answer within `session_timeout`;
    /// as a `broker`, it is fenced or no heartbeat was answered within `session_timeout`.
    pub fn unready_reason(&self, broker: bool, session_timeout: Duration) -> Option<String> {
        if let Some(raft) = &self.raft {
            let metrics = raft.metrics().borrow().clone();
            match metrics.current_leader {
                None => return Some("the metadata quorum has no leader this node knows of".into()),
                Some(leader) if leader == self.node_id as u64 => {
                    let silent = metrics
                        .millis_since_quorum_ack
                        .is_none_or(|ms| ms > session_timeout.as_millis() as u64);
                    if silent && self.voters.len() > 1 {
                        return Some(format!(
                            "this node leads the metadata quorum but no majority has answered for {} ms",
                            session_timeout.as_millis()
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        if broker {
            return match *lock(&self.answered_heartbeat) {
                None => Some("no heartbeat answered by the active controller yet".into()),
                Some((_, true)) => Some("the active controller has fenced this broker".into()),
                Some((at, false)) if at.elapsed() > session_timeout => Some(format!(
                    "no heartbeat answered by the active controller for {} ms",
                    at.elapsed().as_millis()
                )),
                Some(_) => None,
            };
        }
        None
    }

    fn is_active_controller(&self) -> bool {
        self.raft.is_some() && self.active_controller() == Some(self.node_id)
    }

    /// Commits a record and returns once it is applied to the image.
    pub async fn propose(&self, record: MetadataRecord) -> Result<(), ControllerError> {
        self.propose_for_value(record).await.map(|_| ())
    }

    async fn propose_for_value(
        &self,
        record: MetadataRecord,
    ) -> Result<Option<i64>, ControllerError> {
        self.propose_for_result(record).await.map(|r| r.value)
    }

    /// Proposes a batch of changes that apply independently; returns the indices of those
    /// refused (an error when every one was).
    pub async fn propose_batch(&self, record: MetadataRecord) -> Result<Vec<u32>, ControllerError> {
        self.propose_for_result(record).await.map(|r| r.refused)
    }

    async fn propose_for_result(
        &self,
        record: MetadataRecord,
    ) -> Result<ApplyResult, ControllerError> {
        match self.ask_leader(Request::Propose(record), None).await? {
            Response::Proposed(Ok(ApplyResult {
                error: Some(reason),
                ..
            })) => Err(ControllerError::Rejected(reason)),
            Response::Proposed(Ok(result)) => Ok(result),
            other => Err(ControllerError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Sends a heartbeat to the active controller.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatReply, ControllerError> {
        let request = Request::Heartbeat(heartbeat);
        match self
            .ask_leader(request, Some(&self.heartbeat_connection))
            .await?
        {
            Response::Heartbeat(Ok(reply)) => {
                *lock(&self.answered_heartbeat) =
                    Some((Instant::now(), reply.fenced || !reply.registered));
                Ok(reply)
            }
            other => Err(ControllerError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// The quorum's state from the active controller.
    pub async fn describe_quorum(&self) -> Result<quorum::QuorumDescription, ControllerError> {
        match self.ask_leader(Request::DescribeQuorum, None).await? {
            Response::Quorum(Ok(description)) => Ok(description),
            other => Err(ControllerError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// This node's description of the quorum, which only the active controller can give.
    fn quorum_description(
        &self,
        raft: &Raft<TypeConfig>,
    ) -> Result<quorum::QuorumDescription, QuorumError> {
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.node_id as u64) {
            return Err(QuorumError::NotLeader {
                leader: metrics.current_leader.map(|id| id as i32),
            });
        }
        let clock = quorum::WallClock::now();
        let leader_end = metrics.last_log_index.map_or(0, |i| i + 1);
        let matched = metrics.replication.clone().unwrap_or_default();
        let voters = self
            .voters
            .iter()
            .map(|v| {
                if v.id == self.node_id {
                    return quorum::ReplicaProgress {
                        id: v.id,
                        log_end_offset: leader_end as i64,
                        last_fetch_ms: clock.now_ms(),
                        last_caught_up_ms: clock.now_ms(),
                    };
                }
                let end = matched
                    .get(&(v.id as u64))
                    .and_then(|m| m.as_ref())
                    .map(|log_id| log_id.index + 1);
                let answered = self.peer_answers.last(v.id as u64);
                quorum::follower(v.id, end, answered, leader_end, &clock)
            })
            .collect();
        let applied_end = metrics.last_applied.map_or(0, |l| l.index + 1);
        let observers = self
            .image()
            .brokers
            .keys()
            .filter(|id| !self.voters.iter().any(|v| v.id == **id))
            .map(|id| {
                let progress = self.liveness.last_progress(*id);
                quorum::follower(
                    *id,
                    progress.map(|(_, applied)| applied + 1),
                    progress.map(|(at, _)| at),
                    applied_end,
                    &clock,
                )
            })
            .collect();
        Ok(quorum::QuorumDescription {
            leader_id: self.node_id,
            leader_epoch: metrics.current_term as i32,
            high_watermark: applied_end as i64,
            voters,
            observers,
        })
    }

    /// The controller listeners of the voters: (id, host, port).
    pub fn voter_endpoints(&self) -> Vec<(i32, String, u16)> {
        self.voters
            .iter()
            .map(|v| (v.id, v.host.clone(), v.port))
            .collect()
    }

    /// Sends a proposal or heartbeat to the active controller, following "not the leader"
    /// answers and trying each voter in turn while none is known. With `kept`, the connection
    /// to the voter is kept there for the next call; otherwise it is closed after the answer.
    async fn ask_leader(
        &self,
        request: Request,
        kept: Option<&tokio::sync::Mutex<Option<(i32, RpcClient)>>>,
    ) -> Result<Response, ControllerError> {
        let deadline = Instant::now() + ROUTE_TIMEOUT;
        let mut next_voter = 0usize;
        let mut target = self.active_controller();
        let mut last_error = String::from("no voter answered");
        while Instant::now() < deadline {
            let to = match target {
                Some(id) => id,
                None => {
                    next_voter += 1;
                    self.voters[next_voter % self.voters.len()].id
                }
            };
            let response = if to == self.node_id && self.raft.is_some() {
                Ok(self.serve(request.clone()).await)
            } else {
                let voter = self.voters.iter().find(|v| v.id == to);
                let connect = |v: &Voter| RpcClient::new(&v.host, v.port, self.tls.clone());
                match (voter, kept) {
                    (Some(v), Some(kept)) => {
                        let mut kept = kept.lock().await;
                        if kept.as_ref().is_some_and(|(id, _)| *id != to) {
                            *kept = None;
                        }
                        let (_, client) = kept.get_or_insert_with(|| (to, connect(v)));
                        client.call(&request, CALL_TIMEOUT).await
                    }
                    (Some(v), None) => connect(v).call(&request, CALL_TIMEOUT).await,
                    (None, _) => Err(std::io::Error::other(format!("{to} is not a voter"))),
                }
            };
            let not_leader = match &response {
                Ok(Response::Proposed(Err(QuorumError::NotLeader { leader })))
                | Ok(Response::Heartbeat(Err(QuorumError::NotLeader { leader })))
                | Ok(Response::Quorum(Err(QuorumError::NotLeader { leader }))) => Some(*leader),
                _ => None,
            };
            match (response, not_leader) {
                (_, Some(leader)) => {
                    last_error = format!("node {to} is not the active controller");
                    target = leader.filter(|l| *l != to);
                    if target.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                (Ok(Response::Proposed(Err(QuorumError::Unavailable(e)))), _)
                | (Ok(Response::Heartbeat(Err(QuorumError::Unavailable(e)))), _)
                | (Ok(Response::Quorum(Err(QuorumError::Unavailable(e)))), _) => {
                    last_error = e;
                    target = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (Ok(response), None) => {
                    if to != self.node_id {
                        *lock(&self.reported_leader) = Some(to);
                    }
                    return Ok(response);
                }
                (Err(e), None) => {
                    last_error = format!("controller {to}: {e}");
                    target = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(ControllerError::Unavailable(last_error))
    }

    /// Answers one controller-listener request on this node.
    pub async fn serve(&self, request: Request) -> Response {
        let Some(raft) = &self.raft else {
            return Response::Refused(format!("node {} is not a controller", self.node_id));
        };
        match request {
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
            Request::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            Request::Propose(record) => Response::Proposed(self.commit(record).await),
            Request::FetchImage { after, max_wait_ms } => {
                let mut images = self.subscribe();
                let wait = Duration::from_millis(max_wait_ms.min(30_000));
                let _ = tokio::time::timeout(
                    wait,
                    images.wait_for(|image| image.applied_index > after),
                )
                .await;
                let image = self.image();
                Response::Image {
                    leader: self.active_controller(),
                    image: (image.applied_index > after).then_some(image),
                }
            }
            Request::Heartbeat(heartbeat) => {
                Response::Heartbeat(self.on_heartbeat(heartbeat).await)
            }
            Request::DescribeQuorum => Response::Quorum(self.quorum_description(raft)),
        }
    }

    /// Commits a record through the local voter, which must be the leader.
    async fn commit(&self, record: MetadataRecord) -> Result<ApplyResult, QuorumError> {
        if let Err(reason) = record.validate() {
            return Ok(ApplyResult {
                error: Some(format!("INVALID_REQUEST: {reason}")),
                ..ApplyResult::default()
            });
        }
        let raft = self
            .raft
            .as_ref()
            .ok_or(QuorumError::NotLeader { leader: None })?;
        match raft.client_write(record).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id.map(|id| id as i32),
                })
            }
            Err(e) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    /// The active controller's side of a heartbeat: remembers it, and unfences a caught-up
    /// broker or fences one that is shutting down.
    async fn on_heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatReply, QuorumError> {
        if !self.is_active_controller() {
            return Err(QuorumError::NotLeader {
                leader: self.active_controller(),
            });
        }
        self.liveness
            .heartbeat(heartbeat.id, heartbeat.applied_index);
        let image = self.image();
        let Some(registration) = image
            .brokers
            .get(&heartbeat.id)
            .filter(|b| b.incarnation == heartbeat.incarnation)
        else {
            return Ok(HeartbeatReply {
                registered: false,
                fenced: true,
            });
        };
        let change = if heartbeat.want_shutdown && !registration.fenced {
            info!(
                broker = heartbeat.id,
                "controlled shutdown: fencing the broker"
            );
            Some(MetadataRecord::FenceBroker {
                id: heartbeat.id,
                unresponsive: false,
            })
        } else if !heartbeat.want_shutdown
            && registration.fenced
            && heartbeat.applied_index >= registration.registered_at
        {
            info!(broker = heartbeat.id, "unfencing the caught-up broker");
            Some(MetadataRecord::UnfenceBroker { id: heartbeat.id })
        } else {
            None
        };
        if let Some(record) = change {
            let result = self.commit(record).await?;
            if let Some(error) = result.error {
                return Err(QuorumError::Unavailable(error));
            }
        }
        Ok(HeartbeatReply {
            registered: true,
            fenced: self
                .image()
                .brokers
                .get(&heartbeat.id)
                .is_none_or(|b| b.fenced),
        })
    }

    /// On the active controller: fences every unfenced broker whose last heartbeat is older
    /// than `session_timeout`. A newly elected controller counts from its election.
    pub async fn fence_silent_brokers(&self, session_timeout: Duration, leader_since: Instant) {
        if !self.is_active_controller() {
            return;
        }
        let image = self.image();
        let now = Instant::now();
        let silent: Vec<i32> = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter(|b| {
                let last = self
                    .liveness
                    .last_heartbeat(b.id)
                    .unwrap_or(leader_since)
                    .max(leader_since);
                now.duration_since(last) > session_timeout
            })
            .map(|b| b.id)
            .collect();
        for id in silent {
            warn!(broker = id, "fencing a broker that stopped heartbeating");
            self.fence(id, true).await;
        }
    }

    /// On the active controller: probes the suspected brokers due for it and fences those
    /// whose listeners refuse connections (see [`liveness`]); a suspicion lasts at most
    /// `session_timeout`.
    pub async fn fence_dead_brokers(&self, session_timeout: Duration) {
        let due = self.liveness.due_for_probe(session_timeout);
        if due.is_empty() || !self.is_active_controller() {
            return;
        }
        let image = self.image();
        let mut probed = Vec::new();
        for id in due {
            match image.brokers.get(&id) {
                Some(b) if !b.fenced && id != self.node_id => probed.push(b.clone()),
                _ => self.liveness.clear(id),
            }
        }
        for (id, probe) in liveness::probe_all(probed).await {
            if probe == liveness::Probe::Dead {
                warn!(
                    broker = id,
                    "fencing a broker whose listeners refuse connections"
                );
                // A new controller's first commits can fail; the suspicion stays, so the
                // next probe tries again instead of waiting for the session to end.
                if self.fence(id, false).await {
                    self.liveness.clear(id);
                }
            }
        }
    }

    /// On the active controller: suspects every unfenced broker, as a new controller has not
    /// heard from them yet, and forgets the suspicions of its earlier terms.
    pub fn suspect_all_brokers(&self) {
        let image = self.image();
        let unfenced = image.brokers.values().filter(|b| !b.fenced).map(|b| b.id);
        self.liveness.suspect_afresh(unfenced);
    }

    /// The broker `id`'s heartbeat connection closed: it is probed at once.
    pub fn heartbeat_connection_closed(&self, id: i32) {
        if self.is_active_controller() {
            self.liveness.suspect([id]);
        }
    }

    /// Resolves when a broker becomes a suspect.
    pub async fn broker_suspected(&self) {
        self.liveness.suspected().await
    }

    /// Whether the broker is fenced now.
    async fn fence(&self, id: i32, unresponsive: bool) -> bool {
        let record = MetadataRecord::FenceBroker { id, unresponsive };
        match self.commit(record).await {
            Ok(_) => true,
            Err(e) => {
                warn!(broker = id, error = %e, "could not fence the broker");
                false
            }
        }
    }

    /// On the active controller: moves leadership back to each partition's preferred replica
    /// (the first) where it is live and in the ISR (`auto.leader.rebalance.enable`).
    pub async fn elect_preferred_leaders(&self) {
        if !self.is_active_controller() {
            return;
        }
        let image = self.image();
        let live = image.live_brokers();
        let kind = image::ElectionKind::Preferred;
        let wanted: Vec<(String, i32)> = image
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.reassigning())
                    .map(move |(index, _)| (topic.clone(), index as i32))
            })
            .filter(|(topic, partition)| image.election(topic, *partition, kind, &live).is_ok())
            .collect();
        for partitions in wanted.chunks(ELECTIONS_PER_RECORD) {
            let record = MetadataRecord::ElectLeaders {
                kind,
                partitions: partitions.to_vec(),
            };
            match self.commit(record).await {
                Ok(ApplyResult { value, .. }) => info!(
                    partitions = value.unwrap_or(0),
                    "moved leadership back to the preferred replicas"
                ),
                Err(e) => {
                    warn!(error = %e, "preferred leader election stopped");
                    return;
                }
            }
        }
    }

    /// On a broker-only node: long-polls the voters for newer images, publishes them and
    /// keeps a local copy so a restart starts from it.
    pub async fn follow_quorum(&self, mut shutdown: watch::Receiver<bool>) {
        let mut voter = 0usize;
        let mut client: Option<RpcClient> = None;
        loop {
            let v = &self.voters[voter % self.voters.len()];
            let rpc =
                client.get_or_insert_with(|| RpcClient::new(&v.host, v.port, self.tls.clone()));
            let after = self.image().applied_index;
            let request = Request::FetchImage {
                after,
                max_wait_ms: 2_000,
            };
            let answer = tokio::select! {
                answer = rpc.call(&request, CALL_TIMEOUT) => answer,
                _ = shutdown.changed() => return,
            };
            match answer {
                Ok(Response::Image { image, leader }) => {
                    *lock(&self.reported_leader) = leader;
                    if let Some(image) = image.filter(|i| i.applied_index > after) {
                        match serde_json::to_vec(&*image) {
                            Ok(bytes) => {
                                if let Err(e) = write_file_atomic(&self.broker_image_path, &bytes) {
                                    warn!(error = %e, "could not keep the local metadata image");
                                }
                            }
                            Err(e) => warn!(error = %e, "could not encode the metadata image"),
                        }
                        self.publisher.send_replace(image);
                    }
                }
                Ok(other) => {
                    warn!(voter = v.id, answer = ?other, "unexpected metadata answer");
                    client = None;
                    voter += 1;
                }
                Err(e) => {
                    tracing::debug!(voter = v.id, error = %e, "metadata fetch failed; trying the next voter");
                    client = None;
                    voter += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// Reserves `count` producer ids, unique across restarts; returns the first.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        self.propose_for_value(MetadataRecord::AllocateProducerIds { count })
            .await?
            .ok_or_else(|| ControllerError::Rejected("no producer id block was returned".into()))
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Some(raft) = &self.raft {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
            }
        }
    }
}

/// Hands out producer ids from blocks reserved through the quorum, so ids stay unique
/// across restarts (and, later, across brokers).
pub struct ProducerIdAllocator {
    controller: Arc<Controller>,
    /// (next id, end of the block).
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    const BLOCK_SIZE: i64 = 1000;

    /// An allocator with no block reserved yet.
    pub fn new(controller: Arc<Controller>) -> Self {
        ProducerIdAllocator {
            controller,
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// The next unused producer id.
    pub async fn next(&self) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let start = self
                .controller
                .allocate_producer_ids(Self::BLOCK_SIZE)
                .await?;
            *block = (start, start + Self::BLOCK_SIZE);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
