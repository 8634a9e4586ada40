//! `strom-operator`: watches KafkaCluster and KafkaTopic resources and reconciles them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use strom_operator::cluster::build::INSTANCE_LABEL;
use strom_operator::cluster::validate::OperatorDefaults;
use strom_operator::context::Context;
use strom_operator::crd::{KafkaCluster, KafkaNodePool, KafkaTopic, KafkaUser, CLUSTER_LABEL};
use strom_operator::leader::{self, LeaseSettings};
use strom_operator::metrics::{self, Metrics};
use strom_operator::{cluster, topic, user};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs Strom clusters on Kubernetes.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "STROM_OPERATOR_METRICS_LISTENER",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listener: SocketAddr,
    /// Watch only this namespace (all namespaces when absent).
    #[arg(long, env = "STROM_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Broker image for clusters whose spec sets none.
    #[arg(
        long,
        env = "STROM_OPERATOR_DEFAULT_IMAGE",
        default_value = "localhost/strom:dev"
    )]
    default_image: String,
    /// The cluster's DNS domain.
    #[arg(
        long,
        env = "STROM_OPERATOR_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    cluster_domain: String,
    /// Log format: text for people, json for log collectors.
    #[arg(
        long,
        value_enum,
        env = "STROM_OPERATOR_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Namespace of the leader-election Lease; without it this replica runs alone and leads.
    #[arg(long, env = "STROM_OPERATOR_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "STROM_OPERATOR_LEADER_ELECTION_LEASE",
        default_value = "strom-operator"
    )]
    leader_election_lease: String,
    /// This replica's identity in the Lease; the host (pod) name when absent.
    #[arg(long, env = "STROM_OPERATOR_LEADER_ELECTION_IDENTITY")]
    leader_election_identity: Option<String>,
    /// Seconds a leader that stopped renewing keeps the Lease.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
    leader_election_lease_seconds: u64,
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The Lease and settings of leader election, when it is on.
fn lease(args: &Args, client: &Client) -> Option<(Api<Lease>, LeaseSettings)> {
    let namespace = args.leader_election_namespace.as_ref()?;
    let identity = args.leader_election_identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| format!("strom-operator-{}", std::process::id()))
    });
    Some((
        Api::namespaced(client.clone(), namespace),
        LeaseSettings {
            name: args.leader_election_lease.clone(),
            identity,
            duration: Duration::from_secs(args.leader_election_lease_seconds),
        },
    ))
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let metrics = Arc::new(Metrics::new()?);
    let listener = tokio::net::TcpListener::bind(args.metrics_listener)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "binding the metrics listener {}: {e}",
                args.metrics_listener
            )
        })?;
    let http = tokio::spawn(metrics::serve(listener, metrics.clone()));

    let client = Client::try_default().await?;
    // A standby replica is ready too: it serves its metrics and waits for the Lease.
    metrics.set_ready();
    let lease = lease(&args, &client);
    if let Some((api, settings)) = &lease {
        tracing::info!(lease = %settings.name, identity = %settings.identity, "waiting to lead");
        tokio::select! {
            acquired = leader::acquire(api, settings) => acquired?,
            _ = shutdown_signal() => {
                http.abort();
                return Ok(());
            }
        }
        tracing::info!(lease = %settings.name, identity = %settings.identity, "leading");
    }
    // Renewing starts the moment the Lease is taken, before anything else can delay it.
    let holding = lease.clone().map(|(api, settings)| {
        tokio::spawn(async move {
            let lost = leader::hold(&api, &settings).await;
            // Exiting stops every reconcile at once; the restarted pod waits as a standby.
            tracing::error!(reason = %lost, "lost the leader Lease; exiting");
            std::process::exit(1);
        })
    });
    metrics.set_leader(true);
    let defaults = OperatorDefaults {
        image: args.default_image.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), defaults).await?);
    tracing::info!(namespace = ?args.namespace, pdb = %ctx.pdb.api_version, "strom-operator starting");

    let clusters = Controller::new(
        api::<KafkaCluster>(&client, &args.namespace),
        watcher::Config::default(),
    )
    .owns(
        api::<StatefulSet>(&client, &args.namespace),
        watcher::Config::default(),
    )
    .owns(
        api::<Service>(&client, &args.namespace),
        watcher::Config::default(),
    )
    .watches(
        api::<KafkaNodePool>(&client, &args.namespace),
        watcher::Config::default(),
        |pool| {
            let cluster = pool.labels().get(CLUSTER_LABEL)?;
            Some(ObjectRef::<KafkaCluster>::new(cluster).within(&pool.namespace()?))
        },
    )
    // Pods belong to StatefulSets, not to the cluster: map them back by label, so that a
    // manual restart annotation or a readiness change is seen at once.
    .watches(
        api::<Pod>(&client, &args.namespace),
        watcher::Config::default().labels("app.kubernetes.io/managed-by=strom-operator"),
        |pod| {
            let cluster = pod.labels().get(INSTANCE_LABEL)?;
            Some(ObjectRef::<KafkaCluster>::new(cluster).within(&pod.namespace()?))
        },
    );
    let cluster_store = clusters.store();
    let clusters = clusters
        .shutdown_on_signal()
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cluster controller event");
            }
            metrics.set_managed("KafkaCluster", cluster_store.state().len());
            futures::future::ready(())
        });
    let topics = Controller::new(
        api::<KafkaTopic>(&client, &args.namespace),
        watcher::Config::default(),
    );
    let topic_store = topics.store();
    let topics = topics
        .shutdown_on_signal()
        .run(topic::reconcile, topic::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "topic controller event");
            }
            metrics.set_managed("KafkaTopic", topic_store.state().len());
            futures::future::ready(())
        });
    let users = Controller::new(
        api::<KafkaUser>(&client, &args.namespace),
        watcher::Config::default(),
    );
    let user_store = users.store();
    let users = users
        .shutdown_on_signal()
        .run(user::reconcile, user::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "user controller event");
            }
            metrics.set_managed("KafkaUser", user_store.state().len());
            futures::future::ready(())
        });
    let controllers = async {
        tokio::join!(clusters, topics, users);
    };
    controllers.await;
    if let (Some(holding), Some((api, settings))) = (holding, &lease) {
        holding.abort();
        leader::release(api, settings).await;
    }
    http.abort();
    tracing::info!("strom-operator stopped");
    Ok(())
}
