//! The pure validate and build steps of the KafkaCluster controller, from YAML fixtures.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use strom_operator::cluster::build;
use strom_operator::cluster::validate::{validate, OperatorDefaults, ValidCluster};
use strom_operator::crd::{CertificateAuthoritySpec, KafkaCluster, KafkaClusterStatus, PoolStatus};

fn fixture(name: &str) -> KafkaCluster {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn defaults() -> OperatorDefaults {
    OperatorDefaults {
        image: "registry.example/strom:1.0".into(),
        cluster_domain: "cluster.local".into(),
    }
}

fn valid(name: &str) -> (KafkaCluster, ValidCluster, OwnerReference) {
    let cluster = fixture(name);
    let valid = validate(&cluster, &defaults()).expect("fixture is valid");
    let owner = cluster
        .controller_owner_ref(&())
        .expect("fixture has a uid");
    (cluster, valid, owner)
}

#[test]
fn combined_nodes_vote_and_serve() {
    let (_, v, _) = valid("combined.yaml");
    assert_eq!(
        v.voters(),
        "0@demo-nodes-0.demo-nodes.kafka.svc.cluster.local:9093,\
         1@demo-nodes-1.demo-nodes.kafka.svc.cluster.local:9093,\
         2@demo-nodes-2.demo-nodes.kafka.svc.cluster.local:9093"
    );
    assert_eq!(
        v.broker_ids().into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        v.bootstrap_address(),
        "demo-bootstrap.kafka.svc.cluster.local:9092"
    );
    assert_eq!(v.image, "localhost/strom:dev");
}

#[test]
fn dedicated_controllers_hold_the_quorum_and_brokers_get_their_own_ids() {
    let (_, v, _) = valid("dedicated.yaml");
    assert_eq!(
        v.voters(),
        "0@split-controllers-0.split-nodes.prod.svc.cluster.local:9093,\
         1@split-controllers-1.split-nodes.prod.svc.cluster.local:9093,\
         2@split-controllers-2.split-nodes.prod.svc.cluster.local:9093"
    );
    assert_eq!(
        v.broker_ids().into_iter().collect::<Vec<_>>(),
        vec![1000, 1001, 1002]
    );
    assert_eq!(
        v.image, "registry.example/strom:1.0",
        "the operator default fills in"
    );
    assert_eq!(
        v.bootstrap_address(),
        "split-bootstrap.prod.svc.cluster.local:9092"
    );
}

#[test]
fn an_invalid_spec_lists_every_problem() {
    let err = validate(&fixture("invalid.yaml"), &defaults()).unwrap_err();
    let all = err.to_string();
    for expected in [
        "pool \"brokers\" appears twice",
        "storage size \"lots\" is not a quantity",
        "no pool has the controller role",
        "listener \"plaintext\": the name must be upper case",
        "listener \"CONTROLLER\" is reserved",
        "controllerPort and listener CONTROLLER both use port 9093",
        "config key \"node.id\" is set by the operator",
        "config key \"listeners\" is set by the operator",
        "overlapping node ids",
        "pool \"voters\": controllers need persistent storage",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in: {all}");
    }
    assert!(
        !all.contains("retention.ms"),
        "user keys are allowed: {all}"
    );
}

#[test]
fn the_quorum_cannot_change_once_created() {
    let mut cluster = fixture("combined.yaml");
    let voters = validate(&cluster, &defaults()).unwrap().voters();
    cluster.status = Some(KafkaClusterStatus {
        quorum_voters: Some(voters),
        ..Default::default()
    });
    assert!(validate(&cluster, &defaults()).is_ok(), "same voters pass");
    cluster.spec.pools[0].nodes.replicas = 5;
    let err = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(err.contains("controller quorum is fixed"), "{err}");
}

#[test]
fn scaling_a_broker_pool_keeps_the_voters() {
    let mut cluster = fixture("dedicated.yaml");
    let before = validate(&cluster, &defaults()).unwrap();
    cluster.status = Some(KafkaClusterStatus {
        quorum_voters: Some(before.voters()),
        ..Default::default()
    });
    cluster.spec.pools[1].nodes.replicas = 4;
    let after = validate(&cluster, &defaults()).expect("broker pools may scale");
    assert_eq!(after.broker_ids().len(), 4);
    let brokers = &after.pools[1];
    assert_eq!(
        build::config_hash(&before, &before.pools[1]),
        build::config_hash(&after, brokers),
        "scaling must not roll the existing brokers"
    );
}

#[test]
fn server_properties_wire_roles_listeners_and_voters() {
    let (_, v, _) = valid("combined.yaml");
    let props = build::server_properties(&v, &v.pools[0]);
    let lines: Vec<&str> = props.lines().collect();
    for expected in [
        "process.roles=broker,controller",
        &format!("controller.quorum.voters={}", v.voters()),
        "controller.listener.names=CONTROLLER",
        "listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "log.dirs=/var/lib/strom/data",
        "metrics.listener=0.0.0.0:9644",
        "default.replication.factor=3",
        "min.insync.replicas=2",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in:\n{props}"
        );
    }

    let (_, d, _) = valid("dedicated.yaml");
    let controllers = build::server_properties(&d, &d.pools[0]);
    assert!(controllers.contains("\nprocess.roles=controller\n"));
    assert!(controllers.contains("\nlisteners=CONTROLLER://0.0.0.0:9093\n"));
    let brokers = build::server_properties(&d, &d.pools[1]);
    assert!(brokers.contains("\nprocess.roles=broker\n"));
    assert!(brokers.contains("\nlisteners=INTERNAL://0.0.0.0:9092,CLIENTS://0.0.0.0:19092\n"));
    assert!(brokers.contains("\ninter.broker.listener.name=INTERNAL\n"));
    assert!(brokers.contains("\nmetrics.listener=0.0.0.0:9600\n"));
}

