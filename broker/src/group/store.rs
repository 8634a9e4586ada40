//! Committed offsets kept durably in the internal topic `__consumer_offsets`.
//!
//! Each commit is a record batch in the partition the group hashes to, with a JSON key
//! (`{"group","topic","partition"}`) and a JSON value, or a tombstone when deleted. On start-up
//! every partition is replayed so offsets are in memory before the coordinator answers.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use kafka_protocol::records::Record;
use serde::{Deserialize, Serialize};

use crate::coordinator::{InternalTopic, KeyedRecord, TxnProducer};
use crate::log::batch::BatchHeader;
use crate::log::manager::LogManager;
use crate::log::txn_index::is_control;
use crate::log::AppendError;
use crate::metadata::image::MetadataImage;

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub use crate::coordinator::{partition_for, Appended};

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

/// Offsets committed in open transactions: producer id -> group -> offsets.
pub type PendingTxnOffsets = HashMap<i64, HashMap<String, Vec<OffsetEntry>>>;

/// One committed offset (`None` deletes it) of a (topic, partition).
pub type OffsetEntry = ((String, i32), Option<CommittedOffset>);

/// What replaying one partition of `__consumer_offsets` yields.
#[derive(Debug, Default)]
pub struct LoadedPartition {
    /// Committed offsets.
    pub offsets: OffsetMap,
    /// Group metadata.
    pub groups: GroupMap,
    /// Offsets of transactions still open.
    pub pending: PendingTxnOffsets,
}

/// Reads and appends commits in `__consumer_offsets`.
pub struct OffsetStore {
    topic: InternalTopic,
}

fn offset_records(group: &str, entries: &[OffsetEntry]) -> io::Result<Vec<KeyedRecord>> {
    entries
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
        .collect()
}

impl OffsetStore {
    /// A store over the broker's logs.
    pub fn new(logs: Arc<LogManager>) -> Self {
        OffsetStore {
            topic: InternalTopic::new(logs, OFFSETS_TOPIC),
        }
    }

    /// Appends commits (`None` deletes) for one group; returns once they are in the leader's
    /// log, with what to wait on for the ISR to have them.
    pub fn append(
        &self,
        image: &MetadataImage,
        group: &str,
        entries: &[OffsetEntry],
    ) -> io::Result<Option<Appended>> {
        let records = offset_records(group, entries)?;
        self.topic
            .append(image, group, records, None, None, None)
            .map_err(io::Error::other)
    }

    /// Appends commits made in `producer`'s transaction: they count once its commit marker
    /// is written. A fenced producer's epoch is refused.
    pub fn append_in_txn(
        &self,
        image: &MetadataImage,
        group: &str,
        entries: &[OffsetEntry],
        producer: TxnProducer,
    ) -> Result<Option<Appended>, AppendError> {
        let records = offset_records(group, entries)?;
        self.topic
            .append(image, group, records, Some(producer), None, None)
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
        self.topic
            .append(image, group, vec![(key, value)], None, None, None)
            .map_err(io::Error::other)
    }

    /// Replays one partition of `__consumer_offsets`, to its log end, into memory.
    pub fn load_partition(
        &self,
        image: &MetadataImage,
        partition: i32,
    ) -> io::Result<LoadedPartition> {
        let mut loaded = LoadedPartition::default();
        self.topic.replay(image, partition, |header, record| {
            if is_control(header) {
                let commit = record
                    .key
                    .as_deref()
                    .is_some_and(|k| k.len() >= 4 && k[2..4] == [0, 1]);
                let staged = loaded
                    .pending
                    .remove(&header.producer_id)
                    .unwrap_or_default();
                if commit {
                    for (group, entries) in staged {
                        apply_offsets(&mut loaded.offsets, &group, entries);
                    }
                }
                return;
            }
            apply(&mut loaded, header, &record);
        })?;
        Ok(loaded)
    }
}

/// Applies committed offsets (`None` deletes) to a group's entry.
pub fn apply_offsets(offsets: &mut OffsetMap, group: &str, entries: Vec<OffsetEntry>) {
    let committed = offsets.entry(group.to_string()).or_default();
    for (key, value) in entries {
        match value {
            Some(v) => {
                committed.insert(key, v);
            }
            None => {
                committed.remove(&key);
            }
        }
    }
    if committed.is_empty() {
        offsets.remove(group);
    }
}

fn apply(loaded: &mut LoadedPartition, header: &BatchHeader, record: &Record) {
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
            let entry = ((topic, partition), value);
            if header.is_transactional() {
                loaded
                    .pending
                    .entry(header.producer_id)
                    .or_default()
                    .entry(group)
                    .or_default()
                    .push(entry);
            } else {
                apply_offsets(&mut loaded.offsets, &group, vec![entry]);
            }
        }
        StoredKey::Group { group } => {
            match record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<GroupSnapshot>(v).ok())
            {
                Some(snapshot) => loaded.groups.insert(group, snapshot),
                None => loaded.groups.remove(&group),
            };
        }
    }
}
