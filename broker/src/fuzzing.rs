//! The bodies of the fuzz targets in `fuzz/`, here so that the corpus replay test
//! (`tests/fuzz_corpus.rs`) runs every input through exactly what the fuzzer runs, without
//! cargo-fuzz. Each function takes raw bytes and feeds them to the functions the broker itself
//! uses on bytes from clients, from the disk, from the Raft log or from other nodes, never to
//! copies of them. Every function must return for any input: a panic or an abort is a bug.
//!
//! | target | input | what runs |
//! |---|---|---|
//! | [`request_frame`] | a request frame (after its size prefix) | [`network::decode_request`] |
//! | [`Dispatcher::dispatch`] | the same | [`network::process`] on a running broker |
//! | [`record_batch`] | a produce partition's `records` | `log::batch`, `log::validate`, stored-batch readers |
//! | [`metadata_records`] | JSON lines of [`MetadataRecord`] | `validate` and `MetadataImage::apply` in order |
//! | [`controller_frame`] | a controller-listener frame body | `metadata::rpc::decode_frame` |

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::api::Context;
use crate::config::BrokerConfig;
use crate::log::batch::{self, BatchHeader};
use crate::log::records::{self, ReadError, Retained};
use crate::log::validate::{check_produced_batch, Rules};
use crate::metadata::image::{MetadataImage, MetadataRecord};
use crate::metadata::rpc::{self, Request, Response};
use crate::network::{self, FrameError, Outgoing};
use crate::security::principal::Principal;
use crate::security::session::Session;
use crate::security::ListenerSecurity;
use crate::server::Server;

/// Decodes a request frame as a connection does before dispatching it.
pub fn request_frame(data: &[u8]) {
    let _ = network::decode_request(Bytes::copy_from_slice(data));
}

/// A fixed clock for the timestamp checks, so an input always takes the same path: far enough
/// ahead that records recorded from real clients are not "in the future".
const NOW: i64 = 2_000_000_000_000;

/// The partitions a produced batch is checked for: defaults (with a smaller decompression cap
/// than `socket.request.max.bytes`), compacted topics with LogAppendTime and with CreateTime,
/// and strict timestamps.
const RULES: [Rules; 4] = [
    Rules {
        compacted: false,
        log_append_time: false,
        before_max_ms: i64::MAX,
        after_max_ms: 3_600_000,
        max_uncompressed_bytes: 1 << 20,
    },
    Rules {
        compacted: true,
        log_append_time: true,
        before_max_ms: i64::MAX,
        after_max_ms: 3_600_000,
        max_uncompressed_bytes: 64 << 10,
    },
    Rules {
        compacted: true,
        log_append_time: false,
        before_max_ms: i64::MAX,
        after_max_ms: 3_600_000,
        max_uncompressed_bytes: 1 << 20,
    },
    Rules {
        compacted: false,
        log_append_time: false,
        before_max_ms: 86_400_000,
        after_max_ms: 0,
        max_uncompressed_bytes: 1 << 20,
    },
];

/// The record-batch path of a produce, then what reads the batch once it is stored.
///
/// The input is checked as it is, then once more with every batch's CRC resealed, so that the
/// fuzzer reaches the record checks behind the CRC.
pub fn record_batch(data: &[u8]) {
    produced(data);
    let mut sealed = data.to_vec();
    let mut at = 0;
    while let Ok(header) = batch::parse_header_only(&sealed[at..]) {
        let Some(end) = at
            .checked_add(header.size)
            .filter(|end| *end <= sealed.len())
        else {
            break;
        };
        // Rewriting the max timestamp with its own value re-seals the CRC.
        batch::set_max_timestamp(&mut sealed[at..end], header.max_timestamp);
        at = end;
    }
    if sealed != data {
        produced(&sealed);
    }
}

