//! The `KafkaNodePool` custom resource: one pool of a KafkaCluster as a resource of its own, so
//! that `kubectl scale` and autoscalers can size it through the scale subresource.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, PodTemplate, Role, StorageSpec};

/// Label naming the KafkaCluster (in the same namespace) that a KafkaNodePool belongs to.
pub const CLUSTER_LABEL: &str = "strom.dev/cluster";

/// The nodes of one pool: their roles, number, ids, storage and scheduling.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "strom.dev",
    version = "v1alpha1",
    kind = "KafkaNodePool",
    namespaced,
    status = "KafkaNodePoolStatus",
    shortname = "knp",
    category = "strom",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels.strom\\.dev/cluster","description":"KafkaCluster the pool belongs to"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas","description":"Nodes the spec asks for"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas","description":"Nodes that are Ready"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.roles"}"#,
    printcolumn = r#"{"name":"NodeIds","type":"string","jsonPath":".status.nodeIds"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaNodePoolSpec {
    /// `broker`, `controller`, or both.
    #[schemars(length(min = 1, max = 2), extend(
        "x-kubernetes-list-type" = "set",
        "x-kubernetes-validations" = [{"rule": "('controller' in self) == ('controller' in oldSelf)", "message": "the controller role cannot be added or removed: the quorum's voters are fixed"}]
    ))]
    pub roles: Vec<Role>,
    /// Number of nodes.
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Node id of the pool's first pod; pod N gets `nodeIdStart + N`. Defaults to 1000 times
    /// the pool's position among the cluster's pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "nodeIdStart cannot change: a node id names the data on its disk"}]))]
    pub node_id_start: Option<i32>,
    /// Where the log directory lives.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and metadata of the pool's pods.
    #[serde(default)]
    pub template: PodTemplate,
}

/// Observed state of a KafkaNodePool, written by the controller of its KafkaCluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaNodePoolStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the pool is part of its cluster and all its pods are Ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Pods the pool's StatefulSet runs now (the scale subresource's replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pool's pods, for autoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Node ids of the pool's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<i32>,
}