#[test]
fn a_config_change_changes_the_pod_template() {
    let (mut cluster, v, owner) = valid("combined.yaml");
    let before = build::statefulset(&v, &v.pools[0], 3, "20Gi", &owner);
    cluster
        .spec
        .config
        .insert("log.retention.ms".into(), "60000".into());
    let changed = validate(&cluster, &defaults()).unwrap();
    let after = build::statefulset(&changed, &changed.pools[0], 3, "20Gi", &owner);
    let hash = |s: &k8s_openapi::api::apps::v1::StatefulSet| {
        s.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[build::CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_eq!(hash(&before).len(), 64);
    assert_ne!(hash(&before), hash(&after));
}

#[test]
fn statefulset_rolls_on_delete_with_stable_ids_and_claims() {
    let (_, v, owner) = valid("combined.yaml");
    let sts = build::statefulset(&v, &v.pools[0], 3, "20Gi", &owner);
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-nodes"));
    assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0], owner);
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-nodes"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels[build::BROKER_LABEL], "true");
    assert_eq!(labels[build::POOL_LABEL], "nodes");
    let pod = spec.template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["/usr/local/bin/strom-broker".to_owned()][..]),
        "no shell in the image"
    );
    assert_eq!(
        container.args.as_deref().unwrap(),
        [
            "/etc/strom/server.properties",
            "--node-id-from-hostname",
            "0",
            "--override",
            "advertised.listeners=PLAINTEXT://$(POD_NAME).demo-nodes.kafka.svc.cluster.local:9092"
        ]
    );
    let env = &container.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "POD_NAME");
    assert_eq!(
        env.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    let ports: BTreeMap<String, i32> = container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("plaintext".into(), 9092),
            ("controller".into(), 9093),
            ("metrics".into(), 9644)
        ])
    );
    let readiness = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = container
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let claim = &spec.volume_claim_templates.unwrap()[0];
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "20Gi"
    );
    assert!(pod.volumes.unwrap().iter().all(|v| v.empty_dir.is_none()));
}

#[test]
fn pods_pass_the_restricted_pod_security_level() {
    let (_, v, owner) = valid("combined.yaml");
    let sts = build::statefulset(&v, &v.pools[0], 3, "20Gi", &owner);
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
    let container = pod.containers[0].security_context.clone().unwrap();
    assert_eq!(container.allow_privilege_escalation, Some(false));
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(
        container.capabilities.unwrap().drop.unwrap(),
        vec!["ALL".to_owned()]
    );
}

