//! Opening a log from disk, and truncating it: both rebuild producer state by replaying batches.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::epochs::EpochCache;
use super::open_files::OpenFiles;
use super::producer_state::ProducerStates;
use super::replica::ReplicaState;
use super::segment::{self, now_ms, random_jitter, OpenOutcome, Segment};
use super::txn_index::{self, TxnIndex};
use super::{
    cleaner, read_i64_file, schedule_dir_deletion, sync_parent, write_file_atomic, LogState,
    PartitionLog, Recovery, EPOCH_CHECKPOINT_FILE, LOG_START_FILE, PRODUCER_SNAPSHOT_FILE,
    RECOVERY_POINT_FILE,
};
use crate::topic_config::LogConfig;

const TOPIC_ID_FILE: &str = "partition.metadata";

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
pub(super) struct ProducerSnapshotRef<'a> {
    pub(super) offset: i64,
    pub(super) producers: &'a ProducerStates,
    pub(super) txns: &'a TxnIndex,
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
        let open_files = Arc::new(OpenFiles::for_this_process());
        Self::open_with(dir, config, topic_id, Recovery::default(), open_files)
    }

    /// Opens the log with what the last shutdown left: a clean shutdown skips the CRC scan of
    /// the segments after the recovery point, and the checkpointed high watermark is restored.
    /// Its segment files are held open by `open_files`, shared by every log of the broker.
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        topic_id: &str,
        recovery: Recovery,
        open_files: Arc<OpenFiles>,
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
                Segment::delete_unopened(dir, base)?;
                continue;
            }
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let recover = !recovery.clean_shutdown && next_base > recovery_point;
            let (segment, outcome) =
                Segment::open(dir, base, recover, config.index_interval_bytes, &open_files)?;
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
            segments.insert(0, Segment::create(dir, 0, &open_files)?);
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
            debug!(dir = %dir.display(), segments = segments.len(), log_start_offset, next_offset, "loaded log");
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
                checkpointed: None,
                retired: 0,
                retired_swept: 0,
            }),
            config: RwLock::new(config),
            sync_turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            open_files,
            dropped: AtomicBool::new(false),
        };
        Ok(log)
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
                state.retire(segment, config.file_delete_delay_ms)?;
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
            let file = segment.file()?;
            file.set_len(cut)?;
            file.sync_all()?;
            let (reopened, _) = Segment::open(
                &self.dir,
                base,
                true,
                config.index_interval_bytes,
                &self.open_files,
            )?;
            state.segments.insert(base, reopened);
        }
        if state.segments.is_empty() {
            state.segments.insert(
                offset,
                Segment::create(&self.dir, offset, &self.open_files)?,
            );
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
                state.retire(segment, delay)?;
            }
        }
        state.segments.insert(
            offset,
            Segment::create(&self.dir, offset, &self.open_files)?,
        );
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::{append, config, open_leader};

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
            let open_files = Arc::new(OpenFiles::new(8));
            PartitionLog::open_with(dir.path(), config(&[]), "t", recovery, open_files)
                .unwrap()
                .high_watermark()
        };
        assert_eq!(at(Some(4)), 4);
        assert_eq!(at(Some(50)), 10, "never past the log end");
        assert_eq!(at(None), 0, "unknown until the ISR says");
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
}
