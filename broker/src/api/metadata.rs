//! Metadata, with auto-creation of topics when enabled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::topics::{create_topic, TopicSpec};
use super::{client_facing_controller, str_bytes, topic_name, Access, Context, RequestInfo};
use crate::metadata::image::{BrokerRegistration, MetadataImage, TopicImage};
use crate::security::acl::operation::{CREATE, DESCRIBE};
use crate::security::acl::resource;

/// Which fenced brokers Metadata responses still list. A broker this node saw fenced stays
/// listed for `broker.session.timeout.ms`, as a dead Kafka broker stays listed until its
/// session ends, though its partitions have moved at once. Clients keep trying it meanwhile and
/// look up the coordinators it held again; librdkafka, when a broker vanishes from Metadata
/// at once, can wait forever on a coordinator it still caches there (librdkafka issue 5511).
#[derive(Default)]
pub struct FencedBrokers {
    /// Per broker seen: `None` while unfenced, or when this node saw it fenced.
    seen: Mutex<HashMap<i32, Option<Instant>>>,
}

impl FencedBrokers {
    /// Takes note of each broker's state in a new image.
    pub fn observe(&self, image: &MetadataImage) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|id, _| image.brokers.contains_key(id));
        for b in image.brokers.values() {
            if !b.fenced {
                seen.insert(b.id, None);
            } else if let Some(state @ None) = seen.get_mut(&b.id) {
                *state = Some(Instant::now());
            }
        }
    }

    /// Whether Metadata lists `broker`: unfenced, or fenced within `grace` after this node
    /// saw it serving, when it was fenced at its shutdown or found dead. A broker never seen
    /// unfenced is not listed, nor is one fenced as unresponsive: clients drop it at once and
    /// with it the requests they wait for, as with Kafka, whose fences all come from silence.
    pub fn listed(&self, broker: &BrokerRegistration, grace: Duration) -> bool {
        if !broker.fenced {
            return true;
        }
        if broker.unresponsive {
            return false;
        }
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(&broker.id) {
            Some(None) => true,
            Some(Some(fenced_at)) => fenced_at.elapsed() < grace,
            None => false,
        }
    }
}

/// Whether a topic is one of the broker's own (`__consumer_offsets`, `__transaction_state`).
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

fn describe_topic(name: &str, topic: &TopicImage) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(topic.id)
        .with_is_internal(is_internal(name))
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

