//! The KafkaCluster controller: read → validate → build → apply → roll and scale → status.

pub mod build;
pub mod certs;
mod external;
pub mod nodepools;
pub mod pki;
pub mod plan;
mod probe;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, ObjectReference, PersistentVolumeClaim, Pod, Service,
};
use kube::api::{
    DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use strom_client::{Admin, ClusterView};

use crate::conditions::{conditions, Report};
use crate::context::{apply, apply_status, object_key, Context, Error, FIELD_MANAGER};
use crate::crd::{KafkaCluster, KafkaClusterStatus, PoolStatus, StorageType};
use build::INSTANCE_LABEL;
use plan::{PodState, PoolReadiness, Quorum, RollStep};
use validate::{Pool, ValidCluster};

/// Requeue interval while something is in progress.
const BUSY: Duration = Duration::from_secs(5);
/// Requeue interval of a settled cluster.
const IDLE: Duration = Duration::from_secs(60);

/// What this reconcile found and did, for the status.
#[derive(Default)]
struct Outcome {
    progress: Vec<String>,
    problems: Vec<String>,
}

/// Reconciles one KafkaCluster.
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("kafkacluster");
    match reconcile_cluster(&cluster, &ctx).await {
        Ok(action) => {
            ctx.succeeded(&object_key(cluster.as_ref()));
            Ok(action)
        }
        Err(error) => {
            report_failure(&cluster, &ctx, &error).await;
            Err(error)
        }
    }
}

/// Puts a failed reconcile on the resource, so that `kubectl describe` shows what the
/// operator could not do: a warning Event and `Degraded=True` (other conditions unchanged).
async fn report_failure(cluster: &KafkaCluster, ctx: &Context, error: &Error) {
    let message = format!("reconcile failed and is retried: {}", error.plain());
    ctx.event(
        &cluster.object_ref(&()),
        None,
        true,
        "ReconcileFailed",
        message.clone(),
    )
    .await;
    let mut status = cluster.status.clone().unwrap_or_default();
    let degraded = conditions(
        vec![Report::new("Degraded", true, "ReconcileFailed", message)],
        cluster.metadata.generation,
        &status.conditions,
    );
    status.conditions.retain(|c| c.type_ != "Degraded");
    status.conditions.extend(degraded);
    if let Err(e) = apply_status(&ctx.client, cluster, &status).await {
        tracing::debug!(error = %e, "cannot record the failure in the status");
    }
}

/// Counts the error and retries with backoff.
pub fn error_policy(cluster: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "reconcile failed");
    ctx.metrics.error("kafkacluster", error.kind());
    ctx.backoff(&object_key(cluster.as_ref()))
}

