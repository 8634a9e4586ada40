//! Transactions as one partition's log sees them: the open transaction of each producer (which
//! holds the last stable offset back), the aborted ones a read_committed consumer must skip,
//! and the control batches (commit and abort markers) that end them.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;

const CONTROL: i16 = 0x20;
/// A control record's key: version 0, then the type (0 abort, 1 commit).
const ABORT_TYPE: i16 = 0;
const COMMIT_TYPE: i16 = 1;

/// An aborted transaction's range in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// The producer whose transaction it was.
    pub producer_id: i64,
    /// Its first record in this partition.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// Open and aborted transactions of one partition.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TxnIndex {
    /// Producer id -> first offset of its open transaction.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
}

/// Whether `h` is a control batch.
pub fn is_control(h: &BatchHeader) -> bool {
    h.attributes & CONTROL != 0
}

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Commit (true) or abort.
    pub commit: bool,
    /// The epoch of the coordinator that wrote it.
    pub coordinator_epoch: i32,
}

/// The marker a control batch holds, or `None` when `batch` (starting at its header) is not a
/// marker Strom understands.
pub fn marker_of(batch: &[u8], h: &BatchHeader) -> Option<Marker> {
    if !is_control(h) || h.records_count != 1 {
        return None;
    }
    let mut marker = None;
    let read = |_, r: super::records::RawRecord| {
        let commit = match r.key.as_deref() {
            Some([_, _, t0, t1, ..]) => match i16::from_be_bytes([*t0, *t1]) {
                COMMIT_TYPE => Some(true),
                ABORT_TYPE => Some(false),
                _ => None,
            },
            _ => None,
        };
        let coordinator_epoch = match r.value.as_deref() {
            Some([_, _, e0, e1, e2, e3, ..]) => i32::from_be_bytes([*e0, *e1, *e2, *e3]),
            _ => -1,
        };
        marker = commit.map(|commit| Marker {
            commit,
            coordinator_epoch,
        });
        Ok(())
    };
    super::records::for_each_record::<super::records::ReadError>(batch, h, 1 << 16, true, read)
        .ok()?;
    marker
}

/// A control batch (offset 0, to be assigned) ending `producer_id`'s transaction.
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> std::io::Result<bytes::BytesMut> {
    let kind = if commit { COMMIT_TYPE } else { ABORT_TYPE };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).map_err(std::io::Error::other)?;
    Ok(buf)
}

impl TxnIndex {
    /// Takes one appended batch into account; `marker` is what it says when it is a control batch.
    pub fn record(&mut self, h: &BatchHeader, marker: Option<Marker>) {
        if !h.is_transactional() || h.producer_id < 0 {
            return;
        }
        if is_control(h) {
            let first = self.ongoing.remove(&h.producer_id);
            if marker.is_some_and(|m| !m.commit) {
                if let Some(first_offset) = first {
                    self.aborted.push(AbortedTxn {
                        producer_id: h.producer_id,
                        first_offset,
                        last_offset: h.base_offset,
                    });
                }
            }
        } else {
            self.ongoing.entry(h.producer_id).or_insert(h.base_offset);
        }
    }

    /// The first offset of the earliest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// The first offset of `producer_id`'s open transaction here, if it has one.
    pub fn open_since(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// How many transactions are open.
    pub fn open_count(&self) -> usize {
        self.ongoing.len()
    }

    /// The aborted transactions with records in `[from, to)`.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Every aborted transaction (for the cleaner, which drops their records).
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Forgets aborted transactions whose marker is before `log_start_offset`.
    pub fn forget_before(&mut self, log_start_offset: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }
}

/// Whether the data batch `h` belongs to one of the `aborted` transactions.
pub fn is_aborted(aborted: &[AbortedTxn], h: &BatchHeader) -> bool {
    h.is_transactional()
        && !is_control(h)
        && aborted.iter().any(|a| {
            a.producer_id == h.producer_id
                && a.first_offset <= h.base_offset
                && h.base_offset <= a.last_offset
        })
}

/// A transactional batch of one keyed record (offset 0, to be assigned), for tests.
#[cfg(test)]
pub(crate) fn transactional_batch(
    producer_id: i64,
    sequence: i32,
    key: &str,
    value: &str,
) -> Vec<u8> {
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: 1_000,
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encodes");
    buf.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;

    fn data(producer_id: i64, offset: i64, transactional: bool) -> BatchHeader {
        BatchHeader {
            partition_leader_epoch: 0,
            base_offset: offset,
            size: 100,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            attributes: if transactional { 0x10 } else { 0 },
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            records_count: 1,
        }
    }

    fn marker(producer_id: i64, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            base_sequence: -1,
            ..data(producer_id, offset, true)
        }
    }

    #[test]
    fn open_transactions_hold_the_stable_offset_and_aborts_are_remembered() {
        let mut index = TxnIndex::default();
        index.record(&data(1, 10, true), None);
        index.record(&data(2, 11, true), None);
        index.record(&data(1, 12, true), None);
        index.record(&data(3, 13, false), None);
        assert_eq!(index.first_unstable_offset(), Some(10));
        let abort = Marker {
            commit: false,
            coordinator_epoch: 0,
        };
        index.record(&marker(1, 14), Some(abort));
        assert_eq!(index.first_unstable_offset(), Some(11));
        index.record(
            &marker(2, 15),
            Some(Marker {
                commit: true,
                ..abort
            }),
        );
        assert_eq!(index.first_unstable_offset(), None);
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
        };
        assert_eq!(index.aborted_between(0, 100), vec![aborted]);
        assert_eq!(index.aborted_between(15, 100), vec![]);
        assert_eq!(index.aborted_between(0, 10), vec![]);
        assert!(is_aborted(index.aborted(), &data(1, 12, true)));
        assert!(!is_aborted(index.aborted(), &data(2, 11, true)));
        index.forget_before(15);
        assert!(index.aborted().is_empty());
    }

    #[test]
    fn encoded_markers_read_back() {
        for commit in [true, false] {
            let buf = encode_marker(42, 3, commit, 7, 1_000).unwrap();
            let h = batch::validate(&buf).unwrap();
            assert!(is_control(&h) && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(
                marker_of(&buf, &h),
                Some(Marker {
                    commit,
                    coordinator_epoch: 7
                })
            );
        }
    }
}
