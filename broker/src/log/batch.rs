//! Record batch (message format v2) headers: parse, validate, and rewrite the offset fields.
//!
//! Only the 61-byte header is ever interpreted; records stay as the producer sent them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Size of the v2 batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batchLength` ends: `baseOffset` (8) plus `batchLength` (4).
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Shorter than a header, or the length field disagrees with the bytes.
    #[error("truncated or mis-sized record batch")]
    Truncated,
    /// Not message format v2.
    #[error("unsupported record batch magic {0}")]
    Magic(i8),
    /// The CRC does not match the contents.
    #[error("record batch CRC mismatch")]
    Crc,
    /// Header fields that cannot be right.
    #[error("invalid record batch header: {0}")]
    Invalid(&'static str),
}

/// The interesting fields of one batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// First offset in the batch.
    pub base_offset: i64,
    /// Total size of the batch in bytes, including the 12-byte log overhead.
    pub size: usize,
    /// `partitionLeaderEpoch`: the leader epoch the batch was appended in.
    pub partition_leader_epoch: i32,
    /// `lastOffsetDelta`.
    pub last_offset_delta: i32,
    /// `baseTimestamp`.
    pub base_timestamp: i64,
    /// `maxTimestamp`.
    pub max_timestamp: i64,
    /// `attributes`.
    pub attributes: i16,
    /// `producerId` (-1 for non-idempotent producers).
    pub producer_id: i64,
    /// `producerEpoch`.
    pub producer_epoch: i16,
    /// `baseSequence`.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// The offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Whether this batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// The sequence number of the last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        ((self.base_sequence as i64 + self.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the total size of the batch starting at `buf` from its first 12 bytes.
pub fn peek_size(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = i32_at(buf, BATCH_LENGTH);
    if len < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some(len as usize + LOG_OVERHEAD)
}

/// Parses the header of the batch at the start of `buf` without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header_only(buf)?;
    if buf.len() < header.size {
        return Err(BatchError::Truncated);
    }
    Ok(header)
}

/// Counts the records of the complete batches in `buf` from their headers; a batch cut short
/// at the end (as a fetch may return) is not counted.
pub fn count_records(mut buf: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = parse_header(buf) {
        records += header.records_count as u64;
        buf = &buf[header.size..];
    }
    records
}

/// Parses a header from its first `HEADER_SIZE` bytes; the records need not be present.
pub fn parse_header_only(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = peek_size(buf).ok_or(BatchError::Truncated)?;
    if buf.len() < HEADER_SIZE || size < HEADER_SIZE {
        return Err(BatchError::Truncated);
    }
    let magic = buf[MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    let header = BatchHeader {
        base_offset: i64_at(buf, BASE_OFFSET),
        size,
        partition_leader_epoch: i32_at(buf, LEADER_EPOCH),
        last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
        base_timestamp: i64_at(buf, BASE_TIMESTAMP),
        max_timestamp: i64_at(buf, MAX_TIMESTAMP),
        attributes: i16_at(buf, ATTRIBUTES),
        producer_id: i64_at(buf, PRODUCER_ID),
        producer_epoch: i16_at(buf, PRODUCER_EPOCH),
        base_sequence: i32_at(buf, BASE_SEQUENCE),
        records_count: i32_at(buf, RECORDS_COUNT),
    };
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(BatchError::Invalid("negative record count or offset delta"));
    }
    Ok(header)
}

/// Parses the header and verifies the CRC-32C over attributes..end.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    let stored = u32::from_be_bytes(buf[CRC..CRC + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[ATTRIBUTES..header.size]) != stored {
        return Err(BatchError::Crc);
    }
    Ok(header)
}

