//! Kafka's LogValidator for batches that clients produce: the header must agree with the
//! records (count, offset deltas), only the five codecs Kafka knows, no control batches, valid
//! sequences, timestamps within `message.timestamp.before.max.ms` / `after.max.ms`, and keys on
//! compacted topics. Each record is walked once, streaming (`records`), so memory stays
//! bounded whatever the batch claims.

use super::batch::BatchHeader;
use super::records::{self, ReadError};

/// What the checks need to know about the partition and the broker.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps the time, so record
    /// timestamps are not checked.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub after_max_ms: i64,
    /// The most a compressed batch may expand to.
    pub max_uncompressed_bytes: u64,
}

/// Why a batch was refused, by Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// INVALID_RECORD (87).
    #[error("{0}")]
    Record(String),
    /// INVALID_TIMESTAMP (32).
    #[error("{0}")]
    Timestamp(String),
    /// CORRUPT_MESSAGE (2): the bytes do not make records.
    #[error("{0}")]
    Corrupt(String),
}

impl From<ReadError> for Invalid {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Corrupt(what) if what.starts_with("Unknown compression") => {
                Invalid::Corrupt(what)
            }
            other => Invalid::Corrupt(other.to_string()),
        }
    }
}

const TIMESTAMP_TYPE: i16 = 0x08;
const CONTROL: i16 = 0x20;

