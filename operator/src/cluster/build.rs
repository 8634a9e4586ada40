//! Builds the objects a validated cluster needs (pure): the nodes' ConfigMap, the headless and
//! bootstrap Services, one StatefulSet per pool and a PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::validate::{
    dns_suffix, Pool, ValidCluster, CONTROLLER_LISTENER, REPLICATION_LISTENER, REPLICATION_PORT,
};
use crate::context::sha256_hex;
use crate::crd::{ListenerAuthentication, ListenerSpec, ListenerType, StorageType};

/// Label with the cluster's name on everything the operator creates.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label with the pool's name on its pods.
pub const POOL_LABEL: &str = "strom.dev/pool";
/// Label on pods that have the broker role; the bootstrap Service selects it.
pub const BROKER_LABEL: &str = "strom.dev/broker";
/// Pod annotation that asks the operator to restart the pod (value `true`), in the roll's order.
pub const RESTART_ANNOTATION: &str = "strom.dev/manual-rolling-update";
/// Pod annotation holding the hash of the pool's `server.properties`.
pub const CONFIG_HASH_ANNOTATION: &str = "strom.dev/config-hash";
/// Where the log directory is mounted in the broker container.
pub const DATA_DIR: &str = "/var/lib/strom/data";
const CONFIG_DIR: &str = "/etc/strom";
/// Where the node certificates Secret is mounted: `<pod>.pem` key stores and the CA bundles.
pub const TLS_DIR: &str = "/etc/strom/tls";
/// Key of the cluster CA bundle in the node certificates Secret.
pub const CLUSTER_CA_KEY: &str = "cluster-ca.crt";
/// Key of the clients CA bundle in the node certificates Secret.
pub const CLIENTS_CA_KEY: &str = "clients-ca.crt";
/// Where a listener's own certificate is mounted, under a directory named for the listener.
const LISTENER_CERT_DIR: &str = "/etc/strom/listener-certs";
/// ConfigMap key, and file under the config directory, with each broker's external addresses.
pub const EXTERNAL_KEY: &str = "external.properties";
/// ConfigMap key (and file in the config directory) holding `<node name>=<rack>` lines.
pub const RACKS_KEY: &str = "racks.properties";
/// Label on the Services of an external listener, with the listener's name.
pub const LISTENER_LABEL: &str = "strom.dev/listener";
/// The pod label (set by the StatefulSet controller) a broker's own Service selects.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Kafka's ACL authorizer.
const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// The operator's identity in a secured cluster.
pub const OPERATOR_COMMON_NAME: &str = "strom-operator";

fn typed<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("built objects match their Kubernetes types")
}

/// Labels shared by every object of the cluster.
pub fn cluster_labels(cluster: &ValidCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "strom".into()),
        (INSTANCE_LABEL.into(), cluster.name.clone()),
        (
            "app.kubernetes.io/managed-by".into(),
            "strom-operator".into(),
        ),
    ])
}

/// Selects the cluster's pods only: the operator's own pods carry the same instance label when
/// its Helm release and the cluster share a name, but another `app.kubernetes.io/name`.
fn node_selector(cluster: &ValidCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "strom".into()),
        (INSTANCE_LABEL.into(), cluster.name.clone()),
    ])
}

fn pool_selector(cluster: &ValidCluster, pool: &Pool) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE_LABEL.into(), cluster.name.clone()),
        (POOL_LABEL.into(), pool.name.clone()),
    ])
}

fn metadata(cluster: &ValidCluster, name: String, owner: &OwnerReference) -> Value {
    json!({
        "name": name,
        "namespace": cluster.namespace,
        "labels": cluster_labels(cluster),
        "ownerReferences": [owner],
    })
}

/// Kafka's security protocol for a client listener.
fn protocol(listener: &ListenerSpec) -> &'static str {
    match (listener.tls, listener.authentication) {
        (true, ListenerAuthentication::ScramSha512) => "SASL_SSL",
        (false, ListenerAuthentication::ScramSha512) => "SASL_PLAINTEXT",
        (true, _) => "SSL",
        (false, _) => "PLAINTEXT",
    }
}

/// The `listener.name.<l>.` prefix of a listener's own settings.
fn listener_key(listener: &str, key: &str) -> String {
    format!("listener.name.{}.{key}", listener.to_lowercase())
}

