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
use kafka_protocol::ResponseError;

use crate::log::PartitionLog;

/// A session unused this long may give its slot to a new one (Kafka's
/// `min.incremental.fetch.session.eviction.ms` default).
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// The most partitions all sessions together remember (each a few hundred bytes at most); a
/// request that would pass it gets no session (a full fetch) or loses its session, so clients
/// cannot grow the cache unbounded. Twice what 100,000 partitions over 3 brokers need.
const CACHED_PARTITIONS_MAX: usize = 200_000;

/// The longest topic name Kafka allows.
const TOPIC_NAME_MAX: usize = 249;

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
    /// The topic's name.
    pub topic: TopicName,
    /// The partition's index.
    pub partition: i32,
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

/// A fetch's partitions in the order they are read: a full fetch's in request order; a
/// session's in the order they joined, except that a partition that returned records goes
/// to the back, as in Kafka, so `fetch.max.bytes` does not always run out on the same ones.
#[derive(Default)]
pub struct Partitions {
    order: BTreeMap<u64, FetchedPartition>,
    index: HashMap<(TopicName, i32), u64>,
    next: u64,
}

impl Partitions {
    /// The partition `(topic, partition)`, added at the back if it is new.
    fn entry(&mut self, topic: &TopicName, partition: i32) -> &mut FetchedPartition {
        let key = (topic.clone(), partition);
        let seq = match self.index.get(&key) {
            Some(seq) => *seq,
            None => {
                let seq = self.next;
                self.next += 1;
                self.index.insert(key, seq);
                self.order.insert(
                    seq,
                    FetchedPartition {
                        topic: topic.clone(),
                        partition,
                        fetch_offset: 0,
                        current_leader_epoch: -1,
                        max_bytes: 0,
                        log: None,
                        answered: None,
                    },
                );
                seq
            }
        };
        self.order.get_mut(&seq).expect("indexed above")
    }

    fn remove(&mut self, topic: &TopicName, partition: i32) {
        if let Some(seq) = self.index.remove(&(topic.clone(), partition)) {
            self.order.remove(&seq);
        }
    }

