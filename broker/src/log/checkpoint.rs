//! Making the log durable: fsyncs, the recovery point and the producer snapshot.

use std::io;
use std::path::Path;
use std::sync::Arc;

use super::recovery::ProducerSnapshotRef;
use super::segment::now_ms;
use super::{
    write_file_atomic, LogState, PartitionLog, PRODUCER_SNAPSHOT_FILE, RECOVERY_POINT_FILE,
};

impl PartitionLog {
    pub(super) fn snapshot_producers(dir: &Path, state: &LogState) -> io::Result<()> {
        let json = serde_json::to_vec(&ProducerSnapshotRef {
            offset: state.next_offset,
            producers: &state.producers,
            txns: &state.txns,
        })?;
        write_file_atomic(&dir.join(PRODUCER_SNAPSHOT_FILE), &json)
    }

    /// fsyncs the active segment (rolled ones were synced when they rolled).
    pub(super) fn sync_locked(state: &mut LogState) -> io::Result<()> {
        if let Some(active) = state.segments.values_mut().next_back() {
            active.sync()?;
        }
        state.flushed_offset = state.next_offset;
        state.last_flush_ms = now_ms();
        Ok(())
    }

    /// fsyncs, then records the recovery point and the producer state on disk.
    pub(super) fn flush_locked(dir: &Path, state: &mut LogState) -> io::Result<()> {
        Self::sync_locked(state)?;
        Self::checkpoint_locked(dir, state)
    }

    fn checkpoint_locked(dir: &Path, state: &mut LogState) -> io::Result<()> {
        Self::snapshot_producers(dir, state)?;
        write_file_atomic(
            &dir.join(RECOVERY_POINT_FILE),
            state.flushed_offset.to_string().as_bytes(),
        )?;
        state.checkpointed = Some(state.flushed_offset);
        Ok(())
    }

    /// Records the recovery point (what is fsynced), so the next start after a crash scans
    /// only what came after; skipped when it has not moved since the last checkpoint. The
    /// producer state is snapshotted only when a segment rolls and at flushes (a clean
    /// shutdown flushes), as Kafka does: after a crash it is rebuilt from the segments after
    /// the snapshot. The file is written outside the log lock, so appends and reads go on
    /// meanwhile; should a flush record a newer recovery point in between, this older one
    /// replaces it, which only means more to scan at the next start.
    pub fn checkpoint(&self) -> io::Result<()> {
        let recovery_point = {
            let mut state = self.lock();
            if state.checkpointed == Some(state.flushed_offset) {
                return Ok(());
            }
            state.checkpointed = Some(state.flushed_offset);
            state.flushed_offset
        };
        let written = write_file_atomic(
            &self.dir.join(RECOVERY_POINT_FILE),
            recovery_point.to_string().as_bytes(),
        );
        if written.is_err() {
            self.lock().checkpointed = None;
        }
        written
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
            (active.file()?, state.next_offset)
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::log::tests::{append, config, open_leader};
    use crate::log::{PRODUCER_SNAPSHOT_FILE, RECOVERY_POINT_FILE};

    #[test]
    fn the_recovery_point_is_written_when_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        let recovery_point = dir.path().join(RECOVERY_POINT_FILE);
        append(&log, 2, 1);
        log.checkpoint().unwrap();
        assert_eq!(std::fs::read_to_string(&recovery_point).unwrap(), "0");
        std::fs::remove_file(&recovery_point).unwrap();
        append(&log, 1, 2);
        log.checkpoint().unwrap();
        assert!(
            !recovery_point.exists(),
            "appends without a flush leave the recovery point where it was"
        );
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&recovery_point).unwrap(), "3");
        assert!(dir.path().join(PRODUCER_SNAPSHOT_FILE).exists());
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
}
