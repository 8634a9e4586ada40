//! All partition logs on this broker, kept in step with the metadata image.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tracing::{info, warn};

use super::{remove_deleted_dirs, schedule_dir_deletion, PartitionLog};
use crate::config::BrokerConfig;
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::topic_config::LogConfig;

/// A topic name and partition index.
pub type TopicPartition = (String, i32);

/// Opens, looks up, configures and deletes partition logs.
pub struct LogManager {
    root: PathBuf,
    broker: Arc<BrokerConfig>,
    logs: RwLock<HashMap<TopicPartition, Arc<PartitionLog>>>,
    appended: Notify,
    /// The metadata offset of the newest image synced; held while syncing, so syncs run one
    /// at a time and an older image never undoes a newer one.
    synced_index: Mutex<u64>,
    /// Set once this node has caught up with the metadata (the controller unfenced it): only
    /// then may a partition directory the metadata does not list be moved aside for deletion.
    metadata_complete: AtomicBool,
}

fn dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// Splits `topic-3` into its topic and partition.
fn parse_dir_name(name: &str) -> Option<TopicPartition> {
    let (topic, partition) = name.rsplit_once('-')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

impl LogManager {
    /// Uses the first `log.dirs` entry for partition data.
    pub fn new(broker: Arc<BrokerConfig>) -> io::Result<Self> {
        let root = broker.log_dirs[0].clone();
        std::fs::create_dir_all(&root)?;
        Ok(LogManager {
            root,
            broker,
            logs: RwLock::new(HashMap::new()),
            appended: Notify::new(),
            synced_index: Mutex::new(0),
            metadata_complete: AtomicBool::new(false),
        })
    }

    /// The open log of a partition, if this broker has it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The log of a partition the image says exists, opening it on first use.
    pub fn get_or_open(
        &self,
        topic: &str,
        partition: i32,
        image: &TopicImage,
    ) -> io::Result<Arc<PartitionLog>> {
        if let Some(log) = self.get(topic, partition) {
            return Ok(log);
        }
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_string(), partition);
        if let Some(log) = logs.get(&key) {
            return Ok(log.clone());
        }
        let config = LogConfig::new(&self.broker, &image.configs);
        let log = Arc::new(PartitionLog::open(
            &self.root.join(dir_name(topic, partition)),
            config,
            &image.id.to_string(),
        )?);
        logs.insert(key, log.clone());
        Ok(log)
    }

    /// Whether the image assigns a replica of this partition to this broker.
    fn hosts(&self, image: &MetadataImage, topic: &str, partition: i32) -> bool {
        image.topics.get(topic).is_some_and(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .is_some_and(|p| p.replicas.contains(&self.broker.node_id))
        })
    }

    /// Opens every partition this broker hosts, applies config changes, and deletes the logs
    /// of partitions it no longer hosts (deleted topics, moved replicas).
    /// An image older than one already synced is skipped (returns false): the metadata
    /// follower and a handler that just changed the metadata may both sync, in either order.
    pub fn sync_with_image(&self, image: &MetadataImage) -> io::Result<bool> {
        let mut synced_index = self.synced_index.lock().unwrap_or_else(|e| e.into_inner());
        if image.applied_index < *synced_index {
            return Ok(false);
        }
        *synced_index = image.applied_index;
        let stale: Vec<TopicPartition> = {
            let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
            logs.keys()
                .filter(|(t, p)| !self.hosts(image, t, *p))
                .cloned()
                .collect()
        };
        for key in stale {
            self.logs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some((topic, partition)) = parse_dir_name(&name) else {
                continue;
            };
            if topic.starts_with("__cluster_metadata") || !entry.file_type()?.is_dir() {
                continue;
            }
            if !self.hosts(image, &topic, partition) {
                if !self.metadata_complete.load(Ordering::Acquire) {
                    // The image may lag the quorum (a restart, a rebuilt metadata log): a
                    // directory it does not list is kept until this node has caught up.
                    continue;
                }
                match schedule_dir_deletion(&entry.path()) {
                    Ok(doomed) => {
                        info!(dir = %name, moved_to = %doomed.display(), "the metadata no longer assigns this partition here; deleting it after log.segment.delete.delay.ms")
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(dir = %name, error = %e, "could not move a log directory aside for deletion")
                    }
                }
            }
        }
        for (topic, ti) in &image.topics {
            for (partition, p) in ti.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.broker.node_id) {
                    continue;
                }
                let log = self.get_or_open(topic, partition as i32, ti)?;
                let config = LogConfig::new(&self.broker, &ti.configs);
                if log.config() != config {
                    log.set_config(config);
                }
            }
        }
        Ok(true)
    }

    /// Woken on every append, for long-polling fetches.
    pub fn appended(&self) -> &Notify {
        &self.appended
    }

    /// Every open log.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Deletes segments past retention in every log.
    pub fn apply_retention(&self, now: i64) {
        for ((topic, partition), log) in self.all() {
            match log.apply_retention(now) {
                Ok(0) => {}
                Ok(n) => info!(%topic, partition, segments = n, "retention deleted segments"),
                Err(e) => warn!(%topic, partition, error = %e, "retention failed"),
            }
        }
    }

    /// Forgets idempotent producer state idle for longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&self, now: i64) {
        let expiration = self.broker.long("producer.id.expiration.ms");
        for (_, log) in self.all() {
            log.expire_producers(now, expiration);
        }
    }

    /// Runs a compaction pass on every compacted log.
    pub fn compact_all(&self, now: i64) {
        for ((topic, partition), log) in self.all() {
            if let Err(e) = log.compact(now) {
                warn!(%topic, partition, error = %e, "compaction failed");
            }
        }
    }

    /// Allows partition directories the metadata does not list to be deleted from now on:
    /// this node has caught up with the metadata.
    pub fn metadata_caught_up(&self) {
        self.metadata_complete.store(true, Ordering::Release);
    }

    /// Removes deleted segment files whose `file.delete.delay.ms` has passed, and partition
    /// directories moved aside more than `log.segment.delete.delay.ms` ago.
    pub fn remove_deleted_files(&self) {
        let delay = self.broker.long("log.segment.delete.delay.ms");
        if let Err(e) = remove_deleted_dirs(&self.root, delay) {
            warn!(error = %e, "could not remove deleted partition directories");
        }
        for ((topic, partition), log) in self.all() {
            if let Err(e) = log.remove_deleted_files() {
                warn!(%topic, partition, error = %e, "could not remove deleted segment files");
            }
        }
    }

    /// Flushes logs whose `flush.ms` has passed.
    pub fn flush_due(&self, now: i64) {
        for ((topic, partition), log) in self.all() {
            if let Err(e) = log.flush_if_due(now) {
                warn!(%topic, partition, error = %e, "flush failed");
            }
        }
    }

    /// Flushes everything and records recovery points (clean shutdown).
    pub fn flush_all(&self) {
        for ((topic, partition), log) in self.all() {
            if let Err(e) = log.flush() {
                warn!(%topic, partition, error = %e, "flush at shutdown failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_with_dashes() {
        assert_eq!(
            parse_dir_name(&dir_name("a-b-c", 12)),
            Some(("a-b-c".into(), 12))
        );
        assert_eq!(parse_dir_name("nodash"), None);
        assert_eq!(parse_dir_name("x-y"), None);
    }
}
