//! The metadata state machine: applies committed records to the image, publishes each new
//! image to the broker, and snapshots it to `metadata-snapshot.json`.

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use super::image::MetadataImage;
use super::{ApplyResult, TypeConfig};
use crate::log::write_file_atomic;

type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    image: MetadataImage,
}

/// Writes `metadata-snapshot.json`. A snapshot is built on a blocking thread while the state
/// machine goes on (and may install a snapshot from the leader), so writes take turns and an
/// older snapshot never replaces a newer one.
#[derive(Clone)]
struct SnapshotWriter {
    path: PathBuf,
    /// The last log id of the snapshot in the file.
    written: Arc<Mutex<Option<LogId<NodeId>>>>,
}

impl SnapshotWriter {
    /// Writes `bytes`, the snapshot up to `last`, unless the file holds a later one.
    fn write(&self, last: Option<LogId<NodeId>>, bytes: &[u8]) -> io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written > last {
            return Ok(());
        }
        write_file_atomic(&self.path, bytes)?;
        *written = last;
        Ok(())
    }
}

/// Applies metadata records; cheap to clone for snapshot building.
#[derive(Clone)]
pub struct StateMachine {
    snapshot: SnapshotWriter,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    image: MetadataImage,
    publisher: Arc<watch::Sender<Arc<MetadataImage>>>,
}

fn io_error(verb: ErrorVerb, e: io::Error) -> StorageError<NodeId> {
    StorageError::from_io_error(ErrorSubject::StateMachine, verb, e)
}

impl StateMachine {
    /// Restores from the snapshot in `dir` (if any); the log replays what came after it.
    pub fn open(
        dir: &std::path::Path,
        publisher: Arc<watch::Sender<Arc<MetadataImage>>>,
    ) -> io::Result<Self> {
        let path = dir.join("metadata-snapshot.json");
        let snapshot: Option<SnapshotFile> = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut machine = StateMachine {
            snapshot: SnapshotWriter {
                path,
                written: Arc::new(Mutex::new(snapshot.as_ref().and_then(|s| s.last_applied))),
            },
            last_applied: None,
            membership: Membership::default(),
            image: MetadataImage::default(),
            publisher,
        };
        if let Some(s) = snapshot {
            machine.last_applied = s.last_applied;
            machine.membership = s.membership;
            machine.image = s.image;
            machine.publish();
        }
        Ok(machine)
    }

    fn publish(&self) {
        self.publisher.send_replace(Arc::new(self.image.clone()));
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            image: self.image.clone(),
        };
        let meta = file.meta.clone();
        let writer = self.snapshot.clone();
        // Serialising a large image takes long enough to delay Raft heartbeats on the
        // one-worker quorum runtime, so it runs on a blocking thread.
        let bytes = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let bytes = serde_json::to_vec(&file)?;
            writer.write(file.last_applied, &bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(|e| io_error(ErrorVerb::Write, io::Error::other(e)))?
        .map_err(|e| io_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            self.image.applied_index = entry.log_id.index;
            let result = match entry.payload {
                EntryPayload::Blank => ApplyResult::default(),
                EntryPayload::Normal(record) => match self.image.apply(&record) {
                    Ok(applied) => ApplyResult {
                        error: None,
                        value: applied.value,
                        refused: applied.refused,
                    },
                    Err(error) => {
                        if error.starts_with("INVALID_RECORD") {
                            // Committed by a node without the check, or corrupted: skip it.
                            warn!(index = entry.log_id.index, %error, "skipping an invalid metadata record");
                            self.image.invalid_records_skipped += 1;
                        }
                        ApplyResult {
                            error: Some(error),
                            ..ApplyResult::default()
                        }
                    }
                },
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    ApplyResult::default()
                }
            };
            results.push(result);
        }
        self.publish();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(ErrorVerb::Read, io::Error::from(e)))?;
        self.snapshot
            .write(meta.last_log_id, &bytes)
            .map_err(|e| io_error(ErrorVerb::Write, e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.image = file.image;
        self.image.stamp_unknown_changes();
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let on_disk = match std::fs::read(&self.snapshot.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(ErrorVerb::Read, e)),
        };
        let file: SnapshotFile = serde_json::from_slice(&on_disk)
            .map_err(|e| io_error(ErrorVerb::Read, io::Error::from(e)))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(on_disk)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log_id(term: u64, index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SnapshotWriter {
            path: dir.path().join("metadata-snapshot.json"),
            written: Arc::default(),
        };
        writer.write(log_id(2, 10), b"installed at 10").unwrap();
        writer.write(log_id(2, 7), b"built at 7").unwrap();
        assert_eq!(std::fs::read(&writer.path).unwrap(), b"installed at 10");
        writer.write(log_id(3, 8), b"built at 8 in term 3").unwrap();
        assert_eq!(
            std::fs::read(&writer.path).unwrap(),
            b"built at 8 in term 3"
        );
    }
}
