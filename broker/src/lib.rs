//! Strom broker: a Kafka-compatible broker with KRaft metadata and a segmented log.

pub mod api;
pub mod config;
pub mod config_provider;
pub mod coordinator;
pub mod frame;
pub mod fuzzing;
pub mod group;
pub mod http;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod network;
pub mod protocol;
pub mod quota;
pub mod replica;
pub mod security;
pub mod server;
pub mod shutdown;
pub mod topic_config;
pub mod txn;
