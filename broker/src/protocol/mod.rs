//! Request bodies checked against Kafka's message schemas before `kafka-protocol` decodes them.
//!
//! `kafka-protocol` reserves room for an array's elements as soon as it reads the element count,
//! before it reads a single element: a 100-byte frame that claims 2^31-1 structs asks for tens of
//! gigabytes, and a failed allocation aborts the whole process. So [`check_request_body`] first
//! walks the body the way the schema of that API and version lays it out (from Kafka's own JSON
//! schemas, see [`schemas`]), checking every length and count against the bytes actually left
//! before it moves on. A body that passes holds everything it claims, so decoding it allocates in
//! proportion to the bytes received; a body that does not is refused with the field and offset.
//!
//! The walk reads nothing into memory and allocates only to describe an error. It follows the
//! decoder exactly where they could differ (a nullable struct's presence byte is 1 or -1, a varint
//! has at most 5 bytes and fits a u32, a known tagged field fills exactly its declared size and
//! appears only in versions that have it), so the decoder never reads a layout other than the
//! one checked.
//!
//! The request header needs no walk: `kafka-protocol` reads its client id and tagged fields with
//! bounded reads (`try_get_bytes`), one map entry per tagged field actually present.

// The layout of the tables is the generator's; `scripts/gen-request-schemas --check` keeps it.
#[rustfmt::skip]
pub mod schemas;

use kafka_protocol::messages::ApiKey;

/// Deepest struct nesting walked; Kafka's request schemas nest at most a few levels.
pub const MAX_DEPTH: usize = 16;

/// An inclusive range of versions; empty when the first is above the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions(pub i16, pub i16);

impl Versions {
    /// No version at all.
    pub const NONE: Versions = Versions(0, -1);

    /// Whether `version` is in the range.
    pub const fn contains(self, version: i16) -> bool {
        self.0 <= version && version <= self.1
    }
}

/// A field's type on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// One signed byte.
    Int8,
    /// Two-byte signed integer.
    Int16,
    /// Two-byte unsigned integer.
    UInt16,
    /// Four-byte signed integer.
    Int32,
    /// Eight-byte signed integer.
    Int64,
    /// Eight-byte IEEE 754 double.
    Float64,
    /// One byte, zero for false.
    Bool,
    /// Sixteen bytes.
    Uuid,
    /// Length-prefixed UTF-8: int16 length, or unsigned varint length+1 when flexible.
    String,
    /// Length-prefixed bytes: int32 length, or unsigned varint length+1 when flexible.
    Bytes,
    /// A record batch set, laid out as `Bytes`.
    Records,
    /// A struct with these fields, inline (a presence byte first when nullable).
    Struct(&'static [Field]),
    /// Count-prefixed elements of one type: int32 count, or unsigned varint count+1 when flexible.
    Array(&'static Type),
}

/// One field of a struct.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Kafka's name for the field.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Versions that carry the field.
    pub versions: Versions,
    /// Versions in which it may be null.
    pub nullable: Versions,
    /// Versions in which it is sent as a tagged field rather than in line.
    pub tagged: Versions,
    /// Its tag, meaningful where `tagged` holds.
    pub tag: u32,
}

impl Field {
    /// A non-nullable, untagged field.
    pub const fn new(name: &'static str, ty: Type, versions: Versions) -> Field {
        Field {
            name,
            ty,
            versions,
            nullable: Versions::NONE,
            tagged: Versions::NONE,
            tag: 0,
        }
    }

    /// The same field, nullable in `versions`.
    pub const fn nullable(self, versions: Versions) -> Field {
        Field {
            nullable: versions,
            ..self
        }
    }

    /// The same field, tagged with `tag` in `versions`.
    pub const fn tagged(self, versions: Versions, tag: u32) -> Field {
        Field {
            tagged: versions,
            tag,
            ..self
        }
    }
}

/// The schema of one request.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    /// The API key.
    pub api_key: i16,
    /// Kafka's name for the request.
    pub name: &'static str,
    /// Versions Kafka defines.
    pub valid: Versions,
    /// Versions with compact lengths and tagged fields.
    pub flexible: Versions,
    /// The body's top-level fields.
    pub fields: &'static [Field],
}

/// The schema of `api_key`'s request, if the broker implements the API.
pub fn request_schema(api_key: ApiKey) -> Option<&'static Message> {
    let key = api_key as i16;
    schemas::REQUESTS
        .binary_search_by_key(&key, |m| m.api_key)
        .ok()
        .map(|i| &schemas::REQUESTS[i])
}

/// A request body that does not have the shape its schema gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} at byte {offset}: {reason}")]
pub struct ShapeError {
    /// The field, like `TopicData[0].PartitionData[2].Records`; `body` for the body itself.
    pub path: String,
    /// Offset in the body where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub reason: Reason,
}

/// What is wrong with a request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// The API has no schema here.
    #[error("no schema for API key {0}")]
    UnknownApi(i16),
    /// The version is outside the versions Kafka defines for the API.
    #[error("version {0} is not defined for this API")]
    UnknownVersion(i16),
    /// A value, or the bytes a length announces, run past the end.
    #[error("needs {needed} bytes, {left} left")]
    Truncated {
        /// Bytes the value needs.
        needed: u64,
        /// Bytes left.
        left: usize,
    },
    /// A length or count below -1.
    #[error("length {0} is negative")]
    NegativeLength(i64),
    /// Null (-1, or 0 when compact) where the field is not nullable in this version.
    #[error("null, but the field is not nullable in this version")]
    Null,
    /// An array or tagged-field count that the bytes left cannot hold, one byte each at least.
    #[error("{count} entries cannot fit in the {left} bytes left")]
    TooMany {
        /// The count on the wire.
        count: u64,
        /// Bytes left.
        left: usize,
    },
    /// An unsigned varint longer than 5 bytes or above `u32::MAX`.
    #[error("malformed unsigned varint")]
    BadVarint,
    /// A nullable struct's presence byte other than 1 (present) or -1 (null).
    #[error("struct presence byte {0} is neither 1 nor -1")]
    BadPresence(i8),
    /// A known tagged field whose value does not take exactly its declared size.
    #[error("tagged field {tag} declares {declared} bytes but its value takes {used}")]
    TagSize {
        /// The tag.
        tag: u32,
        /// The size on the wire.
        declared: usize,
        /// Bytes the value took.
        used: usize,
    },
    /// A tag that the struct carries only in other versions.
    #[error("tagged field {0} is not valid in this version")]
    TagVersion(u32),
    /// Structs nested deeper than [`MAX_DEPTH`].
    #[error("structs nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

impl ShapeError {
    fn new(offset: usize, reason: Reason) -> ShapeError {
        ShapeError {
            path: String::new(),
            offset,
            reason,
        }
    }

    /// The error, seen from the struct that holds field `name`.
    fn in_field(mut self, name: &str) -> ShapeError {
        self.path = match self.path.as_bytes().first() {
            None => name.to_string(),
            Some(b'[') => format!("{name}{}", self.path),
            Some(_) => format!("{name}.{}", self.path),
        };
        self
    }

    /// The error, seen from the array that holds element `index`.
    fn in_element(mut self, index: u64) -> ShapeError {
        self.path = match self.path.as_bytes().first() {
            None => format!("[{index}]"),
            Some(b'[') => format!("[{index}]{}", self.path),
            Some(_) => format!("[{index}].{}", self.path),
        };
        self
    }
}

/// Checks that `body` (a request after its header) is laid out as `api_key`'s schema says for
/// `version`: every length and count fits the bytes left, and nulls only where nullable.
/// Bytes after the last field are ignored, as Kafka ignores them (librdkafka 2.16 sends some
/// after a Metadata v12 request).
pub fn check_request_body(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    walk_request_body(api_key, version, body).map(|_| ())
}

/// The check of `check_request_body`, returning how many bytes the fields took.
fn walk_request_body(api_key: ApiKey, version: i16, body: &[u8]) -> Result<usize, ShapeError> {
    let schema = request_schema(api_key)
        .ok_or_else(|| ShapeError::new(0, Reason::UnknownApi(api_key as i16)))?;
    if !schema.valid.contains(version) {
        return Err(ShapeError::new(0, Reason::UnknownVersion(version)));
    }
    let mut walker = Walker {
        buf: body,
        pos: 0,
        base: 0,
        version,
        flexible: schema.flexible.contains(version),
    };
    walker
        .structure(schema.fields, 0)
        .map(|()| walker.pos)
        .map_err(|mut e| {
            if e.path.is_empty() {
                e.path = "body".to_string();
            }
            e
        })
}

/// A cursor over the body, or over one tagged field's value within it.
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the body, for error offsets.
    base: usize,
    version: i16,
    flexible: bool,
}

/// A length or count prefix: `None` is null.
type Length = Option<u64>;