#[test]
fn the_claim_template_keeps_the_size_it_was_created_with() {
    let (_, v, owner) = valid("combined.yaml");
    let sts = build::statefulset(&v, &v.pools[0], 3, "5Gi", &owner);
    let claim = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    let requests = claim
        .spec
        .clone()
        .unwrap()
        .resources
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["storage"].0, "5Gi");
}

/// The dedicated fixture after a first reconcile recorded its pools.
fn recorded(cluster: &mut KafkaCluster) {
    let v = validate(cluster, &defaults()).unwrap();
    cluster.status = Some(KafkaClusterStatus {
        quorum_voters: Some(v.voters()),
        pools: v
            .pools
            .iter()
            .map(|p| PoolStatus {
                name: p.name.clone(),
                replicas: p.replicas,
                node_id_start: Some(p.node_id_start),
                node_ids: p.node_ids(p.replicas).collect(),
                controller: p.controller,
                storage_size: Some(p.storage.size.clone()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    });
}

#[test]
fn node_ids_stay_with_their_pool() {
    let mut cluster = fixture("dedicated.yaml");
    cluster.spec.pools[1].nodes.node_id_start = None;
    let mut extra = cluster.spec.pools[1].clone();
    extra.name = "ssd".into();
    extra.nodes.node_id_start = Some(3000);
    cluster.spec.pools.push(extra);
    recorded(&mut cluster);
    assert!(validate(&cluster, &defaults()).is_ok());

    let mut reordered = cluster.clone();
    reordered.spec.pools.swap(1, 2);
    let err = validate(&reordered, &defaults()).unwrap_err().to_string();
    assert!(
        err.contains("pool \"brokers\": its node ids start at 1000 since it was created, and the spec now starts them at 2000"),
        "{err}"
    );
    assert!(err.contains("set nodeIdStart: 1000"), "{err}");

    let mut inserted = cluster.clone();
    let mut new = inserted.spec.pools[2].clone();
    new.name = "new".into();
    new.nodes.node_id_start = Some(5000);
    inserted.spec.pools.insert(1, new);
    let err = validate(&inserted, &defaults()).unwrap_err().to_string();
    assert!(
        err.contains("pool \"brokers\": its node ids start at 1000"),
        "{err}"
    );

    let mut pinned = reordered.clone();
    pinned.spec.pools[2].nodes.node_id_start = Some(1000);
    assert!(
        validate(&pinned, &defaults()).is_ok(),
        "a reorder that keeps every pool's ids is fine"
    );
}

#[test]
fn claims_never_shrink() {
    let mut cluster = fixture("combined.yaml");
    recorded(&mut cluster);
    cluster.spec.pools[0].nodes.storage.size = "40Gi".into();
    assert!(validate(&cluster, &defaults()).is_ok(), "growing is fine");
    cluster.spec.pools[0].nodes.storage.size = "19Gi".into();
    let err = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(
        err.contains("storage size 19Gi is smaller than the claims' 20Gi"),
        "{err}"
    );
}

#[test]
fn a_removed_broker_pool_is_drained_and_a_controller_pool_stays() {
    let mut cluster = fixture("dedicated.yaml");
    recorded(&mut cluster);
    let mut without_brokers = cluster.clone();
    without_brokers.spec.pools.remove(1);
    let mut replacement = cluster.spec.pools[1].clone();
    replacement.name = "large".into();
    replacement.nodes.node_id_start = Some(2000);
    without_brokers.spec.pools.push(replacement);
    let v = validate(&without_brokers, &defaults()).unwrap();
    assert_eq!(v.removed_pools.len(), 1);
    assert_eq!(v.removed_pools[0].name, "brokers");
    assert_eq!(v.removed_pools[0].node_id_start, 1000);

    let mut reusing = without_brokers.clone();
    reusing.spec.pools[1].nodes.node_id_start = Some(1001);
    let err = validate(&reusing, &defaults()).unwrap_err().to_string();
    assert!(
        err.contains("would reuse node id 1001 of pool \"brokers\", which is being removed"),
        "{err}"
    );

    let mut without_controllers = cluster.clone();
    without_controllers.spec.pools.remove(0);
    let err = validate(&without_controllers, &defaults())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pool \"controllers\" votes in the controller quorum and cannot be removed"),
        "{err}"
    );
}

#[test]
fn ephemeral_pools_use_empty_dirs_and_keep_their_resources() {
    let (_, v, owner) = valid("dedicated.yaml");
    let sts = build::statefulset(&v, &v.pools[1], 3, "10Gi", &owner);
    let spec = sts.spec.unwrap();
    assert!(spec.volume_claim_templates.is_none());
    let pod = spec.template.spec.unwrap();
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert!(data.empty_dir.is_some());
    let requests = pod.containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .clone()
        .unwrap();
    assert_eq!(requests["memory"].0, "1Gi");
    let annotations = spec.template.metadata.unwrap().annotations.unwrap();
    assert!(
        !annotations.contains_key("prometheus.io/scrape"),
        "scrapeAnnotations: false"
    );
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(args[1..3], ["--node-id-from-hostname", "1000"]);
    assert_eq!(
        args[4],
        "advertised.listeners=INTERNAL://$(POD_NAME).split-nodes.prod.svc.cluster.local:9092,CLIENTS://$(POD_NAME).split-nodes.prod.svc.cluster.local:19092"
    );
    let controllers = build::statefulset(&v, &v.pools[0], 3, "1Gi", &owner);
    let args = controllers.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        !args.iter().any(|a| a.contains("advertised.listeners")),
        "{args:?}"
    );
}

