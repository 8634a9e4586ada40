//! A follower's fetcher: one task per leader broker, copying the partitions this broker
//! follows with the Fetch API (replica id set), after cutting any divergent tail found with
//! OffsetForLeaderEpoch.

use std::collections::{BTreeMap, HashMap};
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

/// One partition a fetcher copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    leader_epoch: i32,
    /// Set on a new epoch: ask the leader where our epochs end before fetching.
    truncate: bool,
}

type Targets = Arc<Mutex<BTreeMap<TopicPartition, Target>>>;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// What a fetch request says of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    fetch_offset: i64,
    log_start_offset: i64,
    leader_epoch: i32,
}

/// This follower's side of its fetch session with the leader (KIP-227).
#[derive(Default)]
struct Session {
    /// 0 until the leader opens one.
    id: i32,
    /// The next request's epoch; 0 asks for a full fetch and a new session (closing `id`).
    epoch: i32,
    /// What the leader's session holds for each partition.
    sent: HashMap<TopicPartition, Position>,
}

impl Session {
    fn incremental(&self) -> bool {
        self.id != 0 && self.epoch > 0
    }

    /// After a failed request: the next one is full and replaces the session.
    fn restart(&mut self) {
        self.epoch = 0;
        self.sent.clear();
    }
}

/// The fetcher for one leader; dropping it stops the task.
pub struct Fetcher {
    targets: Targets,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(targets: &Targets) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, Target>> {
    targets.lock().unwrap_or_else(|e| e.into_inner())
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
        let targets: Targets = Arc::default();
        let changed = Arc::new(Notify::new());
        let task = tokio::spawn(
            FetchLoop {
                leader,
                settings,
                controller,
                logs,
                targets: targets.clone(),
                changed: changed.clone(),
                connection: None,
                session: Session::default(),
            }
            .run(shutdown),
        );
        Fetcher {
            targets,
            changed,
            task,
        }
    }

    /// Starts copying partitions at a leader epoch (`Some`), or stops (`None`); a new
    /// partition or epoch starts with truncation.
    pub fn update(&self, changes: &[(TopicPartition, Option<i32>)]) {
        let mut targets = lock(&self.targets);
        for (tp, epoch) in changes {
            let Some(epoch) = *epoch else {
                targets.remove(tp);
                continue;
            };
            let target = targets.entry(tp.clone()).or_insert(Target {
                leader_epoch: epoch,
                truncate: true,
            });
            if target.leader_epoch != epoch {
                *target = Target {
                    leader_epoch: epoch,
                    truncate: true,
                };
            }
        }
        drop(targets);
        self.changed.notify_one();
    }

    /// Whether it follows no partition any more.
    pub fn is_idle(&self) -> bool {
        lock(&self.targets).is_empty()
    }
}

