//! Writing to the log: leader appends, follower appends and transaction markers.

use std::io;

use super::batch::{self, BatchHeader};
use super::producer_state::SequenceCheck;
use super::segment::{now_ms, random_jitter, Segment};
use super::txn_index;
use super::{
    write_file_atomic, AppendError, AppendInfo, Leadership, LogState, PartitionLog,
    EPOCH_CHECKPOINT_FILE, RECOVERY_POINT_FILE,
};
use crate::topic_config::LogConfig;

impl PartitionLog {
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
                .values_mut()
                .next_back()
                .expect("a segment")
                .sync()?;
            let segment = Segment::create(&self.dir, base_offset, &self.open_files)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::tests::make_batch;
    use crate::log::producer_state::ProducerError;
    use crate::log::tests::{config, open_leader, LEADER};

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
}
