//! A follower's fetcher: one task per leader broker, copying the partitions this broker
//! follows with the Fetch API (replica id set), after cutting any divergent tail found with
//! OffsetForLeaderEpoch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest};
use kafka_protocol::ResponseError;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::fetch_session::next_epoch;
use crate::api::topic_name;
use crate::log::manager::{LogManager, TopicPartition};
use crate::log::{AppendError, PartitionLog};
use crate::metadata::Controller;
use crate::security::{login, Outgoing};
use strom_client::BrokerConnection;

/// How long connecting, TLS and SASL to a leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a fetcher needs besides its partitions.
#[derive(Clone)]
pub struct FetcherSettings {
    /// This broker's id, sent as the replica id.
    pub me: i32,
    /// `replica.fetch.max.bytes`.
    pub partition_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`.
    pub max_wait_ms: i32,
    /// `replica.fetch.backoff.ms`.
    pub backoff: Duration,
    /// The inter-broker listener, whose endpoint of the leader is fetched from.
    pub listener: String,
    /// TLS and SASL for that listener.
    pub security: Outgoing,
}

/// One partition a fetcher is asked to copy.
#[derive(Debug, Clone, Copy)]
struct Target {
    leader_epoch: i32,
    /// A new partition or epoch, until the fetch loop takes it: it truncates first.
    fresh: bool,
}

/// What the fetcher is asked to copy, shared with the replica manager.
#[derive(Default)]
struct Wanted {
    /// By topic and partition index.
    targets: BTreeMap<String, BTreeMap<i32, Target>>,
    /// Moves on every update, so the loop reads the targets again only after a change.
    generation: u64,
}

type SharedWanted = Arc<Mutex<Wanted>>;

/// What a fetch request says of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    fetch_offset: i64,
    log_start_offset: i64,
    leader_epoch: i32,
}

/// A partition the fetch loop copies, with what it keeps between rounds.
struct Followed {
    leader_epoch: i32,
    /// Ask the leader where our epochs end before fetching (a new epoch, a divergent log).
    truncate: bool,
    /// The local log, looked up again only once it is dropped.
    log: Option<Arc<PartitionLog>>,
    /// What the leader's fetch session holds for it.
    sent: Option<Position>,
    /// What this round's request says of it; `None` without a local log.
    position: Option<Position>,
}

impl Followed {
    fn log(
        &mut self,
        logs: &LogManager,
        topic: &str,
        partition: i32,
    ) -> Option<&Arc<PartitionLog>> {
        if self.log.as_ref().is_none_or(|log| log.is_dropped()) {
            self.log = logs.get(topic, partition);
        }
        self.log.as_ref()
    }
}

/// The followed partitions by topic and index: a response's names are looked up as they are.
type FollowedTopics = BTreeMap<String, BTreeMap<i32, Followed>>;

/// This follower's side of its fetch session with the leader (KIP-227).
#[derive(Default)]
struct Session {
    /// 0 until the leader opens one.
    id: i32,
    /// The next request's epoch; 0 asks for a full fetch and a new session (closing `id`).
    epoch: i32,
    /// Partitions no longer followed that the leader's session still holds.
    forgotten: Vec<TopicPartition>,
}

impl Session {
    fn incremental(&self) -> bool {
        self.id != 0 && self.epoch > 0
    }
}

/// The fetcher for one leader; dropping it stops the task.
pub struct Fetcher {
    wanted: SharedWanted,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(wanted: &SharedWanted) -> std::sync::MutexGuard<'_, Wanted> {
    wanted.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fetcher {
    /// Starts fetching from `leader`.
    pub fn spawn(
        leader: i32,
        settings: FetcherSettings,
        controller: Arc<Controller>,
        logs: Arc<LogManager>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let wanted: SharedWanted = Arc::default();
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(
            FetchLoop {
                leader,
                settings,
                controller,
                logs,
                wanted: wanted.clone(),
                seen_generation: 0,
                followed: BTreeMap::new(),
                changed: changed.clone(),
                connection: None,
                session: Session::default(),
            }
            .run(shutdown),
        );
        Fetcher {
            wanted,
            changed,
            task,
        }
    }

    /// Starts copying partitions at a leader epoch (`Some`), or stops (`None`); a new
    /// partition or epoch starts with truncation.
    pub fn update(&self, changes: &[(TopicPartition, Option<i32>)]) {
        let mut wanted = lock(&self.wanted);
        for (tp, epoch) in changes {
            let (topic, partition) = tp;
            let Some(epoch) = *epoch else {
                if let Some(partitions) = wanted.targets.get_mut(topic) {
                    partitions.remove(partition);
                    if partitions.is_empty() {
                        wanted.targets.remove(topic);
                    }
                }
                continue;
            };
            let target = wanted
                .targets
                .entry(topic.clone())
                .or_default()
                .entry(*partition)
                .or_insert(Target {
                    leader_epoch: epoch,
                    fresh: true,
                });
            if target.leader_epoch != epoch {
                *target = Target {
                    leader_epoch: epoch,
                    fresh: true,
                };
            }
        }
        wanted.generation += 1;
        drop(wanted);
        self.changed.notify_one();
    }

    /// Whether it follows no partition any more.
    pub fn is_idle(&self) -> bool {
        lock(&self.wanted).targets.is_empty()
    }
}

struct FetchLoop {
    leader: i32,
    settings: FetcherSettings,
    controller: Arc<Controller>,
    logs: Arc<LogManager>,
    wanted: SharedWanted,
    /// The generation of `wanted` that `followed` reflects.
    seen_generation: u64,
    followed: FollowedTopics,
    changed: Arc<Notify>,
    connection: Option<BrokerConnection>,
    session: Session,
}

/// Leader-side errors after which a partition waits for newer metadata.
fn waits_for_metadata(error: Option<ResponseError>) -> bool {
    matches!(
        error,
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::UnknownTopicOrPartition
        )
    )
}

impl FetchLoop {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.take_wanted();
            let outcome = if self.followed.is_empty() {
                Ok(true)
            } else {
                self.round().await
            };
            let pause = match outcome {
                Ok(false) => None,
                Ok(true) => Some(self.settings.backoff),
                Err(e) => {
                    debug!(leader = self.leader, error = %e, "replica fetch failed");
                    self.connection = None;
                    Some(self.settings.backoff)
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.changed.notified() => {}
                    _ = shutdown.changed() => return,
                }
            } else if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Brings `followed` in line with what the replica manager asked for since the last look.
    fn take_wanted(&mut self) {
        let mut wanted = lock(&self.wanted);
        if wanted.generation == self.seen_generation {
            return;
        }
        self.seen_generation = wanted.generation;
        for (topic, partitions) in &mut self.followed {
            partitions.retain(|partition, followed| {
                let kept = wanted
                    .targets
                    .get(topic)
                    .is_some_and(|targets| targets.contains_key(partition));
                if !kept && followed.sent.is_some() {
                    self.session.forgotten.push((topic.clone(), *partition));
                }
                kept
            });
        }
        self.followed.retain(|_, partitions| !partitions.is_empty());
        for (topic, targets) in &mut wanted.targets {
            let partitions = match self.followed.get_mut(topic) {
                Some(partitions) => partitions,
                None => self.followed.entry(topic.clone()).or_default(),
            };
            for (partition, target) in targets {
                let followed = partitions.entry(*partition).or_insert(Followed {
                    leader_epoch: target.leader_epoch,
                    truncate: true,
                    log: None,
                    sent: None,
                    position: None,
                });
                if target.fresh {
                    target.fresh = false;
                    followed.leader_epoch = target.leader_epoch;
                    followed.truncate = true;
                }
            }
        }
    }

    /// After a failed request: the next one is full and replaces the session.
    fn restart_session(&mut self) {
        self.session.epoch = 0;
        self.session.forgotten.clear();
        for followed in self.followed.values_mut().flat_map(|p| p.values_mut()) {
            followed.sent = None;
        }
    }

    async fn connect(&mut self) -> std::io::Result<&mut BrokerConnection> {
        if self.connection.is_none() {
            let image = self.controller.image();
            let broker = image.brokers.get(&self.leader).ok_or_else(|| {
                std::io::Error::other(format!("leader {} is not registered", self.leader))
            })?;
            let (host, port) = broker.endpoint(&self.settings.listener);
            let host = host.to_string();
            let client_id = format!("strom-replica-fetcher-{}", self.settings.me);
            let connection = login::connect(
                &host,
                port,
                client_id,
                &self.settings.security,
                CONNECT_TIMEOUT,
            )
            .await?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn each_followed(&mut self) -> impl Iterator<Item = (&str, i32, &mut Followed)> {
        self.followed.iter_mut().flat_map(|(topic, partitions)| {
            partitions
                .iter_mut()
                .map(move |(partition, followed)| (topic.as_str(), *partition, followed))
        })
    }

    /// One truncation and fetch round; `Ok(true)` asks for a pause before the next.
    async fn round(&mut self) -> std::io::Result<bool> {
        let (followed, awaiting_truncation) = self.truncate().await?;
        if awaiting_truncation == followed {
            return Ok(true);
        }
        self.fetch().await
    }

    /// Truncates the partitions that may have diverged from their leader, in one request;
    /// returns how many partitions are followed and how many still await truncation.
    async fn truncate(&mut self) -> std::io::Result<(usize, usize)> {
        let logs = self.logs.clone();
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        let (mut followed_count, mut awaiting) = (0, 0);
        for (topic, partition, followed) in self.each_followed() {
            followed_count += 1;
            if !followed.truncate {
                continue;
            }
            awaiting += 1;
            let leader_epoch = followed.leader_epoch;
            let Some(log) = followed.log(&logs, topic, partition) else {
                continue;
            };
            match log.latest_epoch() {
                Some(epoch) => topics.entry(topic.to_string()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(leader_epoch)
                        .with_leader_epoch(epoch),
                ),
                None => {
                    // No epochs recorded: keep only what is known to be committed.
                    log.truncate_to(log.high_watermark())?;
                    followed.truncate = false;
                    awaiting -= 1;
                }
            }
        }
        if topics.is_empty() {
            return Ok((followed_count, awaiting));
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.settings.me))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(topic_name(&topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self
            .connect()
            .await?
            .send(&request, 3, Duration::from_secs(30))
            .await?;
        for topic in response.topics {
            let Some(partitions) = self.followed.get_mut(topic.topic.0.as_str()) else {
                continue;
            };
            for p in topic.partitions {
                let Some(followed) = partitions.get_mut(&p.partition) else {
                    continue;
                };
                if !followed.truncate {
                    continue;
                }
                let Some(log) = followed.log(&logs, &topic.topic.0, p.partition) else {
                    continue;
                };
                let error = ResponseError::try_from_code(p.error_code);
                if error.is_some() {
                    debug!(topic = %topic.topic.0, partition = p.partition, ?error, "OffsetForLeaderEpoch failed");
                    continue;
                }
                let end = if p.leader_epoch < 0 || p.end_offset < 0 {
                    log.high_watermark()
                } else {
                    p.end_offset
                };
                if end < log.log_end_offset() {
                    info!(topic = %topic.topic.0, partition = p.partition, to = end, "truncating a divergent tail");
                    log.truncate_to(end)?;
                }
                followed.truncate = false;
                awaiting -= 1;
            }
        }
        Ok((followed_count, awaiting))
    }

    /// The fetch request of this round: in a session, only what the leader does not hold yet.
    fn fetch_request(&mut self) -> FetchRequest {
        let incremental = self.session.incremental();
        let logs = self.logs.clone();
        let partition_max_bytes = self.settings.partition_max_bytes;
        let mut forgotten: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in self.session.forgotten.drain(..) {
            forgotten.entry(topic).or_default().push(partition);
        }
        let mut topics = Vec::new();
        for (topic, partitions) in &mut self.followed {
            let mut sending = Vec::new();
            for (partition, followed) in partitions.iter_mut() {
                let leader_epoch = followed.leader_epoch;
                followed.position = if followed.truncate {
                    None
                } else {
                    followed.log(&logs, topic, *partition).map(|log| Position {
                        fetch_offset: log.log_end_offset(),
                        log_start_offset: log.log_start_offset(),
                        leader_epoch,
                    })
                };
                match followed.position {
                    Some(position) if !incremental || followed.sent != Some(position) => {
                        sending.push(
                            FetchPartition::default()
                                .with_partition(*partition)
                                .with_current_leader_epoch(position.leader_epoch)
                                .with_fetch_offset(position.fetch_offset)
                                .with_log_start_offset(position.log_start_offset)
                                .with_partition_max_bytes(partition_max_bytes),
                        );
                    }
                    None if incremental && followed.sent.is_some() => {
                        forgotten.entry(topic.clone()).or_default().push(*partition);
                    }
                    _ => {}
                }
            }
            if !sending.is_empty() {
                topics.push(
                    FetchTopic::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(sending),
                );
            }
        }
        FetchRequest::default()
            .with_replica_id(BrokerId(self.settings.me))
            .with_max_wait_ms(self.settings.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(i32::MAX)
            .with_session_id(self.session.id)
            .with_session_epoch(self.session.epoch)
            .with_topics(topics)
            .with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ForgottenTopic::default()
                            .with_topic(topic_name(&topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
    }

    async fn fetch(&mut self) -> std::io::Result<bool> {
        let incremental = self.session.incremental();
        let request = self.fetch_request();
        let timeout =
            Duration::from_millis(self.settings.max_wait_ms as u64) + Duration::from_secs(30);
        let sent = self.connect().await?.send(&request, 12, timeout).await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.restart_session();
                return Err(e);
            }
        };
        match ResponseError::try_from_code(response.error_code) {
            None => {}
            Some(
                error @ (ResponseError::FetchSessionIdNotFound
                | ResponseError::InvalidFetchSessionEpoch),
            ) => {
                debug!(
                    leader = self.leader,
                    ?error,
                    "fetch session lost; fetching in full"
                );
                if error == ResponseError::FetchSessionIdNotFound {
                    self.session.id = 0;
                }
                self.restart_session();
                return Ok(false);
            }
            Some(error) => {
                warn!(leader = self.leader, ?error, "replica fetch refused");
                self.restart_session();
                return Ok(true);
            }
        }
        if response.session_id == 0 {
            self.session = Session::default();
        } else {
            self.session.epoch = if incremental {
                next_epoch(self.session.epoch)
            } else {
                1
            };
            self.session.id = response.session_id;
        }
        for followed in self.followed.values_mut().flat_map(|p| p.values_mut()) {
            followed.sent = followed.position;
        }
        let mut stalled = false;
        for topic in response.responses {
            let Some(partitions) = self.followed.get_mut(topic.topic.0.as_str()) else {
                continue;
            };
            for p in topic.partitions {
                let Some(followed) = partitions.get_mut(&p.partition_index) else {
                    continue;
                };
                let Some(log) = followed.log.clone() else {
                    continue;
                };
                let error = ResponseError::try_from_code(p.error_code);
                tracing::trace!(topic = %topic.topic.0, partition = p.partition_index, ?error, bytes = p.records.as_ref().map_or(0, |r| r.len()), high_watermark = p.high_watermark, "fetched");
                match error {
                    None => {
                        if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                            match log.append_as_follower(&records) {
                                Ok(()) => {}
                                Err(AppendError::NotContiguous { .. }) => followed.truncate = true,
                                Err(e) => {
                                    warn!(topic = %topic.topic.0, partition = p.partition_index, error = %e, "cannot append replicated batches");
                                    stalled = true;
                                }
                            }
                        }
                        log.set_follower_high_watermark(p.high_watermark);
                        if p.log_start_offset > log.log_start_offset() {
                            // The leader deleted records (retention or DeleteRecords).
                            let start = p.log_start_offset.min(log.high_watermark());
                            if let Err(e) = log.delete_records_before(start) {
                                debug!(topic = %topic.topic.0, partition = p.partition_index, error = %e, "cannot follow the leader's log start");
                            }
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange) => {
                        if log.log_end_offset() < p.log_start_offset {
                            info!(topic = %topic.topic.0, partition = p.partition_index, start = p.log_start_offset, "behind the leader's log start; starting over there");
                            if let Err(e) = log.truncate_fully_and_start_at(p.log_start_offset) {
                                // The partitions after this one are not processed: the next
                                // request starts over in full, so none of their news is lost.
                                self.restart_session();
                                return Err(e);
                            }
                        } else {
                            followed.truncate = true;
                        }
                    }
                    e if waits_for_metadata(e) => stalled = true,
                    Some(e) => {
                        warn!(topic = %topic.topic.0, partition = p.partition_index, error = ?e, "replica fetch error");
                        stalled = true;
                    }
                }
            }
        }
        Ok(stalled)
    }
}
