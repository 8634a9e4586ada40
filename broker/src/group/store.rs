//! Committed offsets kept durably in the internal topic `__consumer_offsets`.
//!
//! Each commit is a record batch in the partition the group hashes to, with a JSON key
//! (`{"group","topic","partition"}`) and a JSON value, or a tombstone when deleted. On start-up
//! every partition is replayed so offsets are in memory before the coordinator answers.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record};
use serde::{Deserialize, Serialize};

use crate::log::manager::LogManager;
use crate::log::segment::now_ms;
use crate::log::{batch, records, Leadership, PartitionLog};
use crate::metadata::image::MetadataImage;

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Where a group's offsets live: Java's `String.hashCode` of the group id, made
/// non-negative, modulo the partition count, as Kafka does.
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    ((hash & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch the client saw, or -1.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp: i64,
}

/// Keys of the internal topic: a committed offset, or a group's metadata.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// One member of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    /// Member id.
    pub id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: u64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: u64,
    /// Supported protocols with their metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// Current assignment.
    pub assignment: Vec<u8>,
}

/// A group's metadata as stored after every completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// Members with their assignments.
    pub members: Vec<MemberSnapshot>,
}

/// Group metadata by group id.
pub type GroupMap = HashMap<String, GroupSnapshot>;

/// All committed offsets: group -> (topic, partition) -> offset.
pub type OffsetMap = HashMap<String, BTreeMap<(String, i32), CommittedOffset>>;

/// An append to `__consumer_offsets`: the ISR must reach `end_offset` for it to be committed.
pub struct Appended {
    /// The partition's log.
    pub log: Arc<PartitionLog>,
    /// One past the last appended offset.
    pub end_offset: i64,
    /// The leader epoch it was appended in.
    pub leader_epoch: i32,
}

/// Reads and appends commits in `__consumer_offsets`.
pub struct OffsetStore {
    logs: Arc<LogManager>,
}

impl OffsetStore {
    /// A store over the broker's logs.
    pub fn new(logs: Arc<LogManager>) -> Self {
        OffsetStore { logs }
    }

    fn log(&self, image: &MetadataImage, group: &str) -> io::Result<(Arc<PartitionLog>, i32)> {
        let topic = image
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or_else(|| io::Error::other("__consumer_offsets does not exist yet"))?;
        let partition = partition_for(group, topic.partitions.len());
        let leader_epoch = topic.partitions[partition as usize].leader_epoch;
        Ok((
            self.logs.get_or_open(OFFSETS_TOPIC, partition, topic)?,
            leader_epoch,
        ))
    }

    /// Appends commits (`None` deletes) for one group; returns once they are in the leader's
    /// log, with what to wait on for the ISR to have them.
    pub fn append(
        &self,
        image: &MetadataImage,
        group: &str,
        entries: &[((String, i32), Option<CommittedOffset>)],
    ) -> io::Result<Option<Appended>> {
        let records = entries
            .iter()
            .map(|((topic, partition), value)| {
                let key = StoredKey::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                let value = value.as_ref().map(serde_json::to_vec).transpose()?;
                Ok((serde_json::to_vec(&key)?, value))
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.write(image, group, records)
    }

    /// Stores a group's metadata (`None` deletes it).
    pub fn append_group(
        &self,
        image: &MetadataImage,
        group: &str,
        snapshot: Option<&GroupSnapshot>,
    ) -> io::Result<Option<Appended>> {
        let key = serde_json::to_vec(&StoredKey::Group {
            group: group.to_string(),
        })?;
        let value = snapshot.map(serde_json::to_vec).transpose()?;
        self.write(image, group, vec![(key, value)])
    }

    fn write(
        &self,
        image: &MetadataImage,
        group: &str,
        entries: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> io::Result<Option<Appended>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let buf = batch::encode_records(
            entries
                .into_iter()
                .map(|(key, value)| (Some(Bytes::from(key)), value.map(Bytes::from))),
            now_ms(),
            Compression::None,
        )?;
        let headers = batch::validate_all(&buf).map_err(io::Error::other)?;
        let (log, leader_epoch) = self.log(image, group)?;
        let leadership = Leadership {
            leader_epoch,
            min_isr: None,
        };
        let info = log
            .append(&buf, &headers, leadership)
            .map_err(io::Error::other)?;
        Ok(Some(Appended {
            log,
            end_offset: info.last_offset + 1,
            leader_epoch,
        }))
    }

    /// Replays one partition of `__consumer_offsets`, to its log end, into memory.
    pub fn load_partition(
        &self,
        image: &MetadataImage,
        partition: i32,
    ) -> io::Result<(OffsetMap, GroupMap)> {
        let mut offsets = OffsetMap::new();
        let mut groups = GroupMap::new();
        let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
            return Ok((offsets, groups));
        };
        let log = self.logs.get_or_open(OFFSETS_TOPIC, partition, topic)?;
        let mut next = log.log_start_offset();
        // A new leader's whole log becomes committed, so read it all, not just to the
        // high watermark it had as a follower.
        while next < log.log_end_offset() {
            let read = log
                .read_for_follower(next, 1 << 20)
                .map_err(|e| io::Error::other(e.to_string()))?;
            if read.records.is_empty() {
                break;
            }
            let mut bytes = &read.records[..];
            let cap = log.config().max_uncompressed_bytes;
            while !bytes.is_empty() {
                let header = batch::parse_header(bytes).map_err(io::Error::other)?;
                let (_, records) =
                    records::decode_stored_batch(bytes, &header, cap).map_err(io::Error::other)?;
                for record in records {
                    next = record.offset + 1;
                    apply(&mut offsets, &mut groups, &record);
                }
                bytes = &bytes[header.size..];
            }
        }
        Ok((offsets, groups))
    }
}

fn apply(offsets: &mut OffsetMap, groups: &mut GroupMap, record: &Record) {
    let Some(Ok(key)) = record
        .key
        .as_ref()
        .map(|k| serde_json::from_slice::<StoredKey>(k))
    else {
        return;
    };
    match key {
        StoredKey::Offset {
            group,
            topic,
            partition,
        } => {
            let value = record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<CommittedOffset>(v).ok());
            let entries = offsets.entry(group.clone()).or_default();
            match value {
                Some(value) => {
                    entries.insert((topic, partition), value);
                }
                None => {
                    entries.remove(&(topic, partition));
                    if entries.is_empty() {
                        offsets.remove(&group);
                    }
                }
            }
        }
        StoredKey::Group { group } => {
            match record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<GroupSnapshot>(v).ok())
            {
                Some(snapshot) => groups.insert(group, snapshot),
                None => groups.remove(&group),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafkas_hash() {
        // Java: "my-group".hashCode() == -1906497762; (h & 0x7fffffff) % 50 == 36.
        assert_eq!(partition_for("my-group", 50), 36);
        assert_eq!(partition_for("test-group", 50), 12);
        assert!((0..50).contains(&partition_for("ü-group", 50)));
    }
}
