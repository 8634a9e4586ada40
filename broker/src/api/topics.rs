//! CreateTopics, DeleteTopics and CreatePartitions, plus the topic creation that Metadata's
//! auto-create shares.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;
use uuid::Uuid;

use super::configs::created_topic_entries;
use super::{controller_error, str_bytes, topic_name, ApiError, Context, RequestInfo};
use crate::metadata::image::{place_replicas, MetadataImage, MetadataRecord};
use crate::topic_config::validate_topic_configs;

/// Kafka's rules for topic names.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: &str| {
        Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Topic name \"{name}\" is illegal, {why}"),
        ))
    };
    if name.is_empty() {
        return invalid("it can't be empty");
    }
    if name == "." || name == ".." {
        return invalid("it can't be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return invalid("it can't be longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return invalid("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// What a new topic should look like.
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partition count, -1 for `num.partitions`.
    pub partitions: i32,
    /// Replication factor, -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica assignments (partition index order), if given.
    pub assignments: Vec<Vec<i32>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// Validates and (unless `validate_only`) creates a topic; returns its id and shape.
pub async fn create_topic(
    ctx: &Context,
    spec: TopicSpec,
    validate_only: bool,
) -> Result<(Uuid, i32, i16), ApiError> {
    validate_topic_name(&spec.name)?;
    let image = ctx.controller.image();
    if image.topics.contains_key(&spec.name) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", spec.name),
        ));
    }
    let configs = validate_topic_configs(&ctx.config, &spec.configs)
        .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
    let brokers: Vec<i32> = image.live_brokers();
    let assignments = if spec.assignments.is_empty() {
        let partitions = if spec.partitions == -1 {
            ctx.config.int("num.partitions")
        } else {
            spec.partitions
        };
        let rf = if spec.replication_factor == -1 {
            ctx.config.int("default.replication.factor") as i16
        } else {
            spec.replication_factor
        };
        if partitions < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.",
            ));
        }
        if rf < 1 || rf as usize > brokers.len() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {rf} time(s): the number of brokers \
                     available is {}.",
                    brokers.len()
                ),
            ));
        }
        if partitions as i64 > MAX_PARTITIONS_PER_REQUEST {
            return Err(too_many_per_request());
        }
        let start = image.topics.len() % brokers.len();
        place_replicas(
            &image.placement_order(),
            start,
            partitions as usize,
            rf as usize,
        )
    } else {
        check_assignments(&spec.assignments, &brokers)?;
        spec.assignments
    };
    check_partition_limits(ctx, &image, &assignments)?;
    let id = Uuid::new_v4();
    let shape = (id, assignments.len() as i32, assignments[0].len() as i16);
    if validate_only {
        return Ok(shape);
    }
    ctx.controller
        .propose(MetadataRecord::CreateTopic {
            name: spec.name.clone(),
            id,
            assignments,
            configs,
        })
        .await
        .map_err(controller_error)?;
    ctx.local_metadata_applied().await;
    info!(topic = %spec.name, partitions = shape.1, "created topic");
    Ok(shape)
}

fn check_assignments(assignments: &[Vec<i32>], brokers: &[i32]) -> Result<(), ApiError> {
    let rf = assignments[0].len();
    for replicas in assignments {
        let distinct: HashSet<_> = replicas.iter().collect();
        if replicas.is_empty() || replicas.len() != rf || distinct.len() != replicas.len() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "every partition needs the same number of distinct replicas",
            ));
        }
        if let Some(unknown) = replicas.iter().find(|b| !brokers.contains(b)) {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("broker {unknown} is not registered"),
            ));
        }
    }
    Ok(())
}

/// The most partitions one CreateTopics or CreatePartitions request may add: Kafka's
/// controller refuses more, so that the records of one request fit one metadata batch.
const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

fn too_many_per_request() -> ApiError {
    ApiError::new(
        ResponseError::PolicyViolation,
        format!(
            "Excessively large number of partitions per request: at most {MAX_PARTITIONS_PER_REQUEST} may be added at once."
        ),
    )
}

