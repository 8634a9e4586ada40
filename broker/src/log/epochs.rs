//! The leader epoch cache: where each leader epoch starts in the log, kept in
//! `leader-epoch-checkpoint` (Kafka's layout: version, count, then `epoch offset` lines).
//! OffsetForLeaderEpoch answers from it, so a returning follower can cut a divergent tail.

use std::io;
use std::path::Path;

use super::write_file_atomic;

/// Epoch start offsets, ascending in both epoch and offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Reads the checkpoint; a missing or unreadable file gives an empty cache.
    pub fn load(path: &Path) -> Self {
        let Ok(text) = std::fs::read_to_string(path) else {
            return EpochCache::default();
        };
        // The first two lines are the format version and the entry count.
        let entries = text
            .lines()
            .skip(2)
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .collect();
        EpochCache { entries }
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, offset) in &self.entries {
            text.push_str(&format!("{epoch} {offset}\n"));
        }
        write_file_atomic(path, text.as_bytes())
    }

    /// The latest epoch, if any.
    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Records that `epoch` starts at `offset`; returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if self.latest().is_some_and(|latest| latest >= epoch) {
            return false;
        }
        self.entries.retain(|(_, o)| *o < offset);
        self.entries.push((epoch, offset));
        true
    }

    /// Forgets epochs that start at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, o)| *o < offset);
        self.entries.len() != before
    }

    /// The epoch `offset` was written in: the latest one starting at or before it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map(|(epoch, _)| *epoch)
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch not above `epoch`, and the
    /// offset where the next epoch starts (the log end for the latest). An epoch older than
    /// every recorded one answers itself and the start of the first recorded epoch, as the
    /// data before it is gone; `None` for an undefined epoch, or one above the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        if self.latest() == Some(epoch) {
            return Some((epoch, log_end_offset));
        }
        let next = self.entries.iter().position(|(e, _)| *e > epoch)?;
        let start_of_next = self.entries[next].1;
        match next.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].0, start_of_next)),
            None => Some((epoch, start_of_next)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_offset_for_leader_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leader-epoch-checkpoint");
        let mut cache = EpochCache::default();
        assert!(cache.assign(0, 0));
        assert!(cache.assign(2, 10));
        assert!(!cache.assign(1, 12), "epochs only grow");
        assert!(cache.assign(5, 30));
        cache.save(&path).unwrap();
        let cache = EpochCache::load(&path);
        assert_eq!(cache.end_offset_for(0, 40), Some((0, 10)));
        assert_eq!(cache.epoch_at(9), Some(0));
        assert_eq!(cache.epoch_at(10), Some(2));
        assert_eq!(cache.epoch_at(45), Some(5));
        assert_eq!(cache.end_offset_for(1, 40), Some((0, 10)));
        assert_eq!(cache.end_offset_for(4, 40), Some((2, 30)));
        assert_eq!(cache.end_offset_for(5, 40), Some((5, 40)));
        assert_eq!(cache.end_offset_for(-1, 40), None);
        assert_eq!(cache.end_offset_for(6, 40), None, "above the latest");
        let mut after_a_failover = EpochCache::default();
        assert!(after_a_failover.assign(1, 0));
        assert!(after_a_failover.assign(3, 7));
        assert_eq!(
            after_a_failover.end_offset_for(0, 9),
            Some((0, 0)),
            "older than any recorded: itself, ending where the first recorded starts"
        );
        assert_eq!(after_a_failover.end_offset_for(2, 9), Some((1, 7)));
        assert_eq!(EpochCache::default().end_offset_for(0, 0), None);
        let mut cache = cache;
        assert!(cache.truncate_from(30));
        assert_eq!(cache.latest(), Some(2));
    }
}
