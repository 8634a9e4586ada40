//! Reading the records inside a v2 record batch, one at a time and streaming: compressed
//! batches go through a decompressor whose output is capped, and nothing is reserved from the
//! counts a batch claims. Used to check produced batches (`validate`) and to decode stored
//! ones (timestamp lookups, the cleaner, the group loader). The cleaner writes the records it
//! keeps back with [`retain`], byte for byte as they were read.

use std::io::{self, BufRead, BufReader, Read};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, TimestampType};

use super::batch::{self, BatchHeader, HEADER_SIZE};

const CODEC_MASK: i16 = 0x07;
const TIMESTAMP_TYPE: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;
const DELETE_HORIZON: i16 = 0x40;

/// Why the records could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The bytes do not make the records the header announces.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A compressed batch expands past the cap.
    #[error("the batch decompresses to more than the broker accepts")]
    TooLarge,
}

/// One record as stored; `key`, `value` and `headers` are read only when asked for.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Whether the record has a key (even when the key is not read).
    pub has_key: bool,
    /// The key, when read.
    pub key: Option<Bytes>,
    /// The value, when read (`None` is also a tombstone).
    pub value: Option<Bytes>,
    /// Headers, when read.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// The codec of a batch, from its attributes.
pub fn compression(header: &BatchHeader) -> Result<Compression, ReadError> {
    match header.attributes & CODEC_MASK {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Gzip),
        2 => Ok(Compression::Snappy),
        3 => Ok(Compression::Lz4),
        4 => Ok(Compression::Zstd),
        other => Err(ReadError::Corrupt(format!(
            "Unknown compression type id: {other}"
        ))),
    }
}

/// Calls `visit` with each record of `batch` (described by `header`), in order; with
/// `read_bodies` the keys, values and headers are read too. The batch must hold exactly the
/// records its header counts; decompression stops after `limit` bytes.
pub fn for_each_record<E: From<ReadError>>(
    batch: &[u8],
    header: &BatchHeader,
    limit: u64,
    read_bodies: bool,
    visit: impl FnMut(i32, RawRecord) -> Result<(), E>,
) -> Result<(), E> {
    let records = batch
        .get(HEADER_SIZE..header.size)
        .ok_or_else(|| ReadError::Corrupt("batch shorter than its length".into()))?;
    let opening = |e: io::Error| ReadError::Corrupt(format!("cannot decompress: {e}"));
    match compression(header)? {
        Compression::None => walk(records, header, read_bodies, visit),
        Compression::Gzip => walk(
            Capped::new(flate2::read::GzDecoder::new(records), limit),
            header,
            read_bodies,
            visit,
        ),
        Compression::Snappy => walk(
            Capped::new(SnappyReader::new(records, limit), limit),
            header,
            read_bodies,
            visit,
        ),
        Compression::Lz4 => walk(
            Capped::new(lz4::Decoder::new(records).map_err(opening)?, limit),
            header,
            read_bodies,
            visit,
        ),
        Compression::Zstd => walk(
            Capped::new(
                zstd::stream::read::Decoder::new(records).map_err(opening)?,
                limit,
            ),
            header,
            read_bodies,
            visit,
        ),
    }
}

/// Decodes a stored batch into kafka-protocol's records (for re-encoding), with its codec.
pub fn decode_stored_batch(
    batch: &[u8],
    header: &BatchHeader,
    limit: u64,
) -> Result<(Compression, Vec<Record>), ReadError> {
    let log_append_time = header.attributes & TIMESTAMP_TYPE != 0;
    let mut records = Vec::new();
    for_each_record::<ReadError>(batch, header, limit, true, |_, r| {
        let sequence = if header.base_sequence >= 0 {
            header.base_sequence.wrapping_add(r.offset_delta)
        } else {
            -1
        };
        let headers: IndexMap<StrBytes, Option<Bytes>> = r
            .headers
            .into_iter()
            .map(|(k, v)| {
                let key = StrBytes::try_from(k)
                    .map_err(|_| ReadError::Corrupt("header key is not UTF-8".into()))?;
                Ok((key, v))
            })
            .collect::<Result<_, ReadError>>()?;
        records.push(Record {
            transactional: header.attributes & TRANSACTIONAL != 0,
            control: header.attributes & CONTROL != 0,
            delete_horizon: header.attributes & DELETE_HORIZON != 0,
            partition_leader_epoch: header.partition_leader_epoch,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            timestamp_type: if log_append_time {
                TimestampType::LogAppend
            } else {
                TimestampType::Creation
            },
            offset: header.base_offset.wrapping_add(r.offset_delta as i64),
            sequence,
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(r.timestamp_delta)
            },
            key: r.key,
            value: r.value,
            headers,
        });
        Ok(())
    })?;
    Ok((compression(header)?, records))
}