async fn reconcile_cluster(cluster: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
    // Kubernetes deletes what the cluster owns; recreating any of it (a CA) would be wasted.
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let node_pools = nodepools::of(ctx, cluster).await?;
    let cluster = &nodepools::merged(cluster, &node_pools);
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let reference = cluster.object_ref(&());
    let valid = match validate::validate(cluster, &ctx.defaults) {
        Ok(valid) => valid,
        Err(invalid) => {
            let message = format!("the spec cannot be applied: {invalid}");
            ctx.event(&reference, None, true, "InvalidSpec", message.clone())
                .await;
            let reports = vec![
                Report::new("Ready", false, "InvalidSpec", message.clone()),
                Report::new("Progressing", false, "InvalidSpec", "nothing was changed"),
                Report::new("Degraded", true, "InvalidSpec", message),
            ];
            let mut status = cluster.status.clone().unwrap_or_default();
            status.observed_generation = cluster.metadata.generation;
            status.conditions = conditions(
                reports,
                cluster.metadata.generation,
                &cluster
                    .status
                    .as_ref()
                    .map(|s| s.conditions.clone())
                    .unwrap_or_default(),
            );
            apply_status(&ctx.client, cluster, &status).await?;
            nodepools::report(ctx, &node_pools, &cluster.name_any(), &status).await?;
            // Nothing to retry until the spec changes.
            return Ok(Action::await_change());
        }
    };
    let owner = cluster
        .controller_owner_ref(&())
        .expect("a stored KafkaCluster has a uid");

    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut existing = BTreeMap::new();
    for pool in &valid.pools {
        if let Some(sts) = statefulsets.get_opt(&valid.statefulset_name(pool)).await? {
            existing.insert(pool.name.clone(), sts);
        }
    }
    let cas = match valid.internal_tls {
        true => Some(certs::cluster_cas(ctx, cluster, &valid, &owner).await?),
        false => None,
    };
    let tls = cas
        .as_ref()
        .map(|c| certs::operator_tls(&c.cluster))
        .transpose()?;
    let mut brokers = connect(ctx, &valid, &existing, tls.as_ref()).await;
    let mut outcome = Outcome::default();
    let removing = remove_pools(ctx, cluster, &valid, brokers.as_mut(), &mut outcome).await?;
    let replicas = scale(
        ctx,
        cluster,
        &valid,
        &existing,
        brokers.as_mut(),
        &mut outcome,
    )
    .await?;

    let pods = certified_pods(&valid, &existing, &replicas, cluster);
    let broker_statefulsets: BTreeSet<String> = valid
        .pools
        .iter()
        .filter(|p| p.broker)
        .map(|p| valid.statefulset_name(p))
        .chain(
            valid
                .removed_pools
                .iter()
                .map(|p| valid.pool_statefulset(&p.name)),
        )
        .collect();
    let broker_pods: BTreeSet<String> = pods
        .iter()
        .filter(|(sts, _)| broker_statefulsets.contains(sts))
        .map(|(sts, ordinal)| format!("{sts}-{ordinal}"))
        .collect();
    let external = external::services(ctx, &valid, &owner, &broker_pods).await?;
    if let Some(cas) = &cas {
        certs::node_certificates(ctx, cluster, &valid, &owner, cas, &pods, &external.names).await?;
    }
    // Apply in dependency order: Services, ConfigMap, PDB, StatefulSets.
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    apply(
        &services,
        &valid.headless_service(),
        &build::headless_service(&valid, &owner),
    )
    .await?;
    apply(
        &services,
        &valid.bootstrap_service(),
        &build::bootstrap_service(&valid, &owner),
    )
    .await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let racks = racks(ctx, &valid).await?;
    let config_map = build::config_map(&valid, &owner, &external.properties, &racks);
    apply(
        &config_maps,
        config_map.metadata.name.as_deref().unwrap_or_default(),
        &config_map,
    )
    .await?;
    let pdbs: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &ctx.pdb);
    let pdb = build::pod_disruption_budget(&valid, &owner, &ctx.pdb.api_version);
    pdbs.patch(
        &valid.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&pdb),
    )
    .await?;
    let mut applied = BTreeMap::new();
    for pool in &valid.pools {
        let name = valid.statefulset_name(pool);
        let current = existing.get(&pool.name);
        if pool.broker && !external.waiting.is_empty() {
            outcome.progress.push(format!(
                "StatefulSet {name} waits for the external addresses of {}",
                external.waiting.join(", ")
            ));
            continue;
        }
        if current.is_some_and(|s| s.metadata.deletion_timestamp.is_some()) {
            outcome
                .progress
                .push(format!("StatefulSet {name} is being replaced"));
            continue;
        }
        let claim_size = match current.and_then(claim_template_size) {
            Some(size) => {
                let running = current.and_then(|s| s.spec.as_ref()?.replicas).unwrap_or(0);
                // The StatefulSet is replaced only at a settled size, so that no pending
                // shrink is applied to pods that were never drained.
                if running == pool.replicas
                    && grow_claims(ctx, cluster, &valid, pool, &size, running, &mut outcome).await?
                {
                    continue;
                }
                size
            }
            None => pool.storage.size.clone(),
        };
        let sts = build::statefulset(&valid, pool, replicas[&pool.name], &claim_size, &owner);
        applied.insert(pool.name.clone(), apply(&statefulsets, &name, &sts).await?);
    }
    claims(ctx, &valid, cluster, &replicas).await?;

    let pods = pod_states(ctx, &valid, &applied).await?;
    let quorum = quorum(&valid, &pods).await;
    roll(ctx, cluster, &pods, &quorum, brokers.as_ref(), &mut outcome).await?;
    if outcome.progress.is_empty() {
        rebalance(ctx, cluster, &valid, &pods, brokers.as_mut(), &mut outcome).await?;
    }

    let mut status = status(
        cluster,
        &valid,
        &applied,
        &pods,
        quorum.active,
        brokers.as_ref().map(|b| &b.view),
        &outcome,
        removing,
    );
    status.listeners = external.status;
    apply_status(&ctx.client, cluster, &status).await?;
    nodepools::report(ctx, &node_pools, &valid.name, &status).await?;
    Ok(Action::requeue(
        if outcome.progress.is_empty() && outcome.problems.is_empty() {
            IDLE
        } else {
            BUSY
        },
    ))
}