/// The security lines of a secured cluster: key and trust stores, per-listener client
/// authentication, and the authorizer.
fn security_properties(cluster: &ValidCluster) -> Vec<String> {
    let mut lines = vec![format!(
        "ssl.truststore.location={TLS_DIR}/{CLUSTER_CA_KEY}"
    )];
    for l in &cluster.listeners {
        if l.certificate.is_some() {
            lines.push(format!(
                "{}={LISTENER_CERT_DIR}/{}/keystore.pem",
                listener_key(&l.name, "ssl.keystore.location"),
                l.name.to_lowercase()
            ));
        }
        match l.authentication {
            ListenerAuthentication::Tls => {
                lines.push(format!(
                    "{}={TLS_DIR}/{CLIENTS_CA_KEY}",
                    listener_key(&l.name, "ssl.truststore.location")
                ));
                lines.push(format!(
                    "{}=required",
                    listener_key(&l.name, "ssl.client.auth")
                ));
            }
            ListenerAuthentication::ScramSha512 => lines.push(format!(
                "{}=SCRAM-SHA-512",
                listener_key(&l.name, "sasl.enabled.mechanisms")
            )),
            ListenerAuthentication::None => {}
        }
    }
    lines.push(format!(
        "{}=required",
        listener_key(REPLICATION_LISTENER, "ssl.client.auth")
    ));
    if let Some(extra) = &cluster.authorization {
        let mut super_users = vec![
            cluster.node_subject().principal(),
            format!(
                "User:CN={OPERATOR_COMMON_NAME},O={}",
                super::pki::ORGANIZATION
            ),
        ];
        super_users.extend(extra.iter().cloned());
        lines.push(format!("authorizer.class.name={STANDARD_AUTHORIZER}"));
        lines.push(format!("super.users={}", super_users.join(";")));
    }
    lines
}

/// The `server.properties` of a pool's nodes. Per-pod values (`node.id`,
/// `advertised.listeners`, the key store) are added on the command line at start.
pub fn server_properties(cluster: &ValidCluster, pool: &Pool) -> String {
    let mut listeners = Vec::new();
    let mut protocols = Vec::new();
    if pool.broker {
        for l in &cluster.listeners {
            listeners.push(format!("{}://0.0.0.0:{}", l.name, l.port));
            protocols.push(format!("{}:{}", l.name, protocol(l)));
        }
        if cluster.internal_tls {
            listeners.push(format!(
                "{REPLICATION_LISTENER}://0.0.0.0:{REPLICATION_PORT}"
            ));
            protocols.push(format!("{REPLICATION_LISTENER}:SSL"));
        }
    }
    if pool.controller {
        listeners.push(format!(
            "{CONTROLLER_LISTENER}://0.0.0.0:{}",
            cluster.controller_port
        ));
    }
    let controller_protocol = if cluster.internal_tls {
        "SSL"
    } else {
        "PLAINTEXT"
    };
    protocols.push(format!("{CONTROLLER_LISTENER}:{controller_protocol}"));
    let mut lines = vec![
        format!("# Written by strom-operator for pool {}.", pool.name),
        format!("process.roles={}", pool.process_roles()),
        format!("controller.quorum.voters={}", cluster.voters()),
        format!("controller.listener.names={CONTROLLER_LISTENER}"),
        format!("listeners={}", listeners.join(",")),
        format!("listener.security.protocol.map={}", protocols.join(",")),
        format!(
            "inter.broker.listener.name={}",
            cluster.inter_broker_listener()
        ),
        format!("log.dirs={DATA_DIR}"),
        format!("metrics.listener=0.0.0.0:{}", cluster.metrics_port),
    ];
    if cluster.internal_tls {
        lines.extend(security_properties(cluster));
    }
    if pool.broker
        && (cluster.external_listeners().next().is_some() || cluster.rack_label.is_some())
    {
        // Each broker's external address and rack differ, the pod template is shared: they
        // come from the node (`HOST_IP`) and from the operator's files, by pod or node name.
        lines.push("config.providers=file,env".to_owned());
        lines.push(
            "config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider"
                .to_owned(),
        );
        lines.push(
            "config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider"
                .to_owned(),
        );
    }
    lines.extend(cluster.config.iter().map(|(k, v)| format!("{k}={v}")));
    lines.push(String::new());
    lines.join("\n")
}