/// What [`retain`] made of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Retained {
    /// Every record is kept: the batch stays as it is.
    All,
    /// No record is kept.
    None,
    /// Some records are kept, in this new batch.
    Some(Vec<u8>),
}

/// The records of the stored `batch` for which `keep(offset, record)` holds, as the cleaner
/// writes them back. A partly kept batch keeps its header fields (base offset and timestamp,
/// leader epoch, attributes, producer id, epoch and base sequence) and each kept record its
/// offset and timestamp deltas, key, value and headers exactly as stored; only the count, the
/// max timestamp (unless LogAppendTime) and the CRC change, and the records are compressed
/// again with the batch's codec. The last offset delta stays, as in Kafka.
pub fn retain(
    batch: &[u8],
    header: &BatchHeader,
    limit: u64,
    mut keep: impl FnMut(i64, &RawRecord) -> bool,
) -> Result<Retained, ReadError> {
    let mut kept = Vec::new();
    let mut total = 0usize;
    for_each_record::<ReadError>(batch, header, limit, true, |_, r| {
        total += 1;
        if keep(header.base_offset.wrapping_add(r.offset_delta as i64), &r) {
            kept.push(r);
        }
        Ok(())
    })?;
    if kept.is_empty() {
        return Ok(Retained::None);
    }
    if kept.len() == total {
        return Ok(Retained::All);
    }
    let max_timestamp = if header.attributes & TIMESTAMP_TYPE != 0 {
        header.max_timestamp
    } else {
        kept.iter()
            .map(|r| header.base_timestamp.saturating_add(r.timestamp_delta))
            .max()
            .unwrap_or(header.max_timestamp)
    };
    let mut records = BytesMut::new();
    let write = |out: &mut BytesMut| {
        for r in &kept {
            write_record(out, r);
        }
        Ok(())
    };
    let compressed = match compression(header)? {
        Compression::None => codec::None::compress(&mut records, write),
        Compression::Gzip => codec::Gzip::compress(&mut records, write),
        Compression::Snappy => codec::Snappy::compress(&mut records, write),
        Compression::Lz4 => codec::Lz4::compress(&mut records, write),
        Compression::Zstd => codec::Zstd::compress(&mut records, write),
    };
    compressed.map_err(|e| ReadError::Corrupt(format!("cannot compress: {e}")))?;
    Ok(Retained::Some(batch::rebuild(
        batch,
        &records,
        kept.len() as i32,
        max_timestamp,
    )))
}

/// One record in the v2 format (attributes are always 0).
fn write_record(out: &mut BytesMut, r: &RawRecord) {
    let mut body = BytesMut::new();
    body.put_u8(0);
    put_varlong(&mut body, r.timestamp_delta);
    put_varlong(&mut body, r.offset_delta.into());
    put_optional(&mut body, r.key.as_deref());
    put_optional(&mut body, r.value.as_deref());
    put_varlong(&mut body, r.headers.len() as i64);
    for (name, value) in &r.headers {
        put_optional(&mut body, Some(name));
        put_optional(&mut body, value.as_deref());
    }
    put_varlong(out, body.len() as i64);
    out.put_slice(&body);
}

fn put_optional(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.put_slice(bytes);
        }
    }
}

/// Kafka's zigzag varint; a value that fits 32 bits takes the same bytes as a varint.
fn put_varlong(out: &mut BytesMut, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

fn walk<E: From<ReadError>>(
    source: impl Read,
    header: &BatchHeader,
    read_bodies: bool,
    mut visit: impl FnMut(i32, RawRecord) -> Result<(), E>,
) -> Result<(), E> {
    let mut reader = BufReader::with_capacity(16 * 1024, source);
    for index in 0..header.records_count {
        let record = read_record(&mut reader, read_bodies)?;
        visit(index, record)?;
    }
    match reader.fill_buf() {
        Ok([]) => Ok(()),
        Ok(_) => Err(ReadError::Corrupt("bytes after the last record".into()).into()),
        Err(e) => Err(field("trailing bytes")(e).into()),
    }
}

/// A read error is the record's fault, unless the decompressor hit the cap.
fn field(what: &'static str) -> impl Fn(io::Error) -> ReadError {
    move |e: io::Error| {
        if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
            ReadError::TooLarge
        } else {
            ReadError::Corrupt(what.to_string())
        }
    }
}