/// Sets `baseOffset` and `partitionLeaderEpoch`; neither is covered by the CRC.
pub fn assign_offset(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    buf[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    buf[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `now` as its max timestamp and re-seals the CRC.
pub fn set_log_append_time(buf: &mut [u8], now: i64) {
    let attributes = i16_at(buf, ATTRIBUTES) | 0x08;
    buf[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
    let size = peek_size(buf).unwrap_or(buf.len()).min(buf.len());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES..size]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets `maxTimestamp` (a producer's batch header that disagrees with its records) and
/// re-seals the CRC.
pub fn set_max_timestamp(buf: &mut [u8], max_timestamp: i64) {
    buf[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let size = peek_size(buf).unwrap_or(buf.len()).min(buf.len());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES..size]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A new batch with the header fields of `original` (base offset, last offset delta, epochs,
/// attributes, producer, base timestamp and sequence) around `records` (already compressed with
/// the original's codec), which hold `records_count` records; CRC sealed. The last offset delta
/// stays, as in Kafka's cleaner, so that the batch still ends where the producer's sequence does.
pub fn rebuild(original: &[u8], records: &[u8], records_count: i32, max_timestamp: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + records.len());
    out.extend_from_slice(&original[..HEADER_SIZE]);
    out.extend_from_slice(records);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&records_count.to_be_bytes());
    set_max_timestamp(&mut out, max_timestamp);
    out
}

/// Encodes keyed records (no headers, one timestamp) into one v2 batch starting at offset 0.
pub fn encode_records(
    entries: impl IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
    timestamp: i64,
    compression: Compression,
) -> std::io::Result<BytesMut> {
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant.
            sequence: i as i32,
            timestamp,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(std::io::Error::other)?;
    Ok(buf)
}

/// Splits a produce payload into validated batch headers.
pub fn validate_all(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let header = validate(&buf[at..])?;
        at += header.size;
        headers.push(header);
    }
    if headers.is_empty() {
        return Err(BatchError::Truncated);
    }
    Ok(headers)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a valid uncompressed batch of `count` empty-ish records for tests.
    pub(crate) fn make_batch(count: i32, timestamp: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            // attributes, timestampDelta, offsetDelta, keyLen -1, valueLen 1, value, no headers;
            // varints are zigzag-encoded.
            let body = [0u8, (i * 2) as u8, (i * 2) as u8, 0x01, 2, b'v', 0];
            records.push((body.len() * 2) as u8);
            records.extend_from_slice(&body);
        }
        let mut b = vec![0u8; HEADER_SIZE];
        let len = (HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32;
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[MAGIC] = 2;
        b[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        b[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        let max_timestamp = timestamp + count as i64 - 1;
        b[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&(-1i64).to_be_bytes());
        b[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A valid batch from an idempotent producer.
    pub(crate) fn make_idempotent_batch(
        count: i32,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
    ) -> Vec<u8> {
        let mut b = make_batch(count, 1);
        b[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
        b[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&sequence.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_round_trips() {
        let mut b = make_batch(3, 1000);
        let h = validate(&b).unwrap();
        assert_eq!(
            (h.records_count, h.last_offset_delta, h.size),
            (3, 2, b.len())
        );
        assign_offset(&mut b, 42, 7);
        let h = validate(&b).unwrap();
        assert_eq!((h.base_offset, h.last_offset()), (42, 44));
        set_log_append_time(&mut b, 99);
        let h = validate(&b).unwrap();
        assert_eq!((h.max_timestamp, h.attributes & 0x08), (99, 0x08));
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = make_batch(2, 1);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert_eq!(validate(&b), Err(BatchError::Crc));
        let mut b = make_batch(2, 1);
        b[MAGIC] = 1;
        assert_eq!(validate(&b), Err(BatchError::Magic(1)));
        let b = make_batch(2, 1);
        assert_eq!(validate(&b[..b.len() - 1]), Err(BatchError::Truncated));
        assert_eq!(validate_all(&[]), Err(BatchError::Truncated));
    }

    #[test]
    fn several_batches_split() {
        let mut two = make_batch(1, 1);
        two.extend(make_batch(4, 2));
        let hs = validate_all(&two).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[1].records_count, 4);
    }

    #[test]
    fn counts_records_of_complete_batches_only() {
        let mut buf = Vec::new();
        for count in [3, 4] {
            buf.extend_from_slice(&make_batch(count, 1));
        }
        assert_eq!(count_records(&buf), 7);
        assert_eq!(
            count_records(&buf[..buf.len() - 1]),
            3,
            "a cut batch is not counted"
        );
        assert_eq!(count_records(&[]), 0);
    }
}
