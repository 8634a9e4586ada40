//! The per-partition segmented log.

pub mod batch;
pub mod cleaner;
pub mod epochs;
pub mod index;
pub mod manager;
pub mod meta_properties;
pub mod producer_state;
pub mod records;
pub mod replica;
pub mod segment;
pub mod txn_index;
pub mod validate;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::topic_config::LogConfig;
use batch::BatchHeader;
use epochs::EpochCache;
use producer_state::{ProducerError, ProducerStates, SequenceCheck};
use replica::ReplicaState;
use segment::{now_ms, random_jitter, OpenOutcome, Segment};
use txn_index::{AbortedTxn, TxnIndex};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const LOG_START_FILE: &str = "log-start-offset";
const TOPIC_ID_FILE: &str = "partition.metadata";
const PRODUCER_SNAPSHOT_FILE: &str = "producer-snapshot.json";
const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Producer state as of an offset, so start-up scans only the batches after it.
#[derive(serde::Deserialize)]
struct ProducerSnapshot {
    offset: i64,
    producers: ProducerStates,
    #[serde(default)]
    txns: TxnIndex,
}

/// The same, borrowed for writing.
#[derive(serde::Serialize)]
struct ProducerSnapshotRef<'a> {
    offset: i64,
    producers: &'a ProducerStates,
    txns: &'a TxnIndex,
}

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
}

