//! Durable Raft log and vote for the metadata quorum.
//!
//! Entries live in memory and in `raft-log.bin` as `[len u32][crc32c u32][json]` frames;
//! the vote, committed id and purge point live in `raft-state.json`. Both files are written
//! and fsynced before openraft is told an operation is done.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::TypeConfig;
use crate::log::write_file_atomic;

type NodeId = u64;

#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedState {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct Inner {
    dir: PathBuf,
    log_file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    state: PersistedState,
}

/// The Raft log store; cheap to clone, all clones share one log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: io::Error) -> StorageError<NodeId> {
    StorageError::from_io_error(subject, verb, e)
}

fn encode_frame(entry: &Entry<TypeConfig>) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(entry)?;
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

/// Decodes frames until the first torn or corrupt one; returns the entries and the valid length.
fn decode_frames(bytes: &[u8]) -> (Vec<Entry<TypeConfig>>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(json) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(json) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice(json) else {
            break;
        };
        entries.push(entry);
        at += 8 + len;
    }
    (entries, at)
}

impl LogStore {
    /// Opens the log in `dir`, cutting off a torn tail left by a crash.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft-log.bin");
        let mut log_file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        log_file.read_to_end(&mut bytes)?;
        let (decoded, valid) = decode_frames(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                valid,
                total = bytes.len(),
                "metadata log has a torn tail; truncating"
            );
            log_file.set_len(valid as u64)?;
            log_file.sync_all()?;
        }
        let state = match std::fs::read(dir.join("raft-state.json")) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => return Err(e),
        };
        let entries = decoded.into_iter().map(|e| (e.log_id.index, e)).collect();
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                log_file,
                entries,
                state,
            })),
        })
    }

    /// Whether nothing was ever stored (a brand-new node).
    pub async fn is_empty(&self) -> bool {
        let inner = self.inner.lock().await;
        inner.entries.is_empty() && inner.state.vote.is_none() && inner.state.last_purged.is_none()
    }
}

impl Inner {
    fn save_state(&self) -> io::Result<()> {
        write_file_atomic(
            &self.dir.join("raft-state.json"),
            &serde_json::to_vec(&self.state)?,
        )
    }

    /// Rewrites the log file from memory after a truncate or purge.
    fn rewrite(&mut self) -> io::Result<()> {
        let path = self.dir.join("raft-log.bin");
        let tmp = self.dir.join("raft-log.bin.tmp");
        let mut out = File::create(&tmp)?;
        for entry in self.entries.values() {
            out.write_all(&encode_frame(entry)?)?;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        self.log_file = OpenOptions::new().read(true).append(true).open(&path)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.state.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.state.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.vote = Some(*vote);
        inner
            .save_state()
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.state.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.committed = committed;
        inner
            .save_state()
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut bytes = Vec::new();
        let mut new_entries = Vec::new();
        for entry in entries {
            bytes.extend(
                encode_frame(&entry)
                    .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?,
            );
            new_entries.push(entry);
        }
        let result = inner
            .log_file
            .write_all(&bytes)
            .and_then(|_| inner.log_file.sync_data());
        if let Err(e) = result {
            let message = e.to_string();
            callback.log_io_completed(Err(e));
            return Err(io_error(
                ErrorSubject::Logs,
                ErrorVerb::Write,
                io::Error::other(message),
            ));
        }
        for entry in new_entries {
            inner.entries.insert(entry.log_id.index, entry);
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.entries.split_off(&log_id.index);
        inner
            .rewrite()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.state.last_purged = Some(log_id);
        inner
            .save_state()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        inner.entries = inner.entries.split_off(&(log_id.index + 1));
        inner
            .rewrite()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn frames_round_trip_and_stop_at_a_torn_tail() {
        let mut bytes = Vec::new();
        for i in 1..=3 {
            bytes.extend(encode_frame(&entry(i)).unwrap());
        }
        let full = bytes.len();
        bytes.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
        let (entries, valid) = decode_frames(&bytes);
        assert_eq!(entries.len(), 3);
        assert_eq!(valid, full);
        bytes[full - 1] ^= 1;
        assert_eq!(decode_frames(&bytes).0.len(), 2);
    }
}