/// What `api::produce` does with one partition's records, for each of [`RULES`].
fn produced(data: &[u8]) {
    let _ = batch::count_records(data);
    let _ = batch::peek_size(data);
    let _ = batch::parse_header(data);
    let Ok(headers) = batch::validate_all(data) else {
        return;
    };
    let mut at = 0;
    for header in headers {
        let one = &data[at..at + header.size];
        at += header.size;
        assert_eq!(batch::validate(one), Ok(header), "a batch validates alone");
        // A follower appends what its leader sent after `validate_all` only.
        stored_readers(one, None);
        for rules in &RULES {
            if let Ok(max_timestamp) = check_produced_batch(one, &header, rules, NOW) {
                stored(one, &header, rules, max_timestamp);
            }
        }
    }
}

/// The batch as the log stores it (the producer's max timestamp corrected, or LogAppendTime,
/// then the offset and leader epoch), read back by the readers of stored batches.
fn stored(batch_bytes: &[u8], header: &BatchHeader, rules: &Rules, max_timestamp: i64) {
    let mut stored = batch_bytes.to_vec();
    if rules.log_append_time {
        batch::set_log_append_time(&mut stored, NOW);
    } else if max_timestamp != header.max_timestamp {
        batch::set_max_timestamp(&mut stored, max_timestamp);
    }
    batch::assign_offset(&mut stored, 1_000, 7);
    let stored_header =
        batch::validate(&stored).expect("a produced batch the broker rewrote still validates");
    assert_eq!(stored_header.records_count, header.records_count);
    stored_readers(&stored, Some(rules));
}

/// The readers of stored batches: a timestamp lookup walks the records, the group loader
/// decodes them, and the cleaner writes back the ones it keeps. A batch that passed the produce
/// checks (`rules`) must read back whole, and what the cleaner keeps of it must read back as it
/// was stored.
fn stored_readers(stored: &[u8], rules: Option<&Rules>) {
    let Ok(header) = batch::parse_header(stored) else {
        return;
    };
    let cap = rules.map_or(1 << 20, |r| r.max_uncompressed_bytes);
    let mut raw = Vec::new();
    let walk = records::for_each_record::<ReadError>(stored, &header, cap, true, |index, r| {
        assert_eq!(index as usize, raw.len(), "records are visited in order");
        raw.push(r);
        Ok(())
    });
    let decoded = records::decode_stored_batch(stored, &header, cap);
    let every_other = records::retain(stored, &header, cap, |offset, _| offset % 2 == 0);
    let Some(_) = rules else {
        return;
    };
    walk.expect("a batch that passed the produce checks can be walked");
    assert_eq!(raw.len(), header.records_count as usize);
    if raw.iter().all(fits_kafka_protocol) {
        let (_, decoded) = decoded.expect("a batch that passed the produce checks decodes");
        assert_eq!(decoded.len(), raw.len());
        for (index, (record, raw)) in decoded.iter().zip(&raw).enumerate() {
            assert_eq!(record.offset, header.base_offset + index as i64);
            assert_eq!((&record.key, &record.value), (&raw.key, &raw.value));
            assert_eq!(record.headers.len(), raw.headers.len());
        }
    }
    let cleaned = |keep: fn(i64) -> bool| {
        records::retain(stored, &header, cap, |offset, _| keep(offset))
            .expect("the cleaner reads a produced batch")
    };
    assert_eq!(cleaned(|_| true), Retained::All);
    assert_eq!(cleaned(|_| false), Retained::None);
    let wanted: Vec<&records::RawRecord> = raw
        .iter()
        .filter(|r| (header.base_offset + r.offset_delta as i64) % 2 == 0)
        .collect();
    match every_other.expect("the cleaner reads a produced batch") {
        Retained::All => assert_eq!(wanted.len(), raw.len()),
        Retained::None => assert!(wanted.is_empty()),
        Retained::Some(rebuilt) => {
            let again = batch::validate(&rebuilt).expect("the cleaner's batch validates");
            assert_eq!(again.records_count as usize, wanted.len());
            assert_eq!(again.attributes, header.attributes);
            assert_eq!(again.last_offset_delta, header.last_offset_delta);
            let mut index = 0;
            records::for_each_record::<ReadError>(&rebuilt, &again, cap, true, |_, r| {
                let was = wanted[index];
                index += 1;
                assert_eq!(
                    (
                        r.offset_delta,
                        r.timestamp_delta,
                        &r.key,
                        &r.value,
                        &r.headers
                    ),
                    (
                        was.offset_delta,
                        was.timestamp_delta,
                        &was.key,
                        &was.value,
                        &was.headers
                    ),
                    "the cleaner changes a record it keeps"
                );
                Ok(())
            })
            .expect("the cleaner's batch reads back");
        }
    }
}

