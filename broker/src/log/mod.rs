//! The per-partition segmented log.

pub mod batch;
pub mod cleaner;
pub mod epochs;
pub mod index;
pub mod manager;
pub mod meta_properties;
pub mod open_files;
pub mod producer_state;
pub mod records;
pub mod replica;
pub mod segment;
pub mod txn_index;
pub mod validate;

mod append;
mod checkpoint;
mod files;
mod read;
mod recovery;
mod retention;
mod role;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::topic_config::LogConfig;
use epochs::EpochCache;
use open_files::OpenFiles;
use producer_state::{ProducerError, ProducerStates};
use replica::ReplicaState;
use segment::Segment;
use txn_index::{AbortedTxn, TxnIndex};

use files::read_i64_file;
pub use files::{
    remove_deleted_dirs, schedule_dir_deletion, sync_parent, write_file_atomic, Swept,
    DELETE_DIR_SUFFIX,
};
pub use read::TimestampMatch;

const RECOVERY_POINT_FILE: &str = "recovery-point";
const LOG_START_FILE: &str = "log-start-offset";
const PRODUCER_SNAPSHOT_FILE: &str = "producer-snapshot.json";
const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Errors a log operation reports to the request handlers.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The requested offset is outside `[log start, log end]`.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// A filesystem error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// An idempotent producer's epoch or sequence is wrong.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error("batch of {size} bytes is larger than max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// Replicated batches do not continue the log (a follower must truncate first).
    #[error("replicated batches start at offset {got}, the log ends at {expected}")]
    NotContiguous { expected: i64, got: i64 },
    /// Replicated bytes are not valid record batches.
    #[error("replicated batch is invalid: {0}")]
    Corrupt(#[from] batch::BatchError),
    /// This broker does not lead the partition at the request's leader epoch, or has not
    /// applied its role yet (a partition created a moment ago).
    #[error("{0}")]
    NotLeader(String),
    /// acks=all, and the ISR is smaller than `min.insync.replicas` before the append.
    #[error("ISR has {isr} replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: usize, min: usize },
    /// A filesystem error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a leader append requires of the partition's replica state. It is checked under
/// the log's lock, so the check and the write see the same leadership and ISR.
#[derive(Debug, Clone, Copy)]
pub struct Leadership {
    /// The leader epoch the request was routed under.
    pub leader_epoch: i32,
    /// For acks=all: the ISR size `min.insync.replicas` requires.
    pub min_isr: Option<usize>,
}

/// The result of an append.
#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// The broker time stamped on the batches, or -1 for CreateTime topics.
    pub log_append_time: i64,
    /// `flush.messages` is reached: the append must be fsynced (`sync_through`) before it
    /// is acknowledged.
    pub needs_sync: bool,
}

/// What a log knows at open from the last shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recovery {
    /// The broker shut down cleanly: every segment was flushed, so none needs a CRC scan.
    pub clean_shutdown: bool,
    /// The high watermark from the replication-offset checkpoint (0 when unknown).
    pub high_watermark: Option<i64>,
}

/// Bytes read for a fetch plus the offsets the response reports.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole record batches, exactly as stored.
    pub records: Bytes,
    /// The high watermark when the read happened.
    pub high_watermark: i64,
    /// The last stable offset when the read happened.
    pub last_stable_offset: i64,
    /// The log start offset when the read happened.
    pub log_start_offset: i64,
    /// For read_committed: the aborted transactions with records in what was read.
    pub aborted: Vec<AbortedTxn>,
}

/// How far a read may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// To the high watermark: read_uncommitted consumers.
    HighWatermark,
    /// To the last stable offset: read_committed consumers.
    LastStable,
    /// To the log end: followers.
    LogEnd,
}

struct LogState {
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    next_offset: i64,
    high_watermark: i64,
    /// Everything before this offset is fsynced.
    flushed_offset: i64,
    last_flush_ms: i64,
    producers: ProducerStates,
    txns: TxnIndex,
    epochs: EpochCache,
    replica: ReplicaState,
    /// How much earlier than `segment.ms` the active segment rolls (`segment.jitter.ms`).
    roll_jitter_ms: i64,
    /// The recovery point the last checkpoint recorded: it is not written again unchanged.
    checkpointed: Option<i64>,
    /// Segments deleted with a delay, their files left for the sweep; and how many of them
    /// the last sweep that found nothing left covered: a log with none waiting is not swept.
    retired: u64,
    retired_swept: u64,
}

impl LogState {
    /// Moves the high watermark to what the ISR allows; returns whether it moved.
    fn advance_high_watermark(&mut self) -> bool {
        let before = self.high_watermark;
        self.high_watermark = self.replica.high_watermark(before, self.next_offset);
        self.high_watermark != before
    }

    /// Deletes a removed segment after `delay_ms` (`Segment::delete_after`), noting that
    /// its files wait for the sweep.
    fn retire(&mut self, segment: Segment, delay_ms: i64) -> io::Result<()> {
        if delay_ms > 0 {
            self.retired += 1;
        }
        segment.delete_after(delay_ms)
    }

    /// The high watermark, held back by the first offset of the earliest open transaction.
    fn last_stable_offset(&self) -> i64 {
        self.txns
            .first_unstable_offset()
            .map_or(self.high_watermark, |first| first.min(self.high_watermark))
    }
}