fn properties_key(pool: &Pool) -> String {
    format!("{}.properties", pool.name)
}

/// Hex SHA-256 of a pool's properties; a change rolls the pool's pods.
pub fn config_hash(cluster: &ValidCluster, pool: &Pool) -> String {
    sha256_hex(server_properties(cluster, pool).as_bytes())
}

/// One ConfigMap with a `<pool>.properties` entry per pool, the brokers' external addresses
/// (`external`, as `external.properties` lines) when a listener is external, and the nodes'
/// racks (`racks`, node name to rack) when the cluster is rack aware.
pub fn config_map(
    cluster: &ValidCluster,
    owner: &OwnerReference,
    external: &BTreeMap<String, String>,
    racks: &BTreeMap<String, String>,
) -> ConfigMap {
    let mut data: BTreeMap<String, String> = cluster
        .pools
        .iter()
        .map(|p| (properties_key(p), server_properties(cluster, p)))
        .collect();
    if cluster.external_listeners().next().is_some() {
        let lines: String = external.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        data.insert(EXTERNAL_KEY.to_owned(), lines);
    }
    if cluster.rack_label.is_some() {
        let lines: String = racks.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        data.insert(RACKS_KEY.to_owned(), lines);
    }
    typed(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(cluster, format!("{}-config", cluster.name), owner),
        "data": data,
    }))
}

// Every port names its protocol: server-side apply before Kubernetes 1.22 keys port lists by
// port and protocol and rejects entries without it.
fn client_ports(cluster: &ValidCluster) -> Vec<Value> {
    cluster
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.port))
        .chain(cluster.internal_tls.then_some((REPLICATION_LISTENER, REPLICATION_PORT)))
        .map(|(name, port)| json!({"name": port_name(name), "port": port, "targetPort": port, "protocol": "TCP"}))
        .collect()
}

/// Service port names are DNS labels: lower case, at most 15 characters.
fn port_name(listener: &str) -> String {
    let name: String = dns_suffix(listener).chars().take(15).collect();
    name.trim_matches('-').to_owned()
}

/// The keys of a broker's external address in `external.properties`.
pub fn external_keys(pod: &str, listener: &str) -> (String, String) {
    (
        format!("{pod}.{listener}.host"),
        format!("{pod}.{listener}.port"),
    )
}

/// A Service of an external listener: one broker's (`pod`), or the listener's bootstrap.
pub fn external_service(
    cluster: &ValidCluster,
    owner: &OwnerReference,
    listener: &ListenerSpec,
    pod: Option<&str>,
) -> Service {
    let (name, selector) = match pod {
        Some(pod) => (
            cluster.external_service(pod, &listener.name),
            BTreeMap::from([(POD_NAME_LABEL.to_owned(), pod.to_owned())]),
        ),
        None => {
            let mut selector = node_selector(cluster);
            selector.insert(BROKER_LABEL.into(), "true".into());
            (cluster.external_bootstrap_service(&listener.name), selector)
        }
    };
    let mut meta = metadata(cluster, name, owner);
    meta["labels"][LISTENER_LABEL] = json!(dns_suffix(&listener.name));
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": match listener.kind {
                ListenerType::Loadbalancer => "LoadBalancer",
                _ => "NodePort",
            },
            "selector": selector,
            "ports": [{"name": port_name(&listener.name), "port": listener.port, "targetPort": listener.port, "protocol": "TCP"}],
        },
    }))
}

/// The headless Service behind every pod's stable DNS name. It publishes pods before they are
/// Ready, because the controllers must find each other to become Ready at all.
pub fn headless_service(cluster: &ValidCluster, owner: &OwnerReference) -> Service {
    let mut ports = client_ports(cluster);
    ports.push(json!({"name": "controller", "port": cluster.controller_port, "protocol": "TCP"}));
    ports.push(json!({"name": "metrics", "port": cluster.metrics_port, "protocol": "TCP"}));
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, cluster.headless_service(), owner),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": true,
            "selector": node_selector(cluster),
            "ports": ports,
        },
    }))
}