impl<'a> Walker<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn error(&self, reason: Reason) -> ShapeError {
        ShapeError::new(self.base + self.pos, reason)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], ShapeError> {
        let left = self.left();
        if n > left as u64 {
            return Err(self.error(Reason::Truncated { needed: n, left }));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let bytes = self.take(N as u64)?;
        Ok(bytes.try_into().expect("take returns N bytes"))
    }

    fn varint(&mut self) -> Result<u32, ShapeError> {
        let start = self.pos;
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.fixed::<1>()?;
            // The fifth byte holds the top 4 bits; anything more is not a u32, and the decoder
            // would silently drop those bits and read a different length than we checked.
            if i == 4 && b > 0x0f {
                self.pos = start;
                return Err(self.error(Reason::BadVarint));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        unreachable!("the fifth byte has no continuation bit")
    }

    /// A string, bytes or array length: int16 (strings) or int32 when not flexible, unsigned
    /// varint N+1 when flexible; null must be allowed by `nullable`.
    fn length(&mut self, int16: bool, nullable: bool) -> Result<Length, ShapeError> {
        let start = self.pos;
        let raw: i64 = if self.flexible {
            i64::from(self.varint()?) - 1
        } else if int16 {
            i64::from(i16::from_be_bytes(self.fixed()?))
        } else {
            i64::from(i32::from_be_bytes(self.fixed()?))
        };
        let reason = match raw {
            -1 if nullable => return Ok(None),
            -1 => Reason::Null,
            n if n < -1 => Reason::NegativeLength(n),
            n => return Ok(Some(n as u64)),
        };
        self.pos = start;
        Err(self.error(reason))
    }

    /// The fields of one struct, then its tagged fields when flexible.
    fn structure(&mut self, fields: &'static [Field], depth: usize) -> Result<(), ShapeError> {
        if depth > MAX_DEPTH {
            return Err(self.error(Reason::TooDeep));
        }
        for field in fields {
            if !field.versions.contains(self.version) || field.tagged.contains(self.version) {
                continue;
            }
            let nullable = field.nullable.contains(self.version);
            self.value(&field.ty, nullable, depth)
                .map_err(|e| e.in_field(field.name))?;
        }
        if self.flexible {
            self.tagged_fields(fields, depth)?;
        }
        Ok(())
    }

    /// The tagged-field section: a count, then tag, size and value for each.
    fn tagged_fields(&mut self, fields: &'static [Field], depth: usize) -> Result<(), ShapeError> {
        let count = u64::from(self.varint()?);
        self.fits(count)?;
        for _ in 0..count {
            let tag = self.varint()?;
            let size = self.varint()?;
            let start = self.pos;
            let value = self
                .take(u64::from(size))
                .map_err(|e| e.in_field(&format!("<tag {tag}>")))?;
            // An unknown tag is skipped by its size, as the decoder keeps it as raw bytes; a known
            // one is decoded from the stream without regard to the size, so its value must fill
            // exactly that size for the decoder to stay on the layout checked here. A tag known
            // only in other versions is refused, as the decoder does.
            let known = fields
                .iter()
                .find(|f| f.tag == tag && f.tagged != Versions::NONE);
            let Some(field) = known else { continue };
            if !field.tagged.contains(self.version) {
                let reason = Reason::TagVersion(tag);
                return Err(ShapeError::new(self.base + start, reason).in_field(field.name));
            }
            let mut inner = Walker {
                buf: value,
                pos: 0,
                base: self.base + start,
                version: self.version,
                flexible: self.flexible,
            };
            let nullable = field.nullable.contains(self.version);
            inner
                .value(&field.ty, nullable, depth)
                .map_err(|e| e.in_field(field.name))?;
            if inner.pos != value.len() {
                let reason = Reason::TagSize {
                    tag,
                    declared: value.len(),
                    used: inner.pos,
                };
                return Err(ShapeError::new(self.base + start, reason).in_field(field.name));
            }
        }
        Ok(())
    }

    /// Refuses a count of entries that cannot each take a byte of what is left.
    fn fits(&self, count: u64) -> Result<(), ShapeError> {
        let left = self.left();
        if count > left as u64 {
            return Err(self.error(Reason::TooMany { count, left }));
        }
        Ok(())
    }

    fn value(&mut self, ty: &Type, nullable: bool, depth: usize) -> Result<(), ShapeError> {
        match ty {
            Type::Int8 | Type::Bool => self.take(1).map(drop),
            Type::Int16 | Type::UInt16 => self.take(2).map(drop),
            Type::Int32 => self.take(4).map(drop),
            Type::Int64 | Type::Float64 => self.take(8).map(drop),
            Type::Uuid => self.take(16).map(drop),
            Type::String => match self.length(true, nullable)? {
                Some(n) => self.take(n).map(drop),
                None => Ok(()),
            },
            Type::Bytes | Type::Records => match self.length(false, nullable)? {
                Some(n) => self.take(n).map(drop),
                None => Ok(()),
            },
            Type::Struct(fields) => {
                if nullable {
                    let [marker] = self.fixed::<1>()?;
                    match marker as i8 {
                        1 => {}
                        -1 => return Ok(()),
                        other => {
                            self.pos -= 1;
                            return Err(self.error(Reason::BadPresence(other)));
                        }
                    }
                }
                self.structure(fields, depth + 1)
            }
            Type::Array(element) => {
                let Some(count) = self.length(false, nullable)? else {
                    return Ok(());
                };
                self.fits(count)?;
                for i in 0..count {
                    // Elements are never null: Kafka has no nullable array elements.
                    self.value(element, false, depth + 1)
                        .map_err(|e| e.in_element(i))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{StrBytes, VersionRange};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use uuid::Uuid;

    use super::*;
    use crate::api::SUPPORTED_APIS;

    /// Applies `f` only when `cond` holds: fields set only in the versions that carry them, as
    /// kafka-protocol refuses to encode a non-default field a version lacks.
    trait When: Sized {
        fn when(self, cond: bool, f: impl FnOnce(Self) -> Self) -> Self {
            if cond {
                f(self)
            } else {
                self
            }
        }
    }
    impl<T> When for T {}

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    fn topic(name: &str) -> TopicName {
        TopicName(s(name))
    }

    fn group(name: &str) -> GroupId {
        GroupId(s(name))
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 | n)
    }

    /// Unknown tagged fields for a struct, when `version` is flexible (from `flexible`).
    fn tags(version: i16, flexible: i16) -> BTreeMap<i32, Bytes> {
        let mut tags = BTreeMap::new();
        if version >= flexible {
            tags.insert(90, Bytes::from_static(b"unknown"));
            tags.insert(1000, Bytes::new());
        }
        tags
    }

    /// A real record batch: two records, one with a key and headers.
    fn records() -> Bytes {
        let record = |offset: i64, key: Option<&'static [u8]>| {
            let mut r = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: -1,
                timestamp: 1_700_000_000_000 + offset,
                key: key.map(Bytes::from_static),
                value: Some(Bytes::from(vec![b'v'; 100])),
                headers: Default::default(),
            };
            r.headers
                .insert(s("trace"), Some(Bytes::from_static(b"abc")));
            r
        };
        let mut buf = BytesMut::new();
        let batch = [record(0, Some(b"key")), record(1, None)];
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &batch, &options).unwrap();
        buf.freeze()
    }

    // One builder per API: `full` sets every field the version carries, nullable ones to a
    // value, arrays to several elements with nested arrays, and unknown tagged fields when
    // flexible; otherwise nullable fields are null where allowed and arrays mostly empty.

    fn produce(v: i16, full: bool) -> ProduceRequest {
        use kafka_protocol::messages::produce_request::*;
        let partition = |index, records| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(records)
                .with_unknown_tagged_fields(tags(v, 9))
        };
        let topic_data = |name: &str, n| {
            TopicProduceData::default()
                .when(v <= 12, |t| t.with_name(topic(name)))
                .when(v >= 13, |t| t.with_topic_id(id(n)))
                .with_partition_data(vec![
                    partition(0, Some(records())),
                    partition(1, full.then(records)),
                ])
                .with_unknown_tagged_fields(tags(v, 9))
        };
        ProduceRequest::default()
            .with_transactional_id(full.then(|| TransactionalId(s("txn-1"))))
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(if full {
                vec![topic_data("orders", 1), topic_data("payments", 2)]
            } else {
                vec![topic_data("orders", 1)]
            })
            .with_unknown_tagged_fields(tags(v, 9))
    }

    fn fetch(v: i16, full: bool) -> FetchRequest {
        use kafka_protocol::messages::fetch_request::*;
        let partition = |p| {
            FetchPartition::default()
                .with_partition(p)
                .when(v >= 9, |x| x.with_current_leader_epoch(7))
                .with_fetch_offset(1234)
                .when(v >= 12, |x| x.with_last_fetched_epoch(6))
                .when(v >= 5, |x| x.with_log_start_offset(10))
                .with_partition_max_bytes(1 << 20)
                .when(full && v >= 17, |x| x.with_replica_directory_id(id(9)))
                .when(full && v >= 18, |x| x.with_high_watermark(4321))
                .with_unknown_tagged_fields(tags(v, 12))
        };
        let fetch_topic = |name: &str, n| {
            FetchTopic::default()
                .when(v <= 12, |t| t.with_topic(topic(name)))
                .when(v >= 13, |t| t.with_topic_id(id(n)))
                .with_partitions(vec![partition(0), partition(1), partition(2)])
                .with_unknown_tagged_fields(tags(v, 12))
        };
        let forgotten = ForgottenTopic::default()
            .when(v <= 12, |t| t.with_topic(topic("gone")))
            .when(v >= 13, |t| t.with_topic_id(id(3)))
            .with_partitions(vec![0, 5, 9])
            .with_unknown_tagged_fields(tags(v, 12));
        FetchRequest::default()
            .when(full && v >= 12, |r| r.with_cluster_id(Some(s("cluster-a"))))
            .when(full && v <= 14, |r| r.with_replica_id(BrokerId(2)))
            .when(full && v >= 15, |r| {
                r.with_replica_state(
                    ReplicaState::default()
                        .with_replica_id(BrokerId(2))
                        .with_replica_epoch(11)
                        .with_unknown_tagged_fields(tags(v, 12)),
                )
            })
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_isolation_level(1)
            .when(v >= 7, |r| r.with_session_id(77).with_session_epoch(3))
            .with_topics(if full {
                vec![fetch_topic("orders", 1), fetch_topic("payments", 2)]
            } else {
                vec![]
            })
            .when(full && v >= 7, |r| {
                r.with_forgotten_topics_data(vec![forgotten])
            })
            .when(v >= 11, |r| r.with_rack_id(s("rack-1")))
            .with_unknown_tagged_fields(tags(v, 12))
    }

    fn list_offsets(v: i16, full: bool) -> ListOffsetsRequest {
        use kafka_protocol::messages::list_offsets_request::*;
        let partition = |p| {
            ListOffsetsPartition::default()
                .with_partition_index(p)
                .when(v >= 4, |x| x.with_current_leader_epoch(3))
                .with_timestamp(-1)
                .with_unknown_tagged_fields(tags(v, 6))
        };
        let list_topic = ListOffsetsTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![partition(0), partition(1)])
            .with_unknown_tagged_fields(tags(v, 6));
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .when(v >= 2, |r| r.with_isolation_level(1))
            .with_topics(if full { vec![list_topic] } else { vec![] })
            .when(v >= 10, |r| r.with_timeout_ms(1000))
            .with_unknown_tagged_fields(tags(v, 6))
    }

    fn metadata(v: i16, full: bool) -> MetadataRequest {
        use kafka_protocol::messages::metadata_request::*;
        let md_topic = |name: Option<&str>, n| {
            MetadataRequestTopic::default()
                .when(v >= 10, |t| t.with_topic_id(id(n)))
                .with_name(name.map(topic))
                .with_unknown_tagged_fields(tags(v, 9))
        };
        let topics = if full {
            let mut topics = vec![md_topic(Some("orders"), 1), md_topic(Some("payments"), 2)];
            if v >= 10 {
                topics.push(md_topic(None, 3));
            }
            Some(topics)
        } else if v >= 1 {
            None
        } else {
            Some(vec![])
        };
        MetadataRequest::default()
            .with_topics(topics)
            .when(v >= 4, |r| r.with_allow_auto_topic_creation(full))
            .when(full && (8..=10).contains(&v), |r| {
                r.with_include_cluster_authorized_operations(true)
            })
            .when(full && v >= 8, |r| {
                r.with_include_topic_authorized_operations(true)
            })
            .with_unknown_tagged_fields(tags(v, 9))
    }

    fn offset_commit(v: i16, full: bool) -> OffsetCommitRequest {
        use kafka_protocol::messages::offset_commit_request::*;
        let partition = |p, metadata: Option<&str>| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(99)
                .when(v >= 6, |x| x.with_committed_leader_epoch(4))
                .with_committed_metadata(metadata.map(s))
                .with_unknown_tagged_fields(tags(v, 8))
        };
        let commit_topic = OffsetCommitRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![partition(0, Some("meta")), partition(1, None)])
            .with_unknown_tagged_fields(tags(v, 8));
        OffsetCommitRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id_or_member_epoch(5)
            .with_member_id(s("member-1"))
            .when(full && v >= 7, |r| {
                r.with_group_instance_id(Some(s("instance-1")))
            })
            .when(v <= 4, |r| r.with_retention_time_ms(60_000))
            .with_topics(if full { vec![commit_topic] } else { vec![] })
            .with_unknown_tagged_fields(tags(v, 8))
    }

    fn offset_fetch(v: i16, full: bool) -> OffsetFetchRequest {
        use kafka_protocol::messages::offset_fetch_request::*;
        if v >= 8 {
            let topics = OffsetFetchRequestTopics::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![0, 1, 2])
                .with_unknown_tagged_fields(tags(v, 6));
            let group_entry = |name: &str, topics| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(group(name))
                    .when(full && v >= 9, |g| {
                        g.with_member_id(Some(s("member-1"))).with_member_epoch(3)
                    })
                    .with_topics(topics)
                    .with_unknown_tagged_fields(tags(v, 6))
            };
            let groups = if full {
                vec![
                    group_entry("g1", Some(vec![topics])),
                    group_entry("g2", None),
                ]
            } else {
                vec![]
            };
            return OffsetFetchRequest::default()
                .with_groups(groups)
                .with_require_stable(full)
                .with_unknown_tagged_fields(tags(v, 6));
        }
        let fetch_topic = OffsetFetchRequestTopic::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0, 1])
            .with_unknown_tagged_fields(tags(v, 6));
        OffsetFetchRequest::default()
            .with_group_id(group("g1"))
            .with_topics(if full || v < 2 {
                Some(vec![fetch_topic])
            } else {
                None
            })
            .when(full && v >= 7, |r| r.with_require_stable(true))
            .with_unknown_tagged_fields(tags(v, 6))
    }

    fn find_coordinator(v: i16, full: bool) -> FindCoordinatorRequest {
        FindCoordinatorRequest::default()
            .when(v <= 3, |r| r.with_key(s("g1")))
            .when(v >= 1, |r| r.with_key_type(i8::from(full)))
            .when(v >= 4, |r| {
                r.with_coordinator_keys(if full { vec![s("g1"), s("g2")] } else { vec![] })
            })
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn join_group(v: i16, full: bool) -> JoinGroupRequest {
        use kafka_protocol::messages::join_group_request::*;
        let protocol = |name: &str| {
            JoinGroupRequestProtocol::default()
                .with_name(s(name))
                .with_metadata(Bytes::from_static(
                    b"\x00\x01\x00\x00\x00\x01\x00\x06orders",
                ))
                .with_unknown_tagged_fields(tags(v, 6))
        };
        JoinGroupRequest::default()
            .with_group_id(group("g1"))
            .with_session_timeout_ms(45_000)
            .when(v >= 1, |r| r.with_rebalance_timeout_ms(300_000))
            .with_member_id(s(if full { "member-1" } else { "" }))
            .when(full && v >= 5, |r| {
                r.with_group_instance_id(Some(s("instance-1")))
            })
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![protocol("range"), protocol("cooperative-sticky")])
            .when(full && v >= 8, |r| r.with_reason(Some(s("rejoin"))))
            .with_unknown_tagged_fields(tags(v, 6))
    }

    fn heartbeat(v: i16, full: bool) -> HeartbeatRequest {
        HeartbeatRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id(5)
            .with_member_id(s("member-1"))
            .when(full && v >= 3, |r| {
                r.with_group_instance_id(Some(s("instance-1")))
            })
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn leave_group(v: i16, full: bool) -> LeaveGroupRequest {
        use kafka_protocol::messages::leave_group_request::*;
        let member = |name: &str, instance: Option<&str>| {
            MemberIdentity::default()
                .with_member_id(s(name))
                .with_group_instance_id(instance.map(s))
                .when(full && v >= 5, |m| m.with_reason(Some(s("shutdown"))))
                .with_unknown_tagged_fields(tags(v, 4))
        };
        LeaveGroupRequest::default()
            .with_group_id(group("g1"))
            .when(v <= 2, |r| r.with_member_id(s("member-1")))
            .when(v >= 3, |r| {
                r.with_members(if full {
                    vec![member("m1", Some("i1")), member("m2", None)]
                } else {
                    vec![]
                })
            })
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn sync_group(v: i16, full: bool) -> SyncGroupRequest {
        use kafka_protocol::messages::sync_group_request::*;
        let assignment = |member: &str| {
            SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(Bytes::from_static(
                    b"\x00\x01\x00\x00\x00\x01\x00\x06orders",
                ))
                .with_unknown_tagged_fields(tags(v, 4))
        };
        SyncGroupRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id(5)
            .with_member_id(s("member-1"))
            .when(full && v >= 3, |r| {
                r.with_group_instance_id(Some(s("instance-1")))
            })
            .when(full && v >= 5, |r| {
                r.with_protocol_type(Some(s("consumer")))
                    .with_protocol_name(Some(s("range")))
            })
            .with_assignments(if full {
                vec![assignment("m1"), assignment("m2")]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn describe_groups(v: i16, full: bool) -> DescribeGroupsRequest {
        DescribeGroupsRequest::default()
            .with_groups(if full {
                vec![group("g1"), group("g2")]
            } else {
                vec![]
            })
            .when(v >= 3, |r| r.with_include_authorized_operations(full))
            .with_unknown_tagged_fields(tags(v, 5))
    }

    fn list_groups(v: i16, full: bool) -> ListGroupsRequest {
        ListGroupsRequest::default()
            .when(full && v >= 4, |r| {
                r.with_states_filter(vec![s("Stable"), s("Empty")])
            })
            .when(full && v >= 5, |r| r.with_types_filter(vec![s("classic")]))
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn api_versions(v: i16, full: bool) -> ApiVersionsRequest {
        ApiVersionsRequest::default()
            .when(v >= 3, |r| {
                r.with_client_software_name(s(if full { "librdkafka" } else { "" }))
                    .with_client_software_version(s("2.3.0"))
            })
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn create_topics(v: i16, full: bool) -> CreateTopicsRequest {
        use kafka_protocol::messages::create_topics_request::*;
        let assignment = |p, brokers: Vec<i32>| {
            CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                .with_unknown_tagged_fields(tags(v, 5))
        };
        let config = |name: &str, value: Option<&str>| {
            CreatableTopicConfig::default()
                .with_name(s(name))
                .with_value(value.map(s))
                .with_unknown_tagged_fields(tags(v, 5))
        };
        let creatable = |name: &str, assigned: bool| {
            CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(if assigned { -1 } else { 3 })
                .with_replication_factor(if assigned { -1 } else { 1 })
                .with_assignments(if assigned {
                    vec![assignment(0, vec![1, 2]), assignment(1, vec![2, 3])]
                } else {
                    vec![]
                })
                .with_configs(vec![
                    config("cleanup.policy", Some("compact")),
                    config("retention.ms", None),
                ])
                .with_unknown_tagged_fields(tags(v, 5))
        };
        CreateTopicsRequest::default()
            .with_topics(if full {
                vec![creatable("orders", false), creatable("payments", true)]
            } else {
                vec![]
            })
            .with_timeout_ms(30_000)
            .with_validate_only(full)
            .with_unknown_tagged_fields(tags(v, 5))
    }

    fn delete_topics(v: i16, full: bool) -> DeleteTopicsRequest {
        use kafka_protocol::messages::delete_topics_request::*;
        let state = |name: Option<&str>, n| {
            DeleteTopicState::default()
                .with_name(name.map(topic))
                .with_topic_id(id(n))
                .with_unknown_tagged_fields(tags(v, 4))
        };
        DeleteTopicsRequest::default()
            .when(full && v >= 6, |r| {
                r.with_topics(vec![state(Some("orders"), 0), state(None, 1)])
            })
            .when(full && v <= 5, |r| {
                r.with_topic_names(vec![topic("orders"), topic("payments")])
            })
            .with_timeout_ms(30_000)
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn delete_records(v: i16, full: bool) -> DeleteRecordsRequest {
        use kafka_protocol::messages::delete_records_request::*;
        let partition = |p, offset| {
            DeleteRecordsPartition::default()
                .with_partition_index(p)
                .with_offset(offset)
                .with_unknown_tagged_fields(tags(v, 2))
        };
        let records_topic = DeleteRecordsTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![partition(0, 10), partition(1, -1)])
            .with_unknown_tagged_fields(tags(v, 2));
        DeleteRecordsRequest::default()
            .with_topics(if full { vec![records_topic] } else { vec![] })
            .with_timeout_ms(30_000)
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn init_producer_id(v: i16, full: bool) -> InitProducerIdRequest {
        InitProducerIdRequest::default()
            .with_transactional_id(full.then(|| TransactionalId(s("txn-1"))))
            .with_transaction_timeout_ms(60_000)
            .when(full && v >= 3, |r| {
                r.with_producer_id(ProducerId(42)).with_producer_epoch(3)
            })
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn add_partitions_to_txn(v: i16, full: bool) -> AddPartitionsToTxnRequest {
        use kafka_protocol::messages::add_partitions_to_txn_request::*;
        let topics = if full {
            vec![AddPartitionsToTxnTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![0, 3])
                .with_unknown_tagged_fields(tags(v, 3))]
        } else {
            vec![]
        };
        let request = AddPartitionsToTxnRequest::default().with_unknown_tagged_fields(tags(v, 3));
        if v >= 4 {
            return request.with_transactions(vec![AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(s("txn-1")))
                .with_producer_id(ProducerId(42))
                .with_producer_epoch(3)
                .with_verify_only(full)
                .with_topics(topics)
                .with_unknown_tagged_fields(tags(v, 3))]);
        }
        request
            .with_v3_and_below_transactional_id(TransactionalId(s("txn-1")))
            .with_v3_and_below_producer_id(ProducerId(42))
            .with_v3_and_below_producer_epoch(3)
            .with_v3_and_below_topics(topics)
    }

    fn add_offsets_to_txn(v: i16, full: bool) -> AddOffsetsToTxnRequest {
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(if full { "txn-1" } else { "" })))
            .with_producer_id(ProducerId(42))
            .with_producer_epoch(3)
            .with_group_id(group("g1"))
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn end_txn(v: i16, full: bool) -> EndTxnRequest {
        EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s("txn-1")))
            .with_producer_id(ProducerId(42))
            .with_producer_epoch(3)
            .with_committed(full)
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn write_txn_markers(v: i16, full: bool) -> WriteTxnMarkersRequest {
        use kafka_protocol::messages::write_txn_markers_request::*;
        let topics = if full {
            vec![WritableTxnMarkerTopic::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![1, 2])
                .with_unknown_tagged_fields(tags(v, 1))]
        } else {
            vec![]
        };
        WriteTxnMarkersRequest::default()
            .with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(42))
                .with_producer_epoch(3)
                .with_transaction_result(full)
                .with_topics(topics)
                .with_coordinator_epoch(7)
                .with_unknown_tagged_fields(tags(v, 1))])
            .with_unknown_tagged_fields(tags(v, 1))
    }

    fn txn_offset_commit(v: i16, full: bool) -> TxnOffsetCommitRequest {
        use kafka_protocol::messages::txn_offset_commit_request::*;
        let partition = TxnOffsetCommitRequestPartition::default()
            .with_partition_index(2)
            .with_committed_offset(100)
            .when(v >= 2, |p| p.with_committed_leader_epoch(5))
            .with_committed_metadata(full.then(|| s("meta")))
            .with_unknown_tagged_fields(tags(v, 3));
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("txn-1")))
            .with_group_id(group("g1"))
            .with_producer_id(ProducerId(42))
            .with_producer_epoch(3)
            .when(v >= 3, |r| {
                r.with_generation_id(4)
                    .with_member_id(s("member-1"))
                    .with_group_instance_id(full.then(|| s("instance-1")))
            })
            .with_topics(if full {
                vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(vec![partition])
                    .with_unknown_tagged_fields(tags(v, 3))]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 3))
    }

    fn describe_transactions(v: i16, full: bool) -> DescribeTransactionsRequest {
        DescribeTransactionsRequest::default()
            .with_transactional_ids(if full {
                vec![TransactionalId(s("txn-1")), TransactionalId(s("txn-2"))]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn list_transactions(v: i16, full: bool) -> ListTransactionsRequest {
        ListTransactionsRequest::default()
            .with_state_filters(if full { vec![s("Ongoing")] } else { vec![] })
            .with_producer_id_filters(if full { vec![ProducerId(42)] } else { vec![] })
            .when(full && v >= 1, |r| r.with_duration_filter(60_000))
            .when(full && v >= 2, |r| {
                r.with_transactional_id_pattern(Some(s("txn-.*")))
            })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn describe_producers(v: i16, full: bool) -> DescribeProducersRequest {
        use kafka_protocol::messages::describe_producers_request::*;
        DescribeProducersRequest::default()
            .with_topics(if full {
                vec![TopicRequest::default()
                    .with_name(topic("orders"))
                    .with_partition_indexes(vec![0, 1])
                    .with_unknown_tagged_fields(tags(v, 0))]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn describe_configs(v: i16, full: bool) -> DescribeConfigsRequest {
        use kafka_protocol::messages::describe_configs_request::*;
        let resource = |name: &str, keys: Option<Vec<StrBytes>>| {
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_configuration_keys(keys)
                .with_unknown_tagged_fields(tags(v, 4))
        };
        DescribeConfigsRequest::default()
            .with_resources(if full {
                vec![
                    resource("orders", Some(vec![s("retention.ms"), s("cleanup.policy")])),
                    resource("payments", None),
                ]
            } else {
                vec![]
            })
            .with_include_synonyms(full)
            .when(v >= 3, |r| r.with_include_documentation(full))
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn alter_configs(v: i16, full: bool) -> AlterConfigsRequest {
        use kafka_protocol::messages::alter_configs_request::*;
        let config = |name: &str, value: Option<&str>| {
            AlterableConfig::default()
                .with_name(s(name))
                .with_value(value.map(s))
                .with_unknown_tagged_fields(tags(v, 2))
        };
        let resource = AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![
                config("retention.ms", Some("1000")),
                config("x", None),
            ])
            .with_unknown_tagged_fields(tags(v, 2));
        AlterConfigsRequest::default()
            .with_resources(if full { vec![resource] } else { vec![] })
            .with_validate_only(full)
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn create_partitions(v: i16, full: bool) -> CreatePartitionsRequest {
        use kafka_protocol::messages::create_partitions_request::*;
        let assignment = |brokers: [i32; 2]| {
            CreatePartitionsAssignment::default()
                .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
                .with_unknown_tagged_fields(tags(v, 2))
        };
        let partitions_topic = |name: &str, assignments| {
            CreatePartitionsTopic::default()
                .with_name(topic(name))
                .with_count(5)
                .with_assignments(assignments)
                .with_unknown_tagged_fields(tags(v, 2))
        };
        CreatePartitionsRequest::default()
            .with_topics(if full {
                vec![
                    partitions_topic("orders", Some(vec![assignment([1, 2]), assignment([2, 3])])),
                    partitions_topic("payments", None),
                ]
            } else {
                vec![]
            })
            .with_timeout_ms(30_000)
            .with_validate_only(full)
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn delete_groups(v: i16, full: bool) -> DeleteGroupsRequest {
        DeleteGroupsRequest::default()
            .with_groups_names(if full {
                vec![group("g1"), group("g2")]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn offset_delete(_v: i16, full: bool) -> OffsetDeleteRequest {
        use kafka_protocol::messages::offset_delete_request::*;
        let partition = |p| OffsetDeleteRequestPartition::default().with_partition_index(p);
        let delete_topic = OffsetDeleteRequestTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![partition(0), partition(1)]);
        OffsetDeleteRequest::default()
            .with_group_id(group("g1"))
            .with_topics(if full { vec![delete_topic] } else { vec![] })
    }

    fn incremental_alter_configs(v: i16, full: bool) -> IncrementalAlterConfigsRequest {
        use kafka_protocol::messages::incremental_alter_configs_request::*;
        let config = |name: &str, op, value: Option<&str>| {
            AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(op)
                .with_value(value.map(s))
                .with_unknown_tagged_fields(tags(v, 1))
        };
        let resource = AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![
                config("retention.ms", 0, Some("1000")),
                config("cleanup.policy", 1, None),
            ])
            .with_unknown_tagged_fields(tags(v, 1));
        IncrementalAlterConfigsRequest::default()
            .with_resources(if full { vec![resource] } else { vec![] })
            .with_validate_only(full)
            .with_unknown_tagged_fields(tags(v, 1))
    }

    fn describe_cluster(v: i16, full: bool) -> DescribeClusterRequest {
        DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(full)
            .when(v >= 1, |r| r.with_endpoint_type(if full { 2 } else { 1 }))
            .when(v >= 2, |r| r.with_include_fenced_brokers(full))
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn describe_quorum(v: i16, full: bool) -> DescribeQuorumRequest {
        use kafka_protocol::messages::describe_quorum_request::*;
        DescribeQuorumRequest::default()
            .with_topics(if full {
                vec![TopicData::default()
                    .with_topic_name(topic("__cluster_metadata"))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_unknown_tagged_fields(tags(v, 0))])
                    .with_unknown_tagged_fields(tags(v, 0))]
            } else {
                vec![]
            })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn describe_log_dirs(v: i16, full: bool) -> DescribeLogDirsRequest {
        use kafka_protocol::messages::describe_log_dirs_request::*;
        DescribeLogDirsRequest::default()
            .with_topics(full.then(|| {
                vec![DescribableLogDirTopic::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![0, 1])
                    .with_unknown_tagged_fields(tags(v, 2))]
            }))
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn describe_topic_partitions(v: i16, full: bool) -> DescribeTopicPartitionsRequest {
        use kafka_protocol::messages::describe_topic_partitions_request::*;
        DescribeTopicPartitionsRequest::default()
            .with_topics(if full {
                vec![TopicRequest::default()
                    .with_name(topic("orders"))
                    .with_unknown_tagged_fields(tags(v, 0))]
            } else {
                vec![]
            })
            .with_response_partition_limit(100)
            .with_cursor(full.then(|| {
                Cursor::default()
                    .with_topic_name(topic("orders"))
                    .with_partition_index(3)
                    .with_unknown_tagged_fields(tags(v, 0))
            }))
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn offset_for_leader_epoch(v: i16, full: bool) -> OffsetForLeaderEpochRequest {
        use kafka_protocol::messages::offset_for_leader_epoch_request::*;
        let partition = |p| {
            OffsetForLeaderPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(5)
                .with_leader_epoch(4)
                .with_unknown_tagged_fields(tags(v, 4))
        };
        let epoch_topic = OffsetForLeaderTopic::default()
            .with_topic(topic("orders"))
            .with_partitions(vec![partition(0), partition(1)])
            .with_unknown_tagged_fields(tags(v, 4));
        OffsetForLeaderEpochRequest::default()
            .when(full && v >= 3, |r| r.with_replica_id(BrokerId(2)))
            .with_topics(if full { vec![epoch_topic] } else { vec![] })
            .with_unknown_tagged_fields(tags(v, 4))
    }

    fn elect_leaders(v: i16, full: bool) -> ElectLeadersRequest {
        use kafka_protocol::messages::elect_leaders_request::*;
        let partitions = TopicPartitions::default()
            .with_topic(topic("orders"))
            .with_partitions(vec![0, 1, 2])
            .with_unknown_tagged_fields(tags(v, 2));
        ElectLeadersRequest::default()
            .when(v >= 1, |r| r.with_election_type(i8::from(full)))
            .with_topic_partitions(full.then(|| vec![partitions]))
            .with_timeout_ms(30_000)
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn alter_partition_reassignments(v: i16, full: bool) -> AlterPartitionReassignmentsRequest {
        use kafka_protocol::messages::alter_partition_reassignments_request::*;
        let partition = |p, replicas: Option<Vec<i32>>| {
            ReassignablePartition::default()
                .with_partition_index(p)
                .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
                .with_unknown_tagged_fields(tags(v, 0))
        };
        let reassignable = ReassignableTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![partition(0, Some(vec![1, 2, 3])), partition(1, None)])
            .with_unknown_tagged_fields(tags(v, 0));
        AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .when(v >= 1, |r| r.with_allow_replication_factor_change(!full))
            .with_topics(if full { vec![reassignable] } else { vec![] })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn list_partition_reassignments(v: i16, full: bool) -> ListPartitionReassignmentsRequest {
        use kafka_protocol::messages::list_partition_reassignments_request::*;
        let topics = ListPartitionReassignmentsTopics::default()
            .with_name(topic("orders"))
            .with_partition_indexes(vec![0, 1])
            .with_unknown_tagged_fields(tags(v, 0));
        ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(full.then(|| vec![topics]))
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn sasl_handshake(_v: i16, full: bool) -> SaslHandshakeRequest {
        SaslHandshakeRequest::default().with_mechanism(s(if full { "SCRAM-SHA-512" } else { "" }))
    }

    fn sasl_authenticate(v: i16, full: bool) -> SaslAuthenticateRequest {
        SaslAuthenticateRequest::default()
            .with_auth_bytes(if full {
                Bytes::from_static(b"n,,n=alice,r=nonce")
            } else {
                Bytes::new()
            })
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn acl_filter_fields(full: bool) -> (Option<StrBytes>, Option<StrBytes>, Option<StrBytes>) {
        if full {
            (Some(s("orders-")), Some(s("User:alice")), Some(s("*")))
        } else {
            (None, None, None)
        }
    }

    fn describe_acls(v: i16, full: bool) -> DescribeAclsRequest {
        let (name, principal, host) = acl_filter_fields(full);
        DescribeAclsRequest::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(name)
            .with_pattern_type_filter(4)
            .with_principal_filter(principal)
            .with_host_filter(host)
            .with_operation(4)
            .with_permission_type(3)
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn create_acls(v: i16, full: bool) -> CreateAclsRequest {
        use kafka_protocol::messages::create_acls_request::*;
        let creation = AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("orders-"))
            .with_resource_pattern_type(4)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(4)
            .with_permission_type(3)
            .with_unknown_tagged_fields(tags(v, 2));
        CreateAclsRequest::default()
            .with_creations(if full { vec![creation] } else { vec![] })
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn delete_acls(v: i16, full: bool) -> DeleteAclsRequest {
        use kafka_protocol::messages::delete_acls_request::*;
        let (name, principal, host) = acl_filter_fields(full);
        let filter = DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(name)
            .with_pattern_type_filter(1)
            .with_principal_filter(principal)
            .with_host_filter(host)
            .with_operation(1)
            .with_permission_type(1)
            .with_unknown_tagged_fields(tags(v, 2));
        DeleteAclsRequest::default()
            .with_filters(vec![filter])
            .with_unknown_tagged_fields(tags(v, 2))
    }

    fn describe_user_scram_credentials(v: i16, full: bool) -> DescribeUserScramCredentialsRequest {
        use kafka_protocol::messages::describe_user_scram_credentials_request::*;
        let user = UserName::default()
            .with_name(s("alice"))
            .with_unknown_tagged_fields(tags(v, 0));
        DescribeUserScramCredentialsRequest::default()
            .with_users(full.then(|| vec![user]))
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn alter_user_scram_credentials(v: i16, full: bool) -> AlterUserScramCredentialsRequest {
        use kafka_protocol::messages::alter_user_scram_credentials_request::*;
        let deletion = ScramCredentialDeletion::default()
            .with_name(s("bob"))
            .with_mechanism(1)
            .with_unknown_tagged_fields(tags(v, 0));
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(s("alice"))
            .with_mechanism(2)
            .with_iterations(8192)
            .with_salt(Bytes::from_static(b"salt"))
            .with_salted_password(Bytes::from(vec![7u8; 64]))
            .with_unknown_tagged_fields(tags(v, 0));
        AlterUserScramCredentialsRequest::default()
            .with_deletions(if full { vec![deletion] } else { vec![] })
            .with_upsertions(if full { vec![upsertion] } else { vec![] })
            .with_unknown_tagged_fields(tags(v, 0))
    }

    fn describe_client_quotas(v: i16, full: bool) -> DescribeClientQuotasRequest {
        use kafka_protocol::messages::describe_client_quotas_request::*;
        let component = ComponentData::default()
            .with_entity_type(s("user"))
            .with_match_type(0)
            .with_match(Some(s("alice")))
            .with_unknown_tagged_fields(tags(v, 1));
        DescribeClientQuotasRequest::default()
            .with_components(if full { vec![component] } else { vec![] })
            .with_strict(full)
            .with_unknown_tagged_fields(tags(v, 1))
    }

    fn alter_client_quotas(v: i16, full: bool) -> AlterClientQuotasRequest {
        use kafka_protocol::messages::alter_client_quotas_request::*;
        let entity = EntityData::default()
            .with_entity_type(s("client-id"))
            .with_entity_name(full.then(|| s("app")))
            .with_unknown_tagged_fields(tags(v, 1));
        let op = OpData::default()
            .with_key(s("producer_byte_rate"))
            .with_value(1024.0)
            .with_remove(!full)
            .with_unknown_tagged_fields(tags(v, 1));
        let entry = EntryData::default()
            .with_entity(vec![entity])
            .with_ops(vec![op])
            .with_unknown_tagged_fields(tags(v, 1));
        AlterClientQuotasRequest::default()
            .with_entries(if full { vec![entry] } else { vec![] })
            .with_validate_only(!full)
            .with_unknown_tagged_fields(tags(v, 1))
    }

    /// A realistic request of `api` at version `v`, and the versions kafka-protocol encodes.
    fn sample(api: ApiKey, v: i16, full: bool) -> (RequestKind, VersionRange) {
        fn kind<T: kafka_protocol::protocol::Message + Into<RequestKind>>(
            r: T,
        ) -> (RequestKind, VersionRange) {
            (r.into(), T::VERSIONS)
        }
        match api {
            ApiKey::Produce => kind(produce(v, full)),
            ApiKey::Fetch => kind(fetch(v, full)),
            ApiKey::ListOffsets => kind(list_offsets(v, full)),
            ApiKey::Metadata => kind(metadata(v, full)),
            ApiKey::OffsetCommit => kind(offset_commit(v, full)),
            ApiKey::OffsetFetch => kind(offset_fetch(v, full)),
            ApiKey::FindCoordinator => kind(find_coordinator(v, full)),
            ApiKey::JoinGroup => kind(join_group(v, full)),
            ApiKey::Heartbeat => kind(heartbeat(v, full)),
            ApiKey::LeaveGroup => kind(leave_group(v, full)),
            ApiKey::SyncGroup => kind(sync_group(v, full)),
            ApiKey::DescribeGroups => kind(describe_groups(v, full)),
            ApiKey::ListGroups => kind(list_groups(v, full)),
            ApiKey::ApiVersions => kind(api_versions(v, full)),
            ApiKey::CreateTopics => kind(create_topics(v, full)),
            ApiKey::DeleteTopics => kind(delete_topics(v, full)),
            ApiKey::DeleteRecords => kind(delete_records(v, full)),
            ApiKey::InitProducerId => kind(init_producer_id(v, full)),
            ApiKey::AddPartitionsToTxn => kind(add_partitions_to_txn(v, full)),
            ApiKey::AddOffsetsToTxn => kind(add_offsets_to_txn(v, full)),
            ApiKey::EndTxn => kind(end_txn(v, full)),
            ApiKey::WriteTxnMarkers => kind(write_txn_markers(v, full)),
            ApiKey::TxnOffsetCommit => kind(txn_offset_commit(v, full)),
            ApiKey::DescribeTransactions => kind(describe_transactions(v, full)),
            ApiKey::ListTransactions => kind(list_transactions(v, full)),
            ApiKey::DescribeProducers => kind(describe_producers(v, full)),
            ApiKey::DescribeConfigs => kind(describe_configs(v, full)),
            ApiKey::AlterConfigs => kind(alter_configs(v, full)),
            ApiKey::CreatePartitions => kind(create_partitions(v, full)),
            ApiKey::DeleteGroups => kind(delete_groups(v, full)),
            ApiKey::OffsetDelete => kind(offset_delete(v, full)),
            ApiKey::IncrementalAlterConfigs => kind(incremental_alter_configs(v, full)),
            ApiKey::DescribeCluster => kind(describe_cluster(v, full)),
            ApiKey::DescribeLogDirs => kind(describe_log_dirs(v, full)),
            ApiKey::DescribeQuorum => kind(describe_quorum(v, full)),
            ApiKey::DescribeTopicPartitions => kind(describe_topic_partitions(v, full)),
            ApiKey::OffsetForLeaderEpoch => kind(offset_for_leader_epoch(v, full)),
            ApiKey::ElectLeaders => kind(elect_leaders(v, full)),
            ApiKey::AlterPartitionReassignments => kind(alter_partition_reassignments(v, full)),
            ApiKey::ListPartitionReassignments => kind(list_partition_reassignments(v, full)),
            ApiKey::SaslHandshake => kind(sasl_handshake(v, full)),
            ApiKey::SaslAuthenticate => kind(sasl_authenticate(v, full)),
            ApiKey::DescribeAcls => kind(describe_acls(v, full)),
            ApiKey::CreateAcls => kind(create_acls(v, full)),
            ApiKey::DeleteAcls => kind(delete_acls(v, full)),
            ApiKey::DescribeUserScramCredentials => kind(describe_user_scram_credentials(v, full)),
            ApiKey::AlterUserScramCredentials => kind(alter_user_scram_credentials(v, full)),
            ApiKey::DescribeClientQuotas => kind(describe_client_quotas(v, full)),
            ApiKey::AlterClientQuotas => kind(alter_client_quotas(v, full)),
            other => panic!("no sample request for {other:?}: add one with the API"),
        }
    }

    fn encode(request: &RequestKind, v: i16) -> Bytes {
        let mut buf = BytesMut::new();
        request
            .encode(&mut buf, v)
            .unwrap_or_else(|e| panic!("kafka-protocol cannot encode {request:?} v{v}: {e:#}"));
        buf.freeze()
    }

    /// Every supported (API, version) with both samples, encoded by kafka-protocol.
    fn supported_bodies() -> Vec<(ApiKey, i16, Bytes)> {
        let mut bodies = Vec::new();
        for &(api, min, max) in SUPPORTED_APIS {
            for v in min..=max {
                for full in [true, false] {
                    bodies.push((api, v, encode(&sample(api, v, full).0, v)));
                }
            }
        }
        bodies
    }

    /// Walks `body` and, when it passes, checks kafka-protocol decodes it to the same bytes.
    fn accepted(api: ApiKey, v: i16, body: &Bytes) -> Result<(), String> {
        check_request_body(api, v, body).map_err(|e| format!("{api:?} v{v}: {e}"))?;
        let mut rest = body.clone();
        let decoded = RequestKind::decode(api, &mut rest, v)
            .map_err(|e| format!("{api:?} v{v}: checked, but kafka-protocol fails: {e:#}"))?;
        if !rest.is_empty() || encode(&decoded, v) != body {
            return Err(format!("{api:?} v{v}: kafka-protocol reads another layout"));
        }
        Ok(())
    }

    #[test]
    fn every_supported_version_of_every_api_passes_whole() {
        let mut failures = Vec::new();
        let mut walked = 0;
        for (api, v, body) in supported_bodies() {
            walked += 1;
            if let Err(e) = accepted(api, v, &body) {
                failures.push(e);
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // Two samples for each of the versions in SUPPORTED_APIS.
        let versions: i16 = SUPPORTED_APIS
            .iter()
            .map(|(_, min, max)| max - min + 1)
            .sum();
        assert_eq!(walked, 2 * versions as usize);
    }

    /// The schemas cover every version Kafka defines, so versions past the supported range that
    /// kafka-protocol also knows pass too (topic ids, the tagged ReplicaState struct in Fetch).
    #[test]
    fn versions_past_the_supported_range_pass_too() {
        let mut failures = Vec::new();
        for &(api, _, max) in SUPPORTED_APIS {
            let schema = request_schema(api).unwrap();
            let (_, known) = sample(api, max, true);
            for v in max + 1..=schema.valid.1.min(known.max) {
                for full in [true, false] {
                    let body = encode(&sample(api, v, full).0, v);
                    if let Err(e) = accepted(api, v, &body) {
                        failures.push(e);
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_strict_prefix_of_a_valid_body_is_refused() {
        for (api, v, body) in supported_bodies() {
            for cut in 0..body.len() {
                let error = check_request_body(api, v, &body[..cut]);
                assert!(
                    error.is_err(),
                    "{api:?} v{v} cut at {cut} of {}",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn bytes_after_the_last_field_are_ignored_as_kafka_does() {
        for (api, v, body) in supported_bodies() {
            let mut longer = body.to_vec();
            longer.extend_from_slice(&[0, 1, 2]);
            assert!(check_request_body(api, v, &longer).is_ok(), "{api:?} v{v}");
        }
    }

    /// Corrupted bodies: whatever the walk accepts, kafka-protocol decodes without error and
    /// with the same layout, so it never reads a count the walk did not check. (A body that the
    /// walk refuses never reaches the decoder.)
    #[test]
    fn corrupted_bodies_the_walk_accepts_decode_on_the_same_layout() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted_corruptions = 0;
        for (api, v, body) in supported_bodies() {
            for _ in 0..300 {
                let mut bad = body.to_vec();
                let at = random() as usize % (bad.len() + 1);
                let byte = match random() % 5 {
                    0 => 0x00,
                    1 => 0xff,
                    2 => 0x7f,
                    3 => 0x80,
                    _ => random() as u8,
                };
                // Mostly overwrite a byte; sometimes insert or remove one, shifting the rest.
                match random() % 4 {
                    0 => bad.insert(at, byte),
                    1 if at < bad.len() => drop(bad.remove(at)),
                    _ if at < bad.len() => bad[at] = byte,
                    _ => bad.push(byte),
                }
                let bad = Bytes::from(bad);
                let Ok(walked) = walk_request_body(api, v, &bad) else {
                    continue;
                };
                accepted_corruptions += 1;
                let mut rest = bad.clone();
                match RequestKind::decode(api, &mut rest, v) {
                    // Not compared with a re-encoding: a corrupted varint may be non-minimal,
                    // which both read as the same number.
                    Ok(_) => assert_eq!(
                        bad.len() - rest.len(),
                        walked,
                        "{api:?} v{v}: byte {at}: the decoder read another layout"
                    ),
                    // The walk does not check what the decoder checks on bytes already held.
                    Err(e) => {
                        let e = format!("{e:#}");
                        assert!(
                            e.contains("utf-8") || e.contains("UTF-8"),
                            "{api:?} v{v}: {e}"
                        );
                    }
                }
            }
        }
        assert!(accepted_corruptions > 1000, "{accepted_corruptions}");
    }

    /// Frames from hostile clients, each built by hand: a header-less body of the given version.
    struct Frame(Vec<u8>);

    impl Frame {
        fn new() -> Frame {
            Frame(Vec::new())
        }
        fn i8(mut self, n: i8) -> Frame {
            self.0.push(n as u8);
            self
        }
        fn i16(mut self, n: i16) -> Frame {
            self.0.extend(n.to_be_bytes());
            self
        }
        fn i32(mut self, n: i32) -> Frame {
            self.0.extend(n.to_be_bytes());
            self
        }
        fn i64(mut self, n: i64) -> Frame {
            self.0.extend(n.to_be_bytes());
            self
        }
        fn varint(mut self, mut n: u32) -> Frame {
            while n >= 0x80 {
                self.0.push(n as u8 | 0x80);
                n >>= 7;
            }
            self.0.push(n as u8);
            self
        }
        fn raw(mut self, bytes: &[u8]) -> Frame {
            self.0.extend(bytes);
            self
        }
        /// A non-flexible string.
        fn str(self, text: &str) -> Frame {
            self.i16(text.len() as i16).raw(text.as_bytes())
        }
        /// A compact string.
        fn cstr(self, text: &str) -> Frame {
            self.varint(text.len() as u32 + 1).raw(text.as_bytes())
        }
    }

    /// Refused quickly, with `reason` at `path`.
    #[track_caller]
    fn refused(api: ApiKey, v: i16, frame: Frame, path: &str, reason: Reason) {
        let started = Instant::now();
        let error = check_request_body(api, v, &frame.0).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (error.path.as_str(), &error.reason),
            (path, &reason),
            "{error}"
        );
    }

    fn too_many(count: u64, left: usize) -> Reason {
        Reason::TooMany { count, left }
    }

    #[test]
    fn huge_array_counts_are_refused_at_every_depth() {
        let max = i32::MAX as u64;
        // Produce v3: transactional id, acks, timeout, then topic_data.
        let produce = || Frame::new().i16(-1).i16(-1).i32(30_000);
        refused(
            ApiKey::Produce,
            3,
            produce().i32(i32::MAX),
            "TopicData",
            too_many(max, 0),
        );
        let partitions = produce().i32(1).str("orders").i32(i32::MAX).raw(&[0; 64]);
        let path = "TopicData[0].PartitionData";
        refused(ApiKey::Produce, 3, partitions, path, too_many(max, 64));
        // Produce v9: compact counts up to u32::MAX - 1.
        let compact = || Frame::new().varint(0).i16(1).i32(30_000);
        let huge = u32::MAX;
        let f = compact().varint(huge);
        refused(
            ApiKey::Produce,
            9,
            f,
            "TopicData",
            too_many(u64::from(huge - 1), 0),
        );
        let f = compact()
            .varint(2)
            .cstr("orders")
            .varint(huge)
            .raw(&[1; 10]);
        let path = "TopicData[0].PartitionData";
        refused(
            ApiKey::Produce,
            9,
            f,
            path,
            too_many(u64::from(huge - 1), 10),
        );

        // Metadata: v1 int32, v9 compact.
        refused(
            ApiKey::Metadata,
            1,
            Frame::new().i32(i32::MAX),
            "Topics",
            too_many(max, 0),
        );
        let f = Frame::new().varint(huge).i8(1).i8(0);
        refused(
            ApiKey::Metadata,
            9,
            f,
            "Topics",
            too_many(u64::from(huge - 1), 2),
        );

        // Fetch v4 topics -> partitions.
        let fetch = || Frame::new().i32(-1).i32(500).i32(1).i32(1 << 20).i8(0);
        refused(
            ApiKey::Fetch,
            4,
            fetch().i32(i32::MAX),
            "Topics",
            too_many(max, 0),
        );
        let f = fetch().i32(1).str("orders").i32(i32::MAX).i64(0);
        refused(
            ApiKey::Fetch,
            4,
            f,
            "Topics[0].Partitions",
            too_many(max, 8),
        );
        // Fetch v7 forgotten topics -> partitions ([]int32).
        let f = Frame::new()
            .i32(-1)
            .i32(500)
            .i32(1)
            .i32(1 << 20)
            .i8(0)
            .i32(0)
            .i32(-1);
        let f = f.i32(0).i32(1).str("gone").i32(i32::MAX).raw(b"rack");
        let path = "ForgottenTopicsData[0].Partitions";
        refused(ApiKey::Fetch, 7, f, path, too_many(max, 4));

        // JoinGroup v0 and v6 protocols.
        let join = || Frame::new().str("g1").i32(45_000).str("").str("consumer");
        refused(
            ApiKey::JoinGroup,
            0,
            join().i32(i32::MAX),
            "Protocols",
            too_many(max, 0),
        );
        let f = Frame::new()
            .cstr("g1")
            .i32(45_000)
            .i32(300_000)
            .cstr("")
            .varint(0);
        let f = f.cstr("consumer").varint(huge);
        refused(
            ApiKey::JoinGroup,
            6,
            f,
            "Protocols",
            too_many(u64::from(huge - 1), 0),
        );

        // CreateTopics v2 and v5 topics -> configs.
        let topic = |f: Frame| f.str("orders").i32(3).i16(1).i32(0);
        let f = topic(Frame::new().i32(1)).i32(i32::MAX).i32(30_000).i8(0);
        refused(
            ApiKey::CreateTopics,
            2,
            f,
            "Topics[0].Configs",
            too_many(max, 5),
        );
        let f = Frame::new()
            .varint(2)
            .cstr("orders")
            .i32(3)
            .i16(1)
            .varint(1)
            .varint(huge);
        let path = "Topics[0].Configs";
        refused(
            ApiKey::CreateTopics,
            5,
            f,
            path,
            too_many(u64::from(huge - 1), 0),
        );
        // ... and -> assignments -> broker ids.
        let f = Frame::new()
            .i32(1)
            .str("orders")
            .i32(-1)
            .i16(-1)
            .i32(1)
            .i32(0);
        let f = f.i32(i32::MAX).i32(7);
        let path = "Topics[0].Assignments[0].BrokerIds";
        refused(ApiKey::CreateTopics, 2, f, path, too_many(max, 4));
    }

    #[test]
    fn lengths_past_the_end_or_negative_are_refused() {
        // A topic name longer than the body.
        let f = Frame::new()
            .i16(-1)
            .i16(1)
            .i32(0)
            .i32(1)
            .i16(i16::MAX)
            .raw(b"orders");
        let reason = Reason::Truncated {
            needed: i16::MAX as u64,
            left: 6,
        };
        refused(ApiKey::Produce, 3, f, "TopicData[0].Name", reason);
        // Records whose length runs past the end.
        let f = Frame::new()
            .i16(-1)
            .i16(1)
            .i32(0)
            .i32(1)
            .str("t")
            .i32(1)
            .i32(0);
        let f = f.i32(i32::MAX).raw(&[0; 61]);
        let reason = Reason::Truncated {
            needed: i32::MAX as u64,
            left: 61,
        };
        refused(
            ApiKey::Produce,
            3,
            f,
            "TopicData[0].PartitionData[0].Records",
            reason,
        );
        // A compact string length of u32::MAX - 1 bytes.
        let f = Frame::new().varint(u32::MAX).raw(b"librdkafka");
        let reason = Reason::Truncated {
            needed: u64::from(u32::MAX - 1),
            left: 10,
        };
        refused(ApiKey::ApiVersions, 3, f, "ClientSoftwareName", reason);
        // Null where not nullable, and below -1.
        let join = |len: i16| {
            Frame::new()
                .i16(len)
                .i32(45_000)
                .str("")
                .str("consumer")
                .i32(0)
        };
        refused(ApiKey::JoinGroup, 0, join(-1), "GroupId", Reason::Null);
        let reason = Reason::NegativeLength(-2);
        refused(ApiKey::JoinGroup, 0, join(-2), "GroupId", reason);
        let protocol = Frame::new()
            .str("g1")
            .i32(45_000)
            .str("")
            .str("consumer")
            .i32(1);
        let f = protocol.str("range").i32(-7);
        let reason = Reason::NegativeLength(-7);
        refused(ApiKey::JoinGroup, 0, f, "Protocols[0].Metadata", reason);
        // Metadata v0 topics are not nullable; v1 ones are.
        refused(
            ApiKey::Metadata,
            0,
            Frame::new().i32(-1),
            "Topics",
            Reason::Null,
        );
        assert_eq!(
            check_request_body(ApiKey::Metadata, 1, &Frame::new().i32(-1).0),
            Ok(())
        );
        // Negative array counts.
        let reason = Reason::NegativeLength(i32::MIN as i64);
        refused(
            ApiKey::Metadata,
            1,
            Frame::new().i32(i32::MIN),
            "Topics",
            reason,
        );
    }

    #[test]
    fn tagged_fields_are_bounded_and_known_ones_fill_their_size() {
        let api_versions = || Frame::new().cstr("librdkafka").cstr("2.3.0");
        // A tagged-field count the body cannot hold.
        let f = api_versions().varint(u32::MAX);
        refused(
            ApiKey::ApiVersions,
            3,
            f,
            "body",
            too_many(u32::MAX as u64, 0),
        );
        // A tagged field whose size runs past the end.
        let f = api_versions()
            .varint(1)
            .varint(5)
            .varint(1 << 30)
            .raw(b"abc");
        let reason = Reason::Truncated {
            needed: 1 << 30,
            left: 3,
        };
        refused(ApiKey::ApiVersions, 3, f, "<tag 5>", reason);
        // Unknown tags are skipped by their size.
        let f = api_versions().varint(2).varint(5).varint(3).raw(b"abc");
        let f = f.varint(6).varint(0);
        assert_eq!(check_request_body(ApiKey::ApiVersions, 3, &f.0), Ok(()));

        // Fetch v12's ClusterId (tag 0) must fill its size exactly, as the decoder ignores it.
        let fetch = || {
            Frame::new()
                .i32(-1)
                .i32(500)
                .i32(1)
                .i32(1 << 20)
                .i8(0)
                .i32(0)
                .i32(-1)
                .varint(1)
                .varint(1)
                .cstr("")
        };
        let f = fetch().varint(1).varint(0).varint(4).cstr("abc");
        assert_eq!(check_request_body(ApiKey::Fetch, 12, &f.0), Ok(()));
        let f = fetch().varint(1).varint(0).varint(5).cstr("abc").i8(0);
        let reason = Reason::TagSize {
            tag: 0,
            declared: 5,
            used: 4,
        };
        refused(ApiKey::Fetch, 12, f, "ClusterId", reason);
        // Its value is checked too: a string length past the tag's size.
        let f = fetch().varint(1).varint(0).varint(2).varint(100).i8(0);
        let reason = Reason::Truncated {
            needed: 99,
            left: 1,
        };
        refused(ApiKey::Fetch, 12, f, "ClusterId", reason);
        // Fetch v15's ReplicaState (tag 1) is a struct walked inside the tag.
        let fetch15 = || {
            Frame::new()
                .i32(500)
                .i32(1)
                .i32(1 << 20)
                .i8(0)
                .i32(0)
                .i32(-1)
                .varint(1)
                .varint(1)
                .cstr("")
        };
        let state = Frame::new().i32(2).i64(11).varint(0).0;
        let f = fetch15().varint(1).varint(1).varint(13).raw(&state);
        assert_eq!(check_request_body(ApiKey::Fetch, 15, &f.0), Ok(()));
        let f = fetch15()
            .varint(1)
            .varint(1)
            .varint(13)
            .raw(&state[..12])
            .varint(9);
        let reason = Reason::TooMany { count: 9, left: 0 };
        refused(ApiKey::Fetch, 15, f, "ReplicaState", reason);

        // A Fetch v15+ body with one topic (by id) and one partition with the given tags.
        let partition_tags = |tags: Frame| {
            let f = Frame::new()
                .i32(500)
                .i32(1)
                .i32(1 << 20)
                .i8(0)
                .i32(0)
                .i32(-1);
            let f = f.varint(2).raw(id(1).as_bytes()).varint(2);
            let f = f
                .i32(0)
                .i32(-1)
                .i64(0)
                .i32(-1)
                .i64(-1)
                .i32(1 << 20)
                .raw(&tags.0);
            f.varint(0).varint(1).cstr("").varint(0)
        };
        let unknown = partition_tags(Frame::new().varint(1).varint(7).varint(2).raw(b"xy"));
        assert_eq!(check_request_body(ApiKey::Fetch, 15, &unknown.0), Ok(()));
        let directory = || {
            Frame::new()
                .varint(1)
                .varint(0)
                .varint(16)
                .raw(id(2).as_bytes())
        };
        assert_eq!(
            check_request_body(ApiKey::Fetch, 17, &partition_tags(directory()).0),
            Ok(())
        );
        // Tag 0 (ReplicaDirectoryId) exists from v17 and tag 1 (HighWatermark) from v18 only.
        let path = "Topics[0].Partitions[0].ReplicaDirectoryId";
        refused(
            ApiKey::Fetch,
            16,
            partition_tags(directory()),
            path,
            Reason::TagVersion(0),
        );
        let f = partition_tags(Frame::new().varint(1).varint(1).varint(8).i64(5));
        let path = "Topics[0].Partitions[0].HighWatermark";
        refused(ApiKey::Fetch, 17, f, path, Reason::TagVersion(1));
    }

    #[test]
    fn malformed_varints_are_refused() {
        // Six bytes, and five whose last carries bits above u32.
        let f = Frame::new().raw(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        refused(
            ApiKey::ApiVersions,
            3,
            f,
            "ClientSoftwareName",
            Reason::BadVarint,
        );
        let f = Frame::new().raw(&[0x80, 0x80, 0x80, 0x80, 0x10]);
        refused(
            ApiKey::ApiVersions,
            3,
            f,
            "ClientSoftwareName",
            Reason::BadVarint,
        );
        // A varint cut short.
        let f = Frame::new().raw(&[0x80, 0x80]);
        let reason = Reason::Truncated { needed: 1, left: 0 };
        refused(ApiKey::ApiVersions, 3, f, "ClientSoftwareName", reason);
    }

    #[test]
    fn error_says_where() {
        let f = Frame::new()
            .i16(-1)
            .i16(1)
            .i32(0)
            .i32(1)
            .str("t")
            .i32(1)
            .i32(0)
            .i32(9);
        let error = check_request_body(ApiKey::Produce, 3, &f.0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TopicData[0].PartitionData[0].Records at byte 27: needs 9 bytes, 0 left"
        );
        let error = check_request_body(ApiKey::Produce, 2, &[]).unwrap_err();
        assert_eq!(error.reason, Reason::UnknownVersion(2));
        let error = check_request_body(ApiKey::ExpireDelegationToken, 1, &[]).unwrap_err();
        assert_eq!(error.reason, Reason::UnknownApi(40));
    }

    #[test]
    fn every_supported_api_has_its_schema_and_versions() {
        assert!(schemas::REQUESTS
            .windows(2)
            .all(|w| w[0].api_key < w[1].api_key));
        for &(api, min, max) in SUPPORTED_APIS {
            let schema = request_schema(api).unwrap_or_else(|| panic!("no schema for {api:?}"));
            assert_eq!(schema.name, format!("{api:?}Request"));
            assert!(
                schema.valid.contains(min) && schema.valid.contains(max),
                "{api:?}"
            );
        }
        assert_eq!(schemas::REQUESTS.len(), SUPPORTED_APIS.len());
    }

    /// The count check assumes each array element takes at least a byte, so a count the bytes
    /// left allow is also a walk of at most that many steps: true of every schema and version.
    #[test]
    fn every_array_element_takes_at_least_a_byte() {
        fn min_size(ty: &Type, nullable: bool, v: i16, flexible: bool) -> usize {
            match ty {
                Type::Int8 | Type::Bool => 1,
                Type::Int16 | Type::UInt16 => 2,
                Type::Int32 => 4,
                Type::Int64 | Type::Float64 => 8,
                Type::Uuid => 16,
                Type::String if flexible => 1,
                Type::String => 2,
                Type::Bytes | Type::Records | Type::Array(_) if flexible => 1,
                Type::Bytes | Type::Records | Type::Array(_) => 4,
                Type::Struct(_) if nullable => 1,
                Type::Struct(fields) => {
                    let inline = fields
                        .iter()
                        .filter(|f| f.versions.contains(v) && !f.tagged.contains(v))
                        .map(|f| min_size(&f.ty, f.nullable.contains(v), v, flexible));
                    inline.sum::<usize>() + usize::from(flexible)
                }
            }
        }
        fn arrays(fields: &[Field], v: i16, flexible: bool, path: &str) {
            for f in fields.iter().filter(|f| f.versions.contains(v)) {
                let path = format!("{path}.{}", f.name);
                let (element, nested) = match f.ty {
                    Type::Array(element) => (Some(element), element),
                    ref other => (None, other),
                };
                if let Some(element) = element {
                    let size = min_size(element, false, v, flexible);
                    assert!(size >= 1, "{path} v{v}: elements of {size} bytes");
                }
                if let Type::Struct(inner) = nested {
                    arrays(inner, v, flexible, &path);
                }
            }
        }
        for schema in schemas::REQUESTS {
            for v in schema.valid.0..=schema.valid.1 {
                arrays(schema.fields, v, schema.flexible.contains(v), schema.name);
            }
        }
    }

    #[test]
    fn schemas_nest_well_within_the_depth_limit() {
        fn depth(fields: &[Field]) -> usize {
            let nested = |ty: &Type| match ty {
                Type::Struct(f) => depth(f),
                Type::Array(Type::Struct(f)) => depth(f),
                _ => 0,
            };
            1 + fields.iter().map(|f| nested(&f.ty)).max().unwrap_or(0)
        }
        for schema in schemas::REQUESTS {
            assert!(depth(schema.fields) * 2 <= MAX_DEPTH, "{}", schema.name);
        }
    }
}