/// Node name to rack (the node's value of the cluster's rack label), for nodes that have it;
/// empty when the cluster is not rack aware.
async fn racks(ctx: &Context, valid: &ValidCluster) -> Result<BTreeMap<String, String>, Error> {
    let Some(label) = &valid.rack_label else {
        return Ok(BTreeMap::new());
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    Ok(nodes
        .list(&ListParams::default().labels(label))
        .await?
        .items
        .into_iter()
        .filter_map(|node| {
            let rack = node.labels().get(label)?.clone();
            Some((node.name_any(), rack))
        })
        .collect())
}

/// The brokers as seen through the bootstrap Service, when they answer.
struct Brokers {
    admin: Admin,
    view: ClusterView,
    ongoing_moves: usize,
}

/// Every pod that may run during this reconcile, as `(statefulset, ordinal)`: each pool's pods
/// up to the largest of its spec, its StatefulSet's size and the size it goes to, and the pods
/// of pools being removed.
fn certified_pods(
    valid: &ValidCluster,
    existing: &BTreeMap<String, StatefulSet>,
    replicas: &BTreeMap<String, i32>,
    cluster: &KafkaCluster,
) -> BTreeSet<(String, i32)> {
    let recorded = cluster
        .status
        .as_ref()
        .map(|s| s.pools.as_slice())
        .unwrap_or_default();
    let mut pods = BTreeSet::new();
    for pool in &valid.pools {
        let running = existing
            .get(&pool.name)
            .and_then(|s| s.spec.as_ref()?.replicas)
            .unwrap_or(0);
        let was = recorded
            .iter()
            .find(|r| r.name == pool.name)
            .map_or(0, |r| r.replicas);
        let count = pool
            .replicas
            .max(running)
            .max(was)
            .max(replicas.get(&pool.name).copied().unwrap_or(0));
        let sts = valid.statefulset_name(pool);
        pods.extend((0..count).map(|i| (sts.clone(), i)));
    }
    for removed in &valid.removed_pools {
        let count = recorded
            .iter()
            .find(|r| r.name == removed.name)
            .map_or(0, |r| r.replicas);
        let sts = valid.pool_statefulset(&removed.name);
        pods.extend((0..count).map(|i| (sts.clone(), i)));
    }
    pods
}

/// Connects to the brokers once some broker pod runs, and reads the cluster.
async fn connect(
    ctx: &Context,
    valid: &ValidCluster,
    existing: &BTreeMap<String, StatefulSet>,
    tls: Option<&strom_client::TlsClient>,
) -> Option<Brokers> {
    let any_ready_broker = valid.pools.iter().filter(|p| p.broker).any(|p| {
        existing
            .get(&p.name)
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            > 0
    });
    if !any_ready_broker {
        return None;
    }
    let read = async {
        let mut admin = Admin::connect(&[valid.admin_address()], ctx.admin_timeout, tls).await?;
        let view = admin.cluster().await?;
        let ongoing_moves = admin.ongoing_reassignments().await?;
        Ok::<_, strom_client::AdminError>(Brokers {
            admin,
            view,
            ongoing_moves,
        })
    };
    match read.await {
        Ok(brokers) => Some(brokers),
        Err(e) => {
            tracing::info!(cluster = %valid.name, error = %e, "cannot reach the brokers");
            None
        }
    }
}

/// Decides each pool's StatefulSet size. Growing happens at once; a broker pool shrinks only
/// once the brokers that leave hold no partition replicas, after moving them away.
async fn scale(
    ctx: &Context,
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    existing: &BTreeMap<String, StatefulSet>,
    mut brokers: Option<&mut Brokers>,
    outcome: &mut Outcome,
) -> Result<BTreeMap<String, i32>, Error> {
    let mut replicas = BTreeMap::new();
    for pool in &valid.pools {
        let current = match existing.get(&pool.name) {
            Some(sts) => sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            // Absent while it is replaced (claims grown), or never created: its pods, if any,
            // still run, and a shrink must drain them all the same.
            None => running_pods(ctx, valid, pool).await?,
        };
        let target = if pool.replicas >= current || !pool.broker {
            pool.replicas
        } else {
            let leaving: BTreeSet<i32> = (pool.replicas..current)
                .map(|i| pool.node_id_start + i)
                .collect();
            if drained(
                ctx,
                cluster,
                valid,
                (&pool.name, pool.replicas),
                &leaving,
                brokers.as_deref_mut(),
                outcome,
            )
            .await?
            {
                pool.replicas
            } else {
                current
            }
        };
        replicas.insert(pool.name.clone(), target);
    }
    Ok(replicas)
}

/// The StatefulSet ordinal that ends a pod's name.
fn pod_ordinal(name: &str) -> Option<i32> {
    name.rsplit('-').next()?.parse().ok()
}

/// One more than the highest ordinal of the pool's pods: the size its StatefulSet had.
async fn running_pods(ctx: &Context, valid: &ValidCluster, pool: &Pool) -> Result<i32, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let selector = format!(
        "{INSTANCE_LABEL}={},{}={}",
        valid.name,
        build::POOL_LABEL,
        pool.name
    );
    let listed = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(listed
        .iter()
        .filter_map(|p| pod_ordinal(&p.name_any()))
        .map(|ordinal| ordinal + 1)
        .max()
        .unwrap_or(0))
}