#[test]
fn services_config_map_and_disruption_budget() {
    let (_, v, owner) = valid("dedicated.yaml");
    let headless = build::headless_service(&v, &owner).spec.unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let names: Vec<String> = headless
        .ports
        .clone()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{}", p.name.clone().unwrap(), p.port))
        .collect();
    assert_eq!(
        names,
        [
            "internal:9092",
            "clients:19092",
            "controller:9093",
            "metrics:9600"
        ]
    );

    let bootstrap = build::bootstrap_service(&v, &owner).spec.unwrap();
    let selector = bootstrap.selector.unwrap();
    assert_eq!(selector[build::BROKER_LABEL], "true");
    assert_eq!(selector[build::INSTANCE_LABEL], "split");
    // The operator's pods share the instance label when its release has the cluster's name.
    assert_eq!(selector["app.kubernetes.io/name"], "strom");
    assert_eq!(
        headless.selector.as_ref().unwrap()["app.kubernetes.io/name"],
        "strom"
    );
    assert_eq!(bootstrap.ports.unwrap().len(), 2);

    let cm = build::config_map(&v, &owner, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(cm.metadata.name.as_deref(), Some("split-config"));
    let data = cm.data.unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["brokers.properties", "controllers.properties"]
    );

    let pdb = build::pod_disruption_budget(&v, &owner, "policy/v1beta1");
    assert_eq!(pdb["apiVersion"], "policy/v1beta1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"][build::INSTANCE_LABEL],
        "split"
    );
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "strom"
    );
}

