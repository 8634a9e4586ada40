//! A minimal async Kafka-protocol client on `kafka-protocol`: a connection that exchanges one
//! request at a time, and the admin calls the operator needs.

pub mod admin;
mod connection;

pub use admin::{Admin, AdminError, ClusterView, PartitionView, Reassignment, TopicView};
pub use connection::{tcp, BrokerConnection, Transport};
pub use kafka_protocol::ResponseError;
