//! Kafka API handlers, one file per API family, and the table that routes requests to them.
//! ApiVersions is generated from the same table, so it advertises exactly what is handled.

mod acls;
mod api_versions;
mod authorize;
mod authorized_operations;
mod client_quotas;
mod cluster;
mod configs;
mod delete_records;
mod describe_quorum;
mod describe_topic_partitions;
mod fetch;
pub mod fetch_session;
mod groups;
mod list_offsets;
mod log_dirs;
pub mod metadata;
mod offset_for_leader_epoch;
mod produce;
mod producer;
mod reassignment;
mod scram;
mod topics;
pub mod transactions;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::warn;

use crate::config::BrokerConfig;
use crate::group::store::OffsetStore;
use crate::group::GroupCoordinator;
use crate::log::manager::LogManager;
use crate::log::{LogError, PartitionLog};
use crate::metadata::image::{MetadataImage, PartitionImage, TopicImage};
use crate::metadata::{Controller, ControllerError, ProducerIdAllocator};
use crate::metrics::BrokerMetrics;
use crate::quota::QuotaManager;
use crate::security::acl::{self, AuthorizerSettings};
use crate::security::principal::Principal;
use crate::security::ListenerSecurity;
use crate::txn::markers::MarkerClient;
use crate::txn::store::TxnStore;
use crate::txn::TxnCoordinator;

pub use api_versions::unsupported_version_response;
pub use fetch_session::FetchSessions;

/// Everything a handler needs: config, the metadata quorum and the local logs.
pub struct Context {
    /// The broker configuration.
    pub config: Arc<BrokerConfig>,
    /// The metadata quorum.
    pub controller: Arc<Controller>,
    /// Partition logs on this broker.
    pub logs: Arc<LogManager>,
    /// The consumer group coordinator.
    pub groups: Arc<GroupCoordinator>,
    /// Durable committed offsets.
    pub offset_store: OffsetStore,
    /// Producer ids for idempotent and transactional producers.
    pub producer_ids: ProducerIdAllocator,
    /// The transaction coordinator.
    pub txns: Arc<TxnCoordinator>,
    /// Durable transaction states.
    pub txn_store: TxnStore,
    /// Sends transaction markers to other brokers.
    pub markers: MarkerClient,
    /// Prometheus metrics.
    pub metrics: BrokerMetrics,
    /// The ACL authorizer, when `authorizer.class.name` turns it on.
    pub authorizer: Option<Arc<AuthorizerSettings>>,
    /// Fenced brokers that Metadata still lists for a while.
    pub fenced_brokers: metadata::FencedBrokers,
    /// The metadata offset of the last image the local logs and replicas applied.
    pub applied_metadata: watch::Sender<u64>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessions,
    /// Client quota sensors.
    pub quotas: QuotaManager,
}

/// How long a handler that changed the metadata waits for the local logs and replicas to
/// apply the change before it answers anyway.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(5);

impl Context {
    /// Waits until the local logs and replicas have applied the image as it is now (at most
    /// [`LOCAL_APPLY_WAIT`]), so that a topic this broker just created or changed is served
    /// here as soon as the change is answered.
    pub async fn local_metadata_applied(&self) {
        let index = self.controller.image().applied_index;
        let mut applied = self.applied_metadata.subscribe();
        let caught_up = applied.wait_for(|applied| *applied >= index);
        if tokio::time::timeout(LOCAL_APPLY_WAIT, caught_up)
            .await
            .is_err()
        {
            warn!(
                index,
                "the local logs have not applied a metadata change yet"
            );
        }
    }
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The header's client id.
    pub client_id: String,
    /// The connection's peer address.
    pub peer: SocketAddr,
    /// The authenticated principal (`User:ANONYMOUS` when there is none).
    pub principal: Arc<Principal>,
    /// The listener the request arrived on.
    pub listener: Arc<ListenerSecurity>,
}

/// The APIs this broker implements, with version ranges.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// The supported version range of an API, if it is implemented.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// A request kind that reached dispatch without a handler (a routing bug, never a client's).
#[derive(Debug, thiserror::Error)]
#[error("no handler for {0:?}")]
pub struct NoHandler(pub ApiKey);

/// What running a request produced.
// Returned once per request and moved straight into encoding; boxing the common variant
// would add an allocation to every request.
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    /// The response; `None` when none is sent (produce with acks=0).
    Now(Option<ResponseKind>),
    /// A response that completes later (an acks=all produce waiting for its ISR). The
    /// connection goes on reading and running requests meanwhile; responses still leave in
    /// request order.
    Later(Pin<Box<dyn Future<Output = ResponseKind> + Send>>),
}