/// Whether the `leaving` brokers hold nothing; if not, starts moving their replicas away so that
/// `pool` can shrink to its target size.
async fn drained(
    ctx: &Context,
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    (pool, target): (&str, i32),
    leaving: &BTreeSet<i32>,
    brokers: Option<&mut Brokers>,
    outcome: &mut Outcome,
) -> Result<bool, Error> {
    let ids = format!("{leaving:?}");
    let Some(Brokers {
        admin,
        view,
        ongoing_moves: ongoing,
    }) = brokers
    else {
        outcome.progress.push(format!(
            "pool {pool} waits to reach the brokers before draining {ids}"
        ));
        return Ok(false);
    };
    let ongoing = *ongoing;
    let held: usize = leaving.iter().map(|b| view.replicas_on(*b)).sum();
    if held == 0 && ongoing == 0 {
        return Ok(true);
    }
    if ongoing > 0 {
        outcome.progress.push(format!(
            "pool {pool}: {ongoing} partition moves in progress before brokers {ids} leave"
        ));
        return Ok(false);
    }
    let staying: BTreeSet<i32> = valid.broker_ids().difference(leaving).copied().collect();
    match plan::drain_plan(view, leaving, &staying) {
        Ok(moves) => {
            admin.reassign(&moves).await?;
            let message = format!(
                "moving {} partitions off brokers {ids} before pool {pool} shrinks to {target}",
                moves.len()
            );
            announce(ctx, cluster, outcome, "Drain", message, None).await;
            Ok(false)
        }
        Err(e) => {
            outcome
                .problems
                .push(format!("pool {pool} cannot shrink to {target}: {e}"));
            Ok(false)
        }
    }
}

/// Drains the brokers of pools the spec no longer has, then deletes their StatefulSets. Returns
/// their status while they exist.
async fn remove_pools(
    ctx: &Context,
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    mut brokers: Option<&mut Brokers>,
    outcome: &mut Outcome,
) -> Result<Vec<PoolStatus>, Error> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let mut removing = Vec::new();
    for pool in &valid.removed_pools {
        let name = valid.pool_statefulset(&pool.name);
        let Some(sts) = statefulsets.get_opt(&name).await? else {
            continue;
        };
        let running = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let node_ids: Vec<i32> = (0..running).map(|i| pool.node_id_start + i).collect();
        removing.push(PoolStatus {
            name: pool.name.clone(),
            replicas: running,
            ready_replicas: sts
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            node_id_start: Some(pool.node_id_start),
            node_ids: node_ids.clone(),
            removing: true,
            ..PoolStatus::default()
        });
        if sts.metadata.deletion_timestamp.is_some() {
            outcome
                .progress
                .push(format!("pool {} is being deleted", pool.name));
            continue;
        }
        let leaving: BTreeSet<i32> = node_ids.into_iter().collect();
        if !drained(
            ctx,
            cluster,
            valid,
            (&pool.name, 0),
            &leaving,
            brokers.as_deref_mut(),
            outcome,
        )
        .await?
        {
            continue;
        }
        statefulsets.delete(&name, &DeleteParams::default()).await?;
        let message = format!(
            "deleting pool {}: it left the spec and its brokers {leaving:?} hold no partitions",
            pool.name
        );
        announce(ctx, cluster, outcome, "PoolRemoved", message, None).await;
    }
    Ok(removing)
}

