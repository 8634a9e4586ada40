//! Leader and follower roles per partition on this broker: applies each metadata image to
//! the local logs (leader epoch, ISR), runs one fetcher per leader this broker follows, and
//! asks the controller to shrink or expand ISRs (Kafka's AlterPartition).

mod fetcher;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::config::BrokerConfig;
use crate::log::manager::{LogManager, TopicPartition};
use crate::log::segment::now_ms;
use crate::log::PartitionLog;
use crate::metadata::image::{IsrChange, MetadataImage, MetadataRecord, MAX_PARTITIONS_PER_RECORD};
use crate::metadata::Controller;
use crate::security::Outgoing;
use crate::shutdown::unless_shutdown;
use fetcher::{Fetcher, FetcherSettings};

/// What this broker follows, as of the last image applied.
#[derive(Default)]
struct Following {
    /// The metadata offset of that image; `None` before the first, or after a failure, so the
    /// next image is applied whole.
    applied: Option<u64>,
    /// The leader and leader epoch of each partition copied from another broker.
    partitions: HashMap<TopicPartition, (i32, i32)>,
    /// One fetcher per leader copied from.
    fetchers: HashMap<i32, Fetcher>,
}

/// Replication on this broker.
pub struct ReplicaManager {
    me: i32,
    controller: Arc<Controller>,
    logs: Arc<LogManager>,
    settings: FetcherSettings,
    lag_ms: i64,
    following: Mutex<Following>,
    isr_changes: IntCounterVec,
    shutdown: watch::Receiver<bool>,
}

impl ReplicaManager {
    /// A manager with no fetchers yet.
    pub fn new(
        config: &BrokerConfig,
        security: Outgoing,
        controller: Arc<Controller>,
        logs: Arc<LogManager>,
        isr_changes: IntCounterVec,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        ReplicaManager {
            me: config.node_id,
            controller,
            logs,
            settings: FetcherSettings {
                me: config.node_id,
                partition_max_bytes: config.int("replica.fetch.max.bytes"),
                max_wait_ms: config.int("replica.fetch.wait.max.ms"),
                backoff: Duration::from_millis(config.int("replica.fetch.backoff.ms") as u64),
                listener: config.inter_broker_listener.clone(),
                security,
            },
            lag_ms: config.long("replica.lag.time.max.ms"),
            following: Mutex::new(Following::default()),
            isr_changes,
            shutdown,
        }
    }

    /// Makes the local replicas of the topics changed since the last image applied match
    /// this one (all of them at the first image, and after a topic deletion or a failure):
    /// leaders take their epoch and ISR, followers are handed to the fetcher of their leader.
    /// An image older than the last one applied is skipped.
    pub fn apply_image(&self, image: &MetadataImage) -> io::Result<()> {
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        let since = following.applied;
        if since.is_some_and(|since| image.applied_index < since) {
            return Ok(());
        }
        following.applied = None;
        let whole = since.is_none_or(|since| image.topic_deleted_at > since);
        let mut wanted = HashMap::new();
        for (topic, t) in image.topics_changed_since(since.filter(|_| !whole)) {
            for (index, p) in t.partitions.iter().enumerate() {
                let partition = index as i32;
                let leader = if p.replicas.contains(&self.me) {
                    let log = self.logs.get_or_open(topic, partition, t)?;
                    log.set_replica_role(
                        self.me,
                        p.leader,
                        p.leader_epoch,
                        p.partition_epoch,
                        &p.replicas,
                        &p.isr,
                    )?;
                    (p.leader >= 0 && p.leader != self.me).then_some((p.leader, p.leader_epoch))
                } else {
                    None
                };
                wanted.insert((topic.clone(), partition), leader);
            }
        }
        // Which fetcher starts or stops copying which partition.
        let mut updates: BTreeMap<i32, Vec<(TopicPartition, Option<i32>)>> = BTreeMap::new();
        if whole {
            for (tp, (leader, _)) in &following.partitions {
                if !wanted.contains_key(tp) {
                    updates.entry(*leader).or_default().push((tp.clone(), None));
                }
            }
            following.partitions.retain(|tp, _| wanted.contains_key(tp));
        }
        for (tp, leader) in wanted {
            let before = match leader {
                Some(new) => following.partitions.insert(tp.clone(), new),
                None => following.partitions.remove(&tp),
            };
            if before == leader {
                continue;
            }
            if let Some((old, _)) = before.filter(|(old, _)| leader.is_none_or(|l| l.0 != *old)) {
                updates.entry(old).or_default().push((tp.clone(), None));
            }
            if let Some((new, epoch)) = leader {
                updates.entry(new).or_default().push((tp, Some(epoch)));
            }
        }
        for (leader, changes) in updates {
            let fetcher = following.fetchers.entry(leader).or_insert_with(|| {
                info!(leader, "starting a replica fetcher");
                Fetcher::spawn(
                    leader,
                    self.settings.clone(),
                    self.controller.clone(),
                    self.logs.clone(),
                    self.shutdown.clone(),
                )
            });
            fetcher.update(&changes);
        }
        following.fetchers.retain(|_, fetcher| !fetcher.is_idle());
        following.applied = Some(image.applied_index);
        Ok(())
    }