/// Runs one decoded request as its principal may: refused, trimmed, or whole.
pub async fn handle(
    ctx: &Arc<Context>,
    info: &RequestInfo,
    api_key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Result<Handled, NoHandler> {
    if ctx.authorizer.is_none() {
        return run(ctx, info, api_key, version, request).await;
    }
    let access = Access::new(ctx, info, &ctx.controller.image());
    let (request, patch) = match authorize::check(&access, version, request) {
        authorize::Checked::Run(request, patch) => (request, patch),
        authorize::Checked::Refused(response) => return Ok(Handled::Now(Some(response))),
    };
    let handled = run(ctx, info, api_key, version, request).await?;
    let Some(patch) = patch else {
        return Ok(handled);
    };
    Ok(match handled {
        Handled::Now(response) => Handled::Now(response.map(|mut r| {
            patch(&mut r);
            r
        })),
        Handled::Later(pending) => Handled::Later(Box::pin(async move {
            let mut response = pending.await;
            patch(&mut response);
            response
        })),
    })
}

async fn run(
    ctx: &Arc<Context>,
    info: &RequestInfo,
    api_key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Result<Handled, NoHandler> {
    let response = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(ctx, info, r, version).await)
        }
        RequestKind::Produce(r) => return Ok(produce::handle(ctx, r)),
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, info, r).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, r, version))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create_topics(ctx, info, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete_topics(ctx, info, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, info, r, version).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(reassignment::elect_leaders(ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            reassignment::alter_reassignments(ctx, r, version).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignment::list_reassignments(ctx, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(ctx, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(ctx, r))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(ctx, r, version))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(ctx, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(ctx, r, version).await)
        }
        RequestKind::DescribeLogDirs(r) => ResponseKind::DescribeLogDirs(log_dirs::handle(ctx, r)),
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(ctx, info, r))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(cluster::describe_cluster(ctx, info, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer::init_producer_id(ctx, r, version).await)
        }
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            transactions::add_partitions_to_txn(ctx, r, version).await,
        ),
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(transactions::add_offsets_to_txn(ctx, r, version).await)
        }
        RequestKind::EndTxn(r) => {
            ResponseKind::EndTxn(transactions::end_txn(ctx, r, version).await)
        }
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(transactions::write_txn_markers(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(transactions::txn_offset_commit(ctx, r, version).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(transactions::describe_transactions(ctx, r).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(transactions::list_transactions(ctx, r).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(transactions::describe_producers(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, info, r, version))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join_group(ctx, info, r, version).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(groups::sync_group(ctx, r, version).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(ctx, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(groups::offset_commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(ctx, r, version))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(groups::describe_groups(ctx, r, version))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(groups::list_groups(ctx, r, version))
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete_groups(ctx, r)),
        RequestKind::OffsetDelete(r) => ResponseKind::OffsetDelete(groups::offset_delete(ctx, r)),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, info, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, info, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, info, r).await),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram::describe(ctx, info, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram::alter(ctx, info, r).await)
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(ctx, info, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(ctx, info, r).await)
        }
        _ => return Err(NoHandler(api_key)),
    };
    Ok(Handled::Now(Some(response)))
}

/// What one request's principal may do, judged against one metadata image's ACLs. Owns what
/// it needs, so a response patch can keep it.
#[derive(Clone)]
pub struct Access {
    authorizer: Option<Arc<AuthorizerSettings>>,
    image: Arc<MetadataImage>,
    principal: Arc<Principal>,
    host: std::net::IpAddr,
}

impl Access {
    /// The access of `info`'s principal under `image`.
    pub fn new(ctx: &Context, info: &RequestInfo, image: &Arc<MetadataImage>) -> Self {
        Access {
            authorizer: ctx.authorizer.clone(),
            image: image.clone(),
            principal: info.principal.clone(),
            host: info.peer.ip(),
        }
    }

    /// The image the decisions are made against.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Whether an authorizer is on (without one everything is allowed).
    pub fn enabled(&self) -> bool {
        self.authorizer.is_some()
    }

    /// Whether `operation` on the resource is allowed.
    pub fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        self.authorizer.as_ref().is_none_or(|a| {
            a.authorize(
                &self.image.security.acls,
                &self.principal,
                self.host,
                operation,
                resource_type,
                name,
            )
        })
    }

    /// Whether `operation` on the cluster is allowed.
    pub fn allows_cluster(&self, operation: i8) -> bool {
        self.allows(operation, acl::resource::CLUSTER, acl::CLUSTER_NAME)
    }

    /// Whether `operation` is allowed on some resource of the type (Kafka's
    /// `authorizeByResourceType`).
    pub fn allows_any(&self, operation: i8, resource_type: i8) -> bool {
        self.authorizer.as_ref().is_none_or(|a| {
            a.authorize_any(
                &self.image.security.acls,
                &self.principal,
                self.host,
                operation,
                resource_type,
            )
        })
    }

    /// The cluster's `authorized_operations` field: as Kafka, 0 without Describe on the cluster.
    pub fn cluster_operations(&self, requested: bool) -> i32 {
        if requested && !self.allows_cluster(acl::operation::DESCRIBE) {
            return 0;
        }
        self.operations(requested, acl::resource::CLUSTER, acl::CLUSTER_NAME)
    }

    /// The `authorized_operations` field of a resource.
    pub fn operations(&self, requested: bool, resource_type: i8, name: &str) -> i32 {
        authorized_operations::field(requested, resource_type, |op| {
            self.allows(op, resource_type, name)
        })
    }
}

