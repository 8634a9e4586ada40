//! Transaction states kept durably in the internal topic `__transaction_state`: one record
//! per step, keyed by the transactional id (JSON key and value; a tombstone when the id
//! expires). A new leader of a partition replays it to take over the ids.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{TxnMetadata, TXN_TOPIC};
use crate::coordinator::{Appended, InternalTopic};
use crate::log::manager::LogManager;
use crate::log::AppendError;
use crate::metadata::image::MetadataImage;

#[derive(Debug, Serialize, Deserialize)]
struct StoredKey {
    transactional_id: String,
}

/// Reads and appends transaction states in `__transaction_state`.
pub struct TxnStore {
    topic: InternalTopic,
}

impl TxnStore {
    /// A store over the broker's logs.
    pub fn new(logs: Arc<LogManager>) -> Self {
        TxnStore {
            topic: InternalTopic::new(logs, TXN_TOPIC),
        }
    }

    /// Appends an id's new state (`None` deletes the id), refused unless this broker still
    /// leads the id's partition at `coordinator_epoch`, the epoch the state was loaded at.
    pub fn append(
        &self,
        image: &MetadataImage,
        transactional_id: &str,
        metadata: Option<&TxnMetadata>,
        min_isr: usize,
        coordinator_epoch: i32,
    ) -> Result<Option<Appended>, AppendError> {
        let key = serde_json::to_vec(&StoredKey {
            transactional_id: transactional_id.to_string(),
        })
        .map_err(io::Error::from)?;
        let value = metadata
            .map(serde_json::to_vec)
            .transpose()
            .map_err(io::Error::from)?;
        self.topic.append(
            image,
            transactional_id,
            vec![(key, value)],
            None,
            Some(min_isr),
            Some(coordinator_epoch),
        )
    }

    /// Replays one partition into the latest state of each id.
    pub fn load_partition(
        &self,
        image: &MetadataImage,
        partition: i32,
    ) -> io::Result<HashMap<String, TxnMetadata>> {
        let mut txns = HashMap::new();
        self.topic.replay(image, partition, |_, record| {
            let Some(Ok(key)) = record
                .key
                .as_ref()
                .map(|k| serde_json::from_slice::<StoredKey>(k))
            else {
                return;
            };
            match record
                .value
                .as_ref()
                .and_then(|v| serde_json::from_slice::<TxnMetadata>(v).ok())
            {
                Some(metadata) => txns.insert(key.transactional_id, metadata),
                None => txns.remove(&key.transactional_id),
            };
        })?;
        Ok(txns)
    }
}
