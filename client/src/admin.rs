//! Admin calls over one connection: cluster metadata, topic create/grow/configure/delete and
//! partition reassignment. Any Strom broker forwards metadata writes to the active controller,
//! so every call goes to whichever bootstrap broker answered first.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::{BrokerConnection, TlsClient};

/// The resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// What an admin call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No bootstrap address accepted a connection.
    #[error("cannot reach any of {addresses}: {source}")]
    Unreachable {
        addresses: String,
        source: io::Error,
    },
    /// The connection failed during a call.
    #[error("{api} failed: {source}")]
    Io {
        api: &'static str,
        source: io::Error,
    },
    /// The broker answered with an error code.
    #[error("{what}: {error:?}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Broker {
        what: String,
        error: ResponseError,
        message: Option<String>,
    },
}

impl AdminError {
    /// The Kafka error code, when the broker answered with one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            AdminError::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// One partition as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Partition index.
    pub index: i32,
    /// Leader broker id, -1 when offline.
    pub leader: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

/// One topic as Metadata reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// The topic id, as Kafka prints it (UUID).
    pub id: String,
    /// Partitions, by index.
    pub partitions: Vec<PartitionView>,
}

/// The cluster as one Metadata response describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Live brokers by id, with their advertised `host:port`.
    pub brokers: BTreeMap<i32, String>,
    /// The controller id the broker reports.
    pub controller: i32,
    /// Every topic, internal ones included, by name.
    pub topics: BTreeMap<String, TopicView>,
}

impl ClusterView {
    /// Partitions whose ISR is smaller than their replica set.
    pub fn under_replicated(&self) -> usize {
        self.partitions()
            .filter(|(_, p)| p.isr.len() < p.replicas.len())
            .count()
    }

    /// Partitions with no leader.
    pub fn offline(&self) -> usize {
        self.partitions().filter(|(_, p)| p.leader < 0).count()
    }

    /// Every partition with its topic name.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, &PartitionView)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| t.partitions.iter().map(move |p| (name.as_str(), p)))
    }

    /// How many partition replicas `broker` holds.
    pub fn replicas_on(&self, broker: i32) -> usize {
        self.partitions()
            .filter(|(_, p)| p.replicas.contains(&broker))
            .count()
    }
}

/// A reassignment target: topic, partition and the new replica list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replicas the partition should end up on, preferred leader first.
    pub replicas: Vec<i32>,
}

/// An admin client over one connection.
pub struct Admin {
    connection: BrokerConnection,
    timeout: Duration,
}

pub(crate) fn check(
    what: impl FnOnce() -> String,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), AdminError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(AdminError::Broker {
            what: what(),
            error,
            message: message.map(|m| m.to_string()),
        }),
    }
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

impl Admin {
    /// Connects to the first bootstrap address (`host:port`) that answers, over TLS when
    /// `tls` is given.
    pub async fn connect(
        bootstrap: &[String],
        timeout: Duration,
        tls: Option<&TlsClient>,
    ) -> Result<Admin, AdminError> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no bootstrap address");
        for address in bootstrap {
            let client_id = "strom-admin".to_owned();
            let connected = match tls {
                Some(tls) => tls.connect(address, client_id, timeout).await,
                None => BrokerConnection::connect(address, client_id, timeout).await,
            };
            match connected {
                Ok(connection) => {
                    return Ok(Admin {
                        connection,
                        timeout,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(AdminError::Unreachable {
            addresses: bootstrap.join(","),
            source: last,
        })
    }

    pub(crate) async fn send<R: kafka_protocol::protocol::Request>(
        &mut self,
        api: &'static str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        // Server-side timeouts in requests are `self.timeout`; give the answer a little longer.
        let wait = self.timeout + Duration::from_secs(5);
        self.connection
            .send(request, version, wait)
            .await
            .map_err(|source| AdminError::Io { api, source })
    }

    fn timeout_ms(&self) -> i32 {
        self.timeout.as_millis().min(i32::MAX as u128) as i32
    }

    /// Brokers, controller and every topic's partitions.
    pub async fn cluster(&mut self) -> Result<ClusterView, AdminError> {
        let response = self
            .send(
                "Metadata",
                &MetadataRequest::default().with_topics(None),
                12,
            )
            .await?;
        let brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        let mut topics = BTreeMap::new();
        for topic in response.topics {
            let Some(topic_name) = topic.name else {
                continue;
            };
            let partitions = topic
                .partitions
                .iter()
                .map(|p| PartitionView {
                    index: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            topics.insert(
                topic_name.0.to_string(),
                TopicView {
                    id: topic.topic_id.to_string(),
                    partitions,
                },
            );
        }
        Ok(ClusterView {
            brokers,
            controller: response.controller_id.0,
            topics,
        })
    }

    /// Creates a topic and returns its id.
    pub async fn create_topic(
        &mut self,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<String, AdminError> {
        let configs = configs
            .iter()
            .map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(configs)]);
        let response = self.send("CreateTopics", &request, 7).await?;
        let result = response.topics.first().ok_or_else(|| AdminError::Io {
            api: "CreateTopics",
            source: io::Error::new(io::ErrorKind::InvalidData, "empty response"),
        })?;
        check(
            || format!("create topic {topic}"),
            result.error_code,
            result.error_message.as_ref(),
        )?;
        Ok(result.topic_id.to_string())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&mut self, topic: &str, count: i32) -> Result<(), AdminError> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(count)]);
        let response = self.send("CreatePartitions", &request, 3).await?;
        for result in &response.results {
            check(
                || format!("grow topic {topic} to {count} partitions"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Sets the `set` configs and removes the `delete` ones (back to their defaults).
    pub async fn alter_topic_configs(
        &mut self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(OP_DELETE)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configs(configs),
        ]);
        let response = self.send("IncrementalAlterConfigs", &request, 1).await?;
        for result in &response.responses {
            check(
                || format!("configure topic {topic}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&mut self, topic: &str) -> Result<(), AdminError> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(topic)))
            ]);
        let response = self.send("DeleteTopics", &request, 6).await?;
        for result in &response.responses {
            check(
                || format!("delete topic {topic}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Starts moving partitions to new replica sets (KIP-455).
    pub async fn reassign(&mut self, moves: &[Reassignment]) -> Result<(), AdminError> {
        let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for m in moves {
            by_topic.entry(&m.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(m.partition)
                    .with_replicas(Some(m.replicas.iter().copied().map(BrokerId).collect())),
            );
        }
        let topics = by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ReassignableTopic::default()
                    .with_name(name(topic))
                    .with_partitions(partitions)
            })
            .collect();
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(topics);
        let response = self
            .send("AlterPartitionReassignments", &request, 0)
            .await?;
        check(
            || "reassign partitions".to_owned(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        for topic in &response.responses {
            for p in &topic.partitions {
                check(
                    || format!("reassign {}-{}", topic.name.0, p.partition_index),
                    p.error_code,
                    p.error_message.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    /// How many partition reassignments are still in progress.
    pub async fn ongoing_reassignments(&mut self) -> Result<usize, AdminError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(None);
        let response = self.send("ListPartitionReassignments", &request, 0).await?;
        check(
            || "list reassignments".to_owned(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response.topics.iter().map(|t| t.partitions.len()).sum())
    }
}
