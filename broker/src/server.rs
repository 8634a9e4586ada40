//! Starts and stops a broker: listeners, metadata quorum, logs and background tasks.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api::metadata::FencedBrokers;
use crate::api::{transactions, Context, FetchSessions};
use crate::config::{BrokerConfig, Role};
use crate::coordinator::{ensure_internal_topic, InternalTopicSpec};
use crate::group::store::{OffsetStore, OFFSETS_TOPIC};
use crate::group::{GroupConfig, GroupCoordinator, PersistGroup};
use crate::log::manager::LogManager;
use crate::log::meta_properties::{self, IdentityError};
use crate::log::segment::now_ms;
use crate::metadata::image::{
    BrokerRegistration, Endpoint, MetadataImage, MetadataRecord, ScramChange, SecurityRecord,
};
use crate::metadata::listener::ControllerAccess;
use crate::metadata::rpc::Heartbeat;
use crate::metadata::{listener, runtime, Controller, ControllerError, ProducerIdAllocator};
use crate::metrics::BrokerMetrics;
use crate::network::ConnectionLimits;
use crate::quota::QuotaManager;
use crate::replica::ReplicaManager;
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::{tls, Security, SecurityError};
use crate::shutdown::unless_shutdown;
use crate::txn::markers::MarkerClient;
use crate::txn::store::TxnStore;
use crate::txn::{TxnCoordinator, TXN_TOPIC};
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
    /// A log directory belongs to another node or cluster.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A TLS, SASL or authorizer setting cannot be used.
    #[error("configuration error: {0}")]
    Security(#[from] SecurityError),
    /// A `--add-scram` credential is malformed.
    #[error("--add-scram: {0}")]
    Scram(String),
}

/// A running broker.
pub struct Server {
    /// Where clients connect (nodes with the broker role).
    pub client_address: Option<SocketAddr>,
    /// Where `/healthz` and `/readyz` answer.
    pub http_address: SocketAddr,
    context: Arc<Context>,
    shutdown: watch::Sender<bool>,
    want_shutdown: watch::Sender<bool>,
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
    /// Binds the listeners, joins the metadata quorum, registers with the active controller,
    /// recovers the logs and starts serving once the controller has unfenced this broker.
    pub async fn start(config: BrokerConfig) -> Result<Server, ServerError> {
        Self::start_with(config, Vec::new()).await
    }

