//! Idempotent producer state per partition: the epoch and the last few batches of every
//! producer id, to detect duplicates and gaps in sequence numbers.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;

/// How many recent batches per producer are remembered (Kafka's in-flight limit).
const CACHED_BATCHES: usize = 5;

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The producer's epoch is older than one already seen.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A transaction marker from a coordinator older than one that already wrote here.
    #[error("producer {producer_id}: coordinator epoch {epoch} is older than {current}")]
    CoordinatorFenced {
        producer_id: i64,
        epoch: i32,
        current: i32,
    },
    /// The sequence does not follow the last appended batch.
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log at these offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CachedBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    /// Largest timestamp of the producer's last batch, for `producer.id.expiration.ms`.
    last_timestamp: i64,
    /// The epoch of the last coordinator that wrote a marker for this producer here.
    #[serde(default = "no_coordinator")]
    coordinator_epoch: i32,
}

fn no_coordinator() -> i32 {
    -1
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_timestamp: 0,
            coordinator_epoch: no_coordinator(),
        }
    }
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    /// Producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The sequence of its last appended record (-1 when none has one).
    pub last_sequence: i32,
    /// The epoch of the coordinator of its last marker here (-1 when none).
    pub coordinator_epoch: i32,
    /// The largest timestamp of its last batch.
    pub last_timestamp: i64,
}

/// Producer states of one partition.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    /// Checks a batch's epoch and sequence against what was appended before.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        // Batches the broker writes for a producer (transaction markers, transactional offset
        // commits) carry no sequence: only their epoch is checked.
        if h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::OutOfOrder {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == h.base_sequence && b.last_sequence == h.last_sequence())
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if h.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::OutOfOrder {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            })
        }
    }

    /// Remembers an appended batch (its offsets already assigned).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        if h.base_sequence < 0 {
            return;
        }
        entry.batches.push_back(CachedBatch {
            first_sequence: h.base_sequence,
            last_sequence: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }

    /// Refuses a marker from a coordinator older than the last one that wrote for the
    /// producer here: a coordinator that lost its partition may still be sending markers of
    /// a transaction its successor already finished (Kafka's TRANSACTION_COORDINATOR_FENCED).
    pub fn check_marker(
        &self,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(p) if p.coordinator_epoch > coordinator_epoch => {
                Err(ProducerError::CoordinatorFenced {
                    producer_id,
                    epoch: coordinator_epoch,
                    current: p.coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// Remembers the coordinator epoch of an appended marker.
    pub fn record_marker(&mut self, producer_id: i64, coordinator_epoch: i32) {
        if let Some(p) = self.producers.get_mut(&producer_id) {
            p.coordinator_epoch = p.coordinator_epoch.max(coordinator_epoch);
        }
    }

    /// Every producer remembered, by producer id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(id, p)| ProducerSummary {
                producer_id: *id,
                epoch: p.epoch,
                last_sequence: p.batches.back().map_or(-1, |b| b.last_sequence),
                coordinator_epoch: p.coordinator_epoch,
                last_timestamp: p.last_timestamp,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Forgets producers whose last batch is older than `expiration_ms`; returns how many.
    pub fn expire(&mut self, now: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, p| p.last_timestamp >= now - expiration_ms);
        before - self.producers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            partition_leader_epoch: 0,
            base_offset: offset,
            size: 100,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            attributes: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let mut s = ProducerStates::default();
        let first = header(7, 0, 0, 3, 10);
        assert_eq!(s.check(&first), Ok(SequenceCheck::Append));
        s.record(&first);
        assert_eq!(
            s.check(&header(7, 0, 0, 3, -1)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 10,
                last_offset: 12
            })
        );
        assert_eq!(s.check(&header(7, 0, 3, 2, -1)), Ok(SequenceCheck::Append));
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, -1)),
            Err(ProducerError::OutOfOrder {
                expected: 3,
                got: 5,
                ..
            })
        ));
        s.record(&header(7, 1, 0, 1, 20));
        assert!(matches!(
            s.check(&header(7, 0, 1, 1, -1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        assert!(matches!(
            s.check(&header(7, 2, 4, 1, -1)),
            Err(ProducerError::OutOfOrder { .. })
        ));
        assert_eq!(
            s.check(&header(-1, 0, 99, 1, -1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        let mut old = header(1, 0, 0, 1, 0);
        old.max_timestamp = 1_000;
        s.record(&old);
        let mut recent = header(2, 0, 0, 1, 1);
        recent.max_timestamp = 9_000;
        s.record(&recent);
        assert_eq!(s.expire(10_000, 5_000), 1);
        // Producer 1 is unknown again: any sequence is accepted as new.
        assert_eq!(s.check(&header(1, 0, 7, 1, -1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn batches_without_a_sequence_check_and_move_only_the_epoch() {
        let mut s = ProducerStates::default();
        s.record(&header(5, 0, 0, 2, 0));
        // A marker at a bumped epoch fences the old epoch and restarts the sequence.
        s.record(&header(5, 1, -1, 1, 2));
        assert!(matches!(
            s.check(&header(5, 0, 2, 1, -1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
        assert_eq!(s.check(&header(5, 1, 0, 1, -1)), Ok(SequenceCheck::Append));
        assert!(matches!(
            s.check(&header(5, 0, -1, 1, -1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
    }

    #[test]
    fn sequences_wrap() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&header(1, 0, 0, 1, -1)), Ok(SequenceCheck::Append));
    }
}
