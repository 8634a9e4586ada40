//! KafkaNodePools merged into their cluster's pools, and the status the cluster's reconcile
//! writes on them.

use strom_operator::cluster::nodepools::{merged, status};
use strom_operator::cluster::validate::{validate, OperatorDefaults};
use strom_operator::crd::{Condition, KafkaCluster, KafkaClusterStatus, KafkaNodePool, PoolStatus};

fn defaults() -> OperatorDefaults {
    OperatorDefaults {
        image: "registry.example/strom:1.0".into(),
        cluster_domain: "cluster.local".into(),
    }
}

fn cluster() -> KafkaCluster {
    serde_yaml::from_str(
        r#"
apiVersion: strom.dev/v1alpha1
kind: KafkaCluster
metadata: {name: demo, namespace: kafka, uid: 6b1e7c2a-0000-4000-8000-000000000009}
spec:
  pools:
    - {name: controllers, roles: [controller], replicas: 3, storage: {size: 1Gi}}
"#,
    )
    .expect("cluster parses")
}

fn node_pool(name: &str, created: &str, replicas: i32) -> KafkaNodePool {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: strom.dev/v1alpha1
kind: KafkaNodePool
metadata:
  name: {name}
  namespace: kafka
  generation: 2
  creationTimestamp: "{created}"
  labels: {{strom.dev/cluster: demo}}
spec: {{roles: [broker], replicas: {replicas}, storage: {{type: ephemeral}}}}
"#
    ))
    .expect("node pool parses")
}

#[test]
fn node_pools_follow_the_spec_pools_oldest_first() {
    let newer = node_pool("brokers-a", "2026-11-02T00:00:00Z", 2);
    let older = node_pool("brokers-b", "2026-11-01T00:00:00Z", 3);
    let cluster = merged(&cluster(), &[newer, older]);
    let names: Vec<&str> = cluster.spec.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["controllers", "brokers-b", "brokers-a"]);

    let valid = validate(&cluster, &defaults()).expect("merged cluster is valid");
    let ids: Vec<(String, i32, i32)> = valid
        .pools
        .iter()
        .map(|p| (valid.statefulset_name(p), p.node_id_start, p.replicas))
        .collect();
    assert_eq!(
        ids,
        [
            ("demo-controllers".to_string(), 0, 3),
            ("demo-brokers-b".to_string(), 1000, 3),
            ("demo-brokers-a".to_string(), 2000, 2),
        ]
    );
}

#[test]
fn a_node_pool_cannot_take_a_spec_pools_name() {
    let mut cluster = cluster();
    cluster.spec.pools[0]
        .nodes
        .roles
        .push(strom_operator::crd::Role::Broker);
    let clash = node_pool("controllers", "2026-11-01T00:00:00Z", 1);
    let problem = validate(&merged(&cluster, &[clash]), &defaults())
        .expect_err("a clash is refused")
        .to_string();
    assert!(
        problem.contains("a KafkaNodePool cannot have the name of a pool in spec.pools"),
        "{problem}"
    );
}

#[test]
fn a_cluster_without_any_pool_is_refused() {
    let mut cluster = cluster();
    cluster.spec.pools.clear();
    let problem = validate(&merged(&cluster, &[]), &defaults())
        .expect_err("no pools")
        .to_string();
    assert!(
        problem.contains("no KafkaNodePool is labelled strom.dev/cluster=demo"),
        "{problem}"
    );
}

fn cluster_status(replicas: i32, ready: i32, refused: Option<&str>) -> KafkaClusterStatus {
    KafkaClusterStatus {
        pools: vec![PoolStatus {
            name: "brokers-a".into(),
            replicas,
            ready_replicas: ready,
            node_ids: (1000..1000 + replicas).collect(),
            ..PoolStatus::default()
        }],
        conditions: refused
            .map(|message| Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "InvalidSpec".into(),
                message: message.into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-11-01T00:00:00Z".parse().expect("a timestamp"),
                ),
                observed_generation: None,
            })
            .into_iter()
            .collect(),
        ..KafkaClusterStatus::default()
    }
}

#[test]
fn the_status_carries_the_scale_subresource_fields() {
    let pool = node_pool("brokers-a", "2026-11-01T00:00:00Z", 3);
    let scaling = status(&pool, "demo", &cluster_status(2, 1, None));
    assert_eq!((scaling.replicas, scaling.ready_replicas), (2, 1));
    assert_eq!(scaling.node_ids, [1000, 1001]);
    assert_eq!(
        scaling.label_selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,strom.dev/pool=brokers-a")
    );
    assert_eq!(scaling.observed_generation, Some(2));
    let ready = &scaling.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Progressing")
    );

    let settled = status(&pool, "demo", &cluster_status(3, 3, None));
    let ready = &settled.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Ready")
    );

    let refused = status(
        &pool,
        "demo",
        &cluster_status(3, 3, Some("nodeIdStart moved")),
    );
    let ready = &refused.conditions[0];
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_str(),
            ready.message.as_str()
        ),
        ("False", "InvalidSpec", "nodeIdStart moved")
    );
}

#[test]
fn a_recorded_node_pool_keeps_its_ids_when_an_older_one_goes() {
    let mut cluster = cluster();
    cluster.status = Some(KafkaClusterStatus {
        pools: [("controllers", 0), ("brokers-b", 1000), ("brokers-a", 2000)]
            .into_iter()
            .map(|(name, start)| PoolStatus {
                name: name.into(),
                replicas: 2,
                node_id_start: Some(start),
                node_ids: vec![start, start + 1],
                controller: name == "controllers",
                ..PoolStatus::default()
            })
            .collect(),
        ..KafkaClusterStatus::default()
    });
    // brokers-b was deleted; brokers-a is now second, where the default would be 1000.
    let remaining = node_pool("brokers-a", "2026-11-02T00:00:00Z", 2);
    let merged = merged(&cluster, &[remaining]);
    assert_eq!(merged.spec.pools[1].nodes.node_id_start, Some(2000));
    let valid = validate(&merged, &defaults()).expect("nothing moves, nothing is refused");
    assert_eq!(valid.pools[1].node_id_start, 2000);
    assert_eq!(valid.removed_pools[0].name, "brokers-b");
}