    /// [`Server::start`] with start-up SCRAM credentials (Kafka's `kafka-storage format
    /// --add-scram`): the first node to start with them seeds the cluster, once; later ones are
    /// ignored, so a credential deleted afterwards stays deleted.
    pub async fn start_with(
        mut config: BrokerConfig,
        scram_seeds: Vec<ScramSeed>,
    ) -> Result<Server, ServerError> {
        let security = Arc::new(Security::from_config(&config)?);
        let mut client_listeners = Vec::new();
        if config.has_role(Role::Broker) {
            for client in config.client_listeners().cloned().collect::<Vec<_>>() {
                let listener = bind(&client.name, client.bind_address()).await?;
                let address = local_address(&listener, &client.name, client.bind_address())?;
                config.set_bound_port(&client.name, address.port());
                client_listeners.push((
                    listener,
                    address,
                    security.listeners[&client.name].clone(),
                ));
            }
        }
        let controller_listener = match config.controller_listener().cloned() {
            Some(l) if config.has_role(Role::Controller) => {
                let listener = bind(&l.name, l.bind_address()).await?;
                let address = local_address(&listener, &l.name, l.bind_address())?;
                config.set_bound_port(&l.name, address.port());
                // Served on the quorum runtime, which registers it with its own reactor.
                let listener = listener.into_std().map_err(|source| ServerError::Bind {
                    name: l.name.clone(),
                    address: l.bind_address(),
                    source,
                })?;
                Some((listener, l.name))
            }
            _ => None,
        };
        let http_listener = bind("metrics.listener", config.metrics_listener.to_string()).await?;
        let http_address = local_address(
            &http_listener,
            "metrics.listener",
            config.metrics_listener.to_string(),
        )?;
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
        for dir in &config.log_dirs {
            std::fs::create_dir_all(dir).map_err(|source| ServerError::Storage {
                path: dir.display().to_string(),
                source,
            })?;
            meta_properties::check_node(dir, config.node_id)?;
        }
        let controller =
            Arc::new(Controller::start(&config, security.controller.tls.clone()).await?);
        let (tls_servers, tls_clients) = security.reloadable();
        tasks.push(tokio::spawn(tls::reload_on_change(
            tls_servers,
            tls_clients,
            Duration::from_millis(config.long("ssl.reload.interval.ms") as u64),
            shutdown_rx.clone(),
        )));
        match controller_listener {
            Some((listener, name)) => {
                let access = Arc::new(ControllerAccess {
                    security: security.listeners[&name].clone(),
                    authorizer: security.authorizer.clone(),
                });
                tasks.push(on_quorum_runtime(listener::serve(
                    listener,
                    controller.clone(),
                    access,
                    shutdown_rx.clone(),
                ))?);
                tasks.push(on_quorum_runtime(fence_silent_brokers(
                    controller.clone(),
                    Duration::from_millis(config.long("broker.session.timeout.ms") as u64),
                    shutdown_rx.clone(),
                ))?);
                if config.bool("auto.leader.rebalance.enable") {
                    tasks.push(tokio::spawn(balance_leaders(
                        controller.clone(),
                        Duration::from_secs(
                            config.long("leader.imbalance.check.interval.seconds") as u64
                        ),
                        shutdown_rx.clone(),
                    )));
                }
            }
            None => tasks.push(tokio::spawn({
                let controller = controller.clone();
                let shutdown = shutdown_rx.clone();
                async move { controller.follow_quorum(shutdown).await }
            })),
        }
        controller.wait_ready().await?;
        seed_scram(&controller, scram_seeds).await?;
        let cluster_id = controller.image().cluster_id.clone();
        for dir in &config.log_dirs {
            meta_properties::check_or_stamp(dir, config.node_id, &cluster_id)?;
        }

        let registration = match client_listeners.is_empty() {
            false => Some(Self::register(&config, &controller).await?),
            true => None,
        };
        let storage = |source| ServerError::Storage {
            path: config.log_dirs[0].display().to_string(),
            source,
        };
        let logs = Arc::new(LogManager::new(config.clone()).map_err(storage)?);
        logs.sync_with_image(&controller.image()).map_err(storage)?;
        info!(logs = logs.all().len(), "opened the partition logs");
        let offset_store = OffsetStore::new(logs.clone());
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
                max_size: config.int("group.max.size") as usize,
                initial_rebalance_delay: Duration::from_millis(
                    config.int("group.initial.rebalance.delay.ms") as u64,
                ),
                min_session_timeout_ms: config.int("group.min.session.timeout.ms"),
                max_session_timeout_ms: config.int("group.max.session.timeout.ms"),
            },
            persist,
        );
        let context = Arc::new(Context {
            config: config.clone(),
            controller: controller.clone(),
            logs: logs.clone(),
            groups: groups.clone(),
            offset_store,
            producer_ids: ProducerIdAllocator::new(controller.clone()),
            txns: TxnCoordinator::new(),
            txn_store: TxnStore::new(logs.clone()),
            markers: MarkerClient::new(
                config.node_id,
                config.inter_broker_listener.clone(),
                security.inter_broker.clone(),
            ),
            metrics: BrokerMetrics::new(),
            authorizer: security.authorizer.clone(),
            fenced_brokers: FencedBrokers::default(),
            applied_metadata: watch::channel(0).0,
            fetch_sessions: FetchSessions::default(),
            quotas: QuotaManager::new(
                Duration::from_secs(config.int("quota.window.size.seconds") as u64),
                config.int("quota.window.num") as usize,
            ),
        });
        context.fenced_brokers.observe(&controller.image());
        let replicas = Arc::new(ReplicaManager::new(
            &config,
            security.inter_broker.clone(),
            controller.clone(),
            logs.clone(),
            context.metrics.isr_changes.clone(),
            shutdown_rx.clone(),
        ));
        replicas.apply_image(&controller.image()).map_err(storage)?;
        sync_coordinator_partitions(&context, &controller.image()).map_err(storage)?;
        tasks.push(tokio::spawn(follow_metadata(
            controller.subscribe(),
            context.clone(),
            replicas.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(
            replicas.clone().maintain_isr(shutdown_rx.clone()),
        ));
        let (want_shutdown, want_shutdown_rx) = watch::channel(false);
        let mut client_address = None;
        if let Some(registration) = registration {
            tasks.push(on_quorum_runtime(heartbeat(
                context.clone(),
                registration.clone(),
                want_shutdown_rx,
                shutdown_rx.clone(),
            ))?);
            Self::wait_unfenced(&controller, &registration).await?;
            logs.metadata_caught_up();
            // Serve only once the local logs and replicas have taken the roles of the image
            // that unfenced this broker.
            let image = controller.image();
            logs.sync_with_image(&image).map_err(storage)?;
            replicas.apply_image(&image).map_err(storage)?;
            if let Err(e) =
                ensure_internal_topic(&config, &controller, &InternalTopicSpec::offsets(&config))
                    .await
            {
                // The heartbeat loop tries again.
                warn!(error = %e, "could not create {OFFSETS_TOPIC} yet");
            }
            tasks.push(tokio::spawn(expire_group_sessions(
                groups,
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(expire_offsets(
                context.clone(),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(expire_transactions(
                context.clone(),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(housekeeping(
                config.clone(),
                logs,
                shutdown_rx.clone(),
            )));
            let limits = ConnectionLimits::from_config(&config);
            for (listener, address, security) in client_listeners {
                tasks.push(tokio::spawn(network::serve(
                    listener,
                    context.clone(),
                    security,
                    limits.clone(),
                    shutdown_rx.clone(),
                )));
                client_address.get_or_insert(address);
            }
        }
        let _ = serving.set(context.clone());
        info!(client_address = ?client_address, %http_address, node_id = config.node_id, roles = ?config.roles, "node serving");
        Ok(Server {
            client_address,
            http_address,
            context,
            shutdown,
            want_shutdown,
            tasks,
        })
    }

    /// Registers this broker (fenced) with a new incarnation id.
    async fn register(
        config: &BrokerConfig,
        controller: &Controller,
    ) -> Result<BrokerRegistration, ServerError> {
        let client = config
            .client_listener()
            .cloned()
            .expect("checked by the caller: brokers have a client listener");
        // The primary address is the inter-broker listener's: replicas fetch from it.
        let advertised = config
            .advertised_listeners
            .iter()
            .find(|l| l.name == config.inter_broker_listener)
            .or(config.advertised_listeners.first())
            .cloned()
            .unwrap_or(client);
        let endpoints = config
            .advertised_listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.clone(),
                host: l.host.clone(),
                port: l.port,
            })
            .collect();
        let registration = BrokerRegistration {
            id: config.node_id,
            endpoints,
            host: advertised.host,
            port: advertised.port,
            rack: config.get("broker.rack").map(str::to_owned),
            incarnation: uuid::Uuid::new_v4(),
            fenced: true,
            registered_at: 0,
            unresponsive: false,
        };
        controller
            .propose(MetadataRecord::RegisterBroker(registration.clone()))
            .await?;
        info!(incarnation = %registration.incarnation, "registered with the controller");
        Ok(registration)
    }

    /// Waits until the controller unfences this incarnation (its metadata has caught up).
    async fn wait_unfenced(
        controller: &Controller,
        registration: &BrokerRegistration,
    ) -> Result<(), ServerError> {
        let mut images = controller.subscribe();
        let mut waited = 0u64;
        loop {
            let unfenced = |image: &MetadataImage| {
                image
                    .brokers
                    .get(&registration.id)
                    .is_some_and(|b| b.incarnation == registration.incarnation && !b.fenced)
            };
            let wait = tokio::time::timeout(
                Duration::from_secs(10),
                images.wait_for(|image| unfenced(image)),
            );
            match wait.await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(_)) => {
                    return Err(ControllerError::Unavailable("metadata stopped".into()).into())
                }
                Err(_) => {
                    waited += 10;
                    info!(
                        seconds = waited,
                        "waiting for the controller to unfence this broker"
                    );
                }
            }
        }
    }

    /// What the request handlers share (the fuzz targets dispatch through it).
    pub fn context(&self) -> &Arc<Context> {
        &self.context
    }

    /// How many malformed frames closed their connection.
    pub fn malformed_requests(&self) -> u64 {
        self.context.metrics.malformed_requests.get()
    }

    /// Controlled shutdown: asks the controller to move leadership away, then stops serving,
    /// flushes the logs and records their recovery points.
    pub async fn shutdown(self) {
        if self.client_address.is_some() {
            let _ = self.want_shutdown.send(true);
            let id = self.context.config.node_id;
            let mut images = self.context.controller.subscribe();
            // After a session timeout the controller fences a silent broker anyway.
            let session =
                Duration::from_millis(self.context.config.long("broker.session.timeout.ms") as u64);
            let moved = tokio::time::timeout(
                session,
                images.wait_for(|image| image.brokers.get(&id).is_none_or(|b| b.fenced)),
            )
            .await;
            match moved {
                Ok(_) => info!("controlled shutdown: leadership moved away"),
                Err(_) => warn!("controlled shutdown timed out; stopping anyway"),
            }
        }
        let _ = self.shutdown.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                warn!("a task did not stop within 10s; aborting it");
                task.abort();
            }
        }
        self.context.logs.flush_all();
        self.context.controller.shutdown().await;
        info!("node stopped");
    }
}

