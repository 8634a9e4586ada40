//! Transaction APIs (KIP-98, KIP-447): InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and TxnOffsetCommit from producers, and
//! WriteTxnMarkers between brokers. Each step of a transaction is persisted in
//! `__transaction_state` (replicated) before it is answered; ending one writes a marker to
//! every partition it touched, then records it complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    describe_producers_response, describe_transactions_response, list_transactions_response,
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::produce::AwaitingIsr;
use super::{led_log, str_bytes, topic_name, Context};
use crate::coordinator::{ensure_internal_topic, partition_for, InternalTopicSpec, TxnProducer};
use crate::group::store::{CommittedOffset, OFFSETS_TOPIC};
use crate::group::Committer;
use crate::log::producer_state::ProducerError;
use crate::log::segment::now_ms;
use crate::log::{AppendError, Leadership};
use crate::txn::{
    abort_timed_out, add_partitions, check_producer, end_step, init_step, EndStep, InitStep,
    TxnMetadata, TxnSlot, TxnState, TXN_TOPIC,
};

/// How long a request waits for the ISR to take a step of the transaction log.
const PERSIST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long EndTxn and InitProducerId wait for the markers before answering anyway (the
/// outcome is durable; the markers go on being written).
const COMPLETION_WAIT: Duration = Duration::from_secs(10);

/// The error an older producer epoch gets: PRODUCER_FENCED from the request version that
/// knows it (KIP-588), INVALID_PRODUCER_EPOCH before.
fn fenced(version: i16, first_with_fenced: i16) -> ResponseError {
    if version >= first_with_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

/// Starts creating `__transaction_state` if it does not exist yet; callers answer
/// COORDINATOR_NOT_AVAILABLE meanwhile, and the client retries.
pub fn ensure_txn_topic(ctx: &Arc<Context>) {
    if ctx.controller.image().topics.contains_key(TXN_TOPIC) {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let spec = InternalTopicSpec::transactions(&ctx.config);
        if let Err(e) = ensure_internal_topic(&ctx.config, &ctx.controller, &spec).await {
            warn!(error = %e, "could not create {TXN_TOPIC}");
        }
    });
}

/// Writes an id's new state (`None` deletes it) and waits for the ISR to have it. The write is
/// refused unless this broker still leads the id's partition at `coordinator_epoch`, so a
/// state loaded before a newer coordinator changed it is never written back.
async fn persist(
    ctx: &Context,
    transactional_id: &str,
    metadata: Option<&TxnMetadata>,
    coordinator_epoch: i32,
) -> Result<(), ResponseError> {
    let image = ctx.controller.image();
    let min_isr = image
        .topics
        .get(TXN_TOPIC)
        .and_then(|t| t.configs.get("min.insync.replicas"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let appended = ctx
        .txn_store
        .append(
            &image,
            transactional_id,
            metadata,
            min_isr,
            coordinator_epoch,
        )
        .map_err(|e| match e {
            AppendError::NotLeader(_) => ResponseError::NotCoordinator,
            other => {
                warn!(%transactional_id, error = %other, "could not write the transaction state");
                ResponseError::CoordinatorNotAvailable
            }
        })?;
    let Some(appended) = appended else {
        return Ok(());
    };
    let wait = AwaitingIsr {
        log: appended.log,
        end_offset: appended.end_offset,
        leader_epoch: appended.leader_epoch,
        min_isr,
    };
    wait.wait(Instant::now() + PERSIST_TIMEOUT)
        .await
        .map_err(|e| match e.error {
            ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
            _ => ResponseError::CoordinatorNotAvailable,
        })
}

/// InitProducerId with a transactional id: the id's producer id at a new epoch, after
/// aborting a transaction an older producer left open.
pub async fn init_producer_id(
    ctx: &Arc<Context>,
    request: &InitProducerIdRequest,
    version: i16,
) -> Result<(i64, i16), ResponseError> {
    let id = request
        .transactional_id
        .as_deref()
        .ok_or(ResponseError::InvalidRequest)?;
    let timeout_ms = request.transaction_timeout_ms;
    if timeout_ms <= 0 || timeout_ms > ctx.config.int("transaction.max.timeout.ms") {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let mut expected =
        (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    ensure_txn_topic(ctx);
    let (slot, epoch) = ctx.txns.slot(id)?;
    // At most: abort what an older producer left open, then bump.
    for _ in 0..2 {
        let mut current = slot.lock().await;
        let step = init_step(current.as_ref(), expected, timeout_ms, now_ms()).map_err(|e| {
            if e == ResponseError::ProducerFenced {
                fenced(version, 4)
            } else {
                e
            }
        })?;
        match step {
            InitStep::NewProducerId => {
                let producer_id = ctx.producer_ids.next().await.map_err(|e| {
                    warn!(error = %e, "could not allocate a producer id");
                    ResponseError::CoordinatorLoadInProgress
                })?;
                let metadata = TxnMetadata::new(producer_id, timeout_ms, now_ms());
                persist(ctx, id, Some(&metadata), epoch).await?;
                *current = Some(metadata);
                return Ok((producer_id, 0));
            }
            InitStep::Ready(metadata) => {
                persist(ctx, id, Some(&metadata), epoch).await?;
                let answer = (metadata.producer_id, metadata.producer_epoch);
                *current = Some(metadata);
                return Ok(answer);
            }
            InitStep::AbortFirst(aborting) => {
                persist(ctx, id, Some(&aborting), epoch).await?;
                info!(transactional_id = %id, "aborting the transaction an older producer left open");
                // The producer that asked is the one whose transaction is aborted (KIP-360):
                // it stays the id's producer at the fenced epoch.
                if expected.is_some() {
                    expected = Some((aborting.producer_id, aborting.producer_epoch));
                }
                *current = Some(aborting);
                drop(current);
                let done = tokio::spawn(complete(ctx.clone(), id.to_string(), slot.clone(), epoch));
                if tokio::time::timeout(COMPLETION_WAIT, done).await.is_err() {
                    return Err(ResponseError::ConcurrentTransactions);
                }
            }
        }
    }
    Err(ResponseError::ConcurrentTransactions)
}

/// The slot of an id known to this coordinator; an unknown id has no producer id yet.
fn known_slot(ctx: &Context, transactional_id: &str) -> Result<(TxnSlot, i32), ResponseError> {
    ctx.txns
        .existing(transactional_id)?
        .ok_or(ResponseError::InvalidProducerIdMapping)
}

/// Adds partitions to the producer's transaction, persisting the change.
async fn add_to_txn(
    ctx: &Context,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    fenced_error: ResponseError,
) -> Result<(), ResponseError> {
    let (slot, epoch) = known_slot(ctx, transactional_id)?;
    let mut current = slot.lock().await;
    let m = check_producer(current.as_ref(), producer_id, producer_epoch, fenced_error)?;
    if let Some(next) = add_partitions(m, partitions, now_ms())? {
        persist(ctx, transactional_id, Some(&next), epoch).await?;
        *current = Some(next);
    }
    Ok(())
}

/// AddPartitionsToTxn (v0-3, from producers).
pub async fn add_partitions_to_txn(
    ctx: &Context,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let image = ctx.controller.image();
    let mut wanted = Vec::new();
    let mut unknown = BTreeSet::new();
    for topic in &request.v3_and_below_topics {
        let known = image.topics.get(topic.name.0.as_str());
        for &p in &topic.partitions {
            let key = (topic.name.0.to_string(), p);
            if known.is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len()) {
                wanted.push(key);
            } else {
                unknown.insert(key);
            }
        }
    }
    // As in Kafka, one unknown partition fails the request; the others are not attempted.
    let outcome = if unknown.is_empty() {
        add_to_txn(
            ctx,
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &wanted,
            fenced(version, 2),
        )
        .await
    } else {
        Err(ResponseError::OperationNotAttempted)
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&p| {
                            let error = if unknown.contains(&(topic.name.0.to_string(), p)) {
                                Err(ResponseError::UnknownTopicOrPartition)
                            } else {
                                outcome
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(error.err().map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction.
pub async fn add_offsets_to_txn(
    ctx: &Context,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let image = ctx.controller.image();
    let outcome = match image.topics.get(OFFSETS_TOPIC) {
        None => Err(ResponseError::CoordinatorNotAvailable),
        Some(t) => {
            let partition = partition_for(&request.group_id, t.partitions.len());
            add_to_txn(
                ctx,
                &request.transactional_id,
                request.producer_id.0,
                request.producer_epoch,
                &[(OFFSETS_TOPIC.to_string(), partition)],
                fenced(version, 2),
            )
            .await
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(outcome.err().map_or(0, |e| e.code()))
}

/// EndTxn: records the outcome, then writes the markers; answers once they are written, or
/// after a while with the outcome durable and the markers still on their way.
pub async fn end_txn(ctx: &Arc<Context>, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let outcome = async {
        let id = request.transactional_id.as_str();
        let (slot, epoch) = known_slot(ctx, id)?;
        let mut current = slot.lock().await;
        let m = check_producer(
            current.as_ref(),
            request.producer_id.0,
            request.producer_epoch,
            fenced(version, 2),
        )?;
        match end_step(m, request.committed, now_ms())? {
            EndStep::AlreadyDone => return Ok(()),
            EndStep::Prepare(preparing) => {
                persist(ctx, id, Some(&preparing), epoch).await?;
                *current = Some(preparing);
            }
        }
        drop(current);
        let done = tokio::spawn(complete(ctx.clone(), id.to_string(), slot, epoch));
        if tokio::time::timeout(COMPLETION_WAIT, done).await.is_err() {
            debug!(transactional_id = %id, "markers still being written; answering EndTxn");
        }
        Ok::<_, ResponseError>(())
    }
    .await;
    EndTxnResponse::default()
        .with_error_code(outcome.err().map_or(0, |e| e.code()))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// Writes the markers of an id's preparing transaction, retrying until every partition has
/// its marker or this broker stops coordinating the id, then records it complete. The id's
/// lock is not held while the markers are written: meanwhile its other requests see the
/// preparing state and get CONCURRENT_TRANSACTIONS, as in Kafka.
pub async fn complete(ctx: Arc<Context>, transactional_id: String, slot: TxnSlot, epoch: i32) {
    let Some(m) = slot.lock().await.clone() else {
        return;
    };
    let Some(commit) = m.state.preparing() else {
        return;
    };
    let mut remaining = m.partitions.clone();
    let mut backoff = Duration::from_millis(20);
    let mut rounds = 0u32;
    while !remaining.is_empty() {
        if !ctx.txns.owns_at(&transactional_id, epoch) {
            // The new coordinator loads the preparing state and finishes it.
            return;
        }
        remaining = send_markers(&ctx, &m, commit, epoch, remaining).await;
        if !remaining.is_empty() {
            rounds += 1;
            if rounds.is_multiple_of(50) {
                warn!(%transactional_id, rounds, partitions = ?remaining, "transaction markers still not written");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
    let done = m.completed(now_ms());
    while ctx.txns.owns_at(&transactional_id, epoch) {
        let mut current = slot.lock().await;
        if current.as_ref() != Some(&m) {
            // Another completion of the same transaction got there first.
            return;
        }
        match persist(&ctx, &transactional_id, Some(&done), epoch).await {
            Ok(()) => {
                let outcome = if commit { "commit" } else { "abort" };
                ctx.metrics
                    .txn_completed
                    .with_label_values(&[outcome])
                    .inc();
                *current = Some(done);
                return;
            }
            Err(e) => {
                drop(current);
                debug!(%transactional_id, error = ?e, "could not record the transaction complete; retrying");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Sends one round of markers; returns the partitions that still need one.
async fn send_markers(
    ctx: &Arc<Context>,
    m: &TxnMetadata,
    commit: bool,
    coordinator_epoch: i32,
    partitions: BTreeSet<(String, i32)>,
) -> BTreeSet<(String, i32)> {
    let image = ctx.controller.image();
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    let mut remaining = BTreeSet::new();
    for (topic, partition) in partitions {
        let leader = image
            .topics
            .get(&topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .map(|p| p.leader);
        match leader {
            // A deleted topic needs no marker.
            None => {}
            Some(leader) if leader < 0 => {
                remaining.insert((topic, partition));
            }
            Some(leader) => by_leader
                .entry(leader)
                .or_default()
                .push((topic, partition)),
        }
    }
    for (leader, partitions) in by_leader {
        if leader == ctx.config.node_id {
            for (topic, partition) in partitions {
                let written = write_marker(
                    ctx,
                    &topic,
                    partition,
                    m.producer_id,
                    m.producer_epoch,
                    commit,
                    coordinator_epoch,
                )
                .await;
                if let Err(e) = written {
                    debug!(%topic, partition, error = ?e, "marker not written yet");
                    remaining.insert((topic, partition));
                }
            }
            continue;
        }
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            WritableTxnMarkerTopic::default()
                                .with_name(topic_name(topic))
                                .with_partition_indexes(partitions)
                        })
                        .collect(),
                )]);
        match ctx.markers.send(&image, leader, &request).await {
            Err(e) => {
                debug!(leader, error = %e, "could not send markers");
                remaining.extend(partitions);
            }
            Ok(response) => {
                for result in response.markers.iter().flat_map(|m| &m.topics) {
                    for p in &result.partitions {
                        if !marker_done(p.error_code) {
                            remaining.insert((result.name.0.to_string(), p.partition_index));
                        }
                    }
                }
            }
        }
    }
    remaining
}

/// Whether a partition's marker answer ends its part of the transaction: written, or not
/// needed (a newer producer epoch or a newer coordinator already ended it). A deleted topic is
/// left out before sending, from the metadata.
fn marker_done(code: i16) -> bool {
    code == 0
        || code == ResponseError::InvalidProducerEpoch.code()
        || code == ResponseError::TransactionCoordinatorFenced.code()
}

/// Writes one marker to a partition this broker leads and waits for its ISR; a marker in
/// `__consumer_offsets` also ends the transaction's offset commits there.
async fn write_marker(
    ctx: &Context,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Result<(), ResponseError> {
    let image = ctx.controller.image();
    let (log, _, p) = led_log(ctx, &image, topic, partition).map_err(|e| e.error)?;
    let leadership = Leadership {
        leader_epoch: p.leader_epoch,
        min_isr: None,
    };
    let info = log
        .append_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            leadership,
        )
        .map_err(|e| match e {
            AppendError::Producer(ProducerError::InvalidEpoch { .. }) => {
                ResponseError::InvalidProducerEpoch
            }
            AppendError::Producer(ProducerError::CoordinatorFenced { .. }) => {
                ResponseError::TransactionCoordinatorFenced
            }
            AppendError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
            other => {
                warn!(%topic, partition, error = %other, "could not write a transaction marker");
                ResponseError::KafkaStorageError
            }
        })?;
    if info.needs_sync {
        log.sync_through(info.last_offset + 1)
            .await
            .map_err(|_| ResponseError::KafkaStorageError)?;
    }
    let wait = AwaitingIsr {
        log,
        end_offset: info.last_offset + 1,
        leader_epoch: p.leader_epoch,
        min_isr: 1,
    };
    wait.wait(Instant::now() + PERSIST_TIMEOUT)
        .await
        .map_err(|e| e.error)?;
    if topic == OFFSETS_TOPIC {
        ctx.groups.end_txn(producer_id, partition, commit);
    }
    Ok(())
}

/// WriteTxnMarkers: a coordinator's markers for partitions this broker leads.
pub async fn write_txn_markers(
    ctx: &Context,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::new();
    for marker in &request.markers {
        let mut topics = Vec::new();
        for topic in &marker.topics {
            let mut partitions = Vec::new();
            for &partition in &topic.partition_indexes {
                let written = write_marker(
                    ctx,
                    &topic.name,
                    partition,
                    marker.producer_id.0,
                    marker.producer_epoch,
                    marker.transaction_result,
                    marker.coordinator_epoch,
                )
                .await;
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(partition)
                        .with_error_code(written.err().map_or(0, |e| e.code())),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

/// TxnOffsetCommit: offsets written in the producer's transaction, counted once it commits.
pub async fn txn_offset_commit(
    ctx: &Context,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let check = ctx.groups.check_txn_commit(
        &group_id,
        Committer {
            member_id: &request.member_id,
            group_instance_id: request.group_instance_id.as_deref(),
            generation: request.generation_id,
        },
    );
    let image = ctx.controller.image();
    let now = now_ms();
    let mut accepted = Vec::new();
    let mut errors: BTreeMap<(String, i32), ResponseError> = BTreeMap::new();
    for topic in &request.topics {
        let known = image.topics.get(topic.name.0.as_str());
        for p in &topic.partitions {
            let key = (topic.name.0.to_string(), p.partition_index);
            if let Err(e) = check {
                errors.insert(key, e);
            } else if !known.is_some_and(|t| {
                p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
            }) {
                errors.insert(key, ResponseError::UnknownTopicOrPartition);
            } else {
                accepted.push((
                    key,
                    Some(CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp: now,
                    }),
                ));
            }
        }
    }
    let producer = TxnProducer {
        id: request.producer_id.0,
        epoch: request.producer_epoch,
    };
    let appended = if accepted.is_empty() {
        Ok(None)
    } else {
        ctx.groups
            .append_txn_offsets(producer.id, &group_id, accepted.clone(), || {
                ctx.offset_store
                    .append_in_txn(&image, &group_id, &accepted, producer)
            })
    };
    let stored = match appended {
        Err(AppendError::Producer(ProducerError::InvalidEpoch { .. })) => Err(fenced(version, 3)),
        Err(AppendError::NotLeader(_)) => Err(ResponseError::NotCoordinator),
        Err(e) => {
            warn!(group = %group_id, error = %e, "could not persist transactional offsets");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        Ok(None) => Ok(()),
        Ok(Some(a)) => {
            let wait = AwaitingIsr {
                log: a.log,
                end_offset: a.end_offset,
                leader_epoch: a.leader_epoch,
                min_isr: 1,
            };
            wait.wait(Instant::now() + PERSIST_TIMEOUT)
                .await
                .map_err(|e| match e.error {
                    ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                    _ => ResponseError::RequestTimedOut,
                })
        }
    };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let key = (topic.name.0.to_string(), p.partition_index);
                            let error = errors.get(&key).copied().or(stored.err());
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// Aborts the transactions that ran past their timeout, fencing their producers.
pub async fn abort_timed_out_transactions(ctx: &Arc<Context>) {
    for (id, slot, epoch) in ctx.txns.ids() {
        // A slot in use is in the middle of a step; the next round looks again.
        let Ok(mut current) = slot.try_lock() else {
            continue;
        };
        let Some(aborting) = current.as_ref().and_then(|m| abort_timed_out(m, now_ms())) else {
            continue;
        };
        if let Err(e) = persist(ctx, &id, Some(&aborting), epoch).await {
            warn!(transactional_id = %id, error = ?e, "could not abort a timed-out transaction");
            continue;
        }
        info!(transactional_id = %id, "aborting a transaction past its timeout");
        *current = Some(aborting);
        drop(current);
        tokio::spawn(complete(ctx.clone(), id, slot, epoch));
    }
}

/// Deletes the ids idle (no transaction open) for longer than `transactional.id.expiration.ms`,
/// and forgets slots of ids that never got a producer id.
pub async fn expire_transactional_ids(ctx: &Arc<Context>) {
    let expiration_ms = ctx.config.int("transactional.id.expiration.ms") as i64;
    for (id, slot, epoch) in ctx.txns.ids() {
        let Ok(mut current) = slot.try_lock() else {
            continue;
        };
        let Some(m) = current.as_ref() else {
            drop(current);
            ctx.txns.forget(&id, &slot);
            continue;
        };
        let idle = matches!(
            m.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && now_ms().saturating_sub(m.updated_ms) > expiration_ms;
        if !idle {
            continue;
        }
        match persist(ctx, &id, None, epoch).await {
            Ok(()) => {
                info!(transactional_id = %id, "expired an idle transactional id");
                *current = None;
                drop(current);
                ctx.txns.forget(&id, &slot);
            }
            Err(e) => {
                warn!(transactional_id = %id, error = ?e, "could not expire a transactional id")
            }
        }
    }
}

/// Finishes, on a new coordinator, the transactions its predecessor was ending.
pub fn resume_completions(ctx: &Arc<Context>, partition: i32) {
    let count = ctx
        .controller
        .image()
        .topics
        .get(TXN_TOPIC)
        .map_or(0, |t| t.partitions.len());
    for (id, slot, epoch) in ctx.txns.ids() {
        if partition_for(&id, count) == partition {
            tokio::spawn(complete(ctx.clone(), id, slot, epoch));
        }
    }
}

/// DescribeTransactions: the state of ids this broker coordinates.
pub async fn describe_transactions(
    ctx: &Context,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        let described = describe_transactions_response::TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1)
            .with_transaction_state(str_bytes(""));
        let slot = match ctx.txns.existing(&id) {
            Ok(Some((slot, _))) => slot,
            Ok(None) => {
                states
                    .push(described.with_error_code(ResponseError::TransactionalIdNotFound.code()));
                continue;
            }
            Err(e) => {
                states.push(described.with_error_code(e.code()));
                continue;
            }
        };
        let current = slot.lock().await;
        let Some(m) = current.as_ref() else {
            states.push(described.with_error_code(ResponseError::TransactionalIdNotFound.code()));
            continue;
        };
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &m.partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        states.push(
            described
                .with_transaction_state(str_bytes(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.started_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, partitions)| {
                            describe_transactions_response::TopicData::default()
                                .with_topic(topic_name(topic))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions: the ids this broker coordinates, filtered by state, producer id and
/// (v1) how long their transaction has been open.
pub async fn list_transactions(
    ctx: &Context,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let known = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    let (states, unknown): (Vec<_>, Vec<_>) = request
        .state_filters
        .iter()
        .partition(|f| known.iter().any(|s| s.name() == f.as_str()));
    let now = now_ms();
    let mut listed = Vec::new();
    for (id, slot, _) in ctx.txns.ids() {
        let current = slot.lock().await;
        let Some(m) = current.as_ref() else {
            continue;
        };
        let state_ok = states.is_empty() || states.iter().any(|f| f.as_str() == m.state.name());
        let producer_ok = request.producer_id_filters.is_empty()
            || request
                .producer_id_filters
                .iter()
                .any(|p| p.0 == m.producer_id);
        let duration_ok = request.duration_filter < 0
            || (m.started_ms >= 0 && now - m.started_ms > request.duration_filter);
        if state_ok && producer_ok && duration_ok {
            listed.push(
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(&id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(str_bytes(m.state.name())),
            );
        }
    }
    listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown.into_iter().cloned().collect())
        .with_transaction_states(listed)
}

/// DescribeProducers: the producers a led partition remembers, with their open transaction.
pub fn describe_producers(
    ctx: &Context,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = ctx.controller.image();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&partition| {
                    let response = describe_producers_response::PartitionResponse::default()
                        .with_partition_index(partition);
                    match led_log(ctx, &image, &topic.name, partition) {
                        Err(e) => response
                            .with_error_code(e.code())
                            .with_error_message(e.message()),
                        Ok((log, _, _)) => response.with_active_producers(
                            log.producers()
                                .into_iter()
                                .map(|(p, open_since)| {
                                    describe_producers_response::ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(p.epoch.into())
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(p.coordinator_epoch)
                                        .with_current_txn_start_offset(open_since)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            describe_producers_response::TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
