//! Strom broker: a Kafka-compatible broker with KRaft metadata and a segmented log.

pub mod config;
pub mod log;
pub mod metadata;
pub mod topic_config;
