//! All partition logs on this broker, kept in step with the metadata image.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::open_files::OpenFiles;
use super::{remove_deleted_dirs, schedule_dir_deletion, PartitionLog, Recovery};
use crate::config::BrokerConfig;
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::topic_config::LogConfig;

/// A topic name and partition index.
pub type TopicPartition = (String, i32);

/// How many logs are flushed at once at shutdown.
const SHUTDOWN_FLUSH_THREADS: usize = 16;

/// How often a metadata sync checks every open log against the image.
const CHECK_ALL_LOGS_EVERY: Duration = Duration::from_secs(10);

/// What the last metadata sync covered.
struct Synced {
    /// The metadata offset of the newest image synced; `None` before the first sync and after
    /// a failed one: the next image is synced whole, not only its changed topics.
    index: Option<u64>,
    /// When every open log was last checked against the image.
    all_checked: Option<Instant>,
}

/// The open logs by topic, then partition: a lookup by `&str` needs no key built, which
/// counts when a fetch names 30,000 partitions.
#[derive(Default)]
struct LogTable(HashMap<String, BTreeMap<i32, Arc<PartitionLog>>>);

impl LogTable {
    fn get(&self, topic: &str, partition: i32) -> Option<&Arc<PartitionLog>> {
        self.0.get(topic)?.get(&partition)
    }

    fn insert(&mut self, topic: &str, partition: i32, log: Arc<PartitionLog>) {
        self.0
            .entry(topic.to_string())
            .or_default()
            .insert(partition, log);
    }

    fn remove(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.0.get_mut(topic) {
            if let Some(log) = partitions.remove(&partition) {
                log.mark_dropped();
            }
            if partitions.is_empty() {
                self.0.remove(topic);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, i32, &Arc<PartitionLog>)> {
        self.0
            .iter()
            .flat_map(|(topic, logs)| logs.iter().map(move |(p, log)| (topic, *p, log)))
    }
}

/// Opens, looks up, configures and deletes partition logs.
pub struct LogManager {
    root: PathBuf,
    broker: Arc<BrokerConfig>,
    logs: RwLock<LogTable>,
    /// Held while syncing, so syncs run one at a time and an older image never undoes a newer
    /// one.
    synced: Mutex<Synced>,
    /// Set once this node has caught up with the metadata (the controller unfenced it): only
    /// then may a partition directory the metadata does not list be moved aside for deletion.
    metadata_complete: AtomicBool,
    /// The log directory has been searched for partitions the metadata does not list since
    /// the metadata was complete; from then on only logs this broker stops hosting are deleted,
    /// so a metadata change does not list a directory of 100,000 partitions.
    directory_searched: AtomicBool,
    /// Partition directories may be waiting for `log.segment.delete.delay.ms`: set at start
    /// (a previous run may have left some) and whenever one may have been moved aside.
    dirs_awaiting_removal: AtomicBool,
    /// The last shutdown flushed everything: logs open without a CRC scan.
    clean_shutdown: bool,
    /// High watermarks as the last checkpoint recorded them.
    high_watermarks: HashMap<TopicPartition, i64>,
    /// The segment files every log here holds open, at most half the open file limit.
    open_files: Arc<OpenFiles>,
}

fn dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// Splits `topic-3` into its topic and partition.
fn parse_dir_name(name: &str) -> Option<TopicPartition> {
    let (topic, partition) = name.rsplit_once('-')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

/// Kafka's name for the high watermarks of every partition in a log directory.
const HIGH_WATERMARK_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Kafka's marker of a log directory left by a clean shutdown.
const CLEAN_SHUTDOWN_MARKER: &str = ".kafka_cleanshutdown";

/// Reads Kafka's offset checkpoint format: a version line (0), a count, then
/// `topic partition offset` lines. A missing or unreadable file gives nothing.
fn read_offset_checkpoint(path: &Path) -> HashMap<TopicPartition, i64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        warn!(path = %path.display(), "ignoring an offset checkpoint of an unknown version");
        return HashMap::new();
    }
    lines
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (topic, partition, offset) = (fields.next()?, fields.next()?, fields.next()?);
            Some((
                (topic.to_string(), partition.parse().ok()?),
                offset.parse().ok()?,
            ))
        })
        .collect()
}