struct FetchLoop {
    leader: i32,
    settings: FetcherSettings,
    controller: Arc<Controller>,
    logs: Arc<LogManager>,
    targets: Targets,
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
            let targets = lock(&self.targets).clone();
            let outcome = if targets.is_empty() {
                Ok(true)
            } else {
                self.round(&targets).await
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

    fn log(&self, tp: &TopicPartition) -> Option<Arc<PartitionLog>> {
        self.logs.get(&tp.0, tp.1)
    }

    /// One truncation and fetch round; `Ok(true)` asks for a pause before the next.
    async fn round(&mut self, targets: &BTreeMap<TopicPartition, Target>) -> std::io::Result<bool> {
        let truncating: Vec<_> = targets.iter().filter(|(_, t)| t.truncate).collect();
        if !truncating.is_empty() {
            self.truncate(&truncating).await?;
        }
        let fetching: Vec<_> = lock(&self.targets)
            .iter()
            .filter(|(_, t)| !t.truncate)
            .map(|(tp, t)| (tp.clone(), *t))
            .collect();
        if fetching.is_empty() {
            return Ok(true);
        }
        self.fetch(&fetching).await
    }

    fn done_truncating(&self, tp: &TopicPartition, epoch: i32) {
        if let Some(t) = lock(&self.targets).get_mut(tp) {
            if t.leader_epoch == epoch {
                t.truncate = false;
            }
        }
    }

    async fn truncate(&mut self, truncating: &[(&TopicPartition, &Target)]) -> std::io::Result<()> {
        let mut topics: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (tp, target) in truncating {
            let Some(log) = self.log(tp) else { continue };
            match log.latest_epoch() {
                Some(epoch) => topics.entry(tp.0.clone()).or_default().push(
                    OffsetForLeaderPartition::default()
                        .with_partition(tp.1)
                        .with_current_leader_epoch(target.leader_epoch)
                        .with_leader_epoch(epoch),
                ),
                None => {
                    // No epochs recorded: keep only what is known to be committed.
                    log.truncate_to(log.high_watermark())?;
                    self.done_truncating(tp, target.leader_epoch);
                }
            }
        }
        if topics.is_empty() {
            return Ok(());
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
            for p in topic.partitions {
                let tp = (topic.topic.0.to_string(), p.partition);
                let Some(target) = truncating.iter().find(|(t, _)| **t == tp).map(|(_, t)| **t)
                else {
                    continue;
                };
                let Some(log) = self.log(&tp) else { continue };
                let error = ResponseError::try_from_code(p.error_code);
                if error.is_some() {
                    debug!(topic = %tp.0, partition = tp.1, ?error, "OffsetForLeaderEpoch failed");
                    continue;
                }
                let end = if p.leader_epoch < 0 || p.end_offset < 0 {
                    log.high_watermark()
                } else {
                    p.end_offset
                };
                if end < log.log_end_offset() {
                    info!(topic = %tp.0, partition = tp.1, to = end, "truncating a divergent tail");
                    log.truncate_to(end)?;
                }
                self.done_truncating(&tp, target.leader_epoch);
            }
        }
        Ok(())
    }

    async fn fetch(&mut self, fetching: &[(TopicPartition, Target)]) -> std::io::Result<bool> {
        let next: HashMap<TopicPartition, Position> = fetching
            .iter()
            .filter_map(|(tp, target)| {
                let log = self.log(tp)?;
                Some((
                    tp.clone(),
                    Position {
                        fetch_offset: log.log_end_offset(),
                        log_start_offset: log.log_start_offset(),
                        leader_epoch: target.leader_epoch,
                    },
                ))
            })
            .collect();
        let incremental = self.session.incremental();
        // An incremental request names only what the leader's session does not hold yet.
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, position) in &next {
            if incremental && self.session.sent.get(tp) == Some(position) {
                continue;
            }
            topics.entry(tp.0.as_str()).or_default().push(
                FetchPartition::default()
                    .with_partition(tp.1)
                    .with_current_leader_epoch(position.leader_epoch)
                    .with_fetch_offset(position.fetch_offset)
                    .with_log_start_offset(position.log_start_offset)
                    .with_partition_max_bytes(self.settings.partition_max_bytes),
            );
        }
        let mut forgotten: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        if incremental {
            for tp in self
                .session
                .sent
                .keys()
                .filter(|tp| !next.contains_key(*tp))
            {
                forgotten.entry(tp.0.as_str()).or_default().push(tp.1);
            }
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(self.settings.me))
            .with_max_wait_ms(self.settings.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(i32::MAX)
            .with_session_id(self.session.id)
            .with_session_epoch(self.session.epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        FetchTopic::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ForgottenTopic::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let timeout =
            Duration::from_millis(self.settings.max_wait_ms as u64) + Duration::from_secs(30);
        let sent = self.connect().await?.send(&request, 12, timeout).await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.session.restart();
                return Err(e);
            }
        };
        match response.error_code {
            0 => {}
            FETCH_SESSION_ID_NOT_FOUND | INVALID_FETCH_SESSION_EPOCH => {
                debug!(
                    leader = self.leader,
                    error = response.error_code,
                    "fetch session lost; fetching in full"
                );
                if response.error_code == FETCH_SESSION_ID_NOT_FOUND {
                    self.session.id = 0;
                }
                self.session.restart();
                return Ok(false);
            }
            code => {
                warn!(leader = self.leader, error = ?ResponseError::try_from_code(code), "replica fetch refused");
                self.session.restart();
                return Ok(true);
            }
        }
        if response.session_id == 0 {
            self.session = Session::default();
        } else {
            self.session.epoch = if incremental {
                self.session.epoch.checked_add(1).unwrap_or(1)
            } else {
                1
            };
            self.session.id = response.session_id;
            self.session.sent = next;
        }
        let mut stalled = false;
        for topic in response.responses {
            for p in topic.partitions {
                let tp = (topic.topic.0.to_string(), p.partition_index);
                let Some(log) = self.log(&tp) else { continue };
                let error = ResponseError::try_from_code(p.error_code);
                tracing::trace!(topic = %tp.0, partition = tp.1, ?error, bytes = p.records.as_ref().map_or(0, |r| r.len()), high_watermark = p.high_watermark, "fetched");
                match error {
                    None => {
                        if let Some(records) = p.records.filter(|r| !r.is_empty()) {
                            match log.append_as_follower(&records) {
                                Ok(()) => {}
                                Err(AppendError::NotContiguous { .. }) => self.mark_truncate(&tp),
                                Err(e) => {
                                    warn!(topic = %tp.0, partition = tp.1, error = %e, "cannot append replicated batches");
                                    stalled = true;
                                }
                            }
                        }
                        log.set_follower_high_watermark(p.high_watermark);
                        if p.log_start_offset > log.log_start_offset() {
                            // The leader deleted records (retention or DeleteRecords).
                            let start = p.log_start_offset.min(log.high_watermark());
                            if let Err(e) = log.delete_records_before(start) {
                                debug!(topic = %tp.0, partition = tp.1, error = %e, "cannot follow the leader's log start");
                            }
                        }
                    }
                    Some(ResponseError::OffsetOutOfRange) => {
                        if log.log_end_offset() < p.log_start_offset {
                            info!(topic = %tp.0, partition = tp.1, start = p.log_start_offset, "behind the leader's log start; starting over there");
                            if let Err(e) = log.truncate_fully_and_start_at(p.log_start_offset) {
                                // The partitions after this one are not processed: the next
                                // request starts over in full, so none of their news is lost.
                                self.session.restart();
                                return Err(e);
                            }
                        } else {
                            self.mark_truncate(&tp);
                        }
                    }
                    e if waits_for_metadata(e) => stalled = true,
                    Some(e) => {
                        warn!(topic = %tp.0, partition = tp.1, error = ?e, "replica fetch error");
                        stalled = true;
                    }
                }
            }
        }
        Ok(stalled)
    }

    fn mark_truncate(&self, tp: &TopicPartition) {
        if let Some(t) = lock(&self.targets).get_mut(tp) {
            t.truncate = true;
        }
    }
}
