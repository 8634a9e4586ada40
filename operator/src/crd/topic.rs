//! The `KafkaTopic` custom resource: a topic in a `KafkaCluster`, managed over the Kafka protocol.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired state of a topic.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "strom.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    shortname = "kt",
    category = "strom",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef.name"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Replication","type":"integer","jsonPath":".spec.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The KafkaCluster, in the topic's namespace, that holds the topic.
    pub cluster_ref: ClusterRef,
    /// Topic name in Kafka; defaults to the resource name. Cannot change once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Number of partitions; it can grow, never shrink.
    #[schemars(range(min = 1))]
    pub partitions: i32,
    /// Replicas per partition; fixed once the topic exists.
    #[schemars(range(min = 1))]
    pub replication_factor: i16,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...). Keys removed here return to the
    /// broker default.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// What deleting this resource does to the Kafka topic: `delete` (default) deletes it,
    /// `keep` leaves it in Kafka.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Manage a topic that already exists in Kafka and that this resource did not create.
    /// Without it such a topic is refused, so that two resources never fight over one topic.
    #[serde(default)]
    pub adopt: bool,
}

/// What deleting a KafkaTopic does to its topic in Kafka.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeletionPolicy {
    /// Delete the topic and its data.
    #[default]
    Delete,
    /// Leave the topic in Kafka.
    Keep,
}

/// Rules on a whole KafkaTopic (they read its status): once the topic exists in Kafka, its
/// name, replication factor and cluster are fixed and its partitions never decrease. Before
/// that (a refused or unreachable topic), the spec can still be corrected.
pub const TOPIC_RULES: &[(&str, &str)] = &[
    (
        "!has(oldSelf.status) || !has(oldSelf.status.topicId) || (has(self.spec.topicName) ? self.spec.topicName : self.metadata.name) == (has(oldSelf.spec.topicName) ? oldSelf.spec.topicName : oldSelf.metadata.name)",
        "topicName cannot change once the topic exists",
    ),
    (
        "!has(oldSelf.status) || !has(oldSelf.status.topicId) || self.spec.replicationFactor == oldSelf.spec.replicationFactor",
        "replicationFactor cannot change once the topic exists",
    ),
    (
        "!has(oldSelf.status) || !has(oldSelf.status.topicId) || self.spec.partitions >= oldSelf.spec.partitions",
        "partitions cannot decrease: Kafka cannot remove partitions",
    ),
    (
        "!has(oldSelf.status) || !has(oldSelf.status.topicId) || self.spec.clusterRef == oldSelf.spec.clusterRef",
        "clusterRef cannot change once the topic exists",
    ),
];

/// Names a KafkaCluster in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClusterRef {
    /// The KafkaCluster's name.
    pub name: String,
}

/// Observed state of a topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (and Degraded when the spec cannot be applied).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The topic name in Kafka, fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The id of the topic this resource created or adopted: the one it manages, and deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The configs last applied, so that removed keys can be reset.
    #[serde(default)]
    pub applied_config: BTreeMap<String, String>,
}
