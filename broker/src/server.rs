//! Starts and stops a broker: listeners, metadata quorum, logs and background tasks.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::Context;
use crate::config::{BrokerConfig, Role};
use crate::group::store::{OffsetStore, OFFSETS_TOPIC};
use crate::group::{GroupConfig, GroupCoordinator, PersistGroup};
use crate::log::manager::LogManager;
use crate::log::segment::now_ms;
use crate::metadata::image::{place_replicas, BrokerRegistration, MetadataRecord};
use crate::metadata::{Controller, ControllerError, ProducerIdAllocator};
use crate::metrics::BrokerMetrics;
use crate::{http, network};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not bind.
    #[error("cannot listen on {address} ({name}): {source}")]
    Bind {
        name: String,
        address: String,
        source: std::io::Error,
    },
    /// The metadata quorum failed.
    #[error(transparent)]
    Metadata(#[from] ControllerError),
    /// The log directory could not be used.
    #[error("log directory {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    /// A configuration this build cannot run yet.
    #[error("{0}")]
    Unsupported(String),
}

/// A running broker.
pub struct Server {
    /// Where clients connect.
    pub client_address: SocketAddr,
    /// Where `/healthz` and `/readyz` answer.
    pub http_address: SocketAddr,
    context: Arc<Context>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(name: &str, address: String) -> Result<TcpListener, ServerError> {
    TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Bind {
            name: name.to_string(),
            address,
            source,
        })
}

impl Server {
    /// Binds the listeners, joins the metadata quorum, recovers the logs and starts serving.
    pub async fn start(mut config: BrokerConfig) -> Result<Server, ServerError> {
        if !(config.has_role(Role::Broker) && config.has_role(Role::Controller)) {
            return Err(ServerError::Unsupported(
                "process.roles must be `broker,controller` in this build: dedicated brokers \
                 and controllers need the multi-node quorum"
                    .into(),
            ));
        }
        let client = config
            .client_listener()
            .cloned()
            .expect("validated: brokers have a client listener");
        let listener = bind(&client.name, client.bind_address()).await?;
        let client_address = listener.local_addr().map_err(|source| ServerError::Bind {
            name: client.name.clone(),
            address: client.bind_address(),
            source,
        })?;
        config.set_bound_port(&client.name, client_address.port());
        let http_listener = bind("metrics.listener", config.metrics_listener.to_string()).await?;
        let http_address = http_listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                name: "metrics.listener".into(),
                address: config.metrics_listener.to_string(),
                source,
            })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let serving: http::Serving = Arc::new(OnceLock::new());
        let mut tasks = vec![tokio::spawn({
            let serving = serving.clone();
            let shutdown = shutdown_rx.clone();
            async move {
                if let Err(e) = http::serve(http_listener, serving, shutdown).await {
                    warn!(error = %e, "health listener stopped");
                }
            }
        })];

        let config = Arc::new(config);
        let controller = Arc::new(Controller::start(&config).await?);
        let advertised = config
            .advertised_listeners
            .iter()
            .find(|l| l.name == client.name)
            .or(config.advertised_listeners.first())
            .cloned()
            .unwrap_or(client.clone());
        let registration = BrokerRegistration {
            id: config.node_id,
            host: advertised.host,
            port: advertised.port,
            rack: None,
        };
        if controller.image().brokers.get(&config.node_id) != Some(&registration) {
            controller
                .propose(MetadataRecord::RegisterBroker(registration))
                .await?;
        }
        ensure_offsets_topic(&config, &controller).await?;
        let storage = |source| ServerError::Storage {
            path: config.log_dirs[0].display().to_string(),
            source,
        };
        let logs = Arc::new(LogManager::new(config.clone()).map_err(storage)?);
        logs.sync_with_image(&controller.image()).map_err(storage)?;
        let offset_store = OffsetStore::new(logs.clone());
        let (offsets, group_metadata) = offset_store.load(&controller.image()).map_err(storage)?;
        let persist_store = OffsetStore::new(logs.clone());
        let persist_controller = controller.clone();
        let persist: PersistGroup = Box::new(move |group, snapshot| {
            let image = persist_controller.image();
            if let Err(e) = persist_store.append_group(&image, group, snapshot) {
                warn!(%group, error = %e, "could not store group metadata");
            }
        });
        let groups = GroupCoordinator::new(
            GroupConfig {
                initial_rebalance_delay: Duration::from_millis(
                    config.int("group.initial.rebalance.delay.ms") as u64,
                ),
                min_session_timeout_ms: config.int("group.min.session.timeout.ms"),
                max_session_timeout_ms: config.int("group.max.session.timeout.ms"),
            },
            offsets,
            group_metadata,
            persist,
        );
        let context = Arc::new(Context {
            config: config.clone(),
            controller: controller.clone(),
            logs: logs.clone(),
            groups: groups.clone(),
            offset_store,
            producer_ids: ProducerIdAllocator::new(controller.clone()),
            metrics: BrokerMetrics::new(),
        });
        tasks.push(tokio::spawn(expire_group_sessions(
            groups,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(expire_offsets(
            context.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(follow_metadata(
            controller.subscribe(),
            logs.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(housekeeping(
            config.clone(),
            logs,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(network::serve(
            listener,
            context.clone(),
            shutdown_rx,
        )));
        let _ = serving.set(context.clone());
        info!(%client_address, %http_address, node_id = config.node_id, "broker serving");
        Ok(Server {
            client_address,
            http_address,
            context,
            shutdown,
            tasks,
        })
    }

    /// How many malformed frames closed their connection.
    pub fn malformed_requests(&self) -> u64 {
        self.context.metrics.malformed_requests.get()
    }

    /// Stops serving, flushes the logs and records their recovery points.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                warn!("a task did not stop within 10s");
            }
        }
        self.context.logs.flush_all();
        self.context.controller.shutdown().await;
        info!("broker stopped");
    }
}

/// Creates the internal `__consumer_offsets` topic on first start.
async fn ensure_offsets_topic(
    config: &BrokerConfig,
    controller: &Controller,
) -> Result<(), ControllerError> {
    let image = controller.image();
    if image.topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let brokers: Vec<i32> = image.brokers.keys().copied().collect();
    let replication = (config.int("offsets.topic.replication.factor") as usize).min(brokers.len());
    let partitions = config.int("offsets.topic.num.partitions") as usize;
    controller
        .propose(MetadataRecord::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            id: uuid::Uuid::new_v4(),
            assignments: place_replicas(&brokers, 0, partitions, replication),
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    config.string("offsets.topic.segment.bytes"),
                ),
            ]
            .into(),
        })
        .await
}