/// Spawns a task on the metadata quorum's runtime (see [`crate::metadata::runtime`]).
fn on_quorum_runtime<F>(task: F) -> Result<tokio::task::JoinHandle<()>, ServerError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    runtime::spawn_on_quorum(task).map_err(|e| ControllerError::Startup(e.to_string()).into())
}

fn local_address(
    listener: &TcpListener,
    name: &str,
    address: String,
) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        name: name.to_string(),
        address,
        source,
    })
}

/// Sends heartbeats to the active controller; re-registers when the controller lost this
/// incarnation, and creates `__consumer_offsets` once enough brokers are live.
async fn heartbeat(
    ctx: Arc<Context>,
    registration: BrokerRegistration,
    want_shutdown: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(ctx.config.long("broker.heartbeat.interval.ms") as u64);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let leaving = *want_shutdown.borrow();
        let beat = Heartbeat {
            id: registration.id,
            incarnation: registration.incarnation,
            applied_index: ctx.controller.image().applied_index,
            want_shutdown: leaving,
        };
        let reply = tokio::select! {
            reply = ctx.controller.heartbeat(beat) => reply,
            _ = shutdown.changed() => return,
        };
        match reply {
            Ok(reply) if !reply.registered => {
                warn!("the controller does not know this broker; registering again");
                let register = ctx
                    .controller
                    .propose(MetadataRecord::RegisterBroker(registration.clone()));
                match unless_shutdown(&mut shutdown, register).await {
                    None => return,
                    Some(Err(e)) => warn!(error = %e, "could not register again"),
                    Some(Ok(())) => {}
                }
            }
            Ok(_) => {
                if leaving {
                    tick.reset_immediately();
                }
            }
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
        if !leaving && !ctx.controller.image().topics.contains_key(OFFSETS_TOPIC) {
            let spec = InternalTopicSpec::offsets(&ctx.config);
            let create = ensure_internal_topic(&ctx.config, &ctx.controller, &spec);
            match unless_shutdown(&mut shutdown, create).await {
                None => return,
                Some(Err(e)) => warn!(error = %e, "could not create {OFFSETS_TOPIC}"),
                Some(Ok(())) => {}
            }
        }
    }
}

