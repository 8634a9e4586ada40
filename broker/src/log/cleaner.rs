//! Log compaction for `cleanup.policy=compact`: keeps the latest record per key in the
//! inactive segments, drops tombstones older than `delete.retention.ms`.
//!
//! The cleaner reads segments and writes `<base>.log.cleaned` without holding the log lock, so
//! produce and fetch go on; it then takes the lock only to rename the cleaned file over the
//! original (atomic) and reopen it. A crash before the rename leaves the original intact and a
//! stray `.cleaned` file, which the next open deletes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::info;

use super::batch::BatchHeader;
use super::records::Retained;
use super::segment::Segment;
use super::txn_index::{is_aborted, is_control, AbortedTxn};
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

/// Reads one stored batch.
fn read_batch(file: &File, position: u64, size: usize) -> io::Result<(Vec<u8>, BatchHeader)> {
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, position)?;
    let header = batch::parse_header(&buf).map_err(io::Error::other)?;
    Ok((buf, header))
}

impl PartitionLog {
    /// Runs one compaction pass if the topic is compacted and enough of it is dirty.
    pub fn compact(&self, now: i64) -> io::Result<Option<CleanStats>> {
        let config = self.config();
        if !config.compact_enabled {
            return Ok(None);
        }
        let checkpoint = read_i64_file(&self.dir.join(CHECKPOINT_FILE)).unwrap_or(0);
        let (cleanable, aborted): (Vec<Cleanable>, Vec<AbortedTxn>) = {
            let state = self.lock();
            let inactive = state.segments.len().saturating_sub(1);
            // As in Kafka, nothing from the first open transaction on is cleaned: its outcome
            // decides which of its records count.
            let first_unstable = state.txns.first_unstable_offset().unwrap_or(i64::MAX);
            let mut out = Vec::new();
            for segment in state.segments.values().take(inactive) {
                if segment.max_timestamp > now - config.min_compaction_lag_ms
                    || segment.next_offset > first_unstable
                {
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
                    file: segment.file()?,
                    batches,
                    size: segment.size(),
                    max_timestamp: segment.max_timestamp,
                    first_batch_timestamp,
                });
            }
            (out, state.txns.aborted().to_vec())
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
                let (buf, header) = read_batch(&c.file, pos, size)?;
                // Markers' keys are not record keys, and aborted records never happened.
                if is_control(&header) || is_aborted(&aborted, &header) {
                    continue;
                }
                records::for_each_record::<records::ReadError>(
                    &buf,
                    &header,
                    config.max_uncompressed_bytes,
                    true,
                    |_, r| {
                        if let Some(key) = r.key {
                            let offset = header.base_offset.wrapping_add(r.offset_delta as i64);
                            latest.insert(key, offset);
                        }
                        Ok(())
                    },
                )
                .map_err(io::Error::other)?;
            }
        }

        let mut stats = CleanStats::default();
        // Producers whose transaction still has records in the log, as of the batch being read.
        let mut with_records: HashSet<i64> = HashSet::new();
        for c in &cleanable {
            let tombstones_expired = c.max_timestamp < now - config.delete_retention_ms;
            let mut out = Vec::new();
            for &(pos, size) in &c.batches {
                let (buf, header) = read_batch(&c.file, pos, size)?;
                if is_control(&header) {
                    // As in Kafka, a marker goes once none of its transaction's records are
                    // left and `delete.retention.ms` has passed, like a tombstone.
                    if with_records.remove(&header.producer_id) || !tombstones_expired {
                        stats.kept += 1;
                        out.extend_from_slice(&buf);
                    } else {
                        stats.removed += 1;
                    }
                    continue;
                }
                if is_aborted(&aborted, &header) {
                    stats.removed += header.records_count.max(0) as usize;
                    continue;
                }
                let mut seen = 0;
                let retained =
                    records::retain(&buf, &header, config.max_uncompressed_bytes, |offset, r| {
                        seen += 1;
                        match &r.key {
                            None => true,
                            Some(key) => {
                                latest.get(key) == Some(&offset)
                                    && !(r.value.is_none() && tombstones_expired)
                            }
                        }
                    })
                    .map_err(io::Error::other)?;
                if header.is_transactional() && retained != Retained::None {
                    with_records.insert(header.producer_id);
                }
                match retained {
                    Retained::All => {
                        stats.kept += seen;
                        out.extend_from_slice(&buf);
                    }
                    Retained::None => stats.removed += seen,
                    Retained::Some(rebuilt) => {
                        let kept = batch::parse_header(&rebuilt)
                            .map_err(io::Error::other)?
                            .records_count as usize;
                        stats.kept += kept;
                        stats.removed += seen - kept;
                        out.extend_from_slice(&rebuilt);
                    }
                }
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
            let (segment, _) = Segment::open(
                &self.dir,
                c.base,
                true,
                config.index_interval_bytes,
                &self.open_files,
            )?;
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
            // The cleaned segments hold no aborted record any more: their aborted
            // transactions need not be remembered.
            self.lock().txns.forget_before(next);
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
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    /// A topic config from the broker defaults and `overrides`.
    fn topic_config(overrides: &[(&str, &str)]) -> LogConfig {
        let broker = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogConfig::new(&broker, &overrides)
    }

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
        let config_with = |max_lag: &str| {
            let overrides = [
                ("cleanup.policy", "compact"),
                ("segment.bytes", "300"),
                ("min.cleanable.dirty.ratio", "1.0"),
                ("max.compaction.lag.ms", max_lag),
            ];
            topic_config(&overrides)
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
    fn a_partly_kept_batch_stays_one_batch_with_its_codec() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "200"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ];
        let log = open_leader(dir.path(), topic_config(&overrides), "t").unwrap();
        let entries = ["a", "b", "c", "a"].map(|k| {
            (
                Some(Bytes::from(k.to_string())),
                Some(Bytes::from(format!("{k}-value"))),
            )
        });
        let b = batch::encode_records(entries, 1_000, Compression::Lz4)
            .unwrap()
            .to_vec();
        log.append(&b, &batch::validate_all(&b).unwrap(), LEADER)
            .unwrap();
        // A second segment, so that the first is inactive.
        let filler = keyed("z", Some(&"z".repeat(200)));
        log.append(&filler, &batch::validate_all(&filler).unwrap(), LEADER)
            .unwrap();
        let stats = log.compact(10_000).unwrap().expect("a pass ran");
        assert_eq!((stats.kept, stats.removed), (3, 1));

        let read = log.read(0, 1 << 20, true).unwrap();
        let header = batch::validate(&read.records).unwrap();
        assert_eq!(
            (
                header.base_offset,
                header.records_count,
                header.last_offset_delta
            ),
            (0, 3, 3),
            "the kept records stay in one batch"
        );
        assert_eq!(header.attributes & 0x07, 3, "lz4");
        let keys: Vec<_> = view(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
        assert_eq!(
            keys,
            [(1, "b"), (2, "c"), (3, "a"), (4, "z")].map(|(o, k)| (o, k.to_string()))
        );
    }

    #[test]
    fn keeps_the_latest_value_per_key_and_drops_old_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ];
        let config = topic_config(&overrides);
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

    #[test]
    fn aborted_records_are_dropped_and_markers_kept() {
        let dir = tempfile::tempdir().unwrap();
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ];
        let log = open_leader(dir.path(), topic_config(&overrides), "t").unwrap();
        let append = |b: &[u8]| {
            log.append(b, &batch::validate_all(b).unwrap(), LEADER)
                .unwrap()
        };
        append(&keyed("k", Some("committed")));
        // A later value of the same key, in a transaction that aborts: it must not win.
        append(&crate::log::txn_index::transactional_batch(
            5, 0, "k", "aborted",
        ));
        log.append_marker(5, 0, false, 0, LEADER).unwrap();
        let filler = keyed("z", Some(&"z".repeat(300)));
        append(&filler);
        append(&filler);
        // The marker is stamped with the broker's clock.
        let now = crate::log::segment::now_ms() + 1_000;
        let stats = log.compact(now).unwrap().expect("cleaned");
        assert!(stats.removed >= 1, "{stats:?}");
        let values: Vec<(String, Option<String>)> =
            view(&log).into_iter().map(|(_, k, v)| (k, v)).collect();
        assert!(values.contains(&("k".to_string(), Some("committed".to_string()))));
        assert!(!values.iter().any(|(_, v)| v.as_deref() == Some("aborted")));
        // The marker is still there: its control record (key 0,0,0,0) is read back.
        let has_marker = |log: &PartitionLog| {
            view(log)
                .iter()
                .any(|(_, k, _)| k.as_bytes() == [0, 0, 0, 0])
        };
        assert!(has_marker(&log));
        assert!(
            log.lock().txns.aborted().is_empty(),
            "its records are gone, so is its entry"
        );

        // Past delete.retention.ms, a marker with no records left goes too.
        let overrides = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "300"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ];
        log.set_config(topic_config(&overrides));
        append(&filler);
        append(&filler);
        log.compact(now + 1_000).unwrap().expect("cleaned again");
        assert!(!has_marker(&log));
        assert!(view(&log).contains(&(0, "k".to_string(), Some("committed".to_string()))));
    }
}