impl LogState {
    /// Moves the high watermark to what the ISR allows; returns whether it moved.
    fn advance_high_watermark(&mut self) -> bool {
        let before = self.high_watermark;
        self.high_watermark = self.replica.high_watermark(before, self.next_offset);
        self.high_watermark != before
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
}

fn read_i64_file(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes a small file atomically: temp file, fsync, rename.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// fsyncs the directory holding `path`, so a create or rename in it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// The suffix Kafka gives a partition directory waiting to be deleted.
pub const DELETE_DIR_SUFFIX: &str = "-delete";

/// Moves a partition directory aside as `<name>.<unique>-delete`, stamped with the time;
/// `remove_deleted_dirs` removes it once `log.segment.delete.delay.ms` has passed.
pub fn schedule_dir_deletion(dir: &Path) -> io::Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let doomed = dir.with_file_name(format!(
        "{name}.{}{DELETE_DIR_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::rename(dir, &doomed)?;
    std::fs::File::open(&doomed)?.set_modified(std::time::SystemTime::now())?;
    sync_parent(&doomed)?;
    Ok(doomed)
}

/// Removes the `-delete` directories in `root` moved aside at least `delay_ms` ago.
pub fn remove_deleted_dirs(root: &Path, delay_ms: i64) -> io::Result<usize> {
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(DELETE_DIR_SUFFIX) || !entry.file_type()?.is_dir() {
            continue;
        }
        let due = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age.as_millis() as i64 >= delay_ms);
        if due {
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Replays the batches of `segment` from byte `from` (those at or after `from_offset`) into
/// the producer states and the transaction index.
fn replay_producers(
    segment: &Segment,
    from: u64,
    from_offset: i64,
    producers: &mut ProducerStates,
    txns: &mut TxnIndex,
) -> io::Result<()> {
    let mut batches = Vec::new();
    segment.scan(from, false, |position, h| {
        if h.base_offset >= from_offset {
            batches.push((position, h));
        }
        true
    })?;
    for (position, h) in batches {
        producers.record(&h);
        // Markers are rare: only they are read beyond their header.
        let marker = if txn_index::is_control(&h) {
            txn_index::marker_of(&segment.read_at(position, h.size)?, &h)
        } else {
            None
        };
        if let Some(m) = marker {
            producers.record_marker(h.producer_id, m.coordinator_epoch);
        }
        txns.record(&h, marker);
    }
    Ok(())
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering segments written after the last
    /// recovery point. `topic_id` is recorded so a recreated topic never reads old data.
    pub fn open(dir: &Path, config: LogConfig, topic_id: &str) -> io::Result<Self> {
        Self::open_with(dir, config, topic_id, Recovery::default())
    }

    /// Opens the log with what the last shutdown left: a clean shutdown skips the CRC scan of
    /// the segments after the recovery point, and the checkpointed high watermark is restored.
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        topic_id: &str,
        recovery: Recovery,
    ) -> io::Result<Self> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            sync_parent(dir)?;
        }
        let id_path = dir.join(TOPIC_ID_FILE);
        let id_line = format!("version: 0\ntopic_id: {topic_id}\n");
        match std::fs::read_to_string(&id_path) {
            Ok(existing) if existing == id_line => {}
            Ok(_) => {
                let doomed = schedule_dir_deletion(dir)?;
                warn!(dir = %dir.display(), moved_to = %doomed.display(), "partition directory belongs to an older topic; moved aside for deletion");
                std::fs::create_dir_all(dir)?;
                sync_parent(dir)?;
                write_file_atomic(&id_path, id_line.as_bytes())?;
            }
            Err(_) => write_file_atomic(&id_path, id_line.as_bytes())?,
        }
        cleaner::remove_stray_cleaned_files(dir)?;
        segment::remove_deleted_files(dir, None)?;
        let recovery_point = read_i64_file(&dir.join(RECOVERY_POINT_FILE)).unwrap_or(0);
        let bases = Segment::list(dir)?;
        let mut segments = BTreeMap::new();
        let mut truncated = false;
        for (i, &base) in bases.iter().enumerate() {
            if truncated {
                warn!(dir = %dir.display(), base, "removing segment after a truncated one");
                Segment::open(dir, base, false, 0)?.0.delete()?;
                continue;
            }
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let recover = !recovery.clean_shutdown && next_base > recovery_point;
            let (segment, outcome) =
                Segment::open(dir, base, recover, config.index_interval_bytes)?;
            if let OpenOutcome::Truncated(at) = outcome {
                warn!(dir = %dir.display(), base, at, "truncated a torn or corrupt tail");
                truncated = true;
            }
            segments.insert(base, segment);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let next_offset = segments
            .values()
            .next_back()
            .map(|s| s.next_offset)
            .unwrap_or(0);
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0)?);
        }
        let log_start_offset = read_i64_file(&dir.join(LOG_START_FILE))
            .unwrap_or(first_base)
            .max(first_base)
            .min(next_offset);
        let snapshot = std::fs::read(dir.join(PRODUCER_SNAPSHOT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<ProducerSnapshot>(&b).ok())
            .filter(|s| s.offset <= next_offset);
        let (mut producers, mut txns, replay_from) = match snapshot {
            Some(s) => (s.producers, s.txns, s.offset),
            None => (ProducerStates::default(), TxnIndex::default(), 0),
        };
        for segment in segments.values().filter(|s| s.next_offset > replay_from) {
            let from = match segment.position_of(replay_from)? {
                Some((pos, _)) if replay_from > segment.base_offset => pos,
                _ => 0,
            };
            replay_producers(segment, from, replay_from, &mut producers, &mut txns)?;
        }
        txns.forget_before(log_start_offset);
        if !bases.is_empty() {
            info!(dir = %dir.display(), segments = segments.len(), log_start_offset, next_offset, "loaded log");
        }
        let mut epochs = EpochCache::load(&dir.join(EPOCH_CHECKPOINT_FILE));
        if epochs.truncate_from(next_offset + 1) {
            epochs.save(&dir.join(EPOCH_CHECKPOINT_FILE))?;
        }
        let log = PartitionLog {
            dir: dir.to_path_buf(),
            state: Mutex::new(LogState {
                segments,
                log_start_offset,
                next_offset,
                high_watermark: recovery.high_watermark.unwrap_or(0).clamp(0, next_offset),
                flushed_offset: next_offset,
                last_flush_ms: now_ms(),
                producers,
                txns,
                epochs,
                replica: ReplicaState::default(),
                roll_jitter_ms: random_jitter(config.roll_jitter_ms),
            }),
            config: RwLock::new(config),
            sync_turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        };
        Ok(log)
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

    /// Assigns offsets to validated batches and writes them. `records` holds the batches
    /// back to back, described by `headers`. A retried idempotent batch that is already in
    /// the log is not written again; its original offsets are returned.
    pub fn append(
        &self,
        records: &[u8],
        headers: &[BatchHeader],
        leadership: Leadership,
    ) -> Result<AppendInfo, AppendError> {
        self.append_checked(records, headers, leadership, |_| Ok(()))
    }

    /// Appends like [`Self::append`] once `check` accepts the state, under the same lock.
    fn append_checked(
        &self,
        records: &[u8],
        headers: &[BatchHeader],
        leadership: Leadership,
        check: impl FnOnce(&LogState) -> Result<(), AppendError>,
    ) -> Result<AppendInfo, AppendError> {
        let leader_epoch = leadership.leader_epoch;
        let config = self.config();
        if let Some(big) = headers.iter().find(|h| h.size > config.max_message_bytes) {
            return Err(AppendError::TooLarge {
                size: big.size,
                max: config.max_message_bytes,
            });
        }
        let mut state = self.lock();
        state.replica.check_append(leadership)?;
        check(&state)?;
        for h in headers {
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = state.producers.check(h)?
            {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_start_offset: state.log_start_offset,
                    log_append_time: -1,
                    needs_sync: state.flushed_offset <= last_offset,
                });
            }
        }
        let mut buf = records.to_vec();
        let log_append_time = if config.log_append_time { now_ms() } else { -1 };
        let base_offset = state.next_offset;
        let mut next = base_offset;
        let mut at = 0;
        let mut assigned = Vec::with_capacity(headers.len());
        for h in headers {
            batch::assign_offset(&mut buf[at..at + h.size], next, leader_epoch);
            let mut stored = BatchHeader {
                base_offset: next,
                partition_leader_epoch: leader_epoch,
                ..*h
            };
            if log_append_time >= 0 {
                batch::set_log_append_time(&mut buf[at..at + h.size], log_append_time);
                stored.max_timestamp = log_append_time;
            }
            assigned.push(stored);
            next += h.last_offset_delta as i64 + 1;
            at += h.size;
        }
        let mut epochs = vec![(leader_epoch, base_offset)];
        self.write_locked(&mut state, &config, &buf, &assigned, &mut epochs, false)?;
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_start_offset: state.log_start_offset,
            log_append_time,
            needs_sync: state.next_offset - state.flushed_offset >= config.flush_messages,
        })
    }

    /// Writes batches whose offsets are final, rolling the segment first when due, and
    /// records them in the producer state, the epoch cache and the offsets.
    fn write_locked(
        &self,
        state: &mut LogState,
        config: &LogConfig,
        buf: &[u8],
        headers: &[BatchHeader],
        epoch_starts: &mut Vec<(i32, i64)>,
        sync_when_due: bool,
    ) -> io::Result<()> {
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Ok(());
        };
        let base_offset = first.base_offset;
        let next = last.last_offset() + 1;
        let needs_roll = {
            let active = state.segments.values().next_back().expect("a segment");
            active.size() > 0
                && (active.size() + buf.len() as u64 > config.segment_bytes
                    || active.due_to_roll(now_ms(), config.roll_ms, state.roll_jitter_ms)
                    || next - active.base_offset > u32::MAX as i64)
        };
        if needs_roll {
            state
                .segments
                .values()
                .next_back()
                .expect("a segment")
                .sync()?;
            let segment = Segment::create(&self.dir, base_offset)?;
            state.segments.insert(base_offset, segment);
            state.roll_jitter_ms = random_jitter(config.roll_jitter_ms);
            // The rolled segment is synced: everything before the new one is durable.
            state.flushed_offset = state.flushed_offset.max(base_offset);
            write_file_atomic(
                &self.dir.join(RECOVERY_POINT_FILE),
                base_offset.to_string().as_bytes(),
            )?;
            Self::snapshot_producers(&self.dir, state)?;
        }
        let mut epochs_changed = false;
        for (epoch, offset) in epoch_starts.drain(..) {
            epochs_changed |= state.epochs.assign(epoch, offset);
        }
        if epochs_changed {
            state.epochs.save(&self.dir.join(EPOCH_CHECKPOINT_FILE))?;
        }
        let active = state.segments.values_mut().next_back().expect("a segment");
        active.append(buf, headers, config.index_interval_bytes)?;
        let mut at = 0;
        for h in headers {
            state.producers.record(h);
            let marker = txn_index::is_control(h)
                .then(|| txn_index::marker_of(&buf[at..at + h.size], h))
                .flatten();
            if let Some(m) = marker {
                state
                    .producers
                    .record_marker(h.producer_id, m.coordinator_epoch);
            }
            state.txns.record(h, marker);
            at += h.size;
        }
        state.next_offset = next;
        state.advance_high_watermark();
        self.changed.notify_waiters();
        if sync_when_due && state.next_offset - state.flushed_offset >= config.flush_messages {
            Self::sync_locked(state)?;
        }
        Ok(())
    }

    /// Appends batches copied from the leader: offsets and epochs are kept as they are.
    /// They must continue this log exactly.
    pub fn append_as_follower(&self, records: &[u8]) -> Result<(), AppendError> {
        if records.is_empty() {
            return Ok(());
        }
        let headers = batch::validate_all(records)?;
        let config = self.config();
        let mut state = self.lock();
        let first = headers
            .first()
            .expect("validate_all returns at least one batch");
        if first.base_offset != state.next_offset {
            return Err(AppendError::NotContiguous {
                expected: state.next_offset,
                got: first.base_offset,
            });
        }
        let mut epochs: Vec<(i32, i64)> = headers
            .iter()
            .map(|h| (h.partition_leader_epoch, h.base_offset))
            .collect();
        self.write_locked(&mut state, &config, records, &headers, &mut epochs, true)?;
        Ok(())
    }

    fn snapshot_producers(dir: &Path, state: &LogState) -> io::Result<()> {
        let json = serde_json::to_vec(&ProducerSnapshotRef {
            offset: state.next_offset,
            producers: &state.producers,
            txns: &state.txns,
        })?;
        write_file_atomic(&dir.join(PRODUCER_SNAPSHOT_FILE), &json)
    }

    /// fsyncs the active segment (rolled ones were synced when they rolled).
    fn sync_locked(state: &mut LogState) -> io::Result<()> {
        if let Some(active) = state.segments.values().next_back() {
            active.sync()?;
        }
        state.flushed_offset = state.next_offset;
        state.last_flush_ms = now_ms();
        Ok(())
    }

    /// fsyncs, then records the recovery point and the producer state on disk.
    fn flush_locked(dir: &Path, state: &mut LogState) -> io::Result<()> {
        Self::sync_locked(state)?;
        Self::checkpoint_locked(dir, state)
    }

    fn checkpoint_locked(dir: &Path, state: &LogState) -> io::Result<()> {
        Self::snapshot_producers(dir, state)?;
        write_file_atomic(
            &dir.join(RECOVERY_POINT_FILE),
            state.flushed_offset.to_string().as_bytes(),
        )
    }

    /// Records the recovery point (what is fsynced) and the producer state, so the next
    /// start after a crash scans only what came after.
    pub fn checkpoint(&self) -> io::Result<()> {
        let state = self.lock();
        Self::checkpoint_locked(&self.dir, &state)
    }

    /// Makes everything before `end_offset` durable. Group commit: one fsync of the active
    /// segment, outside the log lock, covers every batch appended before it; appends that
    /// arrive meanwhile wait for it and are covered by the next one.
    pub async fn sync_through(self: &Arc<Self>, end_offset: i64) -> io::Result<()> {
        if self.lock().flushed_offset >= end_offset {
            return Ok(());
        }
        let _turn = self.sync_turn.lock().await;
        let (file, upto) = {
            let state = self.lock();
            if state.flushed_offset >= end_offset {
                return Ok(());
            }
            let active = state.segments.values().next_back().expect("a segment");
            (active.file(), state.next_offset)
        };
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io::Error::other)??;
        let mut state = self.lock();
        state.flushed_offset = state.flushed_offset.max(upto);
        state.last_flush_ms = now_ms();
        Ok(())
    }

    /// Flushes to disk and advances the recovery point.
    pub fn flush(&self) -> io::Result<()> {
        let mut state = self.lock();
        Self::flush_locked(&self.dir, &mut state)
    }

    /// Flushes when `flush.ms` has passed since the last flush.
    pub fn flush_if_due(&self, now: i64) -> io::Result<()> {
        let flush_ms = self.config().flush_ms;
        let mut state = self.lock();
        if state.flushed_offset < state.next_offset
            && now.saturating_sub(state.last_flush_ms) >= flush_ms
        {
            Self::flush_locked(&self.dir, &mut state)?;
        }
        Ok(())
    }

    /// Reads whole batches from `offset`, at most `max_bytes` unless `min_one` and the first
    /// batch alone is larger (KIP-74). Never returns data at or past the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, LogError> {
        self.read_until(offset, max_bytes, min_one, ReadLimit::HighWatermark)
    }

    /// Reads like [`Self::read`] but up to the log end: what a follower replicates.
    pub fn read_for_follower(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        self.read_until(offset, max_bytes, true, ReadLimit::LogEnd)
    }

    /// Reads whole batches from `offset` up to `limit`; a read_committed read (`LastStable`)
    /// also reports the aborted transactions in what it returns.
    pub fn read_until(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        limit: ReadLimit,
    ) -> Result<ReadResult, LogError> {
        let (file, position, available, end, log_start_offset) = {
            let state = self.lock();
            let empty = ReadResult {
                records: Bytes::new(),
                high_watermark: state.high_watermark,
                last_stable_offset: state.last_stable_offset(),
                log_start_offset: state.log_start_offset,
                aborted: Vec::new(),
            };
            if offset < state.log_start_offset || offset > state.next_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    start: state.log_start_offset,
                    end: state.next_offset,
                });
            }
            let end = match limit {
                ReadLimit::HighWatermark => state.high_watermark,
                ReadLimit::LastStable => state.last_stable_offset(),
                ReadLimit::LogEnd => state.next_offset,
            };
            if offset >= end {
                return Ok(empty);
            }
            let mut found = None;
            for segment in state
                .segments
                .range(..=offset)
                .next_back()
                .into_iter()
                .chain(
                    state
                        .segments
                        .range(offset + 1..)
                        .take(state.segments.len()),
                )
            {
                if let Some((pos, header)) = segment.1.position_of(offset)? {
                    found = Some((segment.1, pos, header));
                    break;
                }
            }
            let Some((segment, position, first)) = found else {
                return Ok(empty);
            };
            let available = segment.size() - position;
            let want = if min_one {
                max_bytes.max(first.size)
            } else {
                max_bytes
            };
            (
                segment.file(),
                position,
                (available as usize).min(want),
                end,
                state.log_start_offset,
            )
        };
        let mut buf = vec![0u8; available];
        file.read_exact_at(&mut buf, position)?;
        let mut used = 0;
        let mut next_offset = offset;
        while let Some(size) = batch::peek_size(&buf[used..]) {
            let Ok(h) = batch::parse_header_only(&buf[used..]) else {
                break;
            };
            if used + size > buf.len() || h.base_offset >= end {
                break;
            }
            used += size;
            next_offset = h.last_offset() + 1;
        }
        buf.truncate(used);
        let state = self.lock();
        let aborted = if limit == ReadLimit::LastStable && used > 0 {
            state.txns.aborted_between(offset, next_offset)
        } else {
            Vec::new()
        };
        Ok(ReadResult {
            records: Bytes::from(buf),
            high_watermark: state.high_watermark,
            last_stable_offset: state.last_stable_offset(),
            log_start_offset,
            aborted,
        })
    }

    /// The last stable offset: what read_committed consumers may read up to.
    pub fn last_stable_offset(&self) -> i64 {
        self.lock().last_stable_offset()
    }

    /// The producers this partition remembers, each with the first offset of its open
    /// transaction here (-1 when none).
    pub fn producers(&self) -> Vec<(producer_state::ProducerSummary, i64)> {
        let state = self.lock();
        state
            .producers
            .summaries()
            .into_iter()
            .map(|p| (p, state.txns.open_since(p.producer_id).unwrap_or(-1)))
            .collect()
    }

    /// How many transactions are open in this partition.
    pub fn open_transactions(&self) -> usize {
        self.lock().txns.open_count()
    }

    /// Writes a transaction marker for `producer_id` as the leader at `leadership`: a commit
    /// makes its records visible to read_committed consumers, an abort hides them.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leadership: Leadership,
    ) -> Result<AppendInfo, AppendError> {
        let buf = txn_index::encode_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms(),
        )?;
        let headers = batch::validate_all(&buf)?;
        self.append_checked(&buf, &headers, leadership, |state| {
            Ok(state
                .producers
                .check_marker(producer_id, coordinator_epoch)?)
        })
    }

    /// Reads the single batch at `position` of the segment starting at `base`.
    fn read_batch(&self, base: i64, position: u64, size: usize) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let segment = state
            .segments
            .get(&base)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment was deleted"))?;
        segment.read_at(position, size)
    }

    /// Whether this broker leads the partition at `leader_epoch`, by the role the log has
    /// applied (the metadata image may already say so before the role is applied).
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        let state = self.lock();
        let r = &state.replica;
        r.me >= 0 && r.is_leader && r.leader_epoch == leader_epoch
    }

    /// A wake-up for the next change of the log end, the high watermark or the replication
    /// role. Enable it before checking the state it waits for, so no change is missed between.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// This partition's replication role and progress.
    pub fn replica_state(&self) -> ReplicaState {
        self.lock().replica.clone()
    }

    /// Applies the controller's view of the partition: leads it at `leader_epoch` with this
    /// ISR, or follows.
    pub fn set_replica_role(
        &self,
        me: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> io::Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        state.replica.replicas = replicas.to_vec();
        state.replica.isr = isr.to_vec();
        state.replica.partition_epoch = partition_epoch;
        if leader == me {
            state
                .replica
                .become_leader(me, leader_epoch, state.next_offset, now_ms());
            if state.epochs.assign(leader_epoch, state.next_offset) {
                state.epochs.save(&self.dir.join(EPOCH_CHECKPOINT_FILE))?;
            }
        } else {
            state.replica.become_follower(me, leader_epoch);
        }
        state.advance_high_watermark();
        self.changed.notify_waiters();
        Ok(())
    }

    /// Records a follower's fetch (the leader side), which may move the high watermark.
    pub fn record_follower_fetch(&self, replica: i32, fetch_offset: i64, now: i64) {
        let mut state = self.lock();
        let state = &mut *state;
        state
            .replica
            .record_fetch(replica, fetch_offset, state.next_offset, now);
        if state.advance_high_watermark() {
            self.changed.notify_waiters();
        }
    }

    /// The ISR this leader should ask for, with the role it was computed under.
    pub fn wanted_isr(&self, now: i64, lag_ms: i64) -> Option<(ReplicaState, Vec<i32>)> {
        let state = self.lock();
        let isr = state
            .replica
            .wanted_isr(state.high_watermark, now, lag_ms)?;
        Some((state.replica.clone(), isr))
    }

    /// A follower takes the leader's high watermark, capped by its own log end.
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let mut state = self.lock();
        let high_watermark = leader_high_watermark.min(state.next_offset);
        if high_watermark != state.high_watermark {
            state.high_watermark = high_watermark;
            self.changed.notify_waiters();
        }
    }

    /// The latest leader epoch in the log's epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest()
    }

    /// OffsetForLeaderEpoch: the largest epoch not above `epoch` and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.next_offset)
    }

    /// Cuts the log back to `offset` (a follower dropping a divergent or uncommitted tail).
    pub fn truncate_to(&self, offset: i64) -> io::Result<()> {
        let config = self.config();
        let mut state = self.lock();
        if offset >= state.next_offset {
            return Ok(());
        }
        let offset = offset.max(state.log_start_offset);
        warn!(dir = %self.dir.display(), from = state.next_offset, to = offset, "truncating the log");
        let doomed: Vec<i64> = state.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if let Some(segment) = state.segments.remove(&base) {
                segment.delete_after(config.file_delete_delay_ms)?;
            }
        }
        if let Some((&base, segment)) = state.segments.range(..offset).next_back() {
            let mut cut = segment.size();
            segment.scan(0, false, |position, h| {
                if h.last_offset() >= offset {
                    cut = position;
                    return false;
                }
                true
            })?;
            segment.file().set_len(cut)?;
            segment.file().sync_all()?;
            let (reopened, _) = Segment::open(&self.dir, base, true, config.index_interval_bytes)?;
            state.segments.insert(base, reopened);
        }
        if state.segments.is_empty() {
            state
                .segments
                .insert(offset, Segment::create(&self.dir, offset)?);
        }
        self.reset_after_truncation(&mut state)
    }

    /// Empties the log and restarts it at `offset` (a follower behind the leader's log start).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> io::Result<()> {
        let delay = self.config().file_delete_delay_ms;
        let mut state = self.lock();
        let bases: Vec<i64> = state.segments.keys().copied().collect();
        for base in bases {
            if let Some(segment) = state.segments.remove(&base) {
                segment.delete_after(delay)?;
            }
        }
        state
            .segments
            .insert(offset, Segment::create(&self.dir, offset)?);
        state.log_start_offset = offset;
        write_file_atomic(
            &self.dir.join(LOG_START_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.reset_after_truncation(&mut state)
    }

    fn reset_after_truncation(&self, state: &mut LogState) -> io::Result<()> {
        let next = state
            .segments
            .values()
            .next_back()
            .map_or(state.log_start_offset, |s| s.next_offset.max(s.base_offset));
        state.next_offset = next;
        state.high_watermark = state.high_watermark.min(next);
        self.changed.notify_waiters();
        if state.epochs.truncate_from(next) {
            state.epochs.save(&self.dir.join(EPOCH_CHECKPOINT_FILE))?;
        }
        let mut producers = ProducerStates::default();
        let mut txns = TxnIndex::default();
        for segment in state.segments.values() {
            replay_producers(segment, 0, 0, &mut producers, &mut txns)?;
        }
        txns.forget_before(state.log_start_offset);
        state.producers = producers;
        state.txns = txns;
        Self::flush_locked(&self.dir, state)
    }

    /// The offset and timestamp of the first record with a timestamp at or after `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        let candidate = {
            let state = self.lock();
            let mut found = None;
            for (base, segment) in &state.segments {
                if segment.max_timestamp < timestamp {
                    continue;
                }
                if let Some((pos, h)) = segment.find_timestamp(timestamp)? {
                    found = Some((*base, pos, h));
                    break;
                }
            }
            found.map(|(base, pos, h)| (base, pos, h, state.log_start_offset))
        };
        let Some((base, pos, header, log_start)) = candidate else {
            return Ok(None);
        };
        let bytes = self.read_batch(base, pos, header.size)?;
        let records = records_in(&bytes, self.config().max_uncompressed_bytes);
        let hit = records
            .into_iter()
            .find(|(offset, ts)| *ts >= timestamp && *offset >= log_start);
        Ok(hit.or(Some((
            header.base_offset.max(log_start),
            header.max_timestamp,
        ))))
    }

    /// The offset and timestamp of the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> io::Result<Option<(i64, i64)>> {
        let max = {
            let state = self.lock();
            state
                .segments
                .values()
                .map(|s| s.max_timestamp)
                .max()
                .unwrap_or(-1)
        };
        if max < 0 {
            return Ok(None);
        }
        let hit = self.offset_for_timestamp(max)?;
        Ok(hit.map(|(offset, _)| (offset, max)))
    }

    /// Moves the log start offset forward (DeleteRecords) and drops whole segments below it.
    /// `-1` means the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut state = self.lock();
        let target = if offset == -1 {
            state.high_watermark
        } else {
            offset
        };
        if target < 0 || target > state.high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: state.log_start_offset,
                end: state.high_watermark,
            });
        }
        if target > state.log_start_offset {
            state.log_start_offset = target;
            write_file_atomic(
                &self.dir.join(LOG_START_FILE),
                target.to_string().as_bytes(),
            )?;
            self.drop_segments_below(&mut state, target)?;
            state.txns.forget_before(target);
        }
        Ok(state.log_start_offset)
    }

    fn drop_segments_below(&self, state: &mut LogState, offset: i64) -> io::Result<usize> {
        let delay = self.config().file_delete_delay_ms;
        let doomed: Vec<i64> = state
            .segments
            .iter()
            .rev()
            .skip(1)
            .filter(|(_, s)| s.next_offset <= offset)
            .map(|(b, _)| *b)
            .collect();
        for base in &doomed {
            if let Some(segment) = state.segments.remove(base) {
                segment.delete_after(delay)?;
            }
        }
        Ok(doomed.len())
    }

    /// Removes this log's deleted segment files whose `file.delete.delay.ms` has passed.
    pub fn remove_deleted_files(&self) -> io::Result<usize> {
        segment::remove_deleted_files(&self.dir, Some(self.config().file_delete_delay_ms))
    }

    /// Forgets idempotent producers idle for longer than `expiration_ms`.
    pub fn expire_producers(&self, now: i64, expiration_ms: i64) -> usize {
        self.lock().producers.expire(now, expiration_ms)
    }

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`. The active
    /// segment is rolled first when it alone has expired, so old data does not linger.
    pub fn apply_retention(&self, now: i64) -> io::Result<usize> {
        let config = self.config();
        if !config.delete_enabled {
            return Ok(0);
        }
        let mut state = self.lock();
        let mut deleted = 0;
        if config.retention_ms >= 0 {
            let active_expired = state.segments.values().next_back().is_some_and(|s| {
                s.size() > 0 && s.max_timestamp >= 0 && now - s.max_timestamp > config.retention_ms
            });
            if active_expired {
                let base = state.next_offset;
                let segment = Segment::create(&self.dir, base)?;
                state.segments.insert(base, segment);
                state.roll_jitter_ms = random_jitter(config.roll_jitter_ms);
            }
            while state.segments.len() > 1 {
                let (&base, first) = state.segments.iter().next().expect("non-empty");
                if first.max_timestamp >= 0 && now - first.max_timestamp <= config.retention_ms {
                    break;
                }
                let segment = state.segments.remove(&base).expect("present");
                state.log_start_offset = state.log_start_offset.max(segment.next_offset);
                segment.delete_after(config.file_delete_delay_ms)?;
                deleted += 1;
            }
        }
        if config.retention_bytes >= 0 {
            let mut total: u64 = state.segments.values().map(Segment::size).sum();
            while state.segments.len() > 1 {
                let (&base, first) = state.segments.iter().next().expect("non-empty");
                if total - first.size() < config.retention_bytes as u64 {
                    break;
                }
                total -= first.size();
                let segment = state.segments.remove(&base).expect("present");
                state.log_start_offset = state.log_start_offset.max(segment.next_offset);
                segment.delete_after(config.file_delete_delay_ms)?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            let start = state.log_start_offset;
            state.txns.forget_before(start);
            write_file_atomic(&self.dir.join(LOG_START_FILE), start.to_string().as_bytes())?;
        }
        Ok(deleted)
    }
}

/// Offsets and timestamps of the records in one stored batch, decompressing if needed.
fn records_in(batch: &[u8], max_uncompressed_bytes: u64) -> Vec<(i64, i64)> {
    let Ok(header) = batch::parse_header(batch) else {
        return Vec::new();
    };
    let log_append_time = header.attributes & 0x08 != 0;
    let mut out = Vec::new();
    let read = records::for_each_record::<records::ReadError>(
        batch,
        &header,
        max_uncompressed_bytes,
        false,
        |_, r| {
            let timestamp = if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(r.timestamp_delta)
            };
            out.push((
                header.base_offset.wrapping_add(r.offset_delta as i64),
                timestamp,
            ));
            Ok(())
        },
    );
    if let Err(e) = read {
        warn!(error = %e, "cannot read a stored batch for a timestamp lookup");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::batch::tests::make_batch;

    fn config(overrides: &[(&str, &str)]) -> LogConfig {
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

    fn append(log: &PartitionLog, count: i32, ts: i64) -> AppendInfo {
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

    #[tokio::test]
    async fn flush_messages_one_makes_every_append_wait_for_one_shared_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            Arc::new(open_leader(dir.path(), config(&[("flush.messages", "1")]), "t").unwrap());
        let first = append(&log, 2, 1);
        let second = append(&log, 3, 2);
        assert!(first.needs_sync && second.needs_sync);
        assert_eq!(log.lock().flushed_offset, 0);
        // One fsync for the later append covers the earlier one too.
        log.sync_through(second.last_offset + 1).await.unwrap();
        assert_eq!(log.lock().flushed_offset, 5);
        log.sync_through(first.last_offset + 1).await.unwrap();
        let relaxed = open_leader(dir.path(), config(&[]), "t").unwrap();
        assert!(
            !append(&relaxed, 1, 3).needs_sync,
            "flush.messages defaults to never"
        );
    }

    #[test]
    fn the_checkpointed_high_watermark_is_restored_within_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        append(&log, 10, 1);
        drop(log);
        let at = |hw| {
            let recovery = Recovery {
                clean_shutdown: true,
                high_watermark: hw,
            };
            PartitionLog::open_with(dir.path(), config(&[]), "t", recovery)
                .unwrap()
                .high_watermark()
        };
        assert_eq!(at(Some(4)), 4);
        assert_eq!(at(Some(50)), 10, "never past the log end");
        assert_eq!(at(None), 0, "unknown until the ISR says");
    }

    #[test]
    fn a_log_whose_role_is_not_applied_refuses_appends_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(&[]), "t").unwrap();
        let b = make_batch(3, 1);
        let headers = batch::validate_all(&b).unwrap();
        assert!(matches!(
            log.append(&b, &headers, LEADER),
            Err(AppendError::NotLeader(_))
        ));
        assert_eq!(log.log_end_offset(), 0);
        log.set_replica_role(1, 1, 0, 0, &[1], &[1]).unwrap();
        assert_eq!(log.append(&b, &headers, LEADER).unwrap().base_offset, 0);
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
    fn idempotent_retries_are_not_written_twice_even_after_a_restart() {
        use crate::log::batch::tests::make_idempotent_batch;
        let dir = tempfile::tempdir().unwrap();
        let append_idem = |log: &PartitionLog, seq: i32| {
            let b = make_idempotent_batch(2, 42, 0, seq);
            let headers = batch::validate_all(&b).unwrap();
            log.append(&b, &headers, LEADER)
        };
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        assert_eq!(append_idem(&log, 0).unwrap().base_offset, 0);
        assert_eq!(append_idem(&log, 2).unwrap().base_offset, 2);
        assert_eq!(append_idem(&log, 0).unwrap().base_offset, 0, "duplicate");
        assert!(matches!(
            append_idem(&log, 9),
            Err(AppendError::Producer(_))
        ));
        assert_eq!(log.log_end_offset(), 4);
        drop(log);
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        assert_eq!(
            append_idem(&log, 2).unwrap().base_offset,
            2,
            "duplicate after restart"
        );
        assert_eq!(append_idem(&log, 4).unwrap().base_offset, 4);
        assert_eq!(log.log_end_offset(), 6);
    }

    #[test]
    fn a_new_topic_id_clears_old_data() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "old").unwrap();
        append(&log, 5, 1);
        drop(log);
        let log = open_leader(dir.path(), config(&[]), "new").unwrap();
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn delete_records_and_retention_move_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[("segment.bytes", "200")]), "t").unwrap();
        for i in 0..10 {
            append(&log, 1, 1000 + i);
        }
        assert_eq!(log.delete_records_before(4).unwrap(), 4);
        assert!(matches!(
            log.read(3, 100, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            batch::validate(&log.read(4, 10, true).unwrap().records)
                .unwrap()
                .base_offset,
            4
        );
        assert!(log.delete_records_before(11).is_err());

        log.set_config(config(&[("segment.bytes", "200"), ("retention.ms", "100")]));
        let deleted = log.apply_retention(1000 + 9 + 101).unwrap();
        assert!(deleted > 0);
        assert_eq!(log.log_start_offset(), 10);
        assert_eq!(log.log_end_offset(), 10);
        drop(log);
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
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

    #[test]
    fn markers_from_an_older_coordinator_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        let b = txn_index::transactional_batch(7, 0, "k", "v");
        log.append(&b, &batch::validate_all(&b).unwrap(), LEADER)
            .unwrap();
        log.append_marker(7, 0, true, 5, LEADER).unwrap();
        let stale = log.append_marker(7, 0, false, 4, LEADER);
        assert!(matches!(
            stale,
            Err(AppendError::Producer(ProducerError::CoordinatorFenced {
                epoch: 4,
                current: 5,
                ..
            }))
        ));
        drop(log);
        // The coordinator epoch is replayed from the marker.
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        assert_eq!(log.producers()[0].0.coordinator_epoch, 5);
        assert!(log.append_marker(7, 0, false, 4, LEADER).is_err());
        log.append_marker(7, 0, false, 6, LEADER).unwrap();
    }

    #[test]
    fn timestamps_resolve_to_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        append(&log, 3, 100);
        append(&log, 3, 200);
        assert_eq!(log.offset_for_timestamp(150).unwrap(), Some((3, 200)));
        assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((1, 101)));
        assert_eq!(log.offset_for_timestamp(999).unwrap(), None);
        assert_eq!(log.max_timestamp_offset().unwrap(), Some((5, 202)));
    }
}