/// The ClusterIP Service clients bootstrap from: Ready brokers only.
pub fn bootstrap_service(cluster: &ValidCluster, owner: &OwnerReference) -> Service {
    let mut selector = node_selector(cluster);
    selector.insert(BROKER_LABEL.into(), "true".into());
    typed(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(cluster, cluster.bootstrap_service(), owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": client_ports(cluster),
        },
    }))
}

/// The PodDisruptionBudget: one node of the cluster down at a time. `api_version` is
/// `policy/v1`, or `policy/v1beta1` on clusters older than 1.21.
pub fn pod_disruption_budget(
    cluster: &ValidCluster,
    owner: &OwnerReference,
    api_version: &str,
) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": metadata(cluster, cluster.name.clone(), owner),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": node_selector(cluster)},
        },
    })
}

/// The container's arguments: node id from the pod ordinal, listeners advertised under the
/// pod's stable DNS name (`$(POD_NAME)`, expanded by the kubelet). No shell is involved, so
/// the image needs none.
fn broker_args(cluster: &ValidCluster, pool: &Pool) -> Vec<String> {
    let mut args = vec![
        format!("{CONFIG_DIR}/server.properties"),
        "--node-id-from-hostname".to_owned(),
        pool.node_id_start.to_string(),
    ];
    if pool.broker {
        let domain = format!(
            "{}.{}.svc.{}",
            cluster.headless_service(),
            cluster.namespace,
            cluster.cluster_domain
        );
        let advertised: Vec<String> = cluster
            .listeners
            .iter()
            .filter(|l| l.kind == ListenerType::Internal)
            .map(|l| (l.name.as_str(), l.port))
            .chain(
                cluster
                    .internal_tls
                    .then_some((REPLICATION_LISTENER, REPLICATION_PORT)),
            )
            .map(|(name, port)| format!("{name}://$(POD_NAME).{domain}:{port}"))
            .chain(cluster.external_listeners().map(|l| {
                let file = format!("{CONFIG_DIR}/{EXTERNAL_KEY}");
                let (host_key, port_key) = external_keys("$(POD_NAME)", &l.name);
                match l.kind {
                    ListenerType::Nodeport => {
                        format!("{}://${{env:HOST_IP}}:${{file:{file}:{port_key}}}", l.name)
                    }
                    _ => format!("{}://${{file:{file}:{host_key}}}:{}", l.name, l.port),
                }
            }))
            .collect();
        args.push("--override".to_owned());
        args.push(format!("advertised.listeners={}", advertised.join(",")));
        if cluster.rack_label.is_some() {
            args.push("--override".to_owned());
            args.push(format!(
                "broker.rack=${{file:{CONFIG_DIR}/{RACKS_KEY}:$(NODE_NAME)}}"
            ));
        }
    }
    if cluster.internal_tls {
        args.push("--override".to_owned());
        args.push(format!("ssl.keystore.location={TLS_DIR}/$(POD_NAME).pem"));
    }
    args
}

