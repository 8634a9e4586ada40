//! The `KafkaUser` custom resource: a client identity of a `KafkaCluster` (a SCRAM password or
//! a certificate from the clients CA) and its ACLs.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

/// Desired state of a user.
/// Rules on a whole KafkaUser (they read its status): once its credentials are in a cluster,
/// the user cannot move to another.
pub const USER_RULES: &[(&str, &str)] = &[(
    "!has(oldSelf.status) || !has(oldSelf.status.principal) || self.spec.clusterRef == oldSelf.spec.clusterRef",
    "clusterRef cannot change once the user exists in the cluster",
)];

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "strom.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    namespaced,
    status = "KafkaUserStatus",
    shortname = "ku",
    category = "strom",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef.name"}"#,
    printcolumn = r#"{"name":"Authentication","type":"string","jsonPath":".spec.authentication.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// The KafkaCluster, in the user's namespace.
    pub cluster_ref: ClusterRef,
    /// How the user logs in; the credentials go to a Secret named like the resource.
    pub authentication: UserAuthentication,
    /// What the user may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
}

/// A user's login.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UserAuthentication {
    /// `scram-sha-512` (a generated password) or `tls` (a certificate signed by the clients CA).
    #[serde(rename = "type")]
    pub kind: UserAuthenticationType,
}

/// Kinds of login.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum UserAuthenticationType {
    /// SCRAM-SHA-512: principal `User:<name>`.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// A client certificate `CN=<name>`: principal `User:CN=<name>`.
    #[serde(rename = "tls")]
    Tls,
}

/// A user's ACLs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UserAuthorization {
    /// The ACLs; ACLs of the user's principal that are not listed here are removed.
    #[serde(default)]
    pub acls: Vec<AclRule>,
}

/// One ACL rule: operations on a resource, allowed or denied, from a host.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclRule {
    /// The resource.
    pub resource: AclResource,
    /// Operations, as Kafka names them (Read, Write, Describe, ...).
    #[schemars(length(min = 1))]
    pub operations: Vec<AclOperation>,
    /// Host the rule applies to; `*` for any.
    #[serde(default = "any_host")]
    pub host: String,
    /// `allow` (default) or `deny`.
    #[serde(default, rename = "type")]
    pub kind: AclPermission,
}

fn any_host() -> String {
    "*".into()
}

/// The resource of an ACL.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AclResource {
    /// topic, group, cluster or transactionalId.
    #[serde(rename = "type")]
    pub kind: AclResourceType,
    /// Resource name; `*` for all. Not used for `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `literal` (default) or `prefixed`.
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// Resource types.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster.
    Cluster,
    /// A transactional id.
    TransactionalId,
}

/// How the resource name matches.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AclPatternType {
    /// The exact name (or `*`).
    #[default]
    Literal,
    /// Every name starting with it.
    Prefixed,
}

/// Allow or deny.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AclPermission {
    /// Grants the operations.
    #[default]
    Allow,
    /// Refuses them, over any allow.
    Deny,
}

/// ACL operations, with Kafka's names.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe.
    Describe,
    /// Inter-broker actions.
    ClusterAction,
    /// Describe configs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
}

/// Observed state of a user.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The principal Kafka sees, such as `User:alice` or `User:CN=alice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The Secret with the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}
