//! Leadership and placement: ElectLeaders, AlterPartitionReassignments and
//! ListPartitionReassignments (KIP-455). The controller does the work; these forward.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;

use super::{controller_error, str_bytes, topic_name, ApiError, Context};
use crate::metadata::image::{ElectionKind, MetadataImage, MetadataRecord};
use crate::metadata::{ControllerError, ELECTIONS_PER_RECORD};

fn partition_exists(image: &MetadataImage, topic: &str, partition: i32) -> bool {
    image
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
}

/// ElectLeaders: preferred (type 0) or unclean (type 1) elections; all partitions when the
/// request names none.
pub async fn elect_leaders(ctx: &Context, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let kind = match request.election_type {
        0 => ElectionKind::Preferred,
        1 => ElectionKind::Unclean,
        _ => {
            return ElectLeadersResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    let image = ctx.controller.image();
    // Asked for every partition, Kafka answers only those that needed an election.
    let all = request.topic_partitions.is_none();
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect(),
        None => image
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    // Partitions that cannot be elected are answered from the image; the others are elected
    // in one record per ELECTIONS_PER_RECORD, which elects each one still electable then.
    let live = image.live_brokers();
    let mut errors: HashMap<(String, i32), ApiError> = HashMap::new();
    let mut electable = Vec::new();
    for (topic, partitions) in &wanted {
        for &partition in partitions {
            let outcome = if partition_exists(&image, topic, partition) {
                image
                    .election(topic, partition, kind, &live)
                    .map_err(|reason| controller_error(ControllerError::Rejected(reason)))
            } else {
                Err(ApiError::from(ResponseError::UnknownTopicOrPartition))
            };
            match outcome {
                Ok(_) => electable.push((topic.clone(), partition)),
                Err(e) => {
                    errors.insert((topic.clone(), partition), e);
                }
            }
        }
    }
    for partitions in electable.chunks(ELECTIONS_PER_RECORD) {
        let record = MetadataRecord::ElectLeaders {
            kind,
            partitions: partitions.to_vec(),
        };
        if let Err(e) = ctx.controller.propose(record).await {
            let e = controller_error(e);
            errors.extend(partitions.iter().map(|key| (key.clone(), e.clone())));
        }
    }
    let results = wanted
        .iter()
        .map(|(topic, partitions)| {
            let partition_results = partitions
                .iter()
                .filter_map(|&partition| {
                    let r = PartitionResult::default().with_partition_id(partition);
                    match errors.get(&(topic.clone(), partition)) {
                        None => Some(r),
                        Some(e) if all && e.error == ResponseError::ElectionNotNeeded => None,
                        Some(e) => {
                            Some(r.with_error_code(e.code()).with_error_message(e.message()))
                        }
                    }
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic_name(topic))
                .with_partition_result(partition_results)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn check_target(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: &[i32],
    allow_replication_factor_change: bool,
) -> Result<(), ApiError> {
    if !partition_exists(image, topic, partition) {
        return Err(ResponseError::UnknownTopicOrPartition.into());
    }
    let invalid = |why: String| Err(ApiError::new(ResponseError::InvalidReplicaAssignment, why));
    if target.is_empty() {
        return invalid("the replica list is empty".into());
    }
    if target.iter().collect::<HashSet<_>>().len() != target.len() {
        return invalid(format!("the replica list {target:?} has duplicates"));
    }
    if let Some(unknown) = target.iter().find(|r| !image.brokers.contains_key(r)) {
        return invalid(format!("broker {unknown} is not registered"));
    }
    let current = &image.topics[topic].partitions[partition as usize];
    let original_len = current.replicas.len() - current.adding.len();
    if !allow_replication_factor_change && target.len() != original_len {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "the move changes the replication factor from {original_len} to {}",
                target.len()
            ),
        ));
    }
    Ok(())
}

/// AlterPartitionReassignments: starts (or, with null replicas, cancels) moves. New replicas
/// catch up as followers; the old ones leave once every new one is in the ISR.
pub async fn alter_reassignments(
    ctx: &Context,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let image = ctx.controller.image();
    // Before v1 the field does not exist and Kafka allowed any replication factor.
    let allow_rf_change = version < 1 || request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.map(|rs| rs.into_iter().map(|b| b.0).collect());
            let checked = match &target {
                Some(t) => check_target(&image, &name, p.partition_index, t, allow_rf_change),
                None if partition_exists(&image, &name, p.partition_index) => Ok(()),
                None => Err(ResponseError::UnknownTopicOrPartition.into()),
            };
            let outcome = match checked {
                Ok(()) => ctx
                    .controller
                    .propose(MetadataRecord::Reassign {
                        topic: name.clone(),
                        partition: p.partition_index,
                        target,
                    })
                    .await
                    .map_err(controller_error),
                Err(e) => Err(e),
            };
            let r =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => r,
                Err(e) => r.with_error_code(e.code()).with_error_message(e.message()),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

/// ListPartitionReassignments: the moves under way, for the named (or all) partitions.
pub fn list_reassignments(
    ctx: &Context,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = ctx.controller.image();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes)))
            .collect(),
        None => image.topics.keys().map(|n| (n.clone(), None)).collect(),
    };
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let topics = wanted
        .into_iter()
        .filter_map(|(name, only)| {
            let t = image.topics.get(&name)?;
            let partitions: Vec<_> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    p.reassigning() && only.as_ref().is_none_or(|o| o.contains(&(*i as i32)))
                })
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding))
                        .with_removing_replicas(ids(&p.removing))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default()
        .with_error_message(Some(str_bytes("")))
        .with_topics(topics)
}
