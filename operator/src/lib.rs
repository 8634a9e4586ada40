//! strom-operator: runs Strom on Kubernetes. The KafkaCluster controller turns a cluster spec
//! into StatefulSets, Services, a ConfigMap and a PodDisruptionBudget, then rolls and scales
//! them safely, with certificates when secured; the KafkaTopic and KafkaUser controllers manage
//! topics, credentials and ACLs over the Kafka protocol.

pub mod cluster;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod topic;
pub mod user;