#[test]
fn a_pool_template_places_and_annotates_its_pods() {
    let mut cluster = fixture("dedicated.yaml");
    cluster.spec.pools[1].nodes.template = serde_yaml::from_str(
        r#"
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: {matchLabels: {strom.dev/pool: brokers}}
tolerations: [{key: dedicated, operator: Equal, value: kafka, effect: NoSchedule}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}
nodeSelector: {disktype: ssd}
priorityClassName: kafka-critical
annotations: {team: payments}
env: [{name: STROM_LOG_RETENTION_MS, value: "3600000"}]
"#,
    )
    .unwrap();
    let v = validate(&cluster, &defaults()).unwrap();
    let owner = cluster.controller_owner_ref(&()).unwrap();
    let sts = build::statefulset(&v, &v.pools[1], 3, "10Gi", &owner);
    let template = sts.spec.unwrap().template;
    let pod = template.spec.unwrap();
    let anti = pod.affinity.unwrap().pod_anti_affinity.unwrap();
    assert_eq!(
        anti.required_during_scheduling_ignored_during_execution
            .unwrap()[0]
            .topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod.tolerations.unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert_eq!(
        pod.topology_spread_constraints.unwrap()[0].topology_key,
        "topology.kubernetes.io/zone"
    );
    assert_eq!(pod.node_selector.unwrap()["disktype"], "ssd");
    assert_eq!(pod.priority_class_name.as_deref(), Some("kafka-critical"));
    let env: Vec<String> = pod.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env, ["POD_NAME", "STROM_LOG_RETENTION_MS"]);
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations["team"], "payments");
    assert!(annotations.contains_key(build::CONFIG_HASH_ANNOTATION));

    cluster.spec.pools[1]
        .nodes
        .template
        .annotations
        .insert(build::CONFIG_HASH_ANNOTATION.into(), "x".into());
    cluster.spec.pools[1].nodes.template.env[0].name = "POD_NAME".into();
    let err = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(
        err.contains("annotation \"strom.dev/config-hash\" is the operator's"),
        "{err}"
    );
    assert!(err.contains("POD_NAME is set by the operator"), "{err}");
}

#[test]
fn a_status_without_node_ids_keeps_the_pools_in_place_until_recorded() {
    let mut cluster = fixture("dedicated.yaml");
    recorded(&mut cluster);
    // What the operator before node-id pinning recorded: names and replicas only.
    for pool in &mut cluster.status.as_mut().unwrap().pools {
        *pool = PoolStatus {
            name: pool.name.clone(),
            replicas: pool.replicas,
            ..Default::default()
        };
    }
    let mut appended = cluster.clone();
    let mut extra = appended.spec.pools[1].clone();
    extra.name = "extra".into();
    extra.nodes.node_id_start = Some(5000);
    appended.spec.pools.push(extra);
    assert!(
        validate(&appended, &defaults()).is_ok(),
        "a pool added at the end is fine"
    );
    let mut removed = cluster.clone();
    removed.spec.pools.truncate(1);
    let err = validate(&removed, &defaults()).unwrap_err().to_string();
    assert!(err.contains("recorded before their node ids were"), "{err}");
}

#[test]
fn ids_of_pods_waiting_for_their_drain_stay_taken() {
    let mut cluster = fixture("dedicated.yaml");
    recorded(&mut cluster);
    cluster.spec.pools[1].nodes.replicas = 1;
    let mut extra = cluster.spec.pools[1].clone();
    extra.name = "extra".into();
    extra.nodes.node_id_start = Some(1001);
    cluster.spec.pools.push(extra);
    let err = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(err.contains("overlapping node ids"), "{err}");
}

#[test]
fn a_secured_cluster_runs_its_nodes_over_mutual_tls() {
    let (_, v, owner) = valid("secured.yaml");
    assert!(v.internal_tls);
    assert_eq!(
        v.admin_address(),
        "safe-bootstrap.prod.svc.cluster.local:9091"
    );
    let props = build::server_properties(&v, &v.pools[0]);
    let lines: Vec<&str> = props.lines().collect();
    for expected in [
        "listeners=MTLS://0.0.0.0:9092,SCRAM://0.0.0.0:9094,LEGACY://0.0.0.0:9095,REPLICATION://0.0.0.0:9091,CONTROLLER://0.0.0.0:9093",
        "listener.security.protocol.map=MTLS:SSL,SCRAM:SASL_SSL,LEGACY:SASL_PLAINTEXT,REPLICATION:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=REPLICATION",
        "ssl.truststore.location=/etc/strom/tls/cluster-ca.crt",
        "listener.name.mtls.ssl.truststore.location=/etc/strom/tls/clients-ca.crt",
        "listener.name.mtls.ssl.client.auth=required",
        "listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.scram.ssl.keystore.location=/etc/strom/listener-certs/scram/keystore.pem",
        "listener.name.legacy.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.replication.ssl.client.auth=required",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:CN=safe-node,O=strom.dev;User:CN=strom-operator,O=strom.dev;User:admin",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in:\n{props}");
    }
    let sts = serde_json::to_value(build::statefulset(&v, &v.pools[0], 3, "10Gi", &owner)).unwrap();
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"ssl.keystore.location=/etc/strom/tls/$(POD_NAME).pem"),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.starts_with("advertised.listeners=")
            && a.ends_with(",REPLICATION://$(POD_NAME).safe-nodes.prod.svc.cluster.local:9091")),
        "{args:?}"
    );
    let volumes = &sts["spec"]["template"]["spec"]["volumes"];
    let secrets: Vec<&str> = volumes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert_eq!(secrets, ["safe-node-certs", "public-cert"]);
    let names = v.pod_dns_names("safe-nodes", 1);
    assert!(names.contains(&"safe-nodes-1.safe-nodes.prod.svc.cluster.local".to_owned()));
    assert!(names.contains(&"safe-bootstrap.prod.svc.cluster.local".to_owned()));
}

