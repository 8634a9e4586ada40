//! Sparse per-segment indexes, kept in memory and written to a file when the segment is
//! synced (at a roll, a flush and a clean shutdown): the offset index maps relative offsets
//! to file positions, the time index maps timestamps to relative offsets. The file is open
//! only while it is written, so an index holds no descriptor; after a crash the indexes of
//! the segments past the recovery point are rebuilt, and a short index file is completed
//! from the segment when it is loaded.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A fixed-size index entry and its encoding.
pub trait IndexEntry: Copy {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Encodes big-endian.
    fn encode(&self) -> Vec<u8>;
    /// Decodes big-endian from exactly `SIZE` bytes.
    fn decode(b: &[u8]) -> Self;
    /// The relative offset the entry points to.
    fn relative_offset(&self) -> u32;
}

/// Offset index entry: (offset relative to the segment base, file position of the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of the batch, relative to the segment.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self) -> Vec<u8> {
        let mut b = self.relative_offset.to_be_bytes().to_vec();
        b.extend_from_slice(&self.position.to_be_bytes());
        b
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// Time index entry: (largest timestamp so far, base offset of the batch that reached it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// The largest timestamp seen up to this batch.
    pub timestamp: i64,
    /// Base offset of the batch, relative to the segment.
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self) -> Vec<u8> {
        let mut b = self.timestamp.to_be_bytes().to_vec();
        b.extend_from_slice(&self.relative_offset.to_be_bytes());
        b
    }
    fn decode(b: &[u8]) -> Self {
        TimeEntry {
            timestamp: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// An index: entries in memory, the first `written` of them also in the file at `path`.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    entries: Vec<E>,
    written: usize,
    path: PathBuf,
}

impl<E: IndexEntry> Index<E> {
    /// Opens an existing index; `None` when the file is missing, torn or out of order,
    /// which tells the caller to rebuild it from the segment.
    pub fn load(path: &Path, is_valid: impl Fn(&[E]) -> bool) -> io::Result<Option<Self>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].relative_offset() < w[1].relative_offset());
        if !ordered || !is_valid(&entries) {
            return Ok(None);
        }
        Ok(Some(Index {
            written: entries.len(),
            entries,
            path: path.to_path_buf(),
        }))
    }

    /// Creates an empty index, replacing any file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        File::create(path)?;
        Ok(Index {
            entries: Vec::new(),
            written: 0,
            path: path.to_path_buf(),
        })
    }

    /// Appends an entry in memory; [`Self::write_out`] puts it in the file.
    pub fn append(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    /// The last entry whose key is at most `key`, by the given key function.
    pub fn floor_by<K: Ord>(&self, key: K, key_of: impl Fn(&E) -> K) -> Option<E> {
        let n = self.entries.partition_point(|e| key_of(e) <= key);
        n.checked_sub(1).map(|i| self.entries[i])
    }

    /// Appends the entries not yet in the file to it; with `sync`, then fsyncs it.
    pub fn write_out(&mut self, sync: bool) -> io::Result<()> {
        if self.written == self.entries.len() && !sync {
            return Ok(());
        }
        let mut file = OpenOptions::new().append(true).open(&self.path)?;
        let pending: Vec<u8> = self.entries[self.written..]
            .iter()
            .flat_map(|e| e.encode())
            .collect();
        if let Err(e) = file.write_all(&pending) {
            // A partial write is cut off, so the next attempt does not repeat entries.
            let _ = file.set_len((self.written * E::SIZE) as u64);
            return Err(e);
        }
        if sync {
            file.sync_data()?;
        }
        self.written = self.entries.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reload_and_torn_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut idx: Index<OffsetEntry> = Index::create(&path).unwrap();
        for (o, p) in [(0, 0), (10, 4096), (20, 8192)] {
            idx.append(OffsetEntry {
                relative_offset: o,
                position: p,
            });
        }
        assert!(
            std::fs::read(&path).unwrap().is_empty(),
            "entries reach the file when written out"
        );
        idx.write_out(false).unwrap();
        idx.write_out(true).unwrap();
        let loaded = Index::<OffsetEntry>::load(&path, |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries().len(), 3);
        assert_eq!(
            loaded.floor_by(15, |e| e.relative_offset).unwrap().position,
            4096
        );
        assert_eq!(
            loaded.floor_by(20, |e| e.relative_offset).unwrap().position,
            8192
        );

        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        assert!(Index::<OffsetEntry>::load(&path, |_| true)
            .unwrap()
            .is_none());
        assert!(
            Index::<TimeEntry>::load(&dir.path().join("missing"), |_| true)
                .unwrap()
                .is_none()
        );
    }
}