    /// Every half `replica.lag.time.max.ms` (at most every 500 ms), asks the controller to
    /// change the ISR of each led partition whose followers fell behind or caught up, all of
    /// them in one record (a restarted broker rejoins the ISRs of 100,000 partitions at once)
    /// whose changes apply or are refused one by one.
    pub async fn maintain_isr(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.lag_ms / 2).clamp(50, 500) as u64);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let fenced: Vec<i32> = self
                .controller
                .image()
                .brokers
                .values()
                .filter(|b| b.fenced)
                .map(|b| b.id)
                .collect();
            let mut wanted = Vec::new();
            for ((topic, partition), log) in self.logs.all() {
                let Some((state, isr)) = log.wanted_isr(now_ms(), self.lag_ms, &fenced) else {
                    continue;
                };
                debug!(%topic, partition, from = ?state.isr, to = ?isr, "asking the controller to change the ISR");
                let kind = if isr.len() < state.isr.len() {
                    "shrink"
                } else {
                    "expand"
                };
                let change = IsrChange {
                    topic,
                    partition,
                    leader_epoch: state.leader_epoch,
                    partition_epoch: state.partition_epoch,
                    isr,
                };
                wanted.push((log, change, kind));
            }
            if let [(_, change, _)] = wanted.as_slice() {
                info!(topic = %change.topic, partition = change.partition, to = ?change.isr, "asking the controller to change the ISR");
            } else if !wanted.is_empty() {
                info!(
                    partitions = wanted.len(),
                    "asking the controller to change ISRs"
                );
            }
            for batch in wanted.chunks(MAX_PARTITIONS_PER_RECORD) {
                if self
                    .propose_isr_changes(batch, &mut shutdown)
                    .await
                    .is_none()
                {
                    return;
                }
            }
        }
    }

    /// Proposes `changes` in one record and counts those applied; the logs of those refused
    /// (all of them when the proposal fails) release the replicas they would have added and
    /// ask again at a later tick. None when shutting down.
    async fn propose_isr_changes(
        &self,
        changes: &[(Arc<PartitionLog>, IsrChange, &'static str)],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<()> {
        let record = MetadataRecord::AlterPartitions {
            leader: self.me,
            changes: changes
                .iter()
                .map(|(_, change, _)| change.clone())
                .collect(),
            independent: true,
        };
        let refused: BTreeSet<usize> =
            match unless_shutdown(shutdown, self.controller.propose_batch(record)).await? {
                Ok(refused) => refused.into_iter().map(|i| i as usize).collect(),
                Err(e) => {
                    debug!(changes = changes.len(), error = %e, "ISR changes refused");
                    (0..changes.len()).collect()
                }
            };
        for (index, (log, change, kind)) in changes.iter().enumerate() {
            if refused.contains(&index) {
                log.isr_change_refused();
                debug!(topic = %change.topic, partition = change.partition, "ISR change refused");
            } else {
                self.isr_changes.with_label_values(&[kind]).inc();
            }
        }
        Some(())
    }
}
