//! Incremental fetch sessions (KIP-227). The broker remembers the partitions a session
//! fetches and what it last answered for each, so a request names only the partitions whose
//! position moved and a response only the partitions with news. A follower copying
//! thousands of partitions then sends and gets almost nothing while they are idle.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::log::PartitionLog;

/// A session unused this long may give its slot to a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms` default).
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// The most partitions all sessions together remember; a request that would pass it gets no
/// session (a full fetch) or loses its session, so clients cannot grow the cache unbounded.
const CACHED_PARTITIONS_MAX: usize = 500_000;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// The epoch of a request that asks for a full fetch and a new session.
const INITIAL_EPOCH: i32 = 0;
/// The epoch of a request that asks for a full fetch without a session.
const FINAL_EPOCH: i32 = -1;

/// What the last response said of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answered {
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

/// One partition of a fetch: where to read, and what its fetcher was last told.
pub struct FetchedPartition {
    /// Where the fetcher reads from.
    pub fetch_offset: i64,
    /// The leader epoch the fetcher knows (-1: unchecked).
    pub current_leader_epoch: i32,
    /// `partition_max_bytes` of the request.
    pub max_bytes: i32,
    /// The partition's log here, kept between fetches of a session.
    pub log: Option<Arc<PartitionLog>>,
    /// None before the first answer and after an error, so the next answer is sent.
    answered: Option<Answered>,
}

/// A fetch's partitions by topic and partition.
pub type Partitions = BTreeMap<(TopicName, i32), FetchedPartition>;

/// A fetch request placed in its session.
pub struct Fetch {
    /// Every partition to read.
    pub partitions: Partitions,
    kind: Kind,
    /// The fetching replica (-1 for a consumer).
    owner: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Full, and no session wanted.
    Sessionless,
    /// Full, opening a session if there is room.
    Opening,
    /// Incremental in session `id`: only partitions with news are answered.
    Incremental(i32),
}

struct Session {
    /// The replica id of the fetcher (-1 for a consumer); only it may use the session.
    owner: i32,
    /// The epoch the session's next request must carry.
    next_epoch: i32,
    last_used: Instant,
    /// How many partitions it holds, also while a request has taken them.
    size: usize,
    /// Taken by the request that uses the session, put back when it is answered.
    partitions: Option<Partitions>,
}

#[derive(Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    cached_partitions: usize,
}

impl Cache {
    fn remove(&mut self, id: i32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.cached_partitions -= session.size;
        }
    }

    /// Frees a slot for a session of `owner`, as Kafka's cache does: a session unused for
    /// [`EVICTABLE_AFTER`] goes first; a follower's new session may also push out a
    /// consumer's. Whether there is a slot now.
    fn make_room(&mut self, slots: usize, owner: i32, now: Instant) -> bool {
        if self.sessions.len() < slots {
            return true;
        }
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                now.duration_since(s.last_used) >= EVICTABLE_AFTER || (owner >= 0 && s.owner < 0)
            })
            .min_by_key(|(_, s)| (s.owner >= 0, s.last_used))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    fn new_id(&self) -> i32 {
        loop {
            let id = (uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff) as i32;
            if id != 0 && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// The broker's fetch sessions.
#[derive(Default)]
pub struct FetchSessions {
    cache: Mutex<Cache>,
}

fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A topic name of the request copied out of the request's buffer, which a session must not
/// keep alive.
fn owned_name(name: &TopicName) -> TopicName {
    TopicName(StrBytes::from_string(name.0.to_string()))
}

/// Adds or updates the request's partitions.
fn add_requested(partitions: &mut Partitions, request: &FetchRequest) {
    for topic in &request.topics {
        let name = owned_name(&topic.topic);
        for p in &topic.partitions {
            let entry = partitions
                .entry((name.clone(), p.partition))
                .or_insert(FetchedPartition {
                    fetch_offset: 0,
                    current_leader_epoch: -1,
                    max_bytes: 0,
                    log: None,
                    answered: None,
                });
            entry.fetch_offset = p.fetch_offset;
            entry.current_leader_epoch = p.current_leader_epoch;
            entry.max_bytes = p.partition_max_bytes;
        }
    }
}

impl FetchSessions {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Places `request` in its session: the partitions to read, or the Kafka error that
    /// answers the whole request. `owner` is the fetching replica (-1 for a consumer).
    pub fn begin(&self, request: &FetchRequest, owner: i32) -> Result<Fetch, i16> {
        let (id, epoch) = (request.session_id, request.session_epoch);
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != 0 {
                let mut cache = self.lock();
                if cache.sessions.get(&id).is_some_and(|s| s.owner == owner) {
                    cache.remove(id);
                }
            }
            let mut partitions = Partitions::new();
            add_requested(&mut partitions, request);
            let kind = if epoch == INITIAL_EPOCH {
                Kind::Opening
            } else {
                Kind::Sessionless
            };
            return Ok(Fetch {
                partitions,
                kind,
                owner,
            });
        }
        let mut cache = self.lock();
        let session = match cache.sessions.get_mut(&id) {
            Some(session) if session.owner == owner => session,
            _ => return Err(FETCH_SESSION_ID_NOT_FOUND),
        };
        if session.next_epoch != epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        // A request still running holds the partitions; its successor is early.
        let mut partitions = session
            .partitions
            .take()
            .ok_or(INVALID_FETCH_SESSION_EPOCH)?;
        session.next_epoch = next_epoch(epoch);
        session.last_used = Instant::now();
        drop(cache);
        for topic in &request.forgotten_topics_data {
            for p in &topic.partitions {
                partitions.remove(&(topic.topic.clone(), *p));
            }
        }
        add_requested(&mut partitions, request);
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&id) else {
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        };
        let before = session.size;
        session.size = partitions.len();
        cache.cached_partitions = cache.cached_partitions - before + partitions.len();
        if cache.cached_partitions > CACHED_PARTITIONS_MAX {
            cache.remove(id);
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        }
        Ok(Fetch {
            partitions,
            kind: Kind::Incremental(id),
            owner,
        })
    }

    /// Ends `fetch`: opens its session or hands its partitions back to it. The session id
    /// for the response (0: none).
    pub fn finish(&self, fetch: Fetch, slots: usize) -> i32 {
        let mut cache = self.lock();
        match fetch.kind {
            Kind::Sessionless => 0,
            Kind::Incremental(id) => match cache.sessions.get_mut(&id) {
                Some(session) => {
                    session.partitions = Some(fetch.partitions);
                    id
                }
                None => 0,
            },
            Kind::Opening => {
                let now = Instant::now();
                let size = fetch.partitions.len();
                let owner = fetch.owner;
                if cache.cached_partitions + size > CACHED_PARTITIONS_MAX
                    || !cache.make_room(slots, owner, now)
                {
                    return 0;
                }
                let id = cache.new_id();
                cache.cached_partitions += size;
                cache.sessions.insert(
                    id,
                    Session {
                        owner,
                        next_epoch: next_epoch(INITIAL_EPOCH),
                        last_used: now,
                        size,
                        partitions: Some(fetch.partitions),
                    },
                );
                id
            }
        }
    }

    /// How many sessions there are and how many partitions they hold.
    pub fn size(&self) -> (usize, usize) {
        let cache = self.lock();
        (cache.sessions.len(), cache.cached_partitions)
    }
}