/// On the active controller, elects preferred leaders every `interval`.
async fn balance_leaders(
    controller: Arc<Controller>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        if unless_shutdown(&mut shutdown, tick.tick()).await.is_none()
            || unless_shutdown(&mut shutdown, controller.elect_preferred_leaders())
                .await
                .is_none()
        {
            return;
        }
    }
}

/// On the active controller, fences brokers that stopped heartbeating, and at once those that
/// are suspected and found dead (see `metadata::liveness`).
async fn fence_silent_brokers(
    controller: Arc<Controller>,
    session_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut leader_since: Option<(u64, tokio::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = controller.broker_suspected() => {}
            _ = shutdown.changed() => return,
        }
        let Some(raft) = controller.raft_metrics() else {
            return;
        };
        if raft.current_leader != Some(controller.node_id() as u64) {
            leader_since = None;
            continue;
        }
        let since = match leader_since {
            Some((term, since)) if term == raft.current_term => since,
            _ => {
                let now = tokio::time::Instant::now();
                leader_since = Some((raft.current_term, now));
                controller.suspect_all_brokers();
                now
            }
        };
        let fence = async {
            controller.fence_dead_brokers(session_timeout).await;
            controller
                .fence_silent_brokers(session_timeout, since)
                .await;
        };
        if unless_shutdown(&mut shutdown, fence).await.is_none() {
            return;
        }
    }
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
                        Ok(_) => {
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

/// Applies every new metadata image to the local logs (deletes, config changes) and to
/// the replicas (leadership, ISR, fetchers).
async fn follow_metadata(
    mut images: watch::Receiver<Arc<MetadataImage>>,
    ctx: Arc<Context>,
    replicas: Arc<ReplicaManager>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = images.borrow_and_update().clone();
                let (ctx, replicas) = (ctx.clone(), replicas.clone());
                // Opening logs and taking roles reads and writes files, over every partition
                // after a restart: off the request workers.
                let applied =
                    tokio::task::spawn_blocking(move || apply_metadata(&ctx, &replicas, &image));
                if let Err(e) = applied.await {
                    warn!(error = %e, "applying metadata failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies one image to the local logs, replicas and coordinators.
fn apply_metadata(ctx: &Arc<Context>, replicas: &ReplicaManager, image: &MetadataImage) {
    ctx.fenced_brokers.observe(image);
    match ctx.logs.sync_with_image(image) {
        // A newer image was synced already; it is next on the channel.
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => warn!(error = %e, "could not apply metadata to local logs"),
    }
    if let Err(e) = replicas.apply_image(image) {
        warn!(error = %e, "could not apply metadata to local replicas");
    }
    if let Err(e) = sync_coordinator_partitions(ctx, image) {
        warn!(error = %e, "could not load consumer groups or transactions");
    }
    ctx.applied_metadata.send_replace(image.applied_index);
}

/// Loads the groups of each `__consumer_offsets` partition, and the transactional ids of each
/// `__transaction_state` partition, this broker starts leading (or leads at a new epoch), and
/// forgets those of partitions it no longer leads.
fn sync_coordinator_partitions(ctx: &Arc<Context>, image: &MetadataImage) -> std::io::Result<()> {
    if let Some(topic) = image.topics.get(OFFSETS_TOPIC) {
        let owned = ctx.groups.owned_partitions();
        for (index, p) in topic.partitions.iter().enumerate() {
            let partition = index as i32;
            if p.leader == ctx.config.node_id {
                if owned.get(&partition) != Some(&p.leader_epoch) {
                    let loaded = ctx.offset_store.load_partition(image, partition)?;
                    info!(
                        partition,
                        groups = loaded.groups.len(),
                        "coordinating the groups of {OFFSETS_TOPIC}-{partition}"
                    );
                    ctx.groups.load_partition(
                        partition,
                        p.leader_epoch,
                        topic.partitions.len(),
                        loaded,
                    );
                }
            } else if owned.contains_key(&partition) {
                info!(
                    partition,
                    "no longer coordinating the groups of {OFFSETS_TOPIC}-{partition}"
                );
                ctx.groups.unload_partition(partition);
            }
        }
    }
    if let Some(topic) = image.topics.get(TXN_TOPIC) {
        let owned = ctx.txns.owned_partitions();
        for (index, p) in topic.partitions.iter().enumerate() {
            let partition = index as i32;
            if p.leader == ctx.config.node_id {
                if owned.get(&partition) != Some(&p.leader_epoch) {
                    let txns = ctx.txn_store.load_partition(image, partition)?;
                    info!(
                        partition,
                        transactional_ids = txns.len(),
                        "coordinating the transactions of {TXN_TOPIC}-{partition}"
                    );
                    ctx.txns.load_partition(
                        partition,
                        p.leader_epoch,
                        topic.partitions.len(),
                        txns,
                    );
                    transactions::resume_completions(ctx, partition);
                }
            } else if owned.contains_key(&partition) {
                info!(
                    partition,
                    "no longer coordinating the transactions of {TXN_TOPIC}-{partition}"
                );
                ctx.txns.unload_partition(partition);
            }
        }
    }
    Ok(())
}

/// Aborts transactions past their timeout and deletes long-idle transactional ids, on
/// Kafka's two intervals.
async fn expire_transactions(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let interval = |key| Duration::from_millis(ctx.config.int(key) as u64);
    let mut abort = tokio::time::interval(interval(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    ));
    let mut expire = tokio::time::interval(interval(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
    ));
    loop {
        tokio::select! {
            _ = abort.tick() => transactions::abort_timed_out_transactions(&ctx).await,
            _ = expire.tick() => transactions::expire_transactional_ids(&ctx).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Retention, time-based flushing, compaction and checkpoints on their configured intervals,
/// and the removal of deleted segment files once their `file.delete.delay.ms` has passed.
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
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut checkpoint = tokio::time::interval(Duration::from_millis(
        config.long("replica.high.watermark.checkpoint.interval.ms") as u64,
    ));
    loop {
        tokio::select! {
            _ = retention.tick() => {
                logs.apply_retention(now_ms());
                logs.expire_producers(now_ms());
            }
            _ = flush.tick() => logs.flush_due(now_ms()),
            _ = sweep.tick() => logs.remove_deleted_files(),
            _ = checkpoint.tick() => {
                let logs = logs.clone();
                let written = tokio::task::spawn_blocking(move || logs.checkpoint_all()).await;
                if let Ok(Err(e)) = written {
                    warn!(error = %e, "high watermark checkpoint failed");
                }
            }
            _ = clean.tick() => {
                // Compaction reads and rewrites whole segments: keep it off the async workers.
                let logs = logs.clone();
                let _ = tokio::task::spawn_blocking(move || logs.compact_all(now_ms())).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// A SCRAM credential to create at start-up, written as Kafka's `kafka-storage format
/// --add-scram` takes it: `SCRAM-SHA-512=[name=admin,password=admin-secret]`.
#[derive(Debug, Clone)]
pub struct ScramSeed {
    /// The user.
    pub user: String,
    /// The hash.
    pub mechanism: Mechanism,
    /// The password, salted and iterated before it is stored.
    pub password: String,
    /// PBKDF2 iterations (Kafka's default 4096).
    pub iterations: i32,
}

impl std::str::FromStr for ScramSeed {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (mechanism, rest) = text
            .split_once('=')
            .ok_or("expected MECHANISM=[name=...,password=...]")?;
        let mechanism = Mechanism::from_name(mechanism.trim()).ok_or_else(|| {
            format!("unknown mechanism `{mechanism}`: SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
        let inner = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or("expected the attributes in [...]")?;
        let (mut user, mut password, mut iterations) = (None, None, 4096);
        for attribute in inner.split(',') {
            let (key, value) = attribute
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, not `{attribute}`"))?;
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "name" => user = Some(value),
                "password" => password = Some(value),
                "iterations" => {
                    iterations = value
                        .parse()
                        .map_err(|_| format!("iterations `{value}` is not a number"))?
                }
                other => return Err(format!("unknown attribute `{other}`")),
            }
        }
        let seed = ScramSeed {
            user: user
                .filter(|u| !u.is_empty())
                .ok_or("name=... is missing")?,
            mechanism,
            password: password.ok_or("password=... is missing")?,
            iterations,
        };
        if !(crate::security::scram::MIN_ITERATIONS..=crate::security::scram::MAX_ITERATIONS)
            .contains(&seed.iterations)
        {
            return Err(format!(
                "iterations {} is outside 4096..=16384",
                seed.iterations
            ));
        }
        Ok(seed)
    }
}

/// Proposes the start-up credentials, which the metadata log applies once per cluster.
async fn seed_scram(controller: &Controller, seeds: Vec<ScramSeed>) -> Result<(), ServerError> {
    if seeds.is_empty() {
        return Ok(());
    }
    if controller.image().security.seeded {
        info!("the cluster already took its --add-scram credentials; these are ignored");
        return Ok(());
    }
    let mut changes = Vec::new();
    for seed in seeds {
        let credential =
            ScramCredential::from_password(seed.mechanism, &seed.password, seed.iterations)
                .map_err(ServerError::Scram)?;
        changes.push(ScramChange::Upsert {
            user: seed.user,
            mechanism: seed.mechanism,
            credential,
        });
    }
    let count = changes.len();
    controller
        .propose(MetadataRecord::Security(SecurityRecord::Seed(changes)))
        .await?;
    info!(
        count,
        "proposed the SCRAM credentials given with --add-scram"
    );
    Ok(())
}
