//! Metadata, with auto-creation of topics when enabled.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;

use super::topics::{create_topic, TopicSpec};
use super::{authorized_operations, client_facing_controller, str_bytes, topic_name, Context};
use crate::metadata::image::TopicImage;

fn describe_topic(name: &str, topic: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic.id)
        .with_is_internal(name.starts_with("__"))
        .with_partitions(
            topic
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                        .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                })
                .collect(),
        )
}

/// Brokers, controller, and the requested (or all) topics.
pub async fn handle(ctx: &Context, request: MetadataRequest, version: i16) -> MetadataResponse {
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(
            list.iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create = ctx.config.bool("auto.create.topics.enable")
        && (version < 4 || request.allow_auto_topic_creation);
    let mut errors: BTreeMap<String, i16> = BTreeMap::new();
    if let (Some(names), true) = (&requested, auto_create) {
        let image = ctx.controller.image();
        for name in names.iter().filter(|n| !image.topics.contains_key(*n)) {
            let spec = TopicSpec {
                name: name.clone(),
                partitions: -1,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: BTreeMap::new(),
            };
            if let Err(e) = create_topic(ctx, spec, false).await {
                if e.error != ResponseError::TopicAlreadyExists {
                    errors.insert(name.clone(), e.code());
                }
            }
        }
    }
    let image = ctx.controller.image();
    let topic_operations =
        authorized_operations::topic(version >= 8 && request.include_topic_authorized_operations);
    let topics: Vec<MetadataResponseTopic> = match &requested {
        None => image
            .topics
            .iter()
            .map(|(name, t)| describe_topic(name, t))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| match image.topics.get(name) {
                Some(t) => describe_topic(name, t),
                None => MetadataResponseTopic::default()
                    .with_name(Some(topic_name(name)))
                    .with_error_code(
                        errors
                            .get(name)
                            .copied()
                            .unwrap_or(ResponseError::UnknownTopicOrPartition.code()),
                    ),
            })
            .collect(),
    };
    let topics = topics
        .into_iter()
        .map(|t| t.with_topic_authorized_operations(topic_operations))
        .collect();
    let cluster_operations = authorized_operations::cluster(
        (8..=10).contains(&version) && request.include_cluster_authorized_operations,
    );
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(
            image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(&b.host))
                        .with_port(b.port as i32)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(client_facing_controller(ctx, &image)))
        .with_topics(topics)
}