/// KIP-578's limits on what new partitions may add: `max.partitions` in the cluster and
/// `max.broker.partitions` replicas on any one broker.
fn check_partition_limits(
    ctx: &Context,
    image: &MetadataImage,
    new: &[Vec<i32>],
) -> Result<(), ApiError> {
    let max_total = ctx.config.int("max.partitions") as usize;
    let total: usize = image.topics.values().map(|t| t.partitions.len()).sum();
    if total + new.len() > max_total {
        return Err(ApiError::new(
            ResponseError::PolicyViolation,
            format!(
                "The cluster has {total} partitions; {} more would pass max.partitions {max_total}.",
                new.len()
            ),
        ));
    }
    let max_per_broker = ctx.config.int("max.broker.partitions") as usize;
    let mut replicas: HashMap<i32, usize> = HashMap::new();
    for p in image.topics.values().flat_map(|t| &t.partitions) {
        for b in &p.replicas {
            *replicas.entry(*b).or_default() += 1;
        }
    }
    for b in new.iter().flatten() {
        let count = replicas.entry(*b).or_default();
        *count += 1;
        if *count > max_per_broker {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "Broker {b} would host more than max.broker.partitions {max_per_broker} replicas."
                ),
            ));
        }
    }
    Ok(())
}

/// CreateTopics.
pub async fn create_topics(
    ctx: &Context,
    info: &RequestInfo,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mutations = MutationCharge::new(ctx, info, version >= 6);
    let mut seen = HashSet::new();
    let mut results = Vec::new();
    let requested: i64 = request
        .topics
        .iter()
        .map(|t| match (t.assignments.len(), t.num_partitions) {
            (0, -1) => ctx.config.int("num.partitions") as i64,
            (0, n) => n.max(0) as i64,
            (given, _) => given as i64,
        })
        .sum();
    if requested > MAX_PARTITIONS_PER_REQUEST {
        let e = too_many_per_request();
        let results = request
            .topics
            .into_iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(e.code())
                    .with_error_message(e.message())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            })
            .collect();
        return CreateTopicsResponse::default().with_topics(results);
    }
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if !seen.insert(name.clone()) {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Create topics request from client contains duplicate topic {name}"),
            ))
        } else if topic.configs.iter().any(|c| c.value.is_none()) {
            let names: Vec<String> = topic
                .configs
                .iter()
                .filter(|c| c.value.is_none())
                .map(|c| c.name.to_string())
                .collect();
            Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!(
                    "Null value not supported for topic configs: {}",
                    names.join(",")
                ),
            ))
        } else {
            let mut assignments: Vec<_> = topic.assignments.iter().collect();
            assignments.sort_by_key(|a| a.partition_index);
            let spec = TopicSpec {
                name: name.clone(),
                partitions: topic.num_partitions,
                replication_factor: topic.replication_factor,
                assignments: assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
                configs: topic
                    .configs
                    .iter()
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect(),
            };
            let configs = spec.configs.clone();
            let partitions = match (spec.assignments.len(), spec.partitions) {
                (0, -1) => ctx.config.int("num.partitions").max(0) as usize,
                (0, n) => n.max(0) as usize,
                (given, _) => given,
            };
            match mutations.charge(partitions, request.validate_only) {
                Ok(()) => create_topic(ctx, spec, request.validate_only)
                    .await
                    .map(|shape| (shape, configs)),
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(((id, partitions, rf), configs)) => {
                result = result
                    .with_topic_id(id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf)
                    .with_configs(Some(
                        created_topic_entries(ctx, &configs)
                            .into_iter()
                            .map(|(name, value, source)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(name))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_config_source(source)
                            })
                            .collect(),
                    ));
            }
            Err(e) => {
                result = result
                    .with_error_code(e.code())
                    .with_error_message(e.message())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// A request's charge against its client's `controller_mutation_rate` (KIP-599).
struct MutationCharge<'a> {
    ctx: &'a Context,
    info: &'a RequestInfo,
    image: Arc<MetadataImage>,
    strict: bool,
}

impl<'a> MutationCharge<'a> {
    /// `strict` for the request versions that may be refused (KIP-599); older ones are only
    /// throttled.
    fn new(ctx: &'a Context, info: &'a RequestInfo, strict: bool) -> Self {
        MutationCharge {
            ctx,
            info,
            image: ctx.controller.image(),
            strict,
        }
    }

