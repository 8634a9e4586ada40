//! One log segment: a file of record batches as received, with its offset and time indexes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::files::Swept;
use super::index::{Index, OffsetEntry, TimeEntry};
use super::open_files::{FileId, OpenFiles};

/// A segment of a partition log.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the first batch this segment may hold (its file name).
    pub base_offset: i64,
    path: PathBuf,
    /// The segment's key in `files`, which holds its file open or opens it again.
    id: u64,
    files: Arc<OpenFiles>,
    file_id: FileId,
    size: u64,
    offset_index: Index<OffsetEntry>,
    time_index: Index<TimeEntry>,
    bytes_since_index: u32,
    /// Largest batch timestamp in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// One past the last offset stored here.
    pub next_offset: i64,
    /// Wall-clock milliseconds when the segment was created or opened, for `segment.ms`.
    pub created_ms: i64,
}

fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Wall-clock time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What opening a segment found.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    /// Every batch was intact (or not checked).
    Clean,
    /// A torn or corrupt tail was cut off at this byte position.
    Truncated(u64),
}

impl Segment {
    /// Base offsets of the segments found in `dir`, ascending.
    pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        Ok(bases)
    }

    /// Creates a new empty segment starting at `base_offset`.
    pub fn create(dir: &Path, base_offset: i64, files: &Arc<OpenFiles>) -> io::Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        let file_id = FileId::of(&file)?;
        let offset_index = Index::create(&dir.join(file_name(base_offset, "index")))?;
        let time_index = Index::create(&dir.join(file_name(base_offset, "timeindex")))?;
        let id = files.new_id();
        files.insert(id, Arc::new(file));
        Ok(Segment {
            base_offset,
            path,
            id,
            files: files.clone(),
            file_id,
            size: 0,
            offset_index,
            time_index,
            bytes_since_index: 0,
            max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms(),
        })
    }

    /// Opens an existing segment. With `recover`, every batch's CRC is checked, a bad tail is
    /// truncated and the indexes are rebuilt; without it the indexes are loaded and rebuilt
    /// only when missing or corrupt.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        index_interval: u32,
        files: &Arc<OpenFiles>,
    ) -> io::Result<(Self, OpenOutcome)> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_id = FileId::of(&file)?;
        let size = file.metadata()?.len();
        let index_path = dir.join(file_name(base_offset, "index"));
        let time_path = dir.join(file_name(base_offset, "timeindex"));
        let loaded = if recover {
            None
        } else {
            let offsets = Index::<OffsetEntry>::load(&index_path, |es| {
                es.iter().all(|e| (e.position as u64) < size)
            })?;
            let times = Index::<TimeEntry>::load(&time_path, |_| true)?;
            offsets.zip(times)
        };
        let rebuild = loaded.is_none();
        let (offset_index, time_index) = match loaded {
            Some(indexes) => indexes,
            None => (Index::create(&index_path)?, Index::create(&time_path)?),
        };
        let id = files.new_id();
        let file = files.insert(id, Arc::new(file));
        // From here the segment exists, and dropping it on an error releases its file.
        let mut segment = Segment {
            base_offset,
            path,
            id,
            files: files.clone(),
            file_id,
            size,
            offset_index,
            time_index,
            bytes_since_index: 0,
            max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms(),
        };
        if !rebuild {
            // From the batch of the last time index entry, so the largest timestamp is known
            // before the index entries not written out before the shutdown are added back
            // after the last offset index entry.
            let last_time = segment.time_index.entries().last().copied();
            let from = last_time
                .and_then(|t| {
                    segment
                        .offset_index
                        .floor_by(t.relative_offset, |e| e.relative_offset)
                })
                .map(|e| e.position as u64)
                .unwrap_or(0);
            if let Some(t) = last_time {
                segment.max_timestamp = t.timestamp;
            }
            let mut tail = Vec::new();
            segment.scan(from, false, |pos, h| {
                tail.push((pos, h));
                true
            })?;
            for (pos, h) in tail {
                segment.track(pos, &h, index_interval);
            }
            segment.write_indexes(false)?;
            return Ok((segment, OpenOutcome::Clean));
        }
        let mut headers = Vec::new();
        let valid_end = segment.scan(0, recover, |pos, h| {
            headers.push((pos, h));
            true
        })?;
        for (pos, h) in headers {
            segment.track(pos, &h, index_interval);
        }
        segment.write_indexes(false)?;
        segment.size = valid_end;
        if valid_end < size {
            file.set_len(valid_end)?;
            file.sync_all()?;
            return Ok((segment, OpenOutcome::Truncated(valid_end)));
        }
        Ok((segment, OpenOutcome::Clean))
    }
    /// Walks batches from `from` to the end of the file, calling `visit(position, header)`
    /// until it returns false. Returns the byte position after the last intact batch.
    pub fn scan(
        &self,
        from: u64,
        verify_crc: bool,
        mut visit: impl FnMut(u64, BatchHeader) -> bool,
    ) -> io::Result<u64> {
        // Verifying reads every byte, so it streams through a large buffer; a header walk
        // only needs 61 bytes per batch, so it reads those alone.
        let file = self.file()?;
        let mut reader =
            verify_crc.then(|| BufReader::with_capacity(1 << 20, ReadAt::new(&file, from)));
        let mut pos = from;
        let mut buf = vec![0u8; HEADER_SIZE];
        let end = self.size;
        while pos + HEADER_SIZE as u64 <= end {
            buf.resize(HEADER_SIZE, 0);
            let read = match reader.as_mut() {
                Some(r) => r.read_exact(&mut buf),
                None => file.read_exact_at(&mut buf, pos),
            };
            if read.is_err() {
                break;
            }
            let Some(total) = batch::peek_size(&buf) else {
                break;
            };
            if pos + total as u64 > end {
                break;
            }
            let header = match reader.as_mut() {
                Some(r) => {
                    buf.resize(total, 0);
                    if r.read_exact(&mut buf[HEADER_SIZE..]).is_err() {
                        break;
                    }
                    batch::validate(&buf)
                }
                None => batch::parse_header_only(&buf),
            };
            let Ok(header) = header else {
                break;
            };
            if header.base_offset < self.base_offset {
                break;
            }
            if !visit(pos, header) {
                return Ok(pos + total as u64);
            }
            pos += total as u64;
        }
        Ok(pos)
    }

    fn track(&mut self, position: u64, h: &BatchHeader, index_interval: u32) {
        let relative_offset = (h.base_offset - self.base_offset) as u32;
        let indexed = self
            .offset_index
            .entries()
            .last()
            .map(|e| e.relative_offset);
        // A reopened segment's scan starts at its last indexed batch, which is not indexed twice.
        let due = match indexed {
            None => true,
            Some(last) => last < relative_offset && self.bytes_since_index >= index_interval,
        };
        if due {
            self.offset_index.append(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            if h.max_timestamp > self.max_timestamp {
                self.time_index.append(TimeEntry {
                    timestamp: h.max_timestamp,
                    relative_offset,
                });
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size as u32;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.next_offset = h.last_offset() + 1;
    }

    /// Appends batches whose offsets are already assigned.
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        index_interval: u32,
    ) -> io::Result<()> {
        // Positional: the file cursor of a reopened segment is not at its end.
        self.file()?.write_all_at(bytes, self.size)?;
        let mut position = self.size;
        for h in headers {
            self.track(position, h, index_interval);
            position += h.size as u64;
        }
        self.size = position;
        Ok(())
    }

    /// Size of the segment file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The segment file, shared so readers can read without holding the log lock; opened
    /// again when the open file cache has closed it.
    pub fn file(&self) -> io::Result<Arc<File>> {
        self.files.get(self.id, &self.path, self.file_id)
    }

    /// Position of the batch that holds `offset` (or the first batch after it).
    pub fn position_of(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let relative = (offset - self.base_offset).max(0) as u32;
        let start = self
            .offset_index
            .floor_by(relative, |e| e.relative_offset)
            .map(|e| e.position as u64)
            .unwrap_or(0);
        let mut found = None;
        self.scan(start, false, |pos, h| {
            if h.last_offset() >= offset {
                found = Some((pos, h));
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// The first batch whose max timestamp is at least `timestamp`.
    pub fn find_timestamp(&self, timestamp: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let start_offset = self
            .time_index
            .entries()
            .iter()
            .take_while(|e| e.timestamp < timestamp)
            .last()
            .map(|e| self.base_offset + e.relative_offset as i64)
            .unwrap_or(self.base_offset);
        let start = self
            .position_of(start_offset)?
            .map(|(pos, _)| pos)
            .unwrap_or(0);
        let mut found = None;
        self.scan(start, false, |pos, h| {
            if h.max_timestamp >= timestamp {
                found = Some((pos, h));
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Reads `len` bytes at `position`.
    pub fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file()?.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    fn write_indexes(&mut self, sync: bool) -> io::Result<()> {
        self.offset_index.write_out(sync)?;
        self.time_index.write_out(sync)
    }

    /// Flushes data and indexes to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file()?.sync_data()?;
        self.write_indexes(true)
    }

    /// Removes the segment's files.
    pub fn delete(self) -> io::Result<()> {
        remove_files(&self.path)
    }

    /// Removes the files of the segment at `base_offset` in `dir` without opening it.
    pub fn delete_unopened(dir: &Path, base_offset: i64) -> io::Result<()> {
        remove_files(&dir.join(file_name(base_offset, "log")))
    }

    /// Deletes the segment after `file.delete.delay.ms`: its files are renamed with Kafka's
    /// `.deleted` suffix, stamped with the time, and removed by `remove_deleted_files` once
    /// the delay has passed, so a read still using them finishes. A delay of 0 deletes now.
    pub fn delete_after(self, delay_ms: i64) -> io::Result<()> {
        if delay_ms <= 0 {
            return self.delete();
        }
        let now = std::time::SystemTime::now();
        for path in [
            self.path.clone(),
            self.path.with_extension("index"),
            self.path.with_extension("timeindex"),
        ] {
            let mut doomed = path.clone().into_os_string();
            doomed.push(DELETED_SUFFIX);
            match std::fs::rename(&path, &doomed) {
                Ok(()) => File::options()
                    .write(true)
                    .open(&doomed)?
                    .set_modified(now)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound && path != self.path => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn remove_files(log: &Path) -> io::Result<()> {
    std::fs::remove_file(log)?;
    let _ = std::fs::remove_file(log.with_extension("index"));
    let _ = std::fs::remove_file(log.with_extension("timeindex"));
    Ok(())
}

/// The suffix of segment files waiting for `file.delete.delay.ms`.
pub const DELETED_SUFFIX: &str = ".deleted";

/// Removes the `.deleted` files in `dir` renamed at least `delay_ms` ago (all of them with
/// `None`, as at start-up).
pub fn remove_deleted_files(dir: &Path, delay_ms: Option<i64>) -> io::Result<Swept> {
    let now = std::time::SystemTime::now();
    let mut swept = Swept {
        removed: 0,
        waiting: 0,
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .ends_with(DELETED_SUFFIX)
        {
            continue;
        }
        let due = match delay_ms {
            None => true,
            Some(delay) => entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age.as_millis() as i64 >= delay),
        };
        if due {
            std::fs::remove_file(entry.path())?;
            swept.removed += 1;
        } else {
            swept.waiting += 1;
        }
    }
    Ok(swept)
}

/// A random roll jitter below `bound` ms (`segment.jitter.ms`), from the random bits of a
/// v4 UUID so no random-number crate is needed.
pub fn random_jitter(bound: i64) -> i64 {
    if bound <= 0 {
        0
    } else {
        (uuid::Uuid::new_v4().as_u128() % bound as u128) as i64
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // A deleted segment's space is freed only once its file is closed.
        self.files.forget(self.id);
    }
}

impl Segment {
    /// Whether the segment has been the active one for longer than `roll_ms - jitter_ms`.
    pub fn due_to_roll(&self, now: i64, roll_ms: i64, jitter_ms: i64) -> bool {
        now - self.created_ms > roll_ms.saturating_sub(jitter_ms)
    }
}

/// Positional reads as a `Read`, so a `BufReader` can scan a shared file.
struct ReadAt<'a> {
    file: &'a File,
    position: u64,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File, position: u64) -> Self {
        ReadAt { file, position }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{assign_offset, tests::make_batch, validate};

    fn files() -> Arc<OpenFiles> {
        Arc::new(OpenFiles::new(4))
    }

    fn batch_at(offset: i64, count: i32, ts: i64) -> (Vec<u8>, BatchHeader) {
        let mut b = make_batch(count, ts);
        assign_offset(&mut b, offset, 0);
        let h = validate(&b).unwrap();
        (b, h)
    }

    #[test]
    fn deleted_segments_wait_for_their_delay() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segment::create(dir.path(), 0, &files()).unwrap();
        let (b, h) = batch_at(0, 3, 1000);
        s.append(&b, &[h], 64).unwrap();
        s.delete_after(60_000).unwrap();
        assert!(Segment::list(dir.path()).unwrap().is_empty());
        let waiting = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(DELETED_SUFFIX)
                })
                .count()
        };
        assert_eq!(waiting(dir.path()), 3, "log, index and time index");
        assert_eq!(
            remove_deleted_files(dir.path(), Some(60_000)).unwrap(),
            Swept {
                removed: 0,
                waiting: 3
            }
        );
        assert_eq!(
            remove_deleted_files(dir.path(), Some(0)).unwrap(),
            Swept {
                removed: 3,
                waiting: 0
            }
        );
        let s = Segment::create(dir.path(), 5, &files()).unwrap();
        s.delete_after(0).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn jitter_rolls_earlier() {
        let s = Segment::create(tempfile::tempdir().unwrap().path(), 0, &files()).unwrap();
        let t = s.created_ms;
        assert!(!s.due_to_roll(t + 900, 1000, 0));
        assert!(s.due_to_roll(t + 900, 1000, 200));
        assert!((0..50).all(|_| (0..300).contains(&random_jitter(300))));
        assert_eq!(random_jitter(0), 0);
    }

    #[test]
    fn append_find_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segment::create(dir.path(), 100, &files()).unwrap();
        let mut offset = 100;
        for i in 0..50 {
            let (b, h) = batch_at(offset, 3, 1000 + i);
            s.append(&b, &[h], 64).unwrap();
            offset += 3;
        }
        assert_eq!(s.next_offset, 250);
        let (_, h) = s.position_of(131).unwrap().unwrap();
        assert_eq!(h.base_offset, 130);
        let (_, h) = s.find_timestamp(1020).unwrap().unwrap();
        assert_eq!(h.base_offset, 154);
        drop(s);
        let (s, outcome) = Segment::open(dir.path(), 100, false, 64, &files()).unwrap();
        assert_eq!(outcome, OpenOutcome::Clean);
        assert_eq!((s.next_offset, s.max_timestamp), (250, 1051));
        assert_eq!(Segment::list(dir.path()).unwrap(), vec![100]);
        let mut s = s;
        let (b, h) = batch_at(250, 3, 2000);
        s.append(&b, &[h], 64).unwrap();
        let mut seen = Vec::new();
        let end = s
            .scan(0, true, |_, h| {
                seen.push(h.base_offset);
                true
            })
            .unwrap();
        assert_eq!(
            end,
            s.size(),
            "every batch is intact after appending to a reopened segment"
        );
        assert_eq!(seen.len(), 51);
        assert_eq!(seen[..2], [100, 103]);
        assert_eq!(seen.last(), Some(&250));
    }

    #[test]
    fn segments_outnumbering_the_open_file_cache_append_and_reopen_intact() {
        let dir = tempfile::tempdir().unwrap();
        let files = Arc::new(OpenFiles::new(1));
        let mut segments = [
            Segment::create(dir.path(), 0, &files).unwrap(),
            Segment::create(dir.path(), 1000, &files).unwrap(),
        ];
        for i in 0..20 {
            let s = &mut segments[i % 2];
            let (b, h) = batch_at(s.next_offset, 2, 10 + i as i64);
            s.append(&b, &[h], 64).unwrap();
            assert_eq!(
                files.held(),
                1,
                "each append closes the other segment's file"
            );
        }
        segments[0].sync().unwrap();
        let synced_entries = segments[0].offset_index.entries().len();
        assert!(synced_entries > 1);
        assert_eq!(
            std::fs::metadata(dir.path().join(file_name(0, "index")))
                .unwrap()
                .len(),
            (synced_entries * 8) as u64,
            "a sync writes the index out"
        );
        let unsynced_entries = segments[1].offset_index.entries().len();
        drop(segments);
        assert_eq!(files.held(), 0, "a dropped segment's file is closed");
        for (base, entries) in [(0, synced_entries), (1000, unsynced_entries)] {
            let (s, outcome) = Segment::open(dir.path(), base, false, 64, &files).unwrap();
            assert_eq!(outcome, OpenOutcome::Clean);
            assert_eq!(s.next_offset, base + 20);
            assert_eq!(
                s.offset_index.entries().len(),
                entries,
                "the index of segment {base} is whole after a reopen"
            );
            let intact = s.scan(0, true, |_, _| true).unwrap();
            assert_eq!(intact, s.size(), "segment {base} holds only whole batches");
        }
    }

    #[test]
    fn recovery_truncates_a_torn_tail_and_rebuilds_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Segment::create(dir.path(), 0, &files()).unwrap();
        let (b1, h1) = batch_at(0, 2, 5);
        let (b2, h2) = batch_at(2, 2, 6);
        s.append(&b1, &[h1], 0).unwrap();
        s.append(&b2, &[h2], 0).unwrap();
        drop(s);
        let path = dir.path().join(file_name(0, "log"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(b1.len() + b2.len() - 3);
        bytes.extend_from_slice(b"garbage");
        std::fs::write(&path, &bytes).unwrap();
        std::fs::remove_file(dir.path().join(file_name(0, "index"))).unwrap();
        let (s, outcome) = Segment::open(dir.path(), 0, true, 0, &files()).unwrap();
        assert_eq!(outcome, OpenOutcome::Truncated(b1.len() as u64));
        assert_eq!(s.next_offset, 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), b1.len() as u64);
        assert!(s.position_of(2).unwrap().is_none());
    }
}