fn read_record(reader: &mut impl Read, read_bodies: bool) -> Result<RawRecord, ReadError> {
    let corrupt = |what: &str| ReadError::Corrupt(what.to_string());
    let length = read_varint(reader).map_err(field("record length"))?;
    if length < 0 {
        return Err(corrupt("negative record length"));
    }
    let mut r = Counted::new(reader);
    skip(&mut r, 1).map_err(field("record attributes"))?;
    let timestamp_delta = read_varlong(&mut r).map_err(field("timestamp"))?;
    let offset_delta = read_varint(&mut r).map_err(field("offset delta"))?;
    let key = read_optional(&mut r, read_bodies, "key")?;
    let value = read_optional(&mut r, read_bodies, "value")?;
    let count = read_varint(&mut r).map_err(field("header count"))?;
    if count < 0 {
        return Err(corrupt("header count"));
    }
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = read_optional(&mut r, read_bodies, "header key")?;
        if !name.present {
            return Err(corrupt("header key length"));
        }
        let value = read_optional(&mut r, read_bodies, "header value")?;
        if r.read > length as u64 {
            return Err(corrupt("headers run past the record"));
        }
        if read_bodies {
            headers.push((name.bytes.unwrap_or_default(), value.bytes));
        }
    }
    if r.read != length as u64 {
        return Err(corrupt("record length does not match its fields"));
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        has_key: key.present,
        key: key.bytes,
        value: value.bytes,
        headers,
    })
}

/// A length-prefixed field: present or null (-1), its bytes when read.
struct Optional {
    present: bool,
    bytes: Option<Bytes>,
}

