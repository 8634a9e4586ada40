//! KafkaNodePools: pools kept as resources of their own. The cluster's reconcile reads them as
//! more pools after `spec.pools`, and writes their status (the scale subresource's replicas).

use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::build::{INSTANCE_LABEL, POOL_LABEL};
use crate::conditions::{conditions, Report};
use crate::context::{apply_status, Context, Error};
use crate::crd::{
    KafkaCluster, KafkaClusterStatus, KafkaNodePool, KafkaNodePoolStatus, PoolSpec, CLUSTER_LABEL,
};

/// The KafkaNodePools labelled for `cluster`; none where the KafkaNodePool CRD is not installed
/// (Helm installs CRDs only with the first release, so an upgraded operator can meet a cluster
/// without it).
pub async fn of(ctx: &Context, cluster: &KafkaCluster) -> Result<Vec<KafkaNodePool>, Error> {
    let api: Api<KafkaNodePool> = Api::namespaced(
        ctx.client.clone(),
        &cluster.namespace().unwrap_or_else(|| "default".into()),
    );
    let selector = format!("{CLUSTER_LABEL}={}", cluster.name_any());
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::warn!(
                "the KafkaNodePool CRD is not installed: apply crds/ (Helm does not upgrade CRDs)"
            );
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// `cluster` with `node_pools` appended to its `spec.pools`, each named after its resource,
/// oldest first: a pool created later comes later, so that it never shifts the default node ids
/// of the pools before it. A node pool without `nodeIdStart` keeps the one its cluster
/// recorded for it, so that deleting an older pool, or re-creating this one, moves no ids.
pub fn merged(cluster: &KafkaCluster, node_pools: &[KafkaNodePool]) -> KafkaCluster {
    let mut ordered: Vec<&KafkaNodePool> = node_pools.iter().collect();
    ordered.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), p.name_any()));
    let recorded = |name: &str| {
        cluster
            .status
            .as_ref()?
            .pools
            .iter()
            .find(|p| p.name == name)?
            .node_id_start
    };
    let mut merged = cluster.clone();
    merged.spec.pools.extend(ordered.into_iter().map(|pool| {
        let name = pool.name_any();
        let mut nodes = pool.spec.clone();
        nodes.node_id_start = nodes.node_id_start.or_else(|| recorded(&name));
        PoolSpec { name, nodes }
    }));
    merged
}

/// The status of `pool` after its cluster's reconcile recorded `cluster_status`.
pub fn status(
    pool: &KafkaNodePool,
    cluster_name: &str,
    cluster_status: &KafkaClusterStatus,
) -> KafkaNodePoolStatus {
    let name = pool.name_any();
    let previous = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let refused = cluster_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "InvalidSpec");
    let recorded = cluster_status.pools.iter().find(|p| p.name == name);
    let (replicas, ready_replicas, node_ids) = recorded.map_or((0, 0, Vec::new()), |r| {
        (r.replicas, r.ready_replicas, r.node_ids.clone())
    });
    let desired = pool.spec.replicas;
    let ready = match refused {
        Some(c) => Report::new("Ready", false, "InvalidSpec", c.message.clone()),
        None if replicas == desired && ready_replicas == desired => Report::new(
            "Ready",
            true,
            "Ready",
            format!("{ready_replicas} of {desired} nodes are Ready"),
        ),
        None => Report::new(
            "Ready",
            false,
            "Progressing",
            format!("{ready_replicas} of {desired} nodes are Ready, {replicas} run"),
        ),
    };
    KafkaNodePoolStatus {
        observed_generation: pool.metadata.generation,
        conditions: conditions(vec![ready], pool.metadata.generation, previous),
        replicas,
        ready_replicas,
        label_selector: Some(format!(
            "{INSTANCE_LABEL}={cluster_name},{POOL_LABEL}={name}"
        )),
        node_ids,
    }
}

/// Writes each node pool's status from its cluster's.
pub async fn report(
    ctx: &Context,
    node_pools: &[KafkaNodePool],
    cluster_name: &str,
    cluster_status: &KafkaClusterStatus,
) -> Result<(), Error> {
    for pool in node_pools {
        let status = status(pool, cluster_name, cluster_status);
        if pool.status.as_ref() == Some(&status) {
            continue;
        }
        match apply_status(&ctx.client, pool, &status).await {
            // Deleted since the reconcile listed it: nothing to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            result => result?,
        }
    }
    Ok(())
}