#[test]
fn security_is_fixed_once_the_cluster_exists() {
    let (mut cluster, _, _) = valid("secured.yaml");
    cluster.status = Some(KafkaClusterStatus {
        internal_tls: Some(false),
        ..Default::default()
    });
    let refused = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("created without mutual TLS"), "{refused}");

    let (mut plain, _, _) = valid("combined.yaml");
    plain.spec.listeners = vec![strom_operator::crd::ListenerSpec {
        name: "PLAIN".into(),
        port: 9092,
        tls: false,
        authentication: strom_operator::crd::ListenerAuthentication::Tls,
        certificate: None,
        kind: strom_operator::crd::ListenerType::Internal,
    }];
    let refused = validate(&plain, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("needs tls: true"), "{refused}");
}

#[test]
fn external_listeners_get_a_service_per_broker_and_advertise_its_address() {
    let (mut cluster, _, owner) = valid("dedicated.yaml");
    cluster
        .spec
        .listeners
        .push(serde_yaml::from_str("{name: OUTSIDE, port: 9095, type: nodeport}").unwrap());
    cluster
        .spec
        .listeners
        .push(serde_yaml::from_str("{name: CLOUD, port: 9096, type: loadbalancer}").unwrap());
    let v = validate(&cluster, &defaults()).unwrap();
    let brokers = &v.pools[1];
    let props = build::server_properties(&v, brokers);
    assert!(props.contains("\nconfig.providers=file,env\n"), "{props}");
    assert!(!build::server_properties(&v, &v.pools[0]).contains("config.providers"));

    let sts = serde_json::to_value(build::statefulset(&v, brokers, 3, "1Gi", &owner)).unwrap();
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let advertised = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("advertised.listeners="))
        .next()
        .unwrap()
        .to_owned();
    assert!(
        advertised.contains(
            ",OUTSIDE://${env:HOST_IP}:${file:/etc/strom/external.properties:$(POD_NAME).OUTSIDE.port}"
        ),
        "{advertised}"
    );
    assert!(
        advertised.ends_with(
            ",CLOUD://${file:/etc/strom/external.properties:$(POD_NAME).CLOUD.host}:9096"
        ),
        "{advertised}"
    );
    assert_eq!(advertised.matches("OUTSIDE://").count(), 1, "{advertised}");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["POD_NAME", "HOST_IP"]);

    let listener = &v.listeners[2];
    let service = build::external_service(&v, &owner, listener, Some("split-brokers-1"));
    assert_eq!(
        service.metadata.name.as_deref(),
        Some("split-brokers-1-outside")
    );
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(
        spec.selector.unwrap()["statefulset.kubernetes.io/pod-name"],
        "split-brokers-1"
    );
    let cloud = build::external_service(&v, &owner, &v.listeners[3], None);
    assert_eq!(
        cloud.metadata.name.as_deref(),
        Some("split-cloud-bootstrap")
    );
    assert_eq!(cloud.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));

    let addresses = BTreeMap::from([(
        "split-brokers-0.OUTSIDE.port".to_owned(),
        "31000".to_owned(),
    )]);
    let data = build::config_map(&v, &owner, &addresses, &BTreeMap::new())
        .data
        .unwrap();
    assert_eq!(
        data["external.properties"],
        "split-brokers-0.OUTSIDE.port=31000\n"
    );

    let mut first_outside = cluster.clone();
    first_outside.spec.listeners.swap(0, 2);
    let refused = validate(&first_outside, &defaults())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("must be internal"), "{refused}");

    cluster.spec.listeners[2].name = "A_VERY_LONG_LISTENER_NAME_THAT_GOES_ON_AND_ON_AND_ON".into();
    let refused = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("longer than 63 characters"), "{refused}");
}