    /// Takes `partitions` mutations from the quota, unless the request only validates.
    fn charge(&self, partitions: usize, validate_only: bool) -> Result<(), ApiError> {
        if validate_only {
            return Ok(());
        }
        let who = (
            self.info.principal.name.as_str(),
            self.info.client_id.as_str(),
        );
        self.ctx
            .quotas
            .record_mutations(&self.image.client_quotas, who, partitions, self.strict)
            .map_err(|_| ResponseError::ThrottlingQuotaExceeded.into())
    }
}

/// DeleteTopics, by name (all versions) or by topic id (v6).
pub async fn delete_topics(
    ctx: &Context,
    info: &RequestInfo,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mutations = MutationCharge::new(ctx, info, version >= 5);
    let image = ctx.controller.image();
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::new();
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => image.topics.get(n).map(|t| (n.clone(), t.id)),
            None => image.topic_name_by_id(id).map(|n| (n.to_string(), id)),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        let outcome = match resolved {
            None if name.is_none() => Err(ApiError::from(ResponseError::UnknownTopicId)),
            None => Err(ApiError::from(ResponseError::UnknownTopicOrPartition)),
            Some((n, topic_id)) => {
                result = result
                    .with_name(Some(topic_name(&n)))
                    .with_topic_id(topic_id);
                let partitions = image.topics.get(&n).map_or(0, |t| t.partitions.len());
                match mutations.charge(partitions, false) {
                    Ok(()) => ctx
                        .controller
                        .propose(MetadataRecord::DeleteTopic { name: n.clone() })
                        .await
                        .map_err(controller_error)
                        .map(|_| info!(topic = %n, "deleted topic")),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = outcome {
            result = result
                .with_error_code(e.code())
                .with_error_message(e.message());
        }
        responses.push(result);
    }
    ctx.local_metadata_applied().await;
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions: only ever grows a topic.
pub async fn create_partitions(
    ctx: &Context,
    info: &RequestInfo,
    request: CreatePartitionsRequest,
    version: i16,
) -> CreatePartitionsResponse {
    let mutations = MutationCharge::new(ctx, info, version >= 3);
    let mut results = Vec::new();
    let image = ctx.controller.image();
    let added: i64 = request
        .topics
        .iter()
        .map(|t| {
            let current = image
                .topics
                .get(t.name.0.as_str())
                .map_or(0, |t| t.partitions.len());
            (t.count as i64 - current as i64).max(0)
        })
        .sum();
    let too_many = (added > MAX_PARTITIONS_PER_REQUEST).then(too_many_per_request);
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let image = ctx.controller.image();
        let outcome = async {
            if let Some(e) = &too_many {
                return Err(e.clone());
            }
            let t = image.topics.get(&name).ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )
            })?;
            let current = t.partitions.len() as i32;
            if topic.count <= current {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "Topic currently has {current} partitions, which is higher than or \
                         equal to the requested {}.",
                        topic.count
                    ),
                ));
            }
            let brokers: Vec<i32> = image.live_brokers();
            let added = (topic.count - current) as usize;
            let assignments = match &topic.assignments {
                Some(given) if !given.is_empty() => {
                    let a: Vec<Vec<i32>> = given
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect();
                    if a.len() != added {
                        return Err(ApiError::new(
                            ResponseError::InvalidReplicaAssignment,
                            format!("{} assignments given for {added} new partitions", a.len()),
                        ));
                    }
                    check_assignments(&a, &brokers)?;
                    a
                }
                _ => {
                    let rf = t.partitions[0].replicas.len().min(brokers.len());
                    place_replicas(&image.placement_order(), current as usize, added, rf)
                }
            };
            check_partition_limits(ctx, &image, &assignments)?;
            mutations.charge(added, request.validate_only)?;
            if request.validate_only {
                return Ok(());
            }
            ctx.controller
                .propose(MetadataRecord::CreatePartitions {
                    name: name.clone(),
                    assignments,
                    from: Some(current as usize),
                })
                .await
                .map_err(controller_error)?;
            ctx.local_metadata_applied().await;
            info!(topic = %name, partitions = topic.count, "added partitions");
            Ok(())
        }
        .await;
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err(e) = outcome {
            result = result
                .with_error_code(e.code())
                .with_error_message(e.message());
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        for bad in ["", ".", "..", "a b", "ü", &"x".repeat(250)] {
            let e = validate_topic_name(bad).unwrap_err();
            assert_eq!(e.error, ResponseError::InvalidTopicException, "{bad}");
        }
    }
}