/// One partition's log: segments on disk and the offsets that describe them.
pub struct PartitionLog {
    dir: PathBuf,
    state: Mutex<LogState>,
    config: RwLock<LogConfig>,
    /// One fsync at a time; the appends that wait meanwhile share the next one.
    sync_turn: tokio::sync::Mutex<()>,
    /// Wakes this partition's waiters (fetches, acks=all produces) when its log end, high
    /// watermark or replication role changes.
    changed: Notify,
    /// The broker's cache of open segment files.
    open_files: Arc<OpenFiles>,
    /// Set when the log manager lets go of this log (the partition left this broker, or its
    /// topic was deleted): a request that looked it up earlier looks the partition up again.
    dropped: AtomicBool,
}

impl PartitionLog {
    /// Whether the log manager let go of this log.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    /// Marks this log as let go of by the log manager.
    pub(crate) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in force.
    pub fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the settings (after a topic config change).
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.lock().log_start_offset
    }

    /// Offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.lock().next_offset
    }

    /// Offset up to which records are committed and visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.lock().high_watermark
    }

    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(Segment::size).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::batch::tests::make_batch;

    pub(super) fn config(overrides: &[(&str, &str)]) -> LogConfig {
        let broker = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        let map = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogConfig::new(&broker, &map)
    }

    /// What test appends are made under: the role `open_leader` applies.
    pub(crate) const LEADER: Leadership = Leadership {
        leader_epoch: 0,
        min_isr: None,
    };

    /// Opens a log that leads its partition alone, as a single node's would.
    pub(crate) fn open_leader(
        dir: &Path,
        config: LogConfig,
        topic_id: &str,
    ) -> io::Result<PartitionLog> {
        let log = PartitionLog::open(dir, config, topic_id)?;
        log.set_replica_role(1, 1, 0, 0, &[1], &[1])?;
        Ok(log)
    }

    pub(super) fn append(log: &PartitionLog, count: i32, ts: i64) -> AppendInfo {
        let b = make_batch(count, ts);
        let headers = batch::validate_all(&b).unwrap();
        log.append(&b, &headers, LEADER).unwrap()
    }

    #[test]
    fn an_append_wakes_the_waiters_of_its_own_partition_only() {
        use std::future::Future;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open_leader(a.path(), config(&[]), "a").unwrap();
        let b = open_leader(b.path(), config(&[]), "b").unwrap();
        let mut on_a = Box::pin(a.changed());
        let mut on_b = Box::pin(b.changed());
        on_a.as_mut().enable();
        on_b.as_mut().enable();
        append(&a, 1, 1);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(on_a.as_mut().poll(&mut cx).is_ready());
        assert!(on_b.as_mut().poll(&mut cx).is_pending());
        b.set_replica_role(1, 2, 1, 1, &[1, 2], &[1, 2]).unwrap();
        assert!(
            on_b.as_mut().poll(&mut cx).is_ready(),
            "a new role wakes acks=all waiters"
        );
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[("segment.bytes", "300")]), "t1").unwrap();
        for i in 0..20 {
            assert_eq!(append(&log, 2, 1000 + i).base_offset, i * 2);
        }
        assert!(log.segment_count() > 3);
        assert_eq!(log.log_end_offset(), 40);
        let r = log.read(13, 1, true).unwrap();
        let h = batch::validate(&r.records).unwrap();
        assert_eq!((h.base_offset, r.high_watermark), (12, 40));
        let first_segment =
            batch::validate_all(&log.read(0, 100_000, true).unwrap().records).unwrap();
        let bases: Vec<i64> = first_segment.iter().map(|h| h.base_offset).collect();
        assert_eq!(
            bases,
            (0..first_segment.len() as i64)
                .map(|i| i * 2)
                .collect::<Vec<_>>()
        );
        assert!(matches!(
            log.read(41, 10, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(40, 10, true).unwrap().records.is_empty());
        drop(log);
        let log = open_leader(dir.path(), config(&[("segment.bytes", "300")]), "t1").unwrap();
        assert_eq!(log.log_end_offset(), 40);
        assert_eq!(append(&log, 1, 5000).base_offset, 40);
    }

    #[test]
    fn open_and_aborted_transactions_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        let append_raw = |log: &PartitionLog, b: &[u8]| {
            log.append(b, &batch::validate_all(b).unwrap(), LEADER)
                .unwrap()
        };
        append(&log, 2, 100);
        append_raw(&log, &txn_index::transactional_batch(7, 0, "k", "aborted"));
        log.append_marker(7, 0, false, 0, LEADER).unwrap();
        let open = append_raw(&log, &txn_index::transactional_batch(8, 0, "k", "open"));
        append(&log, 1, 200);
        let check = |log: &PartitionLog| {
            log.set_follower_high_watermark(log.log_end_offset());
            let read = log
                .read_until(0, 1 << 20, true, ReadLimit::LastStable)
                .unwrap();
            assert_eq!(read.last_stable_offset, open.base_offset);
            assert_eq!(
                read.aborted,
                vec![AbortedTxn {
                    producer_id: 7,
                    first_offset: 2,
                    last_offset: 3
                }]
            );
            let uncommitted = log.read(0, 1 << 20, true).unwrap();
            assert!(uncommitted.records.len() > read.records.len());
            assert!(uncommitted.aborted.is_empty());
        };
        check(&log);
        drop(log);
        // No snapshot was written (no roll, no flush): the reopen replays the segment.
        let log = PartitionLog::open(dir.path(), config(&[]), "t").unwrap();
        check(&log);
        log.flush().unwrap();
        drop(log);
        // Now from the snapshot.
        let log = PartitionLog::open(dir.path(), config(&[]), "t").unwrap();
        check(&log);
    }
}