/// Expires group members whose heartbeats stopped.
async fn expire_group_sessions(groups: Arc<GroupCoordinator>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => groups.expire_sessions(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Deletes committed offsets of empty groups after `offsets.retention.minutes`.
async fn expire_offsets(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let every =
        Duration::from_millis(ctx.config.long("offsets.retention.check.interval.ms") as u64);
    let retention_ms = ctx.config.int("offsets.retention.minutes") as i64 * 60_000;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (group, keys) in ctx.groups.expired_offsets(now_ms(), retention_ms) {
                    let tombstones: Vec<_> = keys.into_iter().map(|k| (k, None)).collect();
                    match ctx.offset_store.append(&ctx.controller.image(), &group, &tombstones) {
                        Ok(()) => {
                            ctx.groups.record_offsets(&group, &tombstones);
                            info!(%group, partitions = tombstones.len(), "expired committed offsets");
                        }
                        Err(e) => warn!(%group, error = %e, "could not expire committed offsets"),
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies every new metadata image to the local logs (deletes, config changes).
async fn follow_metadata(
    mut images: watch::Receiver<Arc<crate::metadata::image::MetadataImage>>,
    logs: Arc<LogManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = images.borrow_and_update().clone();
                if let Err(e) = logs.sync_with_image(&image) {
                    warn!(error = %e, "could not apply metadata to local logs");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Retention and time-based flushing on their configured intervals.
async fn housekeeping(
    config: Arc<BrokerConfig>,
    logs: Arc<LogManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    let retention_every =
        Duration::from_millis(config.long("log.retention.check.interval.ms") as u64);
    let flush_every = Duration::from_millis(config.long("log.flush.scheduler.interval.ms") as u64);
    let clean_every = Duration::from_millis(config.long("log.cleaner.backoff.ms") as u64);
    let mut retention = tokio::time::interval(retention_every);
    let mut flush = tokio::time::interval(flush_every);
    let mut clean = tokio::time::interval(clean_every);
    loop {
        tokio::select! {
            _ = retention.tick() => {
                logs.apply_retention(now_ms());
                logs.expire_producers(now_ms());
            }
            _ = flush.tick() => logs.flush_due(now_ms()),
            _ = clean.tick() => {
                // Compaction reads and rewrites whole segments: keep it off the async workers.
                let logs = logs.clone();
                let _ = tokio::task::spawn_blocking(move || logs.compact_all(now_ms())).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
