//! A minimal async Kafka-protocol client on `kafka-protocol`: a connection that exchanges one
//! request at a time, over TCP or TLS, and the admin calls the operator needs.

pub mod access;
pub mod admin;
mod connection;
mod tls;

pub use access::Acl;
pub use admin::{Admin, AdminError, ClusterView, PartitionView, Reassignment, TopicView};
pub use connection::{tcp, BrokerConnection, Transport};
pub use kafka_protocol::ResponseError;
pub use tls::{TlsClient, TlsError};