fn offset_checkpoint_text(offsets: &[(TopicPartition, i64)]) -> String {
    let mut text = format!("0\n{}\n", offsets.len());
    for ((topic, partition), offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    text
}

impl LogManager {
    /// Uses the first `log.dirs` entry for partition data, and reads what the last shutdown
    /// left there: the high watermarks, and whether it was clean (the marker is removed, so a
    /// crash from now on is recovered as one).
    pub fn new(broker: Arc<BrokerConfig>) -> io::Result<Self> {
        let root = broker.log_dirs[0].clone();
        std::fs::create_dir_all(&root)?;
        let high_watermarks = read_offset_checkpoint(&root.join(HIGH_WATERMARK_CHECKPOINT));
        let marker = root.join(CLEAN_SHUTDOWN_MARKER);
        let clean_shutdown = marker.exists();
        if clean_shutdown {
            std::fs::remove_file(&marker)?;
            super::sync_parent(&marker)?;
            info!("the last shutdown was clean: segments are not scanned");
        }
        Ok(LogManager {
            root,
            open_files: Arc::new(OpenFiles::for_this_process()),
            broker,
            logs: RwLock::new(LogTable::default()),
            synced: Mutex::new(Synced {
                index: None,
                all_checked: None,
            }),
            metadata_complete: AtomicBool::new(false),
            directory_searched: AtomicBool::new(false),
            dirs_awaiting_removal: AtomicBool::new(true),
            clean_shutdown,
            high_watermarks,
        })
    }

    /// The open log of a partition, if this broker has it.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic, partition)
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
        if let Some(log) = logs.get(topic, partition) {
            return Ok(log.clone());
        }
        let key = (topic.to_string(), partition);
        let config = LogConfig::new(&self.broker, &image.configs);
        let recovery = Recovery {
            clean_shutdown: self.clean_shutdown,
            high_watermark: self.high_watermarks.get(&key).copied(),
        };
        let dir = self.root.join(dir_name(topic, partition));
        if dir.exists() {
            // An older topic's directory of the same name is moved aside when it opens.
            self.dirs_awaiting_removal.store(true, Ordering::Release);
        }
        let log = Arc::new(PartitionLog::open_with(
            &dir,
            config,
            &image.id.to_string(),
            recovery,
            self.open_files.clone(),
        )?);
        logs.insert(topic, partition, log.clone());
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
    /// of partitions it no longer hosts (deleted topics, moved replicas); after the first
    /// image, only the topics changed since the last one synced are looked at (all of them
    /// after a topic deletion).
    /// An image older than one already synced is skipped (returns false): the metadata
    /// follower and a handler that just changed the metadata may both sync, in either order.
    pub fn sync_with_image(&self, image: &MetadataImage) -> io::Result<bool> {
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let since = synced.index;
        if since.is_some_and(|since| image.applied_index < since) {
            return Ok(false);
        }
        synced.index = None;
        // Every open log is checked against the image now and then, not only at a deletion:
        // a log opened meanwhile from an older image is dropped too.
        let check_all = synced
            .all_checked
            .is_none_or(|at| at.elapsed() >= CHECK_ALL_LOGS_EVERY);
        self.sync_changes(image, since, check_all)?;
        if check_all {
            synced.all_checked = Some(Instant::now());
        }
        synced.index = Some(image.applied_index);
        Ok(true)
    }

    fn sync_changes(
        &self,
        image: &MetadataImage,
        since: Option<u64>,
        check_all: bool,
    ) -> io::Result<()> {
        let whole = since.is_none_or(|since| image.topic_deleted_at > since);
        let since = since.filter(|_| !whole);
        let stale: Vec<TopicPartition> = {
            let logs = self.logs.read().unwrap_or_else(|e| e.into_inner());
            if whole || check_all {
                logs.iter()
                    .filter(|(t, p, _)| !self.hosts(image, t, *p))
                    .map(|(t, p, _)| (t.clone(), p))
                    .collect()
            } else {
                image
                    .topics_changed_since(since)
                    .flat_map(|(topic, t)| {
                        t.partitions
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| !p.replicas.contains(&self.broker.node_id))
                            .map(|(i, _)| (topic.clone(), i as i32))
                    })
                    .filter(|(t, p)| logs.get(t, *p).is_some())
                    .collect()
            }
        };
        // The image may lag the quorum (a restart, a rebuilt metadata log): a directory it
        // does not list is kept until this node has caught up.
        let complete = self.metadata_complete.load(Ordering::Acquire);
        for key in stale {
            self.logs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key.0, key.1);
            if complete {
                self.delete_dir(&dir_name(&key.0, key.1));
            }
        }
        if complete && !self.directory_searched.load(Ordering::Acquire) {
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
                    self.delete_dir(&name);
                }
            }
            self.directory_searched.store(true, Ordering::Release);
        }
        for (topic, ti) in image.topics_changed_since(since) {
            let config = LogConfig::new(&self.broker, &ti.configs);
            for (partition, p) in ti.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.broker.node_id) {
                    continue;
                }
                let log = self.get_or_open(topic, partition as i32, ti)?;
                if log.config() != config {
                    log.set_config(config.clone());
                }
            }
        }
        Ok(())
    }

    /// Moves the directory `name` aside for deletion after `log.segment.delete.delay.ms`.
    fn delete_dir(&self, name: &str) {
        self.dirs_awaiting_removal.store(true, Ordering::Release);
        match schedule_dir_deletion(&self.root.join(name)) {
            Ok(doomed) => {
                info!(dir = %name, moved_to = %doomed.display(), "the metadata no longer assigns this partition here; deleting it after log.segment.delete.delay.ms")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(dir = %name, error = %e, "could not move a log directory aside for deletion")
            }
        }
    }

    /// Every open log.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<PartitionLog>)> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(t, p, log)| ((t.clone(), p), log.clone()))
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
        if self.dirs_awaiting_removal.swap(false, Ordering::AcqRel) {
            match remove_deleted_dirs(&self.root, delay) {
                Ok(swept) if swept.waiting == 0 => {}
                Ok(_) => self.dirs_awaiting_removal.store(true, Ordering::Release),
                Err(e) => {
                    self.dirs_awaiting_removal.store(true, Ordering::Release);
                    warn!(error = %e, "could not remove deleted partition directories");
                }
            }
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

    /// Records every log's recovery point and producer state, and the high watermarks in
    /// `replication-offset-checkpoint` (`replica.high.watermark.checkpoint.interval.ms`).
    pub fn checkpoint_all(&self) -> io::Result<()> {
        let mut high_watermarks = Vec::new();
        for ((topic, partition), log) in self.all() {
            if let Err(e) = log.checkpoint() {
                warn!(%topic, partition, error = %e, "checkpoint failed");
            }
            high_watermarks.push(((topic, partition), log.high_watermark()));
        }
        high_watermarks.sort();
        super::write_file_atomic(
            &self.root.join(HIGH_WATERMARK_CHECKPOINT),
            offset_checkpoint_text(&high_watermarks).as_bytes(),
        )
    }

    /// Flushes everything, records the checkpoints and, if all of it worked, marks the
    /// shutdown clean so the next start skips the CRC scan.
    pub fn flush_all(&self) {
        let logs = self.all();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        // A flush waits on the disk (fsyncs of the segment, the producer snapshot and the
        // recovery point), so several run at once: a broker with 100,000 logs stops in
        // seconds, not minutes.
        std::thread::scope(|scope| {
            for _ in 0..SHUTDOWN_FLUSH_THREADS.min(logs.len()) {
                scope.spawn(|| {
                    while let Some(((topic, partition), log)) =
                        logs.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        if let Err(e) = log.flush() {
                            warn!(%topic, partition, error = %e, "flush at shutdown failed");
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let mut clean = !failed.into_inner();
        if let Err(e) = self.checkpoint_all() {
            warn!(error = %e, "high watermark checkpoint at shutdown failed");
            clean = false;
        }
        if clean {
            if let Err(e) = super::write_file_atomic(&self.root.join(CLEAN_SHUTDOWN_MARKER), b"") {
                warn!(error = %e, "could not mark the shutdown clean");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoints_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HIGH_WATERMARK_CHECKPOINT);
        let offsets = vec![(("a-b".to_string(), 0), 5), (("c".to_string(), 12), 99)];
        std::fs::write(&path, offset_checkpoint_text(&offsets)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "0\n2\na-b 0 5\nc 12 99\n"
        );
        assert_eq!(
            read_offset_checkpoint(&path),
            offsets.into_iter().collect::<HashMap<_, _>>()
        );
        assert!(read_offset_checkpoint(&dir.path().join("missing")).is_empty());
    }

    fn config_in(dir: &Path) -> Arc<BrokerConfig> {
        let dirs = format!("log.dirs={}", dir.display());
        Arc::new(BrokerConfig::load(None, Vec::new(), &[dirs]).unwrap())
    }

    #[test]
    fn a_clean_shutdown_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let manager = LogManager::new(config.clone()).unwrap();
        assert!(!manager.clean_shutdown);
        manager.flush_all();
        assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
        assert!(LogManager::new(config.clone()).unwrap().clean_shutdown);
        assert!(
            !LogManager::new(config).unwrap().clean_shutdown,
            "removed once read"
        );
    }

    #[test]
    fn a_shutdown_flushes_every_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let manager = LogManager::new(config).unwrap();
        let topic = TopicImage {
            id: uuid::Uuid::new_v4(),
            partitions: Vec::new(),
            configs: BTreeMap::new(),
            changed_at: 0,
        };
        let count = SHUTDOWN_FLUSH_THREADS as i32 * 3 + 1;
        for partition in 0..count {
            let log = manager.get_or_open("t", partition, &topic).unwrap();
            log.set_replica_role(1, 1, 0, 0, &[1], &[1]).unwrap();
            crate::log::tests::append(&log, partition + 1, 1);
        }
        manager.flush_all();
        for partition in 0..count {
            let recovery_point = dir
                .path()
                .join(dir_name("t", partition))
                .join(crate::log::RECOVERY_POINT_FILE);
            assert_eq!(
                std::fs::read_to_string(recovery_point).unwrap(),
                (partition + 1).to_string(),
                "partition {partition}"
            );
        }
        assert!(dir.path().join(CLEAN_SHUTDOWN_MARKER).exists());
    }

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