/// The claim size in a StatefulSet's volume claim template.
fn claim_template_size(sts: &StatefulSet) -> Option<String> {
    let template = sts
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .first()?;
    let requests = template
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?;
    Some(requests.get("storage")?.0.clone())
}

/// Grows a pool's claims from `template_size` to the spec's size. A StatefulSet's claim template
/// cannot change, so once every claim has grown the StatefulSet is deleted with its pods left
/// running (orphaned) and the next reconcile creates it with the new template, adopting them.
/// Returns whether the StatefulSet is being replaced.
async fn grow_claims(
    ctx: &Context,
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    pool: &Pool,
    template_size: &str,
    running: i32,
    outcome: &mut Outcome,
) -> Result<bool, Error> {
    let want = match (
        validate::quantity_bytes(&pool.storage.size),
        validate::quantity_bytes(template_size),
    ) {
        (Some(want), Some(have)) if want > have => want,
        _ => return Ok(false),
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let sts_name = valid.statefulset_name(pool);
    for ordinal in 0..running {
        let name = format!("data-{sts_name}-{ordinal}");
        let Some(pvc) = pvcs.get_opt(&name).await? else {
            continue;
        };
        let requested = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
            .and_then(|q| validate::quantity_bytes(&q.0));
        if requested.is_some_and(|r| r >= want) {
            continue;
        }
        let patch = json!({"spec": {"resources": {"requests": {"storage": pool.storage.size}}}});
        match pvcs
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Refused by admission: the StorageClass does not allow expansion, for example.
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                outcome.problems.push(format!(
                    "pool {}: claim {name} cannot grow to {}: {}",
                    pool.name, pool.storage.size, e.message
                ));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let orphan = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    statefulsets.delete(&sts_name, &orphan).await?;
    let message = format!(
        "pool {}: claims grown from {template_size} to {}; StatefulSet {sts_name} is recreated with the new claim template, its pods keep running",
        pool.name, pool.storage.size
    );
    announce(ctx, cluster, outcome, "StorageResized", message, None).await;
    Ok(true)
}

/// Gives the pods' claims an owner reference to the cluster when `deleteClaim` is set, so they
/// go with it, and deletes the claims of pods a shrink removed.
async fn claims(
    ctx: &Context,
    valid: &ValidCluster,
    cluster: &KafkaCluster,
    replicas: &BTreeMap<String, i32>,
) -> Result<(), Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let owner = cluster
        .controller_owner_ref(&())
        .expect("a stored KafkaCluster has a uid");
    let pools: Vec<&Pool> = valid
        .pools
        .iter()
        .filter(|p| p.storage.kind == StorageType::PersistentClaim && p.storage.delete_claim)
        .collect();
    if pools.is_empty() {
        return Ok(());
    }
    let selector = format!("{INSTANCE_LABEL}={}", valid.name);
    let all = pvcs.list(&ListParams::default().labels(&selector)).await?;
    for pool in pools {
        let prefix = format!("data-{}-", valid.statefulset_name(pool));
        for pvc in &all {
            let name = pvc.name_any();
            let Some(ordinal) = name
                .strip_prefix(&prefix)
                .and_then(|o| o.parse::<i32>().ok())
            else {
                continue;
            };
            if ordinal >= replicas[&pool.name] {
                pvcs.delete(&name, &DeleteParams::default()).await?;
            } else if !pvc.owner_references().iter().any(|o| o.uid == owner.uid) {
                let patch = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "ownerReferences": [{
                        "apiVersion": owner.api_version, "kind": owner.kind,
                        "name": owner.name, "uid": owner.uid}]}});
                pvcs.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Reads the cluster's pods: node id, role, readiness and whether they are outdated.
async fn pod_states(
    ctx: &Context,
    valid: &ValidCluster,
    applied: &BTreeMap<String, StatefulSet>,
) -> Result<Vec<PodState>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &valid.namespace);
    let selector = format!("{INSTANCE_LABEL}={}", valid.name);
    let mut states = Vec::new();
    for pod in pods.list(&ListParams::default().labels(&selector)).await? {
        let name = pod.name_any();
        let Some(pool) = valid
            .pools
            .iter()
            .find(|p| pod.labels().get(build::POOL_LABEL) == Some(&p.name))
        else {
            continue;
        };
        let Some(ordinal) = pod_ordinal(&name) else {
            continue;
        };
        let update_revision = applied
            .get(&pool.name)
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.update_revision.clone());
        let revision = pod.labels().get("controller-revision-hash");
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        states.push(PodState {
            name,
            pool: pool.name.clone(),
            node_id: pool.node_id_start + ordinal,
            controller: pool.controller,
            ready,
            outdated: update_revision.is_some() && revision != update_revision.as_ref(),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            restart_requested: pod
                .annotations()
                .get(build::RESTART_ANNOTATION)
                .is_some_and(|v| v == "true"),
        });
    }
    states.sort_by_key(|p| p.node_id);
    Ok(states)
}