/// Brokers (at the addresses of the listener asked), controller, and the requested (or all)
/// topics the principal may describe.
pub async fn handle(
    ctx: &Context,
    info: &RequestInfo,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // Topics asked by id (v12+, where a response topic may have no name; KIP-516) are
    // resolved to names; an unknown id answers UNKNOWN_TOPIC_ID, and none is created.
    let ids: Vec<Uuid> = request
        .topics
        .iter()
        .flatten()
        .map(|t| t.topic_id)
        .filter(|id| version >= 12 && !id.is_nil())
        .collect();
    let mut unknown_ids = Vec::new();
    let requested: Option<Vec<String>> = match request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(_) if !ids.is_empty() => {
            let image = ctx.controller.image();
            let names: HashMap<Uuid, &str> = image
                .topics
                .iter()
                .map(|(name, t)| (t.id, name.as_str()))
                .collect();
            let mut known = Vec::new();
            for id in ids.iter().copied() {
                match names.get(&id) {
                    Some(name) => known.push(name.to_string()),
                    None => unknown_ids.push(id),
                }
            }
            Some(known)
        }
        Some(list) => Some(
            list.iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create = ctx.config.bool("auto.create.topics.enable")
        && (version < 4 || request.allow_auto_topic_creation)
        && ids.is_empty();
    let mut errors: BTreeMap<String, i16> = BTreeMap::new();
    if let (Some(names), true) = (&requested, auto_create) {
        let image = ctx.controller.image();
        let access = Access::new(ctx, info, &image);
        for name in names.iter().filter(|n| !image.topics.contains_key(*n)) {
            if !access.allows(DESCRIBE, resource::TOPIC, name) {
                continue;
            }
            if !(access.allows_cluster(CREATE) || access.allows(CREATE, resource::TOPIC, name)) {
                errors.insert(name.clone(), ResponseError::TopicAuthorizationFailed.code());
                continue;
            }
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
    let access = Access::new(ctx, info, &image);
    let operations_requested = version >= 8 && request.include_topic_authorized_operations;
    let topics: Vec<MetadataResponseTopic> = match &requested {
        None => image
            .topics
            .iter()
            .filter(|(name, _)| access.allows(DESCRIBE, resource::TOPIC, name))
            .map(|(name, t)| describe_topic(name, t))
            .collect(),
        Some(names) => names
            .iter()
            .map(|name| match image.topics.get(name) {
                // Topic ids are not secret: a refusal by id names the id, not the topic.
                Some(t) if !ids.is_empty() && !access.allows(DESCRIBE, resource::TOPIC, name) => {
                    MetadataResponseTopic::default()
                        .with_name(None)
                        .with_topic_id(t.id)
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
                _ if !access.allows(DESCRIBE, resource::TOPIC, name) => {
                    MetadataResponseTopic::default()
                        .with_name(Some(topic_name(name)))
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
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
            .chain(unknown_ids.iter().map(|id| {
                MetadataResponseTopic::default()
                    .with_name(None)
                    .with_topic_id(*id)
                    .with_error_code(ResponseError::UnknownTopicId.code())
            }))
            .collect(),
    };
    let topics = topics
        .into_iter()
        .map(|t| {
            let name = t.name.as_ref().map_or("", |n| n.0.as_str());
            let operations = access.operations(operations_requested, resource::TOPIC, name);
            t.with_topic_authorized_operations(operations)
        })
        .collect();
    let cluster_operations = access.cluster_operations(
        (8..=10).contains(&version) && request.include_cluster_authorized_operations,
    );
    let grace = Duration::from_millis(ctx.config.long("broker.session.timeout.ms") as u64);
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(
            image
                .brokers
                .values()
                .filter(|b| ctx.fenced_brokers.listed(b, grace))
                .map(|b| {
                    let (host, port) = b.endpoint(&info.listener.name);
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(str_bytes(host))
                        .with_port(port as i32)
                        .with_rack(b.rack.as_deref().map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(client_facing_controller(ctx, &image)))
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::MetadataRecord;

    fn registration(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            incarnation: uuid::Uuid::new_v4(),
            fenced: false,
            registered_at: 0,
            unresponsive: false,
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn a_fenced_broker_stays_listed_for_the_grace_only_if_it_was_seen_serving() {
        let mut image = MetadataImage::default();
        for id in [1, 2] {
            image
                .apply(&MetadataRecord::RegisterBroker(registration(id)))
                .unwrap();
        }
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1 })
            .unwrap();
        let fenced = FencedBrokers::default();
        fenced.observe(&image);
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 1,
                unresponsive: false,
            })
            .unwrap();
        let long = Duration::from_secs(60);
        assert!(
            fenced.listed(&image.brokers[&1], long),
            "fenced in an image not observed yet"
        );
        fenced.observe(&image);
        assert!(fenced.listed(&image.brokers[&1], long));
        assert!(!fenced.listed(&image.brokers[&1], Duration::ZERO));
        assert!(
            !fenced.listed(&image.brokers[&2], long),
            "registered, never unfenced"
        );
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1 })
            .unwrap();
        fenced.observe(&image);
        image
            .apply(&MetadataRecord::FenceBroker {
                id: 1,
                unresponsive: true,
            })
            .unwrap();
        fenced.observe(&image);
        assert!(
            !fenced.listed(&image.brokers[&1], long),
            "an unresponsive broker is dropped at once"
        );
    }
}
