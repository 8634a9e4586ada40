//! Kafka's LogValidator for batches that clients produce: the header must agree with the
//! records (count, offset deltas), only the five codecs Kafka knows, no control batches, valid
//! sequences, timestamps within `message.timestamp.before.max.ms` / `after.max.ms`, and keys on
//! compacted topics. Each record is walked once, streaming (compressed batches through a
//! decompressor capped in output), so memory stays bounded whatever the batch claims.

use std::io::{self, BufRead, BufReader, Read};

use super::batch::{BatchHeader, HEADER_SIZE};

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

const CODEC_MASK: i16 = 0x07;
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
    let codec = header.attributes & CODEC_MASK;
    if codec > 4 {
        return Err(Invalid::Corrupt(format!(
            "Unknown compression type id: {codec}"
        )));
    }
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
    let records = &batch[HEADER_SIZE..header.size];
    let limit = rules.max_uncompressed_bytes;
    let corrupt = |e: io::Error| Invalid::Corrupt(format!("cannot read the records: {e}"));
    match codec {
        0 => walk_records(records, header, rules, now),
        1 => walk_records(
            Capped::new(flate2::read::GzDecoder::new(records), limit),
            header,
            rules,
            now,
        ),
        2 => walk_records(
            Capped::new(SnappyReader::new(records, limit), limit),
            header,
            rules,
            now,
        ),
        3 => walk_records(
            Capped::new(lz4::Decoder::new(records).map_err(corrupt)?, limit),
            header,
            rules,
            now,
        ),
        _ => walk_records(
            Capped::new(
                zstd::stream::read::Decoder::new(records).map_err(corrupt)?,
                limit,
            ),
            header,
            rules,
            now,
        ),
    }
}

/// Reads every record of the batch from `source` and checks it.
fn walk_records(
    source: impl Read,
    header: &BatchHeader,
    rules: &Rules,
    now: i64,
) -> Result<i64, Invalid> {
    let mut reader = BufReader::with_capacity(16 * 1024, source);
    let corrupt = |what: &str| Invalid::Corrupt(format!("corrupt record batch: {what}"));
    // A read error is the record's fault, unless the decompressor hit the cap.
    let field = |what: &'static str| {
        move |e: io::Error| {
            if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
                Invalid::Corrupt(TooLarge.to_string())
            } else {
                Invalid::Corrupt(format!("corrupt record batch: {what}"))
            }
        }
    };
    let mut max_timestamp = -1;
    for index in 0..header.records_count {
        let length = read_varint(&mut reader).map_err(field("record length"))?;
        if length < 0 {
            return Err(corrupt("negative record length"));
        }
        let mut record = Counted::new(&mut reader);
        skip(&mut record, 1).map_err(field("record attributes"))?;
        let timestamp_delta = read_varlong(&mut record).map_err(field("timestamp"))?;
        let offset_delta = read_varint(&mut record).map_err(field("offset delta"))?;
        if offset_delta != index {
            return Err(Invalid::Record(format!(
                "Record {index} in the batch has offset delta {offset_delta}; offsets must be consecutive"
            )));
        }
        let key_length = read_varint(&mut record).map_err(field("key length"))?;
        if key_length < -1 {
            return Err(corrupt("key length"));
        }
        if key_length == -1 && rules.compacted {
            return Err(Invalid::Record(
                "Compacted topic cannot accept message without key".into(),
            ));
        }
        skip(&mut record, key_length.max(0) as u64).map_err(field("key"))?;
        let value_length = read_varint(&mut record).map_err(field("value length"))?;
        if value_length < -1 {
            return Err(corrupt("value length"));
        }
        skip(&mut record, value_length.max(0) as u64).map_err(field("value"))?;
        let headers = read_varint(&mut record).map_err(field("header count"))?;
        if headers < 0 {
            return Err(corrupt("header count"));
        }
        for _ in 0..headers {
            let key = read_varint(&mut record).map_err(field("header key length"))?;
            if key < 0 {
                return Err(corrupt("header key length"));
            }
            skip(&mut record, key as u64).map_err(field("header key"))?;
            let value = read_varint(&mut record).map_err(field("header value length"))?;
            if value < -1 {
                return Err(corrupt("header value length"));
            }
            skip(&mut record, value.max(0) as u64).map_err(field("header value"))?;
            if record.read > length as u64 {
                return Err(corrupt("headers run past the record"));
            }
        }
        if record.read != length as u64 {
            return Err(corrupt("record length does not match its fields"));
        }
        let timestamp = header.base_timestamp.saturating_add(timestamp_delta);
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
    }
    match reader.fill_buf() {
        Ok([]) => Ok(max_timestamp),
        Ok(_) => Err(corrupt("bytes after the last record")),
        Err(e) => Err(field("trailing bytes")(e)),
    }
}

/// Kafka's zigzag varint (32-bit).
fn read_varint(r: &mut impl Read) -> io::Result<i32> {
    let v = read_varlong(r)?;
    i32::try_from(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// Kafka's zigzag varlong (64-bit).
fn read_varlong(r: &mut impl Read) -> io::Result<i64> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let mut byte = [0u8];
        r.read_exact(&mut byte)?;
        if shift == 63 && byte[0] > 1 {
            break;
        }
        raw |= ((byte[0] & 0x7f) as u64) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(io::Error::from(io::ErrorKind::InvalidData))
}

/// Consumes exactly `n` bytes.
fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied == n {
        Ok(())
    } else {
        Err(io::ErrorKind::UnexpectedEof.into())
    }
}

/// Counts what one record's fields read, to compare with its length prefix.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R> Counted<R> {
    fn new(inner: R) -> Self {
        Counted { inner, read: 0 }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A compressed batch expands past the cap.
#[derive(Debug, thiserror::Error)]
#[error("the batch decompresses to more than the broker accepts")]
struct TooLarge;

/// Fails once a decompressor has produced more than `limit` bytes (a decompression bomb).
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R> Capped<R> {
    fn new(inner: R, limit: u64) -> Self {
        Capped { inner, left: limit }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more than allowed tells a full stop from a bomb.
            let mut probe = [0u8];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(TooLarge)),
            };
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Snappy as Kafka's clients write it: xerial framing (a magic header, then blocks each
/// prefixed with its compressed length), or a single raw block without the header.
struct SnappyReader<'a> {
    input: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    at: usize,
    left: u64,
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], limit: u64) -> Self {
        let framed = input.starts_with(XERIAL_MAGIC) && input.len() >= XERIAL_HEADER_LEN;
        SnappyReader {
            input: if framed {
                &input[XERIAL_HEADER_LEN..]
            } else {
                input
            },
            framed,
            block: Vec::new(),
            at: 0,
            left: limit,
        }
    }

    /// Decompresses the next block, refusing one that would pass the limit.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            if self.input.len() < 4 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let len = u32::from_be_bytes(self.input[..4].try_into().expect("4 bytes")) as usize;
            let rest = &self.input[4..];
            if rest.len() < len {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.input = &rest[len..];
            &rest[..len]
        } else {
            std::mem::take(&mut self.input)
        };
        let size = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if size as u64 > self.left {
            return Err(io::Error::other(TooLarge));
        }
        self.left -= size as u64;
        self.block.resize(size, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
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