/// Checks one produced batch (whose header and CRC are already valid); returns the largest
/// record timestamp, which the caller stores when the header claims another.
pub fn check_produced_batch(
    batch: &[u8],
    header: &BatchHeader,
    rules: &Rules,
    now: i64,
) -> Result<i64, Invalid> {
    records::compression(header)?;
    if header.attributes & CONTROL != 0 {
        return Err(Invalid::Record(
            "Clients are not allowed to write control records".into(),
        ));
    }
    if header.attributes & TIMESTAMP_TYPE != 0 {
        return Err(Invalid::Timestamp(
            "Invalid timestamp type in message: producers must not set LogAppendTime".into(),
        ));
    }
    if header.records_count <= 0 {
        return Err(Invalid::Record(format!(
            "Invalid reported count for record batch: {}",
            header.records_count
        )));
    }
    if header.last_offset_delta as i64 + 1 != header.records_count as i64 {
        return Err(Invalid::Record(format!(
            "Inconsistent batch offset range [0, {}] and count of records {}",
            header.last_offset_delta, header.records_count
        )));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(Invalid::Record(format!(
            "Invalid sequence number {} in record batch with producer id {}",
            header.base_sequence, header.producer_id
        )));
    }
    let mut max_timestamp = -1;
    records::for_each_record(
        batch,
        header,
        rules.max_uncompressed_bytes,
        false,
        |index, record| {
            if record.offset_delta != index {
                return Err(Invalid::Record(format!(
                    "Record {index} in the batch has offset delta {}; offsets must be consecutive",
                    record.offset_delta
                )));
            }
            if !record.has_key && rules.compacted {
                return Err(Invalid::Record(
                    "Compacted topic cannot accept message without key".into(),
                ));
            }
            let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
            if !rules.log_append_time && timestamp >= 0 {
                let too_old = now.saturating_sub(timestamp) > rules.before_max_ms;
                let too_new = timestamp.saturating_sub(now) > rules.after_max_ms;
                if too_old || too_new {
                    return Err(Invalid::Timestamp(format!(
                        "Timestamp {timestamp} of message with offset {index} is out of range. The timestamp should be within [{}, {}]",
                        now.saturating_sub(rules.before_max_ms),
                        now.saturating_add(rules.after_max_ms)
                    )));
                }
            }
            max_timestamp = max_timestamp.max(timestamp);
            Ok(())
        },
    )?;
    Ok(max_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::batch::{encode_records, parse_header};
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    const NOW: i64 = 10_000_000;

    fn rules() -> Rules {
        Rules {
            compacted: false,
            log_append_time: false,
            before_max_ms: i64::MAX,
            after_max_ms: 3_600_000,
            max_uncompressed_bytes: 1 << 20,
        }
    }

    fn check(b: &[u8], rules: &Rules) -> Result<i64, Invalid> {
        check_produced_batch(b, &parse_header(b).unwrap(), rules, NOW)
    }

    /// Overwrites header bytes at `at` (the CRC is not checked here).
    fn patch(mut b: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    }

    fn keyed(compression: Compression, keys: &[Option<&str>], timestamp: i64) -> Vec<u8> {
        let entries = keys.iter().map(|k| {
            (
                k.map(|k| Bytes::from(k.to_string())),
                Some(Bytes::from_static(b"value")),
            )
        });
        encode_records(entries, timestamp, compression)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_well_formed_batch_passes_with_its_largest_timestamp() {
        assert_eq!(check(&make_batch(5, 1000), &rules()), Ok(1004));
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = keyed(codec, &[Some("a"), None, Some("c")], NOW - 5);
            assert_eq!(check(&b, &rules()), Ok(NOW - 5), "{codec:?}");
        }
    }

    #[test]
    fn header_lies_are_refused_with_kafkas_codes() {
        let record = |r| matches!(r, Err(Invalid::Record(_)));
        let b = make_batch(3, 1000);
        // records_count 4 while last_offset_delta says 3 records
        assert!(record(check(
            &patch(b.clone(), 57, &4i32.to_be_bytes()),
            &rules()
        )));
        assert!(record(check(
            &patch(b.clone(), 57, &0i32.to_be_bytes()),
            &rules()
        )));
        assert!(matches!(
            check(&patch(b.clone(), 21, &5i16.to_be_bytes()), &rules()),
            Err(Invalid::Corrupt(m)) if m.contains("compression type id: 5")
        ));
        assert!(record(check(
            &patch(b.clone(), 21, &0x20i16.to_be_bytes()),
            &rules()
        )));
        assert!(matches!(
            check(&patch(b.clone(), 21, &0x08i16.to_be_bytes()), &rules()),
            Err(Invalid::Timestamp(_))
        ));
        let idempotent = patch(b.clone(), 43, &7i64.to_be_bytes());
        assert!(record(check(
            &patch(idempotent, 53, &(-1i32).to_be_bytes()),
            &rules()
        )));
    }

    #[test]
    fn record_bodies_must_match_the_header() {
        let b = make_batch(3, 1000);
        let corrupt = |r| matches!(r, Err(Invalid::Corrupt(_)));
        // Records start after the header: [length 14 (zigzag 7), 7 bytes of body] each.
        let first = 61;
        assert!(corrupt(check(&patch(b.clone(), first, &[12]), &rules())));
        // The second record's offset delta says 5 instead of 1.
        assert!(matches!(
            check(&patch(b.clone(), first + 8 + 3, &[10]), &rules()),
            Err(Invalid::Record(_))
        ));
        // The header claims two records; the bytes hold three.
        let two = patch(
            patch(b.clone(), 57, &2i32.to_be_bytes()),
            23,
            &1i32.to_be_bytes(),
        );
        assert!(corrupt(check(&two, &rules())));
        // The header claims four; the bytes hold three.
        let four = patch(patch(b, 57, &4i32.to_be_bytes()), 23, &3i32.to_be_bytes());
        assert!(corrupt(check(&four, &rules())));
    }

    #[test]
    fn timestamps_and_keys_follow_the_topic() {
        let future = keyed(Compression::None, &[Some("a")], NOW + 3_600_001);
        assert!(matches!(
            check(&future, &rules()),
            Err(Invalid::Timestamp(_))
        ));
        let appended = Rules {
            log_append_time: true,
            ..rules()
        };
        assert!(check(&future, &appended).is_ok());
        let old = keyed(Compression::Lz4, &[Some("a")], NOW - 10_000);
        let strict = Rules {
            before_max_ms: 5_000,
            ..rules()
        };
        assert!(matches!(check(&old, &strict), Err(Invalid::Timestamp(_))));
        let unkeyed = keyed(Compression::Gzip, &[Some("a"), None], NOW);
        let compacted = Rules {
            compacted: true,
            ..rules()
        };
        assert!(
            matches!(check(&unkeyed, &compacted), Err(Invalid::Record(m)) if m.contains("without key"))
        );
    }

    #[test]
    fn a_decompression_bomb_is_stopped_at_the_cap() {
        let big = vec![0u8; 4 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encode_records(
                [(
                    Some(Bytes::from_static(b"k")),
                    Some(Bytes::from(big.clone())),
                )],
                NOW,
                codec,
            )
            .unwrap();
            assert!(b.len() < 1 << 20, "{codec:?} compresses zeros well");
            let refused = check(&b, &rules());
            assert!(
                matches!(&refused, Err(Invalid::Corrupt(m)) if m.contains("more than")),
                "{codec:?}: {refused:?}"
            );
            let roomy = Rules {
                max_uncompressed_bytes: 8 << 20,
                ..rules()
            };
            assert!(check(&b, &roomy).is_ok(), "{codec:?}");
        }
    }
}