#[test]
fn a_rack_aware_cluster_gives_each_broker_its_nodes_rack() {
    let (mut cluster, _, owner) = valid("dedicated.yaml");
    cluster.spec.rack =
        Some(serde_yaml::from_str("{topologyKey: topology.kubernetes.io/zone}").unwrap());
    let v = validate(&cluster, &defaults()).unwrap();
    let (controllers, brokers) = (&v.pools[0], &v.pools[1]);
    assert!(build::server_properties(&v, brokers).contains("\nconfig.providers=file,env\n"));
    assert!(!build::server_properties(&v, controllers).contains("config.providers"));

    let container = |pool| {
        let sts = serde_json::to_value(build::statefulset(&v, pool, 3, "1Gi", &owner)).unwrap();
        sts["spec"]["template"]["spec"]["containers"][0].clone()
    };
    let broker = container(brokers);
    let args: Vec<&str> = broker["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&"broker.rack=${file:/etc/strom/racks.properties:$(NODE_NAME)}"),
        "{args:?}"
    );
    let node_name = broker["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME is set");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let controller = container(controllers);
    assert!(!controller["args"].to_string().contains("broker.rack"));

    let racks = BTreeMap::from([
        ("node-a".to_owned(), "zone-1".to_owned()),
        ("node-b".to_owned(), "zone-2".to_owned()),
    ]);
    let data = build::config_map(&v, &owner, &BTreeMap::new(), &racks)
        .data
        .unwrap();
    assert_eq!(data["racks.properties"], "node-a=zone-1\nnode-b=zone-2\n");

    cluster.spec.rack = Some(serde_yaml::from_str("{topologyKey: \"zone label\"}").unwrap());
    let refused = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("is not a label key"), "{refused}");
    cluster.spec.rack = Some(serde_yaml::from_str("{topologyKey: zone}").unwrap());
    assert!(validate(&cluster, &defaults()).is_ok());
    cluster
        .spec
        .config
        .insert("broker.rack".into(), "zone-1".into());
    let refused = validate(&cluster, &defaults()).unwrap_err().to_string();
    assert!(
        refused.contains("\"broker.rack\" is set by the operator"),
        "{refused}"
    );
}

#[test]
fn an_own_ca_is_for_a_secured_cluster_only() {
    let (mut plain, _, _) = valid("dedicated.yaml");
    plain.spec.clients_ca = Some(serde_yaml::from_str("{secretName: my-ca}").unwrap());
    let refused = validate(&plain, &defaults()).unwrap_err().to_string();
    assert!(
        refused.contains("clientsCa is for a secured cluster"),
        "{refused}"
    );
    let (mut secured, _, _) = valid("secured.yaml");
    secured.spec.cluster_ca = Some(serde_yaml::from_str("{secretName: my-ca}").unwrap());
    assert!(validate(&secured, &defaults()).is_ok());

    secured.spec.clients_ca = Some(serde_yaml::from_str("{secretName: my-ca}").unwrap());
    let refused = validate(&secured, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("name the same Secret"), "{refused}");
    let own_name = format!("{}-clients-ca-cert", secured.metadata.name.clone().unwrap());
    secured.spec.clients_ca = Some(CertificateAuthoritySpec {
        secret_name: own_name,
    });
    let refused = validate(&secured, &defaults()).unwrap_err().to_string();
    assert!(refused.contains("is one the operator writes"), "{refused}");
}