/// The StatefulSet of one pool at `replicas` pods, its claims of `claim_size` (the template
/// cannot change once created; claims grow on their own). Its update strategy is OnDelete: the
/// operator rolls pods itself, one at a time, checking the cluster between them. Pods pass the
/// Kubernetes `restricted` Pod Security level.
pub fn statefulset(
    cluster: &ValidCluster,
    pool: &Pool,
    replicas: i32,
    claim_size: &str,
    owner: &OwnerReference,
) -> StatefulSet {
    let mut pod_labels = cluster_labels(cluster);
    pod_labels.extend(pool_selector(cluster, pool));
    if pool.broker {
        pod_labels.insert(BROKER_LABEL.into(), "true".into());
    }
    let mut annotations = pool.template.annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_owned(),
        config_hash(cluster, pool),
    );
    if cluster.scrape_annotations {
        annotations.insert("prometheus.io/scrape".into(), "true".into());
        annotations.insert(
            "prometheus.io/port".into(),
            cluster.metrics_port.to_string(),
        );
        annotations.insert("prometheus.io/path".into(), "/metrics".into());
    }
    let mut ports: Vec<Value> = Vec::new();
    if pool.broker {
        ports.extend(
            cluster
                .listeners
                .iter()
                .map(|l| (l.name.as_str(), l.port))
                .chain(
                    cluster
                        .internal_tls
                        .then_some((REPLICATION_LISTENER, REPLICATION_PORT)),
                )
                .map(|(name, port)| json!({"name": port_name(name), "containerPort": port, "protocol": "TCP"})),
        );
    }
    if pool.controller {
        ports.push(json!({"name": "controller", "containerPort": cluster.controller_port, "protocol": "TCP"}));
    }
    ports
        .push(json!({"name": "metrics", "containerPort": cluster.metrics_port, "protocol": "TCP"}));

    let mut mounts = vec![
        json!({"name": "data", "mountPath": DATA_DIR}),
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
    ];
    let external = pool.broker && cluster.external_listeners().next().is_some();
    let mut items = vec![json!({"key": properties_key(pool), "path": "server.properties"})];
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    if external {
        items.push(json!({"key": EXTERNAL_KEY, "path": EXTERNAL_KEY}));
        env.push(
            json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}),
        );
    }
    if pool.broker && cluster.rack_label.is_some() {
        items.push(json!({"key": RACKS_KEY, "path": RACKS_KEY}));
        env.push(
            json!({"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}),
        );
    }
    env.extend(pool.template.env.iter().map(|e| json!(e)));
    let mut volumes = vec![json!({
        "name": "config",
        "configMap": {"name": format!("{}-config", cluster.name), "items": items},
    })];
    if cluster.internal_tls {
        mounts.push(json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}));
        volumes.push(json!({
            "name": "tls",
            "secret": {"secretName": cluster.node_certs_secret(), "defaultMode": 0o440},
        }));
        for l in cluster.listeners.iter().filter(|_| pool.broker) {
            let Some(cert) = &l.certificate else { continue };
            let volume = format!("cert-{}", port_name(&l.name));
            mounts.push(json!({
                "name": volume,
                "mountPath": format!("{LISTENER_CERT_DIR}/{}", l.name.to_lowercase()),
                "readOnly": true,
            }));
            volumes.push(json!({
                "name": volume,
                "secret": {
                    "secretName": cert.secret_name,
                    "defaultMode": 0o440,
                    "items": [{"key": cert.key, "path": "keystore.pem"}],
                },
            }));
        }
    }
    let mut container = json!({
        "name": "strom",
        "image": cluster.image,
        "command": ["/usr/local/bin/strom-broker"],
        "args": broker_args(cluster, pool),
        "env": env,
        "ports": ports,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
    });
    if let Some(policy) = &cluster.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    if let Some(resources) = &pool.resources {
        container["resources"] = json!(resources);
    }
    let mut spec = json!({
        "serviceName": cluster.headless_service(),
        "replicas": replicas,
        // Controllers only become Ready together (a quorum needs its peers), so pods must not
        // wait for each other to start.
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "OnDelete"},
        "selector": {"matchLabels": pool_selector(cluster, pool)},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": annotations},
            "spec": {
                // The broker's controlled shutdown waits at most one session timeout.
                "terminationGracePeriodSeconds": 60,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "runAsGroup": 65532,
                    "fsGroup": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [],
            },
        },
    });
    match pool.storage.kind {
        StorageType::Ephemeral => volumes.push(json!({"name": "data", "emptyDir": {}})),
        StorageType::PersistentClaim => {
            let mut claim = json!({
                "metadata": {"name": "data", "labels": cluster_labels(cluster)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": claim_size}},
                },
            });
            if let Some(class) = &pool.storage.class {
                claim["spec"]["storageClassName"] = json!(class);
            }
            spec["volumeClaimTemplates"] = json!([claim]);
        }
    }
    spec["template"]["spec"]["volumes"] = json!(volumes);
    let scheduling = &pool.template;
    let pod_spec = &mut spec["template"]["spec"];
    if let Some(affinity) = &scheduling.affinity {
        pod_spec["affinity"] = json!(affinity);
    }
    if !scheduling.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(scheduling.tolerations);
    }
    if !scheduling.topology_spread_constraints.is_empty() {
        pod_spec["topologySpreadConstraints"] = json!(scheduling.topology_spread_constraints);
    }
    if !scheduling.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(scheduling.node_selector);
    }
    if let Some(class) = &scheduling.priority_class_name {
        pod_spec["priorityClassName"] = json!(class);
    }
    typed(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(cluster, cluster.statefulset_name(pool), owner),
        "spec": spec,
    }))
}
