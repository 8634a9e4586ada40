//! The KRaft part: an openraft group whose log holds metadata records and whose state
//! machine is the metadata image. A single node is a quorum of one on the same code path.

pub mod image;
mod network;
mod state_machine;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::info;

use crate::config::BrokerConfig;
use image::{MetadataImage, MetadataRecord};

openraft::declare_raft_types!(
    /// Raft types of the metadata quorum.
    pub TypeConfig:
        D = MetadataRecord,
        R = ApplyResult,
);

/// What applying one record produced, returned to the proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    /// Why the record was rejected, if it was.
    pub error: Option<String>,
    /// A value the record produced (the start of an allocated producer id block).
    #[serde(default)]
    pub value: Option<i64>,
}

/// Errors from the metadata quorum.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The record was committed but the state machine refused it.
    #[error("{0}")]
    Rejected(String),
    /// The quorum cannot take writes now (no leader, shutting down).
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
    /// The quorum could not start.
    #[error("metadata quorum failed to start: {0}")]
    Startup(String),
}

/// The controller API: proposes records to the quorum and exposes the latest image.
pub struct Controller {
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<MetadataImage>>,
}

impl Controller {
    /// Opens the metadata log under the first `log.dirs` entry and joins the quorum.
    pub async fn start(config: &BrokerConfig) -> Result<Self, ControllerError> {
        let startup = |e: &dyn std::fmt::Display| ControllerError::Startup(e.to_string());
        if config.voters.len() > 1 {
            return Err(ControllerError::Startup(
                "controller.quorum.voters lists more than one voter; this build runs a \
                 single-voter quorum only"
                    .into(),
            ));
        }
        let dir = config.log_dirs[0].join("__cluster_metadata-0");
        let (publisher, image) = watch::channel(Arc::new(MetadataImage::default()));
        let log_store = store::LogStore::open(&dir).map_err(|e| startup(&e))?;
        let fresh = log_store.is_empty().await;
        let state_machine = state_machine::StateMachine::open(&dir, Arc::new(publisher))
            .map_err(|e| startup(&e))?;
        let snapshot_every = config.long("metadata.max.snapshot.entries") as u64;
        let raft_config = openraft::Config {
            cluster_name: "strom-metadata".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            ..Default::default()
        }
        .validate()
        .map_err(|e| startup(&e))?;
        let node_id = config.node_id as u64;
        let raft = Raft::new(
            node_id,
            Arc::new(raft_config),
            network::SingleVoterNetwork,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| startup(&e))?;
        if fresh {
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|v| {
                    (
                        v.id as u64,
                        BasicNode::new(format!("{}:{}", v.host, v.port)),
                    )
                })
                .collect();
            raft.initialize(members).await.map_err(|e| startup(&e))?;
            info!("initialized a new metadata quorum");
        }
        raft.wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.current_leader.is_some(), "a metadata leader")
            .await
            .map_err(|e| startup(&e))?;
        raft.ensure_linearizable().await.map_err(|e| startup(&e))?;
        let controller = Controller { raft, image };
        if controller.image().cluster_id.is_empty() {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            controller
                .propose(MetadataRecord::InitCluster { cluster_id })
                .await?;
        }
        info!(cluster_id = %controller.image().cluster_id, "metadata quorum ready");
        Ok(controller)
    }

    /// The latest applied metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The Raft node's own view: term, leader, log and applied indexes, membership.
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The node id of the active controller, if there is one.
    pub fn active_controller(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|id| id as i32)
    }

    /// Commits a record and returns once it is applied to the image.
    pub async fn propose(&self, record: MetadataRecord) -> Result<(), ControllerError> {
        self.propose_for_value(record).await.map(|_| ())
    }

    async fn propose_for_value(
        &self,
        record: MetadataRecord,
    ) -> Result<Option<i64>, ControllerError> {
        let response = self
            .raft
            .client_write(record)
            .await
            .map_err(|e| ControllerError::Unavailable(e.to_string()))?;
        match response.data.error {
            Some(reason) => Err(ControllerError::Rejected(reason)),
            None => Ok(response.data.value),
        }
    }

    /// Reserves `count` producer ids, unique across restarts; returns the first.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<i64, ControllerError> {
        self.propose_for_value(MetadataRecord::AllocateProducerIds { count })
            .await?
            .ok_or_else(|| ControllerError::Rejected("no producer id block was returned".into()))
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}

/// Hands out producer ids from blocks reserved through the quorum, so ids stay unique
/// across restarts (and, later, across brokers).
pub struct ProducerIdAllocator {
    controller: Arc<Controller>,
    /// (next id, end of the block).
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdAllocator {
    const BLOCK_SIZE: i64 = 1000;

    /// An allocator with no block reserved yet.
    pub fn new(controller: Arc<Controller>) -> Self {
        ProducerIdAllocator {
            controller,
            block: tokio::sync::Mutex::new((0, 0)),
        }
    }

    /// The next unused producer id.
    pub async fn next(&self) -> Result<i64, ControllerError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let start = self
                .controller
                .allocate_producer_ids(Self::BLOCK_SIZE)
                .await?;
            *block = (start, start + Self::BLOCK_SIZE);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