    fn move_to_back(&mut self, seq: u64) {
        if let Some(p) = self.order.remove(&seq) {
            let back = self.next;
            self.next += 1;
            self.index.insert((p.topic.clone(), p.partition), back);
            self.order.insert(back, p);
        }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The partitions in fetch order.
    pub fn iter(&self) -> impl Iterator<Item = &FetchedPartition> {
        self.order.values()
    }

    /// The partitions in fetch order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut FetchedPartition> {
        self.order.values_mut()
    }
}

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

    /// Drops the sessions unused for [`EVICTABLE_AFTER`]: their fetchers have gone (and they
    /// may hold logs of deleted partitions).
    fn drop_stale(&mut self, now: Instant) {
        let stale: Vec<i32> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used) >= EVICTABLE_AFTER)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.remove(id);
        }
    }

    /// Frees a slot for a new session of `owner` holding `size` partitions, as Kafka's cache
    /// does: stale sessions go first; a follower's new session may also push out consumers'.
    /// Whether it fits now.
    fn make_room(&mut self, slots: usize, owner: i32, size: usize, now: Instant) -> bool {
        self.drop_stale(now);
        while self.sessions.len() >= slots.max(1)
            || self.cached_partitions + size > CACHED_PARTITIONS_MAX
        {
            let consumer = self
                .sessions
                .iter()
                .filter(|(_, s)| owner >= 0 && s.owner < 0)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            match consumer {
                Some(id) => self.remove(id),
                None => return false,
            }
        }
        slots > 0
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

/// The session epoch after `epoch`: it wraps to 1, since 0 and -1 ask for a full fetch.
pub fn next_epoch(epoch: i32) -> i32 {
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

/// Adds or updates the request's partitions. A name longer than any topic's could be is left
/// out, so a session's memory stays bounded by its partition count.
fn add_requested(partitions: &mut Partitions, request: &FetchRequest) {
    for topic in request
        .topics
        .iter()
        .filter(|t| t.topic.0.len() <= TOPIC_NAME_MAX)
    {
        let name = owned_name(&topic.topic);
        for p in &topic.partitions {
            let entry = partitions.entry(&name, p.partition);
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
    pub fn begin(&self, request: &FetchRequest, owner: i32) -> Result<Fetch, ResponseError> {
        let (id, epoch) = (request.session_id, request.session_epoch);
        if epoch == FINAL_EPOCH || epoch == INITIAL_EPOCH {
            if id != 0 {
                let mut cache = self.lock();
                if cache.sessions.get(&id).is_some_and(|s| s.owner == owner) {
                    cache.remove(id);
                }
            }
            let mut partitions = Partitions::default();
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
            _ => return Err(ResponseError::FetchSessionIdNotFound),
        };
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        // A request still running holds the partitions; its successor is early.
        let mut partitions = session
            .partitions
            .take()
            .ok_or(ResponseError::InvalidFetchSessionEpoch)?;
        session.next_epoch = next_epoch(epoch);
        session.last_used = Instant::now();
        drop(cache);
        for topic in &request.forgotten_topics_data {
            for p in &topic.partitions {
                partitions.remove(&topic.topic, *p);
            }
        }
        add_requested(&mut partitions, request);
        let mut cache = self.lock();
        let Some(session) = cache.sessions.get_mut(&id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        let before = session.size;
        session.size = partitions.len();
        cache.cached_partitions = cache.cached_partitions - before + partitions.len();
        if cache.cached_partitions > CACHED_PARTITIONS_MAX {
            cache.remove(id);
            return Err(ResponseError::FetchSessionIdNotFound);
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
                if !cache.make_room(slots, owner, size, now) {
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
        let mut returned_records = Vec::new();
        for ((seq, partition), data) in self.partitions.order.iter_mut().zip(read) {
            let now = (data.error_code == 0).then_some(Answered {
                high_watermark: data.high_watermark,
                last_stable_offset: data.last_stable_offset,
                log_start_offset: data.log_start_offset,
            });
            let has_records = data.records.as_ref().is_some_and(|r| !r.is_empty());
            let news = now.is_none() || now != partition.answered || has_records;
            partition.answered = now;
            if has_records {
                returned_records.push(*seq);
            }
            if incremental && !news {
                continue;
            }
            // Consecutive partitions of a topic share its entry, as in Kafka's responses.
            match topics.last_mut() {
                Some(last) if last.topic == partition.topic => last.partitions.push(data),
                _ => topics.push(
                    FetchableTopicResponse::default()
                        .with_topic(partition.topic.clone())
                        .with_partitions(vec![data]),
                ),
            }
        }
        if self.kind != Kind::Sessionless {
            for seq in returned_records {
                self.partitions.move_to_back(seq);
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

    /// What a read of `fetch`'s partitions finds, each as `found` says, in fetch order.
    fn read(
        fetch: &Fetch,
        found: impl Fn(&str, i32) -> (i64, &'static [u8], i16),
    ) -> Vec<PartitionData> {
        fetch
            .partitions
            .iter()
            .map(|p| {
                let (high_watermark, records, error) = found(p.topic.0.as_str(), p.partition);
                data(p.partition, high_watermark, records).with_error_code(error)
            })
            .collect()
    }

    /// The (topic, partition) pairs of the fetch, in fetch order.
    fn order(fetch: &Fetch) -> Vec<(String, i32)> {
        fetch
            .partitions
            .iter()
            .map(|p| (p.topic.0.to_string(), p.partition))
            .collect()
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
        let read = read(&fetch, |_, _| (5, b"", 0));
        let topics = fetch.respond(read);
        assert_eq!(
            answered(&topics).len(),
            3,
            "a full fetch answers everything"
        );
        let id = sessions.finish(fetch, 10);
        assert_ne!(id, 0);
        id
    }

    fn pair(topic: &str, partition: i32) -> (String, i32) {
        (topic.to_string(), partition)
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
        let found = read(&fetch, |topic, p| match (topic, p) {
            ("a", 0) => (5, b"x", 0),
            ("a", 1) => (6, b"", 0),
            _ => (5, b"", 0),
        });
        let topics = fetch.respond(found);
        assert_eq!(answered(&topics), [pair("a", 0), pair("a", 1)]);
        assert_eq!(
            order(&fetch),
            [pair("a", 1), pair("b", 0), pair("a", 0)],
            "a partition that returned records is read last next time"
        );
        assert_eq!(sessions.finish(fetch, 10), id);

        let mut fetch = sessions.begin(&request(id, 2, &[]), 2).unwrap();
        let found = read(&fetch, |topic, p| match (topic, p) {
            ("a", 1) => (6, b"", 0),
            ("b", 0) => (-1, b"", 6),
            _ => (5, b"", 0),
        });
        let topics = fetch.respond(found);
        assert_eq!(answered(&topics), [pair("b", 0)], "errors are news");
        sessions.finish(fetch, 10);

        let mut fetch = sessions.begin(&request(id, 3, &[]), 2).unwrap();
        let found = read(&fetch, |topic, p| match (topic, p) {
            ("a", 1) => (6, b"", 0),
            _ => (5, b"", 0),
        });
        let topics = fetch.respond(found);
        assert_eq!(
            answered(&topics),
            [pair("b", 0)],
            "a partition whose error cleared is answered again"
        );
    }

    #[test]
    fn a_full_fetch_reads_in_request_order() {
        let sessions = FetchSessions::default();
        let fetch = sessions
            .begin(
                &request(0, FINAL_EPOCH, &[("z", 1, 0), ("a", 0, 0), ("z", 0, 0)]),
                -1,
            )
            .unwrap();
        assert_eq!(order(&fetch), [pair("z", 1), pair("a", 0), pair("z", 0)]);
    }

    #[test]
    fn names_longer_than_a_topic_name_are_not_kept() {
        let sessions = FetchSessions::default();
        let long = "x".repeat(TOPIC_NAME_MAX + 1);
        let fetch = sessions
            .begin(
                &request(0, INITIAL_EPOCH, &[(long.as_str(), 0, 0), ("a", 0, 0)]),
                -1,
            )
            .unwrap();
        assert_eq!(order(&fetch), [pair("a", 0)]);
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
            .map(|f| (f.topic.0.to_string(), f.partition, f.fetch_offset))
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
            Some(ResponseError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            sessions.begin(&request(id, 1, &[]), -1).err(),
            Some(ResponseError::FetchSessionIdNotFound),
            "only the fetcher that opened a session may use it"
        );
        assert_eq!(
            sessions.begin(&request(id + 1, 1, &[]), 1).err(),
            Some(ResponseError::FetchSessionIdNotFound)
        );
        let running = sessions.begin(&request(id, 1, &[]), 1).unwrap();
        assert_eq!(
            sessions.begin(&request(id, 2, &[]), 1).err(),
            Some(ResponseError::InvalidFetchSessionEpoch),
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
            Some(ResponseError::FetchSessionIdNotFound)
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
