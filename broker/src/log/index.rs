//! Sparse per-segment indexes, kept in memory and appended to a file:
//! the offset index maps relative offsets to file positions, the time index maps
//! timestamps to relative offsets.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

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

/// An index: entries in memory, mirrored to an append-only file.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    entries: Vec<E>,
    file: File,
}

impl<E: IndexEntry> Index<E> {
    /// Opens an existing index; `None` when the file is missing, torn or out of order,
    /// which tells the caller to rebuild it from the segment.
    pub fn load(path: &Path, is_valid: impl Fn(&[E]) -> bool) -> io::Result<Option<Self>> {
        let mut file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
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
        Ok(Some(Index { entries, file }))
    }

    /// Creates an empty index, replacing any file at `path`.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(Index {
            entries: Vec::new(),
            file,
        })
    }

    /// Appends an entry.
    pub fn append(&mut self, entry: E) -> io::Result<()> {
        self.file.write_all(&entry.encode())?;
        self.entries.push(entry);
        Ok(())
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

    /// Flushes the file to disk.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
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
            })
            .unwrap();
        }
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
