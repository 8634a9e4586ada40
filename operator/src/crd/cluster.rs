//! The `KafkaCluster` custom resource: pools of Strom nodes with their roles, storage and
//! resources, the client listeners, broker config and metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, Toleration, TopologySpreadConstraint};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, KafkaNodePoolSpec};

/// Rules on a whole KafkaCluster (they read its status): once the quorum is formed, the
/// controller port is in every voter's address and cannot change.
pub const CLUSTER_RULES: &[(&str, &str)] = &[(
    "!has(oldSelf.status) || !has(oldSelf.status.quorumVoters) || self.spec.controllerPort == oldSelf.spec.controllerPort",
    "controllerPort cannot change once the quorum is formed: it is in every voter's address",
)];

/// Desired state of a Strom cluster.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "strom.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    status = "KafkaClusterStatus",
    shortname = "kc",
    shortname = "strom",
    category = "strom",
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyBrokers","description":"Brokers that are Ready"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredBrokers","description":"Brokers the spec asks for"}"#,
    printcolumn = r#"{"name":"Leader","type":"integer","jsonPath":".status.controllerLeader","description":"Node id of the active controller"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Container image of strom-broker; the operator's default image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy of the broker containers (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Groups of identical nodes; each pool is one StatefulSet. KafkaNodePools labelled
    /// `strom.dev/cluster: <cluster name>` add pools of their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub pools: Vec<PoolSpec>,
    /// Client listeners, each advertised under the pod's stable DNS name. The first one also
    /// carries replication between brokers. Defaults to `PLAINTEXT` on 9092.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [
            {"rule": "size(self) == 0 || !has(self[0].type) || self[0].type == 'internal'", "message": "the first listener carries replication and must be of type internal"},
            {"rule": "self.all(l, self.exists_one(m, m.port == l.port))", "message": "two listeners have the same port"}
        ]
    ))]
    pub listeners: Vec<ListenerSpec>,
    /// Port of the controller (KRaft) listener; fixed once created (it is in every voter's address).
    #[serde(default = "default_controller_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub controller_port: i32,
    /// Broker properties (`server.properties` keys). Keys the operator owns are rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The metrics and health listener of every node.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Rack awareness: each broker's `broker.rack` is its node's value of a label, and new
    /// partitions spread their replicas over the racks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// A cluster CA of your own instead of the operator's: the nodes' and the operator's
    /// certificates are issued with it. Only for a secured cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<CertificateAuthoritySpec>,
    /// A clients CA of your own: KafkaUsers' certificates are issued with it, and listeners
    /// with `authentication: tls` trust it. Only for a secured cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients_ca: Option<CertificateAuthoritySpec>,
    /// ACLs: when set, every request is checked against the ACLs (Kafka's StandardAuthorizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
}

/// A certificate authority kept in a Secret of yours; the operator reads it and never renews it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateAuthoritySpec {
    /// `kubernetes.io/tls` Secret in the cluster's namespace: the CA certificate in `tls.crt`,
    /// its PKCS#8 private key in `tls.key` (cert-manager writes one for a CA Certificate with
    /// `privateKey: {encoding: PKCS8}`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Where a broker's rack comes from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is the rack, such as `topology.kubernetes.io/zone`. A broker pod
    /// on a node without it does not start.
    #[schemars(length(min = 1, max = 317))]
    pub topology_key: String,
}

/// How requests are authorized.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationSpec {
    /// `simple`: ACLs as Kafka's StandardAuthorizer applies them.
    #[serde(rename = "type")]
    pub kind: AuthorizationType,
    /// Principals allowed everything (such as `User:admin`), beside the nodes and the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub super_users: Vec<String>,
}

/// The authorizer.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationType {
    /// ACLs stored in the metadata log.
    Simple,
}

fn default_controller_port() -> i32 {
    9093
}

/// What a node does: hold partitions, vote in the metadata quorum, or both.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves clients and stores partitions.
    Broker,
    /// Votes in the KRaft quorum.
    Controller,
}

/// A group of identical nodes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// Pool name, part of the StatefulSet and pod names.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Roles, size, storage and scheduling of the pool's nodes, as a KafkaNodePool has them.
    #[serde(flatten)]
    pub nodes: KafkaNodePoolSpec,
}

/// What a pool adds to its pods: where they run, and annotations and environment.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Node, pod affinity and anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How the pods spread over zones or nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Labels a node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra pod annotations; the operator's own (`strom.dev/...`) cannot be set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra environment variables of the broker container (`STROM_*` sets broker properties).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// Kind of volume for the log directory.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StorageType {
    /// One PersistentVolumeClaim per pod.
    #[default]
    PersistentClaim,
    /// An emptyDir: data lives as long as the pod, replication restores it.
    Ephemeral,
}

