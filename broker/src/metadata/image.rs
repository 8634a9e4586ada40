//! The metadata image (what every broker serves Metadata from) and the records that change it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// `node.id`.
    pub id: i32,
    /// Advertised host of the client listener.
    pub host: String,
    /// Advertised port of the client listener.
    pub port: u16,
    /// Rack, if configured.
    pub rack: Option<String>,
}

/// One partition's replica assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Replica broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader (-1 when none).
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
}

impl PartitionImage {
    fn new(replicas: Vec<i32>) -> Self {
        PartitionImage {
            leader: replicas.first().copied().unwrap_or(-1),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
        }
    }
}

/// A topic: id, partitions and config overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: Vec<PartitionImage>,
    /// Topic-level config overrides.
    pub configs: BTreeMap<String, String>,
}

/// The whole cluster metadata state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The cluster id, fixed by the first record.
    pub cluster_id: String,
    /// Registered brokers.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// The first producer id not yet handed out.
    #[serde(default)]
    pub next_producer_id: i64,
}

/// A change to the metadata image; the Raft log is a sequence of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Fixes the cluster id; ignored once set.
    InitCluster { cluster_id: String },
    /// A broker (re-)registers with its listener.
    RegisterBroker(BrokerRegistration),
    /// A new topic with its replica assignment per partition.
    CreateTopic {
        name: String,
        id: Uuid,
        assignments: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    /// Removes a topic.
    DeleteTopic { name: String },
    /// Adds partitions to a topic.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// Reserves a block of producer ids; the block starts at the previous `next_producer_id`.
    AllocateProducerIds { count: i64 },
    /// Sets and removes topic config overrides.
    AlterTopicConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
}

impl MetadataImage {
    /// Applies one record. Errors leave the image unchanged and are reported to the proposer;
    /// the same record gives the same result on every node.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<Option<i64>, String> {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::RegisterBroker(registration) => {
                self.brokers.insert(registration.id, registration.clone());
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                assignments,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(format!("Topic '{name}' already exists."));
                }
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *id,
                        partitions: assignments
                            .iter()
                            .cloned()
                            .map(PartitionImage::new)
                            .collect(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return Err(format!("Topic '{name}' does not exist."));
                }
            }
            MetadataRecord::CreatePartitions { name, assignments } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("Topic '{name}' does not exist."))?;
                topic
                    .partitions
                    .extend(assignments.iter().cloned().map(PartitionImage::new));
            }
            MetadataRecord::AllocateProducerIds { count } => {
                let start = self.next_producer_id;
                self.next_producer_id += count;
                return Ok(Some(start));
            }
            MetadataRecord::AlterTopicConfigs { name, set, delete } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| format!("Topic '{name}' does not exist."))?;
                for key in delete {
                    topic.configs.remove(key);
                }
                topic
                    .configs
                    .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Ok(None)
    }

    /// Finds a topic name by its id.
    pub fn topic_name_by_id(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }
}

/// Spreads `count` new partitions over `brokers` round-robin, starting after `first_index`
/// so that leaders (the first replica) rotate across brokers.
pub fn place_replicas(
    brokers: &[i32],
    first_index: usize,
    count: usize,
    replication_factor: usize,
) -> Vec<Vec<i32>> {
    (0..count)
        .map(|p| {
            (0..replication_factor)
                .map(|r| brokers[(first_index + p + r) % brokers.len()])
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_build_the_image() {
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c1".into(),
            })
            .unwrap();
        image
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c2".into(),
            })
            .unwrap();
        assert_eq!(image.cluster_id, "c1");
        let block = MetadataRecord::AllocateProducerIds { count: 1000 };
        assert_eq!(image.apply(&block), Ok(Some(0)));
        assert_eq!(image.apply(&block), Ok(Some(1000)));
        let id = Uuid::new_v4();
        let create = MetadataRecord::CreateTopic {
            name: "t".into(),
            id,
            assignments: vec![vec![1], vec![1]],
            configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
        };
        image.apply(&create).unwrap();
        assert!(image.apply(&create).unwrap_err().contains("already exists"));
        image
            .apply(&MetadataRecord::CreatePartitions {
                name: "t".into(),
                assignments: vec![vec![1]],
            })
            .unwrap();
        image
            .apply(&MetadataRecord::AlterTopicConfigs {
                name: "t".into(),
                set: BTreeMap::from([("segment.bytes".into(), "1000".into())]),
                delete: vec!["retention.ms".into()],
            })
            .unwrap();
        let t = &image.topics["t"];
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(t.partitions[2].leader, 1);
        assert_eq!(t.configs.len(), 1);
        assert_eq!(image.topic_name_by_id(id), Some("t"));
        image
            .apply(&MetadataRecord::DeleteTopic { name: "t".into() })
            .unwrap();
        assert!(image.topics.is_empty());
    }

    #[test]
    fn placement_rotates_leaders() {
        let p = place_replicas(&[1, 2, 3], 0, 4, 2);
        assert_eq!(p, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        assert_eq!(place_replicas(&[7], 5, 2, 1), vec![vec![7], vec![7]]);
    }
}
