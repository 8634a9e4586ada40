//! Small durable-file helpers: atomic writes, directory fsyncs, delayed directory deletion.

use std::io;
use std::path::{Path, PathBuf};

pub(super) fn read_i64_file(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes a small file atomically: temp file, fsync, rename.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// fsyncs the directory holding `path`, so a create or rename in it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// The suffix Kafka gives a partition directory waiting to be deleted.
pub const DELETE_DIR_SUFFIX: &str = "-delete";

/// Moves a partition directory aside as `<name>.<unique>-delete`, stamped with the time;
/// `remove_deleted_dirs` removes it once `log.segment.delete.delay.ms` has passed.
pub fn schedule_dir_deletion(dir: &Path) -> io::Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let doomed = dir.with_file_name(format!(
        "{name}.{}{DELETE_DIR_SUFFIX}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::rename(dir, &doomed)?;
    std::fs::File::open(&doomed)?.set_modified(std::time::SystemTime::now())?;
    sync_parent(&doomed)?;
    Ok(doomed)
}

/// What a sweep of files or directories waiting for deletion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Removed.
    pub removed: usize,
    /// Still waiting for their delay.
    pub waiting: usize,
}

/// Removes the `-delete` directories in `root` moved aside at least `delay_ms` ago.
pub fn remove_deleted_dirs(root: &Path, delay_ms: i64) -> io::Result<Swept> {
    let now = std::time::SystemTime::now();
    let mut swept = Swept {
        removed: 0,
        waiting: 0,
    };
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(DELETE_DIR_SUFFIX) || !entry.file_type()?.is_dir() {
            continue;
        }
        let due = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age.as_millis() as i64 >= delay_ms);
        if due {
            std::fs::remove_dir_all(entry.path())?;
            swept.removed += 1;
        } else {
            swept.waiting += 1;
        }
    }
    Ok(swept)
}