fn read_optional(r: &mut impl Read, keep: bool, what: &'static str) -> Result<Optional, ReadError> {
    let length = read_varint(r).map_err(field(what))?;
    if length < -1 {
        return Err(ReadError::Corrupt(format!("{what} length")));
    }
    if length == -1 {
        return Ok(Optional {
            present: false,
            bytes: None,
        });
    }
    let length = length as u64;
    if !keep {
        skip(r, length).map_err(field(what))?;
        return Ok(Optional {
            present: true,
            bytes: None,
        });
    }
    // Grows with the bytes actually read, never with the length a record claims.
    let mut bytes = Vec::new();
    let read = r
        .take(length)
        .read_to_end(&mut bytes)
        .map_err(field(what))?;
    if read as u64 != length {
        return Err(ReadError::Corrupt(format!("{what} cut short")));
    }
    Ok(Optional {
        present: true,
        bytes: Some(Bytes::from(bytes)),
    })
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

/// The error a capped decompressor reads when its output passes the cap.
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
    use crate::log::batch::{encode_records, parse_header};
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn retained_records_decode_as_kafka_protocol_decodes_them() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let entries = (0..6).map(|i| {
                (
                    Some(Bytes::from(format!("k{i}"))),
                    (i != 3).then(|| Bytes::from(format!("v{i}"))),
                )
            });
            let mut stored = encode_records(entries, 1_000, codec).unwrap().to_vec();
            batch::assign_offset(&mut stored, 100, 7);
            batch::set_log_append_time(&mut stored, 5_000);
            let header = parse_header(&stored).unwrap();
            let theirs = RecordBatchDecoder::decode(&mut Bytes::from(stored.clone())).unwrap();

            let all = retain(&stored, &header, 1 << 20, |_, _| true).unwrap();
            assert_eq!(all, Retained::All, "{codec:?}");
            let none = retain(&stored, &header, 1 << 20, |_, _| false).unwrap();
            assert_eq!(none, Retained::None, "{codec:?}");

            // Offsets 101, 103 and 104 are kept; the batch still ends at 105, as in Kafka.
            let wanted = [101, 103, 104];
            let Retained::Some(rebuilt) = retain(&stored, &header, 1 << 20, |offset, _| {
                wanted.contains(&offset)
            })
            .unwrap() else {
                panic!("{codec:?}: a partly kept batch");
            };
            let again = batch::validate(&rebuilt).expect("a sealed batch");
            assert_eq!(
                (
                    again.base_offset,
                    again.records_count,
                    again.last_offset_delta
                ),
                (100, 3, 5)
            );
            assert_eq!(again.partition_leader_epoch, 7);
            assert_eq!(
                again.attributes, header.attributes,
                "{codec:?}: codec, LogAppendTime"
            );
            assert_eq!(again.max_timestamp, 5_000);
            let ours = RecordBatchDecoder::decode(&mut Bytes::from(rebuilt)).unwrap();
            assert_eq!(ours.compression, codec);
            let expected: Vec<_> = theirs
                .records
                .iter()
                .filter(|r| wanted.contains(&r.offset))
                .cloned()
                .collect();
            assert_eq!(ours.records, expected, "{codec:?}");
        }
    }

    /// A record's bytes: attributes, timestamp delta, offset delta, key, value, headers.
    fn record_bytes(offset_delta: u8, key: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = vec![0, 0, offset_delta * 2, (key.len() * 2) as u8];
        body.extend_from_slice(key);
        body.extend_from_slice(&[2, b'v', (headers.len() * 2) as u8]);
        for (name, value) in headers {
            body.push((name.len() * 2) as u8);
            body.extend_from_slice(name);
            body.push((value.len() * 2) as u8);
            body.extend_from_slice(value);
        }
        let mut record = vec![(body.len() * 2) as u8];
        record.extend(body);
        record
    }

    #[test]
    fn retained_records_keep_their_bytes_whatever_their_headers() {
        // Header keys that are not UTF-8 and repeated header keys: Kafka keeps both as they are.
        let first = record_bytes(0, b"a", &[]);
        let second = record_bytes(1, b"b", &[(b"\xff\xfe", b"1"), (b"h", b"2"), (b"h", b"3")]);
        let third = record_bytes(2, b"c", &[(b"h", b"4")]);
        let template = encode_records(vec![(None, None); 3], 1_000, Compression::None).unwrap();
        let records = [first, second.clone(), third.clone()].concat();
        let stored = batch::rebuild(&template, &records, 3, 1_000);
        let header = batch::validate(&stored).unwrap();
        let Retained::Some(rebuilt) =
            retain(&stored, &header, 1 << 20, |offset, _| offset > 0).unwrap()
        else {
            panic!("a partly kept batch");
        };
        assert_eq!(&rebuilt[HEADER_SIZE..], [second, third].concat());
        let mut headers = Vec::new();
        let again = batch::validate(&rebuilt).unwrap();
        for_each_record::<ReadError>(&rebuilt, &again, 1 << 20, true, |_, r| {
            headers.extend(r.headers);
            Ok(())
        })
        .unwrap();
        assert_eq!(headers.len(), 4);
        assert_eq!(&headers[0].0[..], b"\xff\xfe");
    }

    #[test]
    fn stored_batches_decode_as_kafka_protocol_decodes_them() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let entries = [
                (
                    Some(Bytes::from_static(b"k1")),
                    Some(Bytes::from_static(b"v1")),
                ),
                (None, Some(Bytes::from_static(b"v2"))),
                (Some(Bytes::from_static(b"k3")), None),
            ];
            let batch = encode_records(entries, 1_000, codec).unwrap();
            let header = parse_header(&batch).unwrap();
            let (compression, ours) = decode_stored_batch(&batch, &header, 1 << 20).unwrap();
            let theirs = RecordBatchDecoder::decode(&mut batch.clone().freeze()).unwrap();
            assert_eq!(compression, theirs.compression, "{codec:?}");
            assert_eq!(ours, theirs.records, "{codec:?}");
        }
    }

    #[test]
    fn a_claimed_count_never_reserves_memory() {
        let batch = encode_records(
            [(None, Some(Bytes::from_static(b"v")))],
            1,
            Compression::None,
        )
        .unwrap()
        .to_vec();
        let mut header = parse_header(&batch).unwrap();
        header.records_count = i32::MAX;
        assert!(matches!(
            decode_stored_batch(&batch, &header, 1 << 20),
            Err(ReadError::Corrupt(_))
        ));
    }
}