/// A Kafka error: code plus an optional message for the response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The protocol error.
    pub error: ResponseError,
    /// Human-readable detail, where the response carries one.
    pub message: Option<String>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            error,
            message: Some(message.into()),
        }
    }

    /// The error code.
    pub fn code(&self) -> i16 {
        self.error.code()
    }

    /// The message as the wire type.
    pub fn message(&self) -> Option<StrBytes> {
        self.message.clone().map(StrBytes::from_string)
    }
}

impl From<ResponseError> for ApiError {
    fn from(error: ResponseError) -> Self {
        ApiError {
            error,
            message: None,
        }
    }
}

/// Wire string from a Rust string.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Wire topic name from a Rust string.
pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A storage failure as Kafka reports it.
pub fn storage_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ResponseError::KafkaStorageError, e.to_string())
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.into(),
            LogError::Io(e) => storage_error(e),
        }
    }
}

/// The log of a partition this broker leads, with the partition's metadata.
pub fn led_log<'a>(
    ctx: &Context,
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<(Arc<PartitionLog>, &'a TopicImage, &'a PartitionImage), ApiError> {
    led_log_known(ctx, image, topic, partition, None)
}

/// [`led_log`], given the partition's log when the caller already looked it up.
pub fn led_log_known<'a>(
    ctx: &Context,
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
    known: Option<&Arc<PartitionLog>>,
) -> Result<(Arc<PartitionLog>, &'a TopicImage, &'a PartitionImage), ApiError> {
    let (t, p) = led_partition(ctx, image, topic, partition)?;
    let log = match known.filter(|log| !log.is_dropped()) {
        Some(log) => log.clone(),
        None => ctx
            .logs
            .get_or_open(topic, partition, t)
            .map_err(storage_error)?,
    };
    // The image may say this broker leads before the log has taken the role (its high
    // watermark, its epoch): until then the partition answers as Kafka's does, retriably.
    if !log.leads_at(p.leader_epoch) {
        return Err(ApiError::new(
            ResponseError::NotLeaderOrFollower,
            "this broker is taking the partition's leadership",
        ));
    }
    Ok((log, t, p))
}

/// A quorum failure as Kafka reports it; rejections carry Kafka's error name or wording.
pub fn controller_error(e: ControllerError) -> ApiError {
    let code = match &e {
        ControllerError::Rejected(reason) => [
            ("already exists", ResponseError::TopicAlreadyExists),
            ("does not exist", ResponseError::UnknownTopicOrPartition),
            ("ELECTION_NOT_NEEDED", ResponseError::ElectionNotNeeded),
            (
                "PREFERRED_LEADER_NOT_AVAILABLE",
                ResponseError::PreferredLeaderNotAvailable,
            ),
            (
                "ELIGIBLE_LEADERS_NOT_AVAILABLE",
                ResponseError::EligibleLeadersNotAvailable,
            ),
            (
                "NO_REASSIGNMENT_IN_PROGRESS",
                ResponseError::NoReassignmentInProgress,
            ),
            ("is not registered", ResponseError::InvalidReplicaAssignment),
            ("INVALID_PARTITIONS", ResponseError::InvalidPartitions),
            (
                "INVALID_REPLICA_ASSIGNMENT",
                ResponseError::InvalidReplicaAssignment,
            ),
        ]
        .into_iter()
        .find(|(needle, _)| reason.contains(needle))
        .map_or(ResponseError::InvalidRequest, |(_, code)| code),
        _ => ResponseError::RequestTimedOut,
    };
    let message = match e {
        ControllerError::Rejected(reason) => reason,
        other => other.to_string(),
    };
    ApiError::new(code, message)
}

/// The controller id clients are told. Clients send admin requests there, so a dedicated
/// controller (which has no client listener) is replaced by this broker, which forwards
/// them to the quorum, as Kafka's KRaft brokers do.
pub fn client_facing_controller(ctx: &Context, image: &MetadataImage) -> i32 {
    match ctx.controller.active_controller() {
        Some(id) if image.brokers.get(&id).is_some_and(|b| !b.fenced) => id,
        _ => ctx.config.node_id,
    }
}

/// Kafka's leader epoch check: an older epoch than the partition's is fenced, a newer one is
/// not known here yet; -1 skips the check.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ApiError> {
    match requested {
        r if r < 0 || r == current => Ok(()),
        r if r < current => Err(ApiError::new(
            ResponseError::FencedLeaderEpoch,
            format!("leader epoch {r} is older than the current {current}"),
        )),
        r => Err(ApiError::new(
            ResponseError::UnknownLeaderEpoch,
            format!("leader epoch {r} is newer than the current {current}"),
        )),
    }
}

/// Looks up a partition this broker must lead, with Kafka's errors when it cannot.
fn led_partition<'a>(
    ctx: &Context,
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<(&'a TopicImage, &'a PartitionImage), ApiError> {
    let t = image
        .topics
        .get(topic)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if p.leader != ctx.config.node_id {
        return Err(ResponseError::NotLeaderOrFollower.into());
    }
    Ok((t, p))
}
