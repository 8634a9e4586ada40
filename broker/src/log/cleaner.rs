//! Log compaction for `cleanup.policy=compact`: keeps the latest record per key in the
//! inactive segments, drops tombstones older than `delete.retention.ms`.
//!
//! The cleaner reads segments and writes `<base>.log.cleaned` without holding the log lock, so
//! produce and fetch go on; it then takes the lock only to rename the cleaned file over the
//! original (atomic) and reopen it. A crash before the rename leaves the original intact and a
//! stray `.cleaned` file, which the next open deletes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};
use tracing::info;

use super::segment::Segment;
use super::{batch, read_i64_file, records, write_file_atomic, PartitionLog};

const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = "log.cleaned";

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments rewritten.
    pub segments: usize,
    /// Records kept.
    pub kept: usize,
    /// Records removed (superseded or expired tombstones).
    pub removed: usize,
}

struct Cleanable {
    base: i64,
    file: Arc<File>,
    batches: Vec<(u64, usize)>,
    size: u64,
    max_timestamp: i64,
    /// The largest timestamp of the segment's first batch, Kafka's measure of how long the
    /// segment has waited for `max.compaction.lag.ms`.
    first_batch_timestamp: i64,
}

/// Removes leftovers of a compaction that crashed before its swap.
pub fn remove_stray_cleaned_files(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(CLEANED_SUFFIX) {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

fn decode_batch(
    file: &File,
    position: u64,
    size: usize,
    max_uncompressed_bytes: u64,
) -> io::Result<(Compression, Vec<Record>)> {
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, position)?;
    let header = batch::parse_header(&buf).map_err(io::Error::other)?;
    records::decode_stored_batch(&buf, &header, max_uncompressed_bytes).map_err(io::Error::other)
}

impl PartitionLog {
    /// Runs one compaction pass if the topic is compacted and enough of it is dirty.
    pub fn compact(&self, now: i64) -> io::Result<Option<CleanStats>> {
        let config = self.config();
        if !config.compact_enabled {
            return Ok(None);
        }
        let checkpoint = read_i64_file(&self.dir.join(CHECKPOINT_FILE)).unwrap_or(0);
        let cleanable: Vec<Cleanable> = {
            let state = self.lock();
            let inactive = state.segments.len().saturating_sub(1);
            let mut out = Vec::new();
            for segment in state.segments.values().take(inactive) {
                if segment.max_timestamp > now - config.min_compaction_lag_ms {
                    break;
                }
                let mut batches = Vec::new();
                let mut first_batch_timestamp = -1;
                segment.scan(0, false, |pos, h| {
                    if batches.is_empty() {
                        first_batch_timestamp = h.max_timestamp;
                    }
                    batches.push((pos, h.size));
                    true
                })?;
                out.push(Cleanable {
                    base: segment.base_offset,
                    file: segment.file(),
                    batches,
                    size: segment.size(),
                    max_timestamp: segment.max_timestamp,
                    first_batch_timestamp,
                });
            }
            out
        };
        let total: u64 = cleanable.iter().map(|c| c.size).sum();
        let dirty: u64 = cleanable
            .iter()
            .filter(|c| c.base >= checkpoint)
            .map(|c| c.size)
            .sum();
        // A dirty segment waiting longer than max.compaction.lag.ms is cleaned whatever the
        // dirty ratio, as Kafka's cleaner does.
        let overdue = cleanable.iter().any(|c| {
            c.base >= checkpoint
                && c.first_batch_timestamp > 0
                && c.first_batch_timestamp < now.saturating_sub(config.max_compaction_lag_ms)
        });
        if total == 0
            || dirty == 0
            || ((dirty as f64 / total as f64) < config.min_cleanable_dirty_ratio && !overdue)
        {
            return Ok(None);
        }

        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for c in &cleanable {
            for &(pos, size) in &c.batches {
                for record in decode_batch(&c.file, pos, size, config.max_uncompressed_bytes)?.1 {
                    if let Some(key) = record.key {
                        latest.insert(key, record.offset);
                    }
                }
            }
        }

        let mut stats = CleanStats::default();
        for c in &cleanable {
            let tombstones_expired = c.max_timestamp < now - config.delete_retention_ms;
            let mut out = BytesMut::new();
            for &(pos, size) in &c.batches {
                let (compression, records) =
                    decode_batch(&c.file, pos, size, config.max_uncompressed_bytes)?;
                let before = records.len();
                let kept: Vec<_> = records
                    .into_iter()
                    .filter(|r| match &r.key {
                        None => true,
                        Some(key) => {
                            latest.get(key) == Some(&r.offset)
                                && !(r.value.is_none() && tombstones_expired)
                        }
                    })
                    .collect();
                stats.kept += kept.len();
                stats.removed += before - kept.len();
                if kept.is_empty() {
                    continue;
                }
                RecordBatchEncoder::encode(
                    &mut out,
                    &kept,
                    &RecordEncodeOptions {
                        version: 2,
                        compression,
                    },
                )
                .map_err(io::Error::other)?;
            }
            let cleaned_path = self.dir.join(format!("{:020}.{CLEANED_SUFFIX}", c.base));
            let mut cleaned = File::create(&cleaned_path)?;
            cleaned.write_all(&out)?;
            cleaned.sync_all()?;
            drop(cleaned);

            let mut state = self.lock();
            if !state.segments.contains_key(&c.base) {
                std::fs::remove_file(&cleaned_path)?;
                continue;
            }
            let original = self.dir.join(format!("{:020}.log", c.base));
            std::fs::rename(&cleaned_path, &original)?;
            let (segment, _) = Segment::open(&self.dir, c.base, true, config.index_interval_bytes)?;
            state.segments.insert(c.base, segment);
            stats.segments += 1;
        }
        // The next pass counts only segments after the last one cleaned as dirty.
        let last_cleaned = cleanable.last().map_or(checkpoint, |c| c.base);
        let next_dirty = self
            .lock()
            .segments
            .range(last_cleaned + 1..)
            .next()
            .map(|(base, _)| *base);
        if let Some(next) = next_dirty {
            write_file_atomic(&self.dir.join(CHECKPOINT_FILE), next.to_string().as_bytes())?;
        }
        info!(dir = %self.dir.display(), segments = stats.segments, kept = stats.kept, removed = stats.removed, "compacted");
        Ok(Some(stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::log::batch;
    use crate::log::tests::{open_leader, LEADER};
    use crate::topic_config::LogConfig;
    use kafka_protocol::records::RecordBatchDecoder;

    fn keyed(key: &str, value: Option<&str>) -> Vec<u8> {
        let entry = (
            Some(Bytes::from(key.to_string())),
            value.map(|v| Bytes::from(v.to_string())),
        );
        batch::encode_records([entry], 1_000, Compression::Gzip)
            .unwrap()
            .to_vec()
    }

    fn view(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut next = log.log_start_offset();
        while next < log.log_end_offset() {
            let read = log.read(next, 1 << 20, true).unwrap();
            let mut bytes = read.records;
            while !bytes.is_empty() {
                for r in RecordBatchDecoder::decode(&mut bytes).unwrap().records {
                    next = r.offset + 1;
                    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    out.push((r.offset, text(r.key).unwrap(), text(r.value)));
                }
            }
        }
        out
    }

    #[test]
    fn a_segment_past_max_compaction_lag_is_cleaned_whatever_the_dirty_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        let config_with = |max_lag: &str| {
            let overrides = [
                ("cleanup.policy", "compact"),
                ("segment.bytes", "300"),
                ("min.cleanable.dirty.ratio", "1.0"),
                ("max.compaction.lag.ms", max_lag),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            LogConfig::new(&broker, &overrides)
        };
        let log = open_leader(dir.path(), config_with("1000000"), "t").unwrap();
        let append_rounds = |rounds: std::ops::Range<i32>| {
            for round in rounds {
                for key in ["a", "b", "c"] {
                    let b = keyed(key, Some(&format!("{key}{round}")));
                    let headers = batch::validate_all(&b).unwrap();
                    log.append(&b, &headers, LEADER).unwrap();
                }
            }
        };
        append_rounds(0..4);
        assert!(log.compact(10_000).unwrap().is_some(), "all dirty: ratio 1");
        append_rounds(4..8);
        // Records stamped at 1 000 ms; at 10 000 ms they have waited 9 000 ms.
        assert_eq!(log.compact(10_000).unwrap(), None, "within the lag");
        log.set_config(config_with("5000"));
        let stats = log.compact(10_000).unwrap().expect("overdue");
        assert!(stats.removed > 0, "{stats:?}");
    }

    #[test]
    fn keeps_the_latest_value_per_key_and_drops_old_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = LogConfig::new(&broker, &overrides);
        let log = open_leader(dir.path(), config.clone(), "t").unwrap();
        let append = |b: Vec<u8>| {
            let headers = batch::validate_all(&b).unwrap();
            log.append(&b, &headers, LEADER).unwrap();
        };
        for round in 0..5 {
            for key in ["a", "b", "c"] {
                append(keyed(key, Some(&format!("{key}{round}"))));
            }
        }
        append(keyed("c", None));
        for i in 0..6 {
            append(keyed(&format!("s{i}"), Some("sentinel")));
        }
        let before = log.segment_count();
        let stats = log.compact(10_000).unwrap().expect("a pass ran");
        assert!(stats.removed >= 12, "{stats:?}");
        assert!(log.segment_count() <= before);
        let cleaned: Vec<_> = view(&log)
            .into_iter()
            .filter(|(_, k, _)| !k.starts_with('s'))
            .map(|(_, k, v)| (k, v))
            .collect();
        assert_eq!(
            cleaned,
            vec![
                ("a".into(), Some("a4".into())),
                ("b".into(), Some("b4".into()))
            ]
        );
        let offsets: Vec<i64> = view(&log).iter().map(|(o, _, _)| *o).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(log.compact(10_000).unwrap(), None, "nothing dirty any more");
        drop(log);
        std::fs::write(dir.path().join("00000000000000000000.log.cleaned"), b"half").unwrap();
        let log = open_leader(dir.path(), config, "t").unwrap();
        assert_eq!(view(&log).len(), offsets.len());
        assert!(!dir.path().join("00000000000000000000.log.cleaned").exists());
    }
}