/// The group loader decodes into kafka-protocol's `Record`, whose headers are a map with UTF-8
/// keys; records of `__consumer_offsets` have no headers.
fn fits_kafka_protocol(record: &records::RawRecord) -> bool {
    let mut keys = std::collections::HashSet::new();
    record
        .headers
        .iter()
        .all(|(key, _)| std::str::from_utf8(key).is_ok() && keys.insert(key))
}

/// Applies a sequence of metadata records, one JSON document per line as the Raft log holds
/// them, to an empty image. A refused record must leave the image as it was, an applied one
/// must leave it consistent ([`check_invariants`]), and the image must survive a snapshot.
pub fn metadata_records(data: &[u8]) {
    let mut image = MetadataImage::default();
    for (index, line) in data.split(|b| *b == b'\n').enumerate() {
        let Ok(record) = serde_json::from_slice::<MetadataRecord>(line) else {
            continue;
        };
        let _ = record.validate();
        image.applied_index = index as u64 + 1;
        let before = image.clone();
        if image.apply(&record).is_err() {
            assert_eq!(
                image, before,
                "a refused record changed the image: {record:?}"
            );
        } else {
            check_invariants(&image, &record);
        }
    }
    let snapshot = serde_json::to_vec(&image).expect("an image serializes");
    let restored: MetadataImage =
        serde_json::from_slice(&snapshot).expect("an image snapshot reads back");
    assert_eq!(restored, image, "an image survives its snapshot");
}

/// What every image must keep, whatever was applied to it, as in Kafka: each partition has an
/// ISR within its replicas, its leader (if any) is an unfenced registered broker in the ISR, and
/// a reassignment's adding and removing replicas are among the replicas.
fn check_invariants(image: &MetadataImage, record: &MetadataRecord) {
    for (name, topic) in &image.topics {
        for (index, p) in topic.partitions.iter().enumerate() {
            let broken = |what: &str| {
                panic!("{what}: {name}-{index} is {p:?} after {record:?}");
            };
            if p.isr.is_empty() {
                broken("an empty ISR");
            }
            if !p.isr.iter().all(|r| p.replicas.contains(r)) {
                broken("an ISR beyond the replicas");
            }
            if p.leader != -1 && !p.isr.contains(&p.leader) {
                broken("a leader out of the ISR");
            }
            if p.leader != -1 && image.brokers.get(&p.leader).is_none_or(|b| b.fenced) {
                broken("a fenced or unregistered leader");
            }
            if !p
                .adding
                .iter()
                .chain(&p.removing)
                .all(|r| p.replicas.contains(r))
            {
                broken("a reassignment beyond the replicas");
            }
        }
    }
}

/// Decodes a controller-listener frame body as a request (the listener) and as a response (the
/// client of a voter). Whatever decodes must encode to a frame that decodes the same.
pub fn controller_frame(data: &[u8]) {
    // The size prefix the peer would have sent for this body.
    let Ok(len) = rpc::frame_length((data.len() as u32).to_be_bytes()) else {
        return;
    };
    let body = &data[..len];
    if let Ok(request) = rpc::decode_frame::<Request>(body) {
        round_trip(&request);
        if let Request::Propose(record) = &request {
            let _ = record.validate();
        }
    }
    if let Ok(response) = rpc::decode_frame::<Response>(body) {
        round_trip(&response);
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(message: &T) {
    let json = serde_json::to_vec(message).expect("a decoded message encodes");
    let again: T = rpc::decode_frame(&json).expect("an encoded message decodes");
    let json_again = serde_json::to_vec(&again).expect("a decoded message encodes");
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&json_again),
        "a message changes over a round trip"
    );
}

