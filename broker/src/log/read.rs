//! Reading the log: fetches, timestamp lookups and the transaction queries.

use std::fs::File;
use std::io;

use bytes::Bytes;
use tracing::warn;

use super::{batch, producer_state, records, LogError, PartitionLog, ReadLimit, ReadResult};

impl PartitionLog {
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
                segment.file()?,
                position,
                (available as usize).min(want),
                end,
                state.log_start_offset,
            )
        };
        let mut buf = read_exact_at(&file, position, available)?;
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

    /// Reads the single batch at `position` of the segment starting at `base`.
    fn read_batch(&self, base: i64, position: u64, size: usize) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let segment = state
            .segments
            .get(&base)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment was deleted"))?;
        segment.read_at(position, size)
    }

    /// The first record with a timestamp at or after `timestamp`.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> io::Result<Option<TimestampMatch>> {
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
        let (offset, timestamp) = records
            .into_iter()
            .find(|(offset, ts)| *ts >= timestamp && *offset >= log_start)
            .unwrap_or((header.base_offset.max(log_start), header.max_timestamp));
        Ok(Some(TimestampMatch {
            offset,
            timestamp,
            leader_epoch: header.partition_leader_epoch,
        }))
    }

    /// The record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> io::Result<Option<TimestampMatch>> {
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
        Ok(hit.map(|hit| TimestampMatch {
            timestamp: max,
            ..hit
        }))
    }
}

/// A record found by its timestamp, and the leader epoch of the batch holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampMatch {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp: i64,
    /// The partition leader epoch its batch was written in.
    pub leader_epoch: i32,
}

/// Reads `len` bytes of `file` from `position` into a new buffer, which is filled by the reads
/// alone, never zeroed first.
fn read_exact_at(file: &File, position: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let offset = position + buf.len() as u64;
        if rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), offset)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    buf.truncate(len);
    Ok(buf)
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
mod tests {
    use super::TimestampMatch;
    use crate::log::batch::{self, tests::make_batch};
    use crate::log::tests::{append, config, open_leader};
    use crate::log::Leadership;

    fn found(offset: i64, timestamp: i64, leader_epoch: i32) -> Option<TimestampMatch> {
        Some(TimestampMatch {
            offset,
            timestamp,
            leader_epoch,
        })
    }

    #[test]
    fn timestamps_resolve_to_records_and_their_batch_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        append(&log, 3, 100);
        log.set_replica_role(1, 1, 4, 1, &[1], &[1]).unwrap();
        let b = make_batch(3, 200);
        let headers = batch::validate_all(&b).unwrap();
        let leadership = Leadership {
            leader_epoch: 4,
            min_isr: None,
        };
        log.append(&b, &headers, leadership).unwrap();
        assert_eq!(log.offset_for_timestamp(150).unwrap(), found(3, 200, 4));
        assert_eq!(log.offset_for_timestamp(101).unwrap(), found(1, 101, 0));
        assert_eq!(log.offset_for_timestamp(999).unwrap(), None);
        assert_eq!(log.max_timestamp_offset().unwrap(), found(5, 202, 4));
        assert_eq!(log.epoch_at(log.log_start_offset()), Some(0));
        assert_eq!(log.epoch_at(4), Some(4));
    }
}
