//! The segment files a broker holds open, at most a fixed number at once. A broker with many
//! partitions would otherwise hold a descriptor per segment and run into the open file limit
//! (100,000 partitions on a machine whose hard limit is 20,000); the least recently used file
//! is closed and opened again on its next use.

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// Which file a segment's is (device and inode), checked when it is opened again: a log whose
/// directory was moved aside, and a new log made at the same path, must never share a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of an open file.
    pub fn of(file: &File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Open segment files by segment id.
#[derive(Debug)]
pub struct OpenFiles {
    files: Mutex<LruCache<u64, Arc<File>>>,
    next_id: AtomicU64,
}

impl OpenFiles {
    /// A cache that holds at most `capacity` files open (at least one).
    pub fn new(capacity: usize) -> Self {
        OpenFiles {
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            next_id: AtomicU64::new(0),
        }
    }

    /// A cache sized to half of this process's open file limit: the other half is left for
    /// connections and for the files opened briefly (indexes, checkpoints).
    pub fn for_this_process() -> Self {
        use rustix::process::{getrlimit, Resource};
        const UNLIMITED: u64 = 1 << 20;
        let limit = getrlimit(Resource::Nofile).current.unwrap_or(UNLIMITED);
        Self::new(usize::try_from(limit / 2).unwrap_or(usize::MAX).max(16))
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<u64, Arc<File>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new id for a segment whose file this cache will hold.
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The file of segment `id`, opened for reading and writing from `path` when it is not
    /// held; an error when the file there is no longer `expected`.
    pub fn get(&self, id: u64, path: &Path, expected: FileId) -> io::Result<Arc<File>> {
        if let Some(file) = self.lock().get(&id) {
            return Ok(file.clone());
        }
        // Opened outside the lock, so one slow open does not hold up every other partition.
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if FileId::of(&file)? != expected {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} was replaced", path.display()),
            ));
        }
        Ok(self.insert(id, Arc::new(file)))
    }

    /// Holds `file` as segment `id`'s (a segment just created); returns the file held, which
    /// is another thread's when it opened the same segment first.
    pub fn insert(&self, id: u64, file: Arc<File>) -> Arc<File> {
        let evicted = {
            let mut files = self.lock();
            if let Some(held) = files.get(&id) {
                return held.clone();
            }
            files.push(id, file.clone())
        };
        // The evicted file closes here, outside the lock, once no reader still holds it.
        drop(evicted);
        file
    }

    /// Stops holding segment `id`'s file (the segment is deleted or replaced).
    pub fn forget(&self, id: u64) {
        let removed = self.lock().pop(&id);
        drop(removed);
    }

    /// How many files are held open.
    pub fn held(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn the_least_recently_used_file_is_closed_and_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let files = OpenFiles::new(2);
        let paths: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("{i}.log")))
            .collect();
        let ids: Vec<u64> = paths
            .iter()
            .map(|path| {
                let id = files.new_id();
                let file = File::create_new(path).unwrap();
                files.insert(id, Arc::new(file));
                id
            })
            .collect();
        assert_eq!(files.held(), 2, "the first file was closed");
        let identity = FileId::of(&File::open(&paths[0]).unwrap()).unwrap();
        let first = files.get(ids[0], &paths[0], identity).unwrap();
        first.write_all_at(b"again", 0).unwrap();
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"again");
        assert_eq!(files.held(), 2);
        files.forget(ids[0]);
        assert_eq!(files.held(), 1);
        first.write_all_at(b"!", 5).unwrap();
        assert_eq!(
            std::fs::read(&paths[0]).unwrap(),
            b"again!",
            "a file no longer held still serves whoever holds it"
        );
        assert!(
            files
                .get(99, &dir.path().join("missing.log"), identity)
                .is_err(),
            "a missing file is an error, not a new file"
        );
        std::fs::remove_file(&paths[0]).unwrap();
        File::create_new(&paths[0]).unwrap();
        assert!(
            files.get(ids[0], &paths[0], identity).is_err(),
            "another file at the same path is not the segment's"
        );
        assert_eq!(files.held(), 1);
    }
}