/// Asks every Ready controller pod for the active controller and its applied metadata.
async fn quorum(valid: &ValidCluster, pods: &[PodState]) -> Quorum {
    let mut probes = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.controller && p.ready) {
        let Some(pool) = valid.pools.iter().find(|p| p.name == pod.pool) else {
            continue;
        };
        let host = valid.pod_host(pool, pod.node_id - pool.node_id_start);
        if let Some(probe) =
            probe::controller(&host, valid.metrics_port, Duration::from_secs(3)).await
        {
            probes.insert(pod.node_id, probe);
        }
    }
    let active = probes.values().find_map(|p| p.leader);
    let caught_up = match active.and_then(|a| probes.get(&a)) {
        Some(leader) => probes
            .iter()
            .filter(|(_, p)| p.applied_index >= leader.applied_index - plan::MAX_CONTROLLER_LAG)
            .map(|(id, _)| *id)
            .collect(),
        None => BTreeSet::new(),
    };
    Quorum {
        active,
        caught_up,
        voters: valid
            .pools
            .iter()
            .filter(|p| p.controller)
            .map(|p| p.replicas.max(0) as usize)
            .sum(),
    }
}

/// Takes the next step of a rolling restart, if one is due.
async fn roll(
    ctx: &Context,
    cluster: &KafkaCluster,
    pods: &[PodState],
    quorum: &Quorum,
    brokers: Option<&Brokers>,
    outcome: &mut Outcome,
) -> Result<(), Error> {
    let under_replicated = brokers.map(|b| b.view.under_replicated());
    match plan::next_roll(pods, quorum, under_replicated) {
        RollStep::Done => {}
        RollStep::Wait(reason) => outcome
            .progress
            .push(format!("rolling restart waits: {reason}")),
        RollStep::Restart { pod, reason, evict } => {
            let pods_api: Api<Pod> =
                Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
            if evict {
                match pods_api.evict(&pod, &EvictParams::default()).await {
                    Ok(_) => {}
                    // The PodDisruptionBudget allows no disruption now (a node drain took it).
                    Err(kube::Error::Api(e)) if e.code == 429 => {
                        outcome.progress.push(format!(
                            "rolling restart waits: the PodDisruptionBudget refuses to evict pod {pod} now"
                        ));
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                pods_api.delete(&pod, &DeleteParams::default()).await?;
            }
            let related = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.clone()),
                namespace: cluster.namespace(),
                ..Default::default()
            };
            let message = format!("restarting pod {pod}: {reason}");
            announce(
                ctx,
                cluster,
                outcome,
                "RollingRestart",
                message,
                Some(related),
            )
            .await;
        }
    }
    Ok(())
}