/// The log directory's volume.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// `persistent-claim` (default) or `ephemeral`.
    #[serde(default, rename = "type")]
    pub kind: StorageType,
    /// Requested size, as a Kubernetes quantity.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass of the claims; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Delete the pods' claims when the pool shrinks or the cluster is deleted.
    #[serde(default)]
    pub delete_claim: bool,
}

fn default_storage_size() -> String {
    "10Gi".into()
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            kind: StorageType::default(),
            size: default_storage_size(),
            class: None,
            delete_claim: false,
        }
    }
}

/// A client listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(self.name in ['CONTROLLER', 'REPLICATION'])", "message": "CONTROLLER and REPLICATION are the operator's listener names"},
    {"rule": "!has(self.authentication) || self.authentication != 'tls' || (has(self.tls) && self.tls)", "message": "authentication tls needs tls: true"},
    {"rule": "!has(self.certificate) || (has(self.tls) && self.tls)", "message": "a certificate needs tls: true"}
]))]
pub struct ListenerSpec {
    /// Kafka listener name (upper case, such as `PLAINTEXT` or `INTERNAL`).
    #[schemars(regex(pattern = r"^[A-Z][A-Z0-9_]*$"))]
    pub name: String,
    /// Container port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Encrypt with TLS, under a certificate from the cluster CA (or `certificate`).
    #[serde(default)]
    pub tls: bool,
    /// How clients prove who they are.
    #[serde(default)]
    pub authentication: ListenerAuthentication,
    /// A certificate of your own for this TLS listener (for example from cert-manager) instead
    /// of the cluster CA's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ListenerCertificate>,
    /// Where clients connect from: `internal` (pod DNS names inside Kubernetes), `nodeport` or
    /// `loadbalancer` (one Service per broker, each broker advertising its own address).
    #[serde(default, rename = "type")]
    pub kind: ListenerType,
}

/// How a listener is reached.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListenerType {
    /// Inside Kubernetes, through the headless and bootstrap Services.
    #[default]
    Internal,
    /// A NodePort Service per broker; each broker advertises its node's address.
    Nodeport,
    /// A LoadBalancer Service per broker; each broker advertises its load balancer's address.
    Loadbalancer,
}

/// Where clients reach one external listener.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// `host:port` of the listener's bootstrap Service, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// `host:port` each broker advertises, by pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<String, String>,
}

/// Client authentication on a listener.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerAuthentication {
    /// Anyone may connect, as `User:ANONYMOUS`.
    #[default]
    None,
    /// A client certificate signed by the clients CA (mutual TLS); needs `tls: true`.
    Tls,
    /// SCRAM-SHA-512 with the credentials of a KafkaUser.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

/// A Secret key holding a PEM key store: the certificate chain and the private key in one
/// text (cert-manager writes one with `additionalOutputFormats: [{type: CombinedPEM}]`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerCertificate {
    /// Secret in the cluster's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the PEM key store in the Secret.
    #[serde(default = "default_key_store_key")]
    pub key: String,
}

fn default_key_store_key() -> String {
    "tls-combined.pem".into()
}

/// The metrics and health listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Port of `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotate pods for Prometheus scraping (`prometheus.io/scrape`).
    #[serde(default = "default_true")]
    pub scrape_annotations: bool,
}

fn default_metrics_port() -> i32 {
    9644
}

fn default_true() -> bool {
    true
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            port: default_metrics_port(),
            scrape_annotations: true,
        }
    }
}

/// Observed state of a Strom cluster.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Replicas per pool.
    #[serde(default)]
    pub pools: Vec<PoolStatus>,
    /// Brokers whose pods are Ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Brokers the spec asks for.
    #[serde(default)]
    pub desired_brokers: i32,
    /// `controller.quorum.voters` as written into every node's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_voters: Option<String>,
    /// Node id of the active controller, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_leader: Option<i32>,
    /// `host:port` of the bootstrap Service's first listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// Whether the controller and replication listeners use mutual TLS under the cluster CA;
    /// fixed when the cluster is created (a secured listener or authorization turns it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_tls: Option<bool>,
    /// Secret with `ca.crt`, the cluster CA that clients of TLS listeners trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca_secret: Option<String>,
    /// Addresses of the external (nodeport, loadbalancer) listeners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// Replicas of one pool.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Pods the StatefulSet runs now.
    pub replicas: i32,
    /// Pods that are Ready.
    pub ready_replicas: i32,
    /// Pods still on an older revision.
    #[serde(default)]
    pub outdated_replicas: i32,
    /// Node id of the pool's pod 0, fixed when the pool was created: a spec that would give
    /// the pool other ids (a reordered or inserted pool, a changed `nodeIdStart`) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id_start: Option<i32>,
    /// Node ids of the pool's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_ids: Vec<i32>,
    /// Whether the pool votes in the controller quorum.
    #[serde(default)]
    pub controller: bool,
    /// Size of the pool's claims as its StatefulSet creates them; claims never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<String>,
    /// The pool is no longer in the spec: its brokers are drained, then its StatefulSet goes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
}