/// How long a dispatched request may run before the next one starts; it carries on in the
/// background (a long-poll fetch, a join waiting for its group), as on a real connection.
const DISPATCH_WAIT: Duration = Duration::from_millis(20);

/// The name of the dispatching broker's runtime threads, so that a panic in one of its tasks
/// can be told from others.
pub const DISPATCH_THREADS: &str = "strom-fuzz-dispatch";

/// The peer every dispatched request comes from.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);

/// A single-node broker (combined roles) on loopback ephemeral ports, with its own runtime,
/// that runs request frames through [`network::process`], as a connection would.
pub struct Dispatcher {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    context: Arc<Context>,
    pending: Mutex<Vec<JoinHandle<()>>>,
}

impl Dispatcher {
    /// Starts the broker with its data in `dir`. Limits keep a long run small: few partitions,
    /// small segments and retention, no initial rebalance delay.
    pub fn start(dir: &Path) -> Dispatcher {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(DISPATCH_THREADS)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let overrides: Vec<String> = [
            "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0".to_string(),
            "controller.quorum.voters=1@127.0.0.1:0".to_string(),
            "metrics.listener=127.0.0.1:0".to_string(),
            format!("log.dirs={}", dir.display()),
            "offsets.topic.num.partitions=2".to_string(),
            "max.partitions=64".to_string(),
            "group.initial.rebalance.delay.ms=0".to_string(),
            "group.max.session.timeout.ms=60000".to_string(),
            "log.segment.bytes=1048576".to_string(),
            "log.retention.bytes=4194304".to_string(),
            "log.retention.check.interval.ms=1000".to_string(),
        ]
        .into();
        let config = BrokerConfig::load(None, Vec::new(), &overrides).expect("fuzzing config");
        let server = runtime
            .block_on(Server::start(config))
            .expect("the fuzzing broker starts");
        let context = server.context().clone();
        Dispatcher {
            runtime,
            server: Some(server),
            context,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// Runs one request frame and its response to the end (or for [`DISPATCH_WAIT`]). Once a
    /// frame decodes, the broker must answer it: an error then (a response that does not
    /// encode, a request without a handler) is a bug, and panics.
    pub fn dispatch(&self, data: &[u8]) {
        let ctx = self.context.clone();
        let frame = Bytes::copy_from_slice(data);
        let mut task = self.runtime.spawn(async move {
            let listener = Arc::new(ListenerSecurity::plaintext("PLAINTEXT"));
            let mut session = Session::new(listener, Principal::anonymous());
            let outcome = match network::process(&ctx, &mut session, PEER, frame).await {
                Ok(network::Processed {
                    response: Some(Outgoing::Later(response)),
                    ..
                }) => response.await.map(|_| ()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e @ (FrameError::Encode(_) | FrameError::NoHandler(_))) = outcome {
                panic!("a request that decoded was not answered: {e}");
            }
        });
        let finished = self
            .runtime
            .block_on(async { tokio::time::timeout(DISPATCH_WAIT, &mut task).await });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match finished {
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(_) => {}
            Err(_) => pending.push(task),
        }
        self.reap(&mut pending, false);
    }

    /// Joins the finished tasks (all of them with `all`), passing a panic on.
    fn reap(&self, pending: &mut Vec<JoinHandle<()>>, all: bool) {
        let (done, running): (Vec<_>, Vec<_>) =
            pending.drain(..).partition(|t| all || t.is_finished());
        *pending = running;
        for task in done {
            if let Err(e) = self.runtime.block_on(task) {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }

    /// Waits up to `grace` for the requests still running, then stops the broker.
    pub fn stop(mut self, grace: Duration) {
        let mut pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(grace, async {
                while pending.iter().any(|t| !t.is_finished()) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
        });
        for task in &pending {
            if !task.is_finished() {
                task.abort();
            }
        }
        self.reap(&mut pending, true);
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}