/// After brokers join, evens out partition replicas across every broker of the spec.
async fn rebalance(
    ctx: &Context,
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    pods: &[PodState],
    brokers: Option<&mut Brokers>,
    outcome: &mut Outcome,
) -> Result<(), Error> {
    let Some(Brokers {
        admin,
        view,
        ongoing_moves,
    }) = brokers
    else {
        return Ok(());
    };
    let ongoing = *ongoing_moves;
    let brokers = valid.broker_ids();
    let all_live = brokers.iter().all(|b| view.brokers.contains_key(b));
    if ongoing > 0 {
        outcome
            .progress
            .push(format!("{ongoing} partition moves in progress"));
        return Ok(());
    }
    if !all_live || pods.iter().any(|p| !p.ready) || view.under_replicated() > 0 {
        return Ok(());
    }
    let moves = plan::balance_plan(view, &brokers);
    if moves.is_empty() {
        return Ok(());
    }
    admin.reassign(&moves).await?;
    let message = format!(
        "rebalancing {} partitions across brokers {brokers:?}",
        moves.len()
    );
    announce(ctx, cluster, outcome, "Rebalance", message, None).await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn status(
    cluster: &KafkaCluster,
    valid: &ValidCluster,
    applied: &BTreeMap<String, StatefulSet>,
    pods: &[PodState],
    active_controller: Option<i32>,
    view: Option<&ClusterView>,
    outcome: &Outcome,
    removing: Vec<PoolStatus>,
) -> KafkaClusterStatus {
    let mut pools = Vec::new();
    let mut ready_brokers = 0;
    let mut readiness = Vec::new();
    for pool in &valid.pools {
        let of_pool: Vec<&PodState> = pods.iter().filter(|p| p.pool == pool.name).collect();
        let sts = applied.get(&pool.name);
        let replicas = sts
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(0);
        let ready = of_pool.iter().filter(|p| p.ready).count() as i32;
        readiness.push(PoolReadiness {
            name: pool.name.clone(),
            desired: pool.replicas,
            replicas,
            ready,
            settled: sts.is_some_and(statefulset_settled),
        });
        if pool.broker {
            ready_brokers += ready;
        }
        pools.push(PoolStatus {
            name: pool.name.clone(),
            replicas,
            ready_replicas: ready,
            outdated_replicas: of_pool.iter().filter(|p| p.outdated).count() as i32,
            node_id_start: Some(pool.node_id_start),
            node_ids: pool.node_ids(replicas).collect(),
            controller: pool.controller,
            storage_size: sts.and_then(claim_template_size),
            removing: false,
        });
    }
    let removing_names: Vec<String> = removing.iter().map(|p| p.name.clone()).collect();
    pools.extend(removing);
    let ready = plan::cluster_ready(
        &readiness,
        &removing_names,
        &outcome.progress,
        view.map(|v| v.under_replicated()),
    );
    let mut reports = vec![match ready {
        Ok(()) => Report::new(
            "Ready",
            true,
            "Ready",
            "every pod is Ready and every partition fully replicated",
        ),
        Err(why_not) => Report::new("Ready", false, "NotReady", why_not),
    }];
    reports.push(if outcome.progress.is_empty() {
        Report::new("Progressing", false, "Idle", "nothing in progress")
    } else {
        Report::new(
            "Progressing",
            true,
            "Reconciling",
            outcome.progress.join("; "),
        )
    });
    reports.push(if outcome.problems.is_empty() {
        Report::new("Degraded", false, "AsExpected", "no problem found")
    } else {
        Report::new(
            "Degraded",
            true,
            "CannotComplete",
            outcome.problems.join("; "),
        )
    });
    let previous = cluster
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    KafkaClusterStatus {
        observed_generation: cluster.metadata.generation,
        conditions: conditions(reports, cluster.metadata.generation, &previous),
        pools,
        ready_brokers,
        desired_brokers: valid
            .pools
            .iter()
            .filter(|p| p.broker)
            .map(|p| p.replicas)
            .sum(),
        quorum_voters: Some(valid.voters()),
        controller_leader: active_controller,
        bootstrap: Some(valid.bootstrap_address()),
        internal_tls: Some(valid.internal_tls),
        cluster_ca_secret: valid.internal_tls.then(|| valid.ca_cert_secret("cluster")),
        listeners: Vec::new(),
    }
}

/// Whether the StatefulSet controller has seen the StatefulSet's latest spec.
fn statefulset_settled(sts: &StatefulSet) -> bool {
    let observed = sts.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_some() && observed >= sts.metadata.generation
}

/// Logs a step the operator took, publishes it as an Event on the cluster (about `related`
/// when given) and counts it as progress.
async fn announce(
    ctx: &Context,
    cluster: &KafkaCluster,
    outcome: &mut Outcome,
    reason: &str,
    message: String,
    related: Option<ObjectReference>,
) {
    tracing::info!(cluster = %cluster.name_any(), "{message}");
    ctx.event(
        &cluster.object_ref(&()),
        related,
        false,
        reason,
        message.clone(),
    )
    .await;
    outcome.progress.push(message);
}
