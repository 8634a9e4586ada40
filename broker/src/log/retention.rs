//! Deleting from the start of the log: DeleteRecords, retention and producer expiry.

use std::io;

use super::segment::{self, random_jitter, Segment};
use super::{write_file_atomic, LogError, LogState, PartitionLog, LOG_START_FILE};

impl PartitionLog {
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
                state.retire(segment, delay)?;
            }
        }
        Ok(doomed.len())
    }

    /// Removes this log's deleted segment files whose `file.delete.delay.ms` has passed.
    pub fn remove_deleted_files(&self) -> io::Result<usize> {
        let retired = {
            let state = self.lock();
            if state.retired == state.retired_swept {
                return Ok(0);
            }
            state.retired
        };
        let swept =
            segment::remove_deleted_files(&self.dir, Some(self.config().file_delete_delay_ms))?;
        if swept.waiting == 0 {
            let mut state = self.lock();
            state.retired_swept = state.retired_swept.max(retired);
        }
        Ok(swept.removed)
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
                // Rolled as an append rolls: its data and indexes written out first.
                if let Some(active) = state.segments.values_mut().next_back() {
                    active.sync()?;
                }
                let segment = Segment::create(&self.dir, base, &self.open_files)?;
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
                state.retire(segment, config.file_delete_delay_ms)?;
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
                state.retire(segment, config.file_delete_delay_ms)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;
    use crate::log::tests::{append, config, open_leader};

    #[test]
    fn only_logs_with_retired_segments_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(
            dir.path(),
            config(&[("segment.bytes", "200"), ("file.delete.delay.ms", "1")]),
            "t",
        )
        .unwrap();
        for i in 0..10 {
            append(&log, 1, 1000 + i);
        }
        let stray = dir.path().join("stray.deleted");
        std::fs::write(&stray, b"").unwrap();
        assert_eq!(log.remove_deleted_files().unwrap(), 0);
        assert!(stray.exists(), "nothing retired: the directory is not read");
        assert_eq!(log.delete_records_before(4).unwrap(), 4);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(log.remove_deleted_files().unwrap() > 1);
        assert!(!stray.exists(), "a retired segment makes the log swept");
        std::fs::write(&stray, b"").unwrap();
        assert_eq!(log.remove_deleted_files().unwrap(), 0);
        assert!(
            stray.exists(),
            "the sweep that emptied the log was its last"
        );
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
}
