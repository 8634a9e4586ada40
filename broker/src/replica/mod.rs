//! Leader and follower roles per partition on this broker: applies each metadata image to
//! the local logs (leader epoch, ISR), runs one fetcher per leader this broker follows, and
//! asks the controller to shrink or expand ISRs (Kafka's AlterPartition).

mod fetcher;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::config::BrokerConfig;
use crate::log::manager::{LogManager, TopicPartition};
use crate::log::segment::now_ms;
use crate::metadata::image::{MetadataImage, MetadataRecord};
use crate::metadata::Controller;
use crate::security::Outgoing;
use crate::shutdown::unless_shutdown;
use fetcher::{Fetcher, FetcherSettings};

/// Replication on this broker.
pub struct ReplicaManager {
    me: i32,
    controller: Arc<Controller>,
    logs: Arc<LogManager>,
    settings: FetcherSettings,
    lag_ms: i64,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
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
            fetchers: Mutex::new(HashMap::new()),
            isr_changes,
            shutdown,
        }
    }

    /// Makes every local replica match the image: leaders take their epoch and ISR,
    /// followers are handed to the fetcher of their leader.
    pub fn apply_image(&self, image: &MetadataImage) -> io::Result<()> {
        let mut follow: BTreeMap<i32, BTreeMap<TopicPartition, i32>> = BTreeMap::new();
        for (topic, t) in &image.topics {
            for (index, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.me) {
                    continue;
                }
                let partition = index as i32;
                let log = self.logs.get_or_open(topic, partition, t)?;
                log.set_replica_role(
                    self.me,
                    p.leader,
                    p.leader_epoch,
                    p.partition_epoch,
                    &p.replicas,
                    &p.isr,
                )?;
                if p.leader >= 0 && p.leader != self.me {
                    follow
                        .entry(p.leader)
                        .or_default()
                        .insert((topic.clone(), partition), p.leader_epoch);
                }
            }
        }
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        fetchers.retain(|leader, _| follow.contains_key(leader));
        for (leader, partitions) in follow {
            let fetcher = fetchers.entry(leader).or_insert_with(|| {
                info!(leader, "starting a replica fetcher");
                Fetcher::spawn(
                    leader,
                    self.settings.clone(),
                    self.controller.clone(),
                    self.logs.clone(),
                    self.shutdown.clone(),
                )
            });
            fetcher.set_partitions(&partitions);
        }
        Ok(())
    }

    /// Every half `replica.lag.time.max.ms` (at most every 500 ms), asks the controller to
    /// change the ISR of each led partition whose followers fell behind or caught up.
    pub async fn maintain_isr(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_millis((self.lag_ms / 2).clamp(50, 500) as u64);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            for ((topic, partition), log) in self.logs.all() {
                let Some((state, isr)) = log.wanted_isr(now_ms(), self.lag_ms) else {
                    continue;
                };
                info!(%topic, partition, from = ?state.isr, to = ?isr, "asking the controller to change the ISR");
                let change = if isr.len() < state.isr.len() {
                    "shrink"
                } else {
                    "expand"
                };
                let record = MetadataRecord::AlterPartition {
                    topic: topic.clone(),
                    partition,
                    leader: self.me,
                    leader_epoch: state.leader_epoch,
                    partition_epoch: state.partition_epoch,
                    isr,
                };
                match unless_shutdown(&mut shutdown, self.controller.propose(record)).await {
                    None => return,
                    Some(Ok(())) => self.isr_changes.with_label_values(&[change]).inc(),
                    Some(Err(e)) => {
                        log.isr_change_refused();
                        debug!(%topic, partition, error = %e, "ISR change refused");
                    }
                }
            }
        }
    }
}