impl Fetch {
    /// The response's topics from `read`, the data read for each partition in order. A full
    /// fetch answers every partition, an incremental one only those whose records, offsets
    /// or error are news to the fetcher.
    pub fn respond(&mut self, read: Vec<PartitionData>) -> Vec<FetchableTopicResponse> {
        let incremental = matches!(self.kind, Kind::Incremental(_));
        let mut topics: Vec<FetchableTopicResponse> = Vec::new();
        for (((topic, _), partition), data) in self.partitions.iter_mut().zip(read) {
            let now = (data.error_code == 0).then_some(Answered {
                high_watermark: data.high_watermark,
                last_stable_offset: data.last_stable_offset,
                log_start_offset: data.log_start_offset,
            });
            let news = now.is_none()
                || now != partition.answered
                || data.records.as_ref().is_some_and(|r| !r.is_empty());
            partition.answered = now;
            if incremental && !news {
                continue;
            }
            match topics.last_mut() {
                Some(last) if last.topic == *topic => last.partitions.push(data),
                _ => topics.push(
                    FetchableTopicResponse::default()
                        .with_topic(topic.clone())
                        .with_partitions(vec![data]),
                ),
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};

    use super::*;

    fn name(topic: &str) -> TopicName {
        TopicName(StrBytes::from_string(topic.to_string()))
    }

    fn request(id: i32, epoch: i32, partitions: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (topic, partition, offset) in partitions {
            let p = FetchPartition::default()
                .with_partition(*partition)
                .with_fetch_offset(*offset)
                .with_partition_max_bytes(1024);
            match topics.last_mut() {
                Some(t) if t.topic == name(topic) => t.partitions.push(p),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(vec![p]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    fn data(partition: i32, high_watermark: i64, records: &'static [u8]) -> PartitionData {
        PartitionData::default()
            .with_partition_index(partition)
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark)
            .with_records(Some(bytes::Bytes::from_static(records)))
    }

    /// The (topic, partition) pairs of a response.
    fn answered(topics: &[FetchableTopicResponse]) -> Vec<(String, i32)> {
        topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_index))
            })
            .collect()
    }

    /// Opens a session for `owner` over a-0, a-1 and b-0, answered with high watermark 5.
    fn open(sessions: &FetchSessions, owner: i32) -> i32 {
        let mut fetch = sessions
            .begin(
                &request(0, INITIAL_EPOCH, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)]),
                owner,
            )
            .unwrap();
        let topics = fetch.respond(vec![data(0, 5, b""), data(1, 5, b""), data(0, 5, b"")]);
        assert_eq!(
            answered(&topics).len(),
            3,
            "a full fetch answers everything"
        );
        let id = sessions.finish(fetch, 10);
        assert_ne!(id, 0);
        id
    }

    #[test]
    fn an_incremental_fetch_answers_only_partitions_with_news() {
        let sessions = FetchSessions::default();
        let id = open(&sessions, 2);
        assert_eq!(sessions.size(), (1, 3));
        let mut fetch = sessions.begin(&request(id, 1, &[]), 2).unwrap();
        assert_eq!(
            fetch.partitions.len(),
            3,
            "the session remembers its partitions"
        );
        // a-0 has records, a-1 a new high watermark, b-0 nothing new.
        let topics = fetch.respond(vec![data(0, 5, b"x"), data(1, 6, b""), data(0, 5, b"")]);
        assert_eq!(
            answered(&topics),
            [("a".to_string(), 0), ("a".to_string(), 1)]
        );
        assert_eq!(sessions.finish(fetch, 10), id);
        let mut fetch = sessions.begin(&request(id, 2, &[]), 2).unwrap();
        let error = PartitionData::default().with_error_code(6);
        let topics = fetch.respond(vec![data(0, 5, b""), data(1, 6, b""), error]);
        assert_eq!(answered(&topics), [("b".to_string(), 0)], "errors are news");
        sessions.finish(fetch, 10);
        let mut fetch = sessions.begin(&request(id, 3, &[]), 2).unwrap();
        let topics = fetch.respond(vec![data(0, 5, b""), data(1, 6, b""), data(0, 5, b"")]);
        assert_eq!(
            answered(&topics),
            [("b".to_string(), 0)],
            "a partition whose error cleared is answered again"
        );
    }

    #[test]
    fn requests_update_and_forget_session_partitions() {
        let sessions = FetchSessions::default();
        let id = open(&sessions, -1);
        let request =
            request(id, 1, &[("a", 1, 42), ("c", 0, 7)]).with_forgotten_topics_data(vec![
                ForgottenTopic::default()
                    .with_topic(name("b"))
                    .with_partitions(vec![0]),
            ]);
        let fetch = sessions.begin(&request, -1).unwrap();
        let offsets: Vec<(String, i32, i64)> = fetch
            .partitions
            .iter()
            .map(|((t, p), f)| (t.0.to_string(), *p, f.fetch_offset))
            .collect();
        assert_eq!(
            offsets,
            [
                ("a".to_string(), 0, 0),
                ("a".to_string(), 1, 42),
                ("c".to_string(), 0, 7)
            ]
        );
        sessions.finish(fetch, 10);
        assert_eq!(sessions.size(), (1, 3));
    }

    #[test]
    fn wrong_epochs_ids_and_owners_are_refused() {
        let sessions = FetchSessions::default();
        let id = open(&sessions, 1);
        assert_eq!(
            sessions.begin(&request(id, 2, &[]), 1).err(),
            Some(INVALID_FETCH_SESSION_EPOCH)
        );
        assert_eq!(
            sessions.begin(&request(id, 1, &[]), -1).err(),
            Some(FETCH_SESSION_ID_NOT_FOUND),
            "only the fetcher that opened a session may use it"
        );
        assert_eq!(
            sessions.begin(&request(id + 1, 1, &[]), 1).err(),
            Some(FETCH_SESSION_ID_NOT_FOUND)
        );
        let running = sessions.begin(&request(id, 1, &[]), 1).unwrap();
        assert_eq!(
            sessions.begin(&request(id, 2, &[]), 1).err(),
            Some(INVALID_FETCH_SESSION_EPOCH),
            "a request while the previous one runs"
        );
        sessions.finish(running, 10);
        assert!(sessions.begin(&request(id, 2, &[]), 1).is_ok());
    }

    #[test]
    fn the_final_epoch_closes_a_session_and_opens_none() {
        let sessions = FetchSessions::default();
        let id = open(&sessions, -1);
        let fetch = sessions
            .begin(&request(id, FINAL_EPOCH, &[("a", 0, 0)]), -1)
            .unwrap();
        assert_eq!(sessions.size(), (0, 0));
        assert_eq!(sessions.finish(fetch, 10), 0);
    }

    #[test]
    fn a_full_cache_gives_a_follower_a_consumers_slot_but_not_the_reverse() {
        let sessions = FetchSessions::default();
        let consumer = open(&sessions, -1);
        let fetch = sessions
            .begin(&request(0, INITIAL_EPOCH, &[("a", 0, 0)]), -1)
            .unwrap();
        assert_eq!(
            sessions.finish(fetch, 1),
            0,
            "no slot for a second consumer"
        );
        let fetch = sessions
            .begin(&request(0, INITIAL_EPOCH, &[("a", 0, 0)]), 3)
            .unwrap();
        let follower = sessions.finish(fetch, 1);
        assert_ne!(follower, 0);
        assert_eq!(sessions.size(), (1, 1));
        assert_eq!(
            sessions.begin(&request(consumer, 1, &[]), -1).err(),
            Some(FETCH_SESSION_ID_NOT_FOUND)
        );
        let fetch = sessions
            .begin(&request(0, INITIAL_EPOCH, &[("a", 0, 0)]), 4)
            .unwrap();
        assert_eq!(
            sessions.finish(fetch, 1),
            0,
            "a follower's recent session keeps its slot"
        );
    }
}
