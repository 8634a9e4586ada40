//! What the group and transaction coordinators share: each coordinates the keys (group ids,
//! transactional ids) that hash to the partitions of its internal topic this broker leads,
//! and keeps its state as keyed records in that topic.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::config::{BrokerConfig, Role};
use crate::log::batch::{self, BatchHeader};
use crate::log::manager::LogManager;
use crate::log::segment::now_ms;
use crate::log::{records, Leadership, PartitionLog};
use crate::metadata::image::{place_replicas, MetadataImage, MetadataRecord};
use crate::metadata::{Controller, ControllerError};

/// Where a key lives: Java's `String.hashCode` of it, made non-negative, modulo the partition
/// count, as Kafka does.
pub fn partition_for(key: &str, partitions: usize) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    ((hash & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

/// The partitions of an internal topic this broker leads and has loaded.
#[derive(Debug, Default)]
pub struct Ownership {
    /// How many partitions the topic has (the hash's modulus).
    partition_count: usize,
    /// Loaded partitions with the leader epoch they were loaded at.
    partitions: HashMap<i32, i32>,
}

impl Ownership {
    /// The partition `key` hashes to, if this broker has it loaded.
    pub fn partition_of(&self, key: &str) -> Option<i32> {
        if self.partition_count == 0 {
            return None;
        }
        let partition = partition_for(key, self.partition_count);
        self.partitions
            .contains_key(&partition)
            .then_some(partition)
    }

    /// The leader epoch a loaded partition was loaded at.
    pub fn epoch_of(&self, partition: i32) -> Option<i32> {
        self.partitions.get(&partition).copied()
    }

    /// How many partitions the topic has (0 before any is loaded).
    pub fn partition_count(&self) -> usize {
        self.partition_count
    }

    /// Loaded partitions and their epochs.
    pub fn partitions(&self) -> &HashMap<i32, i32> {
        &self.partitions
    }

    /// Records a partition as loaded.
    pub fn load(&mut self, partition: i32, leader_epoch: i32, partition_count: usize) {
        self.partition_count = partition_count;
        self.partitions.insert(partition, leader_epoch);
    }

    /// Forgets a partition; returns a test for the keys that belonged to it, if the topic is known.
    pub fn unload(&mut self, partition: i32) -> Option<impl Fn(&str) -> bool> {
        self.partitions.remove(&partition);
        let count = self.partition_count;
        (count > 0).then_some(move |key: &str| partition_for(key, count) == partition)
    }
}

/// An append to an internal topic: the ISR must reach `end_offset` for it to be committed.
pub struct Appended {
    /// The partition's log.
    pub log: Arc<PartitionLog>,
    /// One past the last appended offset.
    pub end_offset: i64,
    /// The leader epoch it was appended in.
    pub leader_epoch: i32,
}

/// A producer writing in a transaction: the batch is transactional and carries its id and
/// epoch, so the transaction's marker decides whether it counts.
#[derive(Debug, Clone, Copy)]
pub struct TxnProducer {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

/// A keyed record of an internal topic; a `None` value deletes the key.
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// Keyed records as one v2 batch starting at offset 0.
fn encode(entries: Vec<KeyedRecord>, producer: Option<TxnProducer>) -> io::Result<bytes::BytesMut> {
    let timestamp = now_ms();
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.map_or(-1, |p| p.id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; a
            // transactional batch starts at -1, Kafka's "no sequence", as the broker writes it.
            sequence: i as i32 - i32::from(producer.is_some()),
            timestamp,
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(io::Error::other)?;
    Ok(buf)
}

/// Reads and appends the keyed records of one internal topic.
pub struct InternalTopic {
    logs: Arc<LogManager>,
    name: &'static str,
}

impl InternalTopic {
    /// The internal topic `name` over the broker's logs.
    pub fn new(logs: Arc<LogManager>, name: &'static str) -> Self {
        InternalTopic { logs, name }
    }

    /// The partition log `key` hashes to, with its leader epoch.
    fn log(&self, image: &MetadataImage, key: &str) -> io::Result<(Arc<PartitionLog>, i32)> {
        let topic = image
            .topics
            .get(self.name)
            .ok_or_else(|| io::Error::other(format!("{} does not exist yet", self.name)))?;
        let partition = partition_for(key, topic.partitions.len());
        let leader_epoch = topic.partitions[partition as usize].leader_epoch;
        Ok((
            self.logs.get_or_open(self.name, partition, topic)?,
            leader_epoch,
        ))
    }

    /// Appends records to the partition of `key`; returns once they are in the leader's log,
    /// with what to wait on for the ISR to have them. With `loaded_at`, the append is refused
    /// unless this broker still leads the partition at that epoch (the state being written
    /// was loaded then, and a newer leader may have changed it since).
    pub fn append(
        &self,
        image: &MetadataImage,
        key: &str,
        entries: Vec<KeyedRecord>,
        producer: Option<TxnProducer>,
        min_isr: Option<usize>,
        loaded_at: Option<i32>,
    ) -> Result<Option<Appended>, crate::log::AppendError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let buf = encode(entries, producer)?;
        let headers = batch::validate_all(&buf)?;
        let (log, current_epoch) = self.log(image, key)?;
        let leader_epoch = loaded_at.unwrap_or(current_epoch);
        let leadership = Leadership {
            leader_epoch,
            min_isr,
        };
        let info = log.append(&buf, &headers, leadership)?;
        Ok(Some(Appended {
            log,
            end_offset: info.last_offset + 1,
            leader_epoch,
        }))
    }

    /// Replays one partition, to its log end, calling `visit` with each record and the header
    /// of its batch (control batches included).
    pub fn replay(
        &self,
        image: &MetadataImage,
        partition: i32,
        mut visit: impl FnMut(&BatchHeader, Record),
    ) -> io::Result<()> {
        let Some(topic) = image.topics.get(self.name) else {
            return Ok(());
        };
        let log = self.logs.get_or_open(self.name, partition, topic)?;
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
                next = header.last_offset() + 1;
                for record in records {
                    visit(&header, record);
                }
                bytes = &bytes[header.size..];
            }
        }
        Ok(())
    }
}

/// How an internal topic is created: Kafka's settings for it.
#[derive(Debug, Clone)]
pub struct InternalTopicSpec {
    /// The topic's name.
    pub name: &'static str,
    /// Partitions.
    pub partitions: usize,
    /// Replication factor wanted (fewer on a single combined node).
    pub replication: usize,
    /// `min.insync.replicas`, if the topic sets one.
    pub min_isr: Option<usize>,
    /// `segment.bytes`.
    pub segment_bytes: String,
}

impl InternalTopicSpec {
    /// `__consumer_offsets`, from the `offsets.topic.*` settings.
    pub fn offsets(config: &BrokerConfig) -> Self {
        InternalTopicSpec {
            name: crate::group::store::OFFSETS_TOPIC,
            partitions: config.int("offsets.topic.num.partitions") as usize,
            replication: config.int("offsets.topic.replication.factor") as usize,
            min_isr: None,
            segment_bytes: config.string("offsets.topic.segment.bytes"),
        }
    }

    /// `__transaction_state`, from the `transaction.state.log.*` settings.
    pub fn transactions(config: &BrokerConfig) -> Self {
        InternalTopicSpec {
            name: crate::txn::TXN_TOPIC,
            partitions: config.int("transaction.state.log.num.partitions") as usize,
            replication: config.int("transaction.state.log.replication.factor") as usize,
            min_isr: Some(config.int("transaction.state.log.min.isr") as usize),
            segment_bytes: config.string("transaction.state.log.segment.bytes"),
        }
    }
}

/// Creates an internal (compacted) topic once enough brokers are registered; Ok once it exists
/// or must wait for brokers.
pub async fn ensure_internal_topic(
    config: &BrokerConfig,
    controller: &Controller,
    spec: &InternalTopicSpec,
) -> Result<(), ControllerError> {
    let image = controller.image();
    if image.topics.contains_key(spec.name) {
        return Ok(());
    }
    let brokers = image.placement_order();
    // A single combined node (its own only voter) cannot wait for three brokers; any other
    // layout, a single dedicated controller included, waits for them.
    let single_node = config.voters.len() == 1
        && config.voters[0].id == config.node_id
        && config.has_role(Role::Broker);
    if brokers.is_empty() || (brokers.len() < spec.replication && !single_node) {
        return Ok(());
    }
    let replication = spec.replication.min(brokers.len());
    let mut configs: BTreeMap<String, String> = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), spec.segment_bytes.clone()),
    ]
    .into();
    if let Some(min_isr) = spec.min_isr {
        configs.insert(
            "min.insync.replicas".to_string(),
            min_isr.min(replication).to_string(),
        );
    }
    let created = controller
        .propose(MetadataRecord::CreateTopic {
            name: spec.name.to_string(),
            id: uuid::Uuid::new_v4(),
            assignments: place_replicas(&brokers, 0, spec.partitions, replication),
            configs,
        })
        .await;
    // Several brokers may try at once; losing that race is not a failure.
    match created {
        Err(_) if controller.image().topics.contains_key(spec.name) => Ok(()),
        other => other,
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

    #[test]
    fn transactional_batches_have_no_sequence() {
        let producer = TxnProducer { id: 9, epoch: 2 };
        let entries = vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)];
        let buf = encode(entries, Some(producer)).unwrap();
        let headers = batch::validate_all(&buf).unwrap();
        assert_eq!(headers.len(), 1);
        let h = headers[0];
        assert!(h.is_transactional());
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.records_count
            ),
            (9, 2, -1, 2)
        );
    }
}
