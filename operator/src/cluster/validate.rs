//! Checks a KafkaCluster spec and resolves its defaults (pure). Every problem is reported at
//! once, in plain words, so that one status condition tells the user all there is to fix.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::ResourceExt;

use super::pki::Subject;
use crate::crd::{
    KafkaCluster, ListenerAuthentication, ListenerSpec, ListenerType, PodTemplate, PoolStatus,
    Role, StorageSpec, StorageType, CLUSTER_LABEL,
};

/// Broker properties the operator writes itself; a spec that sets them is rejected.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.listener.names",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "log.dirs",
    "log.dir",
    "metrics.listener",
    "ssl.keystore.location",
    "ssl.truststore.location",
    "authorizer.class.name",
    "super.users",
    "broker.rack",
];

/// Name of the controller listener in every node's config.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";
/// Name of the mutual-TLS listener that carries replication and the operator's admin calls
/// in a secured cluster.
pub const REPLICATION_LISTENER: &str = "REPLICATION";
/// Port of the replication listener.
pub const REPLICATION_PORT: i32 = 9091;

/// Settings that come from the operator, not from the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDefaults {
    /// Image used when `spec.image` is absent.
    pub image: String,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

/// A spec that cannot be applied, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct InvalidSpec {
    /// One plain sentence per problem.
    pub problems: Vec<String>,
}

/// A pool after validation, with its node ids resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Pool name.
    pub name: String,
    /// Stores partitions and serves clients.
    pub broker: bool,
    /// Votes in the metadata quorum.
    pub controller: bool,
    /// Desired number of pods.
    pub replicas: i32,
    /// Node id of pod 0.
    pub node_id_start: i32,
    /// The log directory's volume.
    pub storage: StorageSpec,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and metadata of the pods.
    pub template: PodTemplate,
}

impl Pool {
    /// Node ids of `replicas` pods of this pool.
    pub fn node_ids(&self, replicas: i32) -> impl Iterator<Item = i32> + '_ {
        (0..replicas.max(0)).map(move |i| self.node_id_start + i)
    }

    /// `process.roles` for the pool's nodes.
    pub fn process_roles(&self) -> &'static str {
        match (self.broker, self.controller) {
            (true, true) => "broker,controller",
            (true, false) => "broker",
            _ => "controller",
        }
    }
}

/// A spec that passed validation, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCluster {
    /// Resource name.
    pub name: String,
    /// Resource namespace.
    pub namespace: String,
    /// Broker image.
    pub image: String,
    /// Image pull policy, when set.
    pub image_pull_policy: Option<String>,
    /// Pools in spec order.
    pub pools: Vec<Pool>,
    /// Client listeners; the first carries replication.
    pub listeners: Vec<ListenerSpec>,
    /// Controller listener port.
    pub controller_port: i32,
    /// Metrics listener port.
    pub metrics_port: i32,
    /// Add Prometheus scrape annotations to pods.
    pub scrape_annotations: bool,
    /// User broker properties.
    pub config: BTreeMap<String, String>,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// Pools the status records that the spec no longer has.
    pub removed_pools: Vec<RemovedPool>,
    /// The controller and replication listeners use mutual TLS under the cluster CA.
    pub internal_tls: bool,
    /// Super users beside the nodes and the operator, when ACLs are on.
    pub authorization: Option<Vec<String>>,
    /// Node label that gives each broker its `broker.rack`.
    pub rack_label: Option<String>,
}

/// A broker pool that left the spec: drained, then deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedPool {
    /// Pool name.
    pub name: String,
    /// Node id of its pod 0.
    pub node_id_start: i32,
}

impl ValidCluster {
    /// Name of the headless Service that gives every pod a stable DNS name.
    pub fn headless_service(&self) -> String {
        format!("{}-nodes", self.name)
    }

    /// Name of the client bootstrap Service.
    pub fn bootstrap_service(&self) -> String {
        bootstrap_service(&self.name)
    }

    /// Secret with every node's key store and the CA bundles the nodes trust.
    pub fn node_certs_secret(&self) -> String {
        format!("{}-node-certs", self.name)
    }

    /// Secret with a CA's certificate and key (`cluster` or `clients`); the operator's alone.
    pub fn ca_secret(&self, ca: &str) -> String {
        ca_secret_name(&self.name, ca)
    }

    /// Secret with a CA's certificate only, for clients to trust.
    pub fn ca_cert_secret(&self, ca: &str) -> String {
        ca_cert_secret_name(&self.name, ca)
    }

    /// StatefulSet (and pod name prefix) of a pool.
    pub fn statefulset_name(&self, pool: &Pool) -> String {
        self.pool_statefulset(&pool.name)
    }

    /// StatefulSet of the pool named `pool`, in the spec or not.
    pub fn pool_statefulset(&self, pool: &str) -> String {
        format!("{}-{pool}", self.name)
    }

    /// Stable DNS name of a pool's pod `ordinal`.
    pub fn pod_host(&self, pool: &Pool, ordinal: i32) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc.{}",
            self.statefulset_name(pool),
            self.headless_service(),
            self.namespace,
            self.cluster_domain
        )
    }

    /// `controller.quorum.voters`: `id@host:port` for every controller pod.
    pub fn voters(&self) -> String {
        self.pools
            .iter()
            .filter(|p| p.controller)
            .flat_map(|p| {
                (0..p.replicas).map(move |i| {
                    format!(
                        "{}@{}:{}",
                        p.node_id_start + i,
                        self.pod_host(p, i),
                        self.controller_port
                    )
                })
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port` of the bootstrap Service's first listener.
    pub fn bootstrap_address(&self) -> String {
        format!("{}:{}", self.bootstrap_host(), self.listeners[0].port)
    }

    fn bootstrap_host(&self) -> String {
        bootstrap_host(&self.name, &self.namespace, &self.cluster_domain)
    }

    /// Where the operator's admin calls go: the replication listener in a secured cluster,
    /// else the first client listener.
    pub fn admin_address(&self) -> String {
        if self.internal_tls {
            format!("{}:{REPLICATION_PORT}", self.bootstrap_host())
        } else {
            self.bootstrap_address()
        }
    }

    /// Listeners reached from outside Kubernetes.
    pub fn external_listeners(&self) -> impl Iterator<Item = &ListenerSpec> {
        self.listeners
            .iter()
            .filter(|l| l.kind != ListenerType::Internal)
    }

    /// The Service of one broker pod on an external listener.
    pub fn external_service(&self, pod: &str, listener: &str) -> String {
        format!("{pod}-{}", dns_suffix(listener))
    }

    /// The bootstrap Service of an external listener.
    pub fn external_bootstrap_service(&self, listener: &str) -> String {
        format!("{}-{}-bootstrap", self.name, dns_suffix(listener))
    }

    /// The listener that carries replication between brokers.
    pub fn inter_broker_listener(&self) -> &str {
        if self.internal_tls {
            REPLICATION_LISTENER
        } else {
            &self.listeners[0].name
        }
    }

    /// The subject of every node's certificate.
    pub fn node_subject(&self) -> Subject {
        Subject {
            common_name: format!("{}-node", self.name),
            internal: true,
        }
    }

    /// The DNS names a pod's certificate carries: its own, and the bootstrap Service's.
    pub fn pod_dns_names(&self, pool_statefulset: &str, ordinal: i32) -> Vec<String> {
        let pod = format!("{pool_statefulset}-{ordinal}.{}", self.headless_service());
        let bootstrap = self.bootstrap_service();
        let ns = &self.namespace;
        let domain = &self.cluster_domain;
        vec![
            format!("{pod}.{ns}.svc.{domain}"),
            format!("{pod}.{ns}.svc"),
            format!("{bootstrap}.{ns}.svc.{domain}"),
            format!("{bootstrap}.{ns}.svc"),
            format!("{bootstrap}.{ns}"),
            bootstrap,
        ]
    }

    /// Broker node ids the spec asks for.
    pub fn broker_ids(&self) -> BTreeSet<i32> {
        self.pools
            .iter()
            .filter(|p| p.broker)
            .flat_map(|p| p.node_ids(p.replicas))
            .collect()
    }
}

/// Name of cluster `cluster`'s client bootstrap Service.
pub fn bootstrap_service(cluster: &str) -> String {
    format!("{cluster}-bootstrap")
}

/// DNS name of cluster `cluster`'s bootstrap Service.
pub fn bootstrap_host(cluster: &str, namespace: &str, domain: &str) -> String {
    format!("{}.{namespace}.svc.{domain}", bootstrap_service(cluster))
}

/// A listener name as part of a DNS label: lower case, `-` for `_`.
pub fn dns_suffix(listener: &str) -> String {
    listener.to_ascii_lowercase().replace('_', "-")
}

/// Secret with the certificate and key of cluster `cluster`'s CA `ca` (`cluster` or `clients`).
pub fn ca_secret_name(cluster: &str, ca: &str) -> String {
    format!("{cluster}-{ca}-ca")
}

/// Secret with the certificate (bundle) alone of cluster `cluster`'s CA `ca`.
pub fn ca_cert_secret_name(cluster: &str, ca: &str) -> String {
    format!("{cluster}-{ca}-ca-cert")
}

/// A Kubernetes label key: an optional DNS subdomain prefix and `/`, then a name of up to 63
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let prefix_ok =
        prefix.is_empty() || (prefix.len() <= 253 && prefix.split('.').all(is_dns_label));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    prefix_ok && name_ok
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_listener_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Bytes of a Kubernetes quantity such as `10Gi`, `500M` or `1500`; `None` when it is not one.
pub fn quantity_bytes(s: &str) -> Option<f64> {
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number: f64 = number.parse().ok()?;
    let unit = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(number * unit)
}

fn valid_port(p: i32) -> bool {
    (1..=65535).contains(&p)
}

/// Checks the spec's pools against the pools the status recorded: node ids stay with their
/// pool, claims never shrink, a controller pool stays, and a new pool takes no id of a pool
/// being removed. Returns the recorded broker pools the spec no longer has.
fn check_against_recorded(
    pools: &[Pool],
    recorded: &[PoolStatus],
    problems: &mut Vec<String>,
) -> Vec<RemovedPool> {
    // A status from an operator that did not record node ids yet: until one reconcile has
    // recorded them, pools keep their order and none is removed, so that no id moves.
    if recorded.iter().any(|r| r.node_id_start.is_none()) {
        let kept = recorded.iter().zip(pools).all(|(r, p)| r.name == p.name);
        if !kept || pools.len() < recorded.len() {
            let order: Vec<&str> = recorded.iter().map(|r| r.name.as_str()).collect();
            problems.push(format!(
                "the pools were recorded before their node ids were; keep them in the order {order:?}, adding new pools after them, until one reconcile has recorded the ids"
            ));
        }
        return Vec::new();
    }
    for pool in pools {
        let Some(was) = recorded.iter().find(|r| r.name == pool.name) else {
            continue;
        };
        if let Some(start) = was.node_id_start {
            if start != pool.node_id_start {
                problems.push(format!(
                    "pool {:?}: its node ids start at {start} since it was created, and the spec now starts them at {} (a reordered or inserted pool, or a changed nodeIdStart); set nodeIdStart: {start}, since a node id names the data on its disk",
                    pool.name, pool.node_id_start
                ));
            }
        }
        let shrinks = match (&was.storage_size, pool.storage.kind) {
            (Some(size), StorageType::PersistentClaim) => {
                match (quantity_bytes(size), quantity_bytes(&pool.storage.size)) {
                    (Some(was_bytes), Some(now)) => now < was_bytes,
                    _ => false,
                }
            }
            _ => false,
        };
        if shrinks {
            problems.push(format!(
                "pool {:?}: storage size {} is smaller than the claims' {}; a PersistentVolumeClaim cannot shrink",
                pool.name,
                pool.storage.size,
                was.storage_size.as_deref().unwrap_or_default()
            ));
        }
    }
    let mut removed = Vec::new();
    for was in recorded {
        if pools.iter().any(|p| p.name == was.name) {
            continue;
        }
        let Some(start) = was.node_id_start else {
            continue;
        };
        if was.controller {
            problems.push(format!(
                "pool {:?} votes in the controller quorum and cannot be removed",
                was.name
            ));
            continue;
        }
        for pool in pools {
            let ids: Vec<i32> = pool.node_ids(pool.replicas).collect();
            if let Some(id) = was.node_ids.iter().find(|id| ids.contains(id)) {
                problems.push(format!(
                    "pool {:?} would reuse node id {id} of pool {:?}, which is being removed",
                    pool.name, was.name
                ));
            }
        }
        removed.push(RemovedPool {
            name: was.name.clone(),
            node_id_start: start,
        });
    }
    removed
}

/// Checks `cluster` and fills in defaults. The voters recorded in its status must not change.
pub fn validate(
    cluster: &KafkaCluster,
    defaults: &OperatorDefaults,
) -> Result<ValidCluster, InvalidSpec> {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let mut problems = Vec::new();

    if !is_dns_label(&name) {
        problems.push(format!("cluster name {name:?} is not a DNS label"));
    }
    if spec.pools.is_empty() {
        problems.push(format!(
            "no pools: spec.pools is empty and no KafkaNodePool is labelled {CLUSTER_LABEL}={name}"
        ));
    }
    let mut pools = Vec::new();
    let mut seen = BTreeSet::new();
    for (index, p) in spec.pools.iter().enumerate() {
        let at = format!("pool {:?}", p.name);
        if !is_dns_label(&p.name) {
            problems.push(format!(
                "{at}: the name must be a DNS label (a-z, 0-9, '-')"
            ));
        }
        if !seen.insert(p.name.clone()) {
            problems.push(format!(
                "{at} appears twice: a KafkaNodePool cannot have the name of a pool in spec.pools"
            ));
        }
        // The StatefulSet controller adds a pod label of the StatefulSet name plus an 11-byte
        // revision hash, and label values stop at 63 bytes.
        let sts = format!("{name}-{}", p.name);
        if sts.len() > 52 {
            problems.push(format!(
                "{at}: {sts:?} is longer than 52 characters; shorten the cluster or pool name"
            ));
        }
        let roles: BTreeSet<Role> = p.nodes.roles.iter().copied().collect();
        if roles.is_empty() {
            problems.push(format!(
                "{at}: roles is empty; use broker, controller or both"
            ));
        }
        if roles.len() != p.nodes.roles.len() {
            problems.push(format!("{at}: roles lists a role twice"));
        }
        if p.nodes.replicas < 0 {
            problems.push(format!(
                "{at}: replicas is {}, must be 0 or more",
                p.nodes.replicas
            ));
        }
        // Raft assumes its log survives a restart: a voter that comes back empty can elect a
        // leader without the cluster's metadata and erase it.
        if roles.contains(&Role::Controller) && p.nodes.storage.kind == StorageType::Ephemeral {
            problems.push(format!(
                "{at}: controllers need persistent storage (type persistent-claim); an ephemeral controller loses the cluster metadata when it restarts"
            ));
        }
        for key in p.nodes.template.annotations.keys() {
            if key.starts_with("strom.dev/") {
                problems.push(format!(
                    "{at}: annotation {key:?} is the operator's and cannot be set in the template"
                ));
            }
        }
        for env in &p.nodes.template.env {
            if ["POD_NAME", "HOST_IP", "NODE_NAME"].contains(&env.name.as_str()) {
                problems.push(format!(
                    "{at}: environment variable {} is set by the operator",
                    env.name
                ));
            }
        }
        let node_id_start = p.nodes.node_id_start.unwrap_or(1000 * index as i32);
        if node_id_start < 0 {
            problems.push(format!("{at}: nodeIdStart must be 0 or more"));
        }
        if p.nodes.storage.kind == StorageType::PersistentClaim
            && quantity_bytes(&p.nodes.storage.size).is_none()
        {
            problems.push(format!(
                "{at}: storage size {:?} is not a quantity such as 10Gi",
                p.nodes.storage.size
            ));
        }
        pools.push(Pool {
            name: p.name.clone(),
            broker: roles.contains(&Role::Broker),
            controller: roles.contains(&Role::Controller),
            replicas: p.nodes.replicas,
            node_id_start,
            storage: p.nodes.storage.clone(),
            resources: p.nodes.resources.clone(),
            template: p.nodes.template.clone(),
        });
    }
    let recorded: &[PoolStatus] = cluster
        .status
        .as_ref()
        .map(|s| s.pools.as_slice())
        .unwrap_or_default();
    let removed_pools = check_against_recorded(&pools, recorded, &mut problems);
    // A pool that still runs more pods than the spec asks (a shrink waiting for its drain)
    // holds their ids until they are gone.
    let held = |p: &Pool| {
        let running = recorded
            .iter()
            .find(|r| r.name == p.name)
            .map_or(0, |r| r.replicas);
        p.replicas.max(running).max(0)
    };
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            let a_end = a.node_id_start + held(a);
            let b_end = b.node_id_start + held(b);
            if a.node_id_start < b_end && b.node_id_start < a_end {
                problems.push(format!(
                    "pools {:?} and {:?} have overlapping node ids ({}..{} and {}..{}); set nodeIdStart",
                    a.name, b.name, a.node_id_start, a_end, b.node_id_start, b_end
                ));
            }
        }
    }
    if !spec.pools.is_empty() {
        if !pools.iter().any(|p| p.controller && p.replicas > 0) {
            problems.push("no pool has the controller role with replicas above 0: the cluster needs a metadata quorum".into());
        }
        if !pools.iter().any(|p| p.broker) {
            problems
                .push("no pool has the broker role: the cluster would hold no partitions".into());
        }
    }

    let listeners = if spec.listeners.is_empty() {
        vec![ListenerSpec {
            name: "PLAINTEXT".into(),
            port: 9092,
            tls: false,
            authentication: ListenerAuthentication::None,
            certificate: None,
            kind: ListenerType::Internal,
        }]
    } else {
        spec.listeners.clone()
    };
    let mut ports = BTreeMap::new();
    let mut claim_port = |port: i32, what: String, problems: &mut Vec<String>| {
        if !valid_port(port) {
            problems.push(format!("{what}: port {port} is outside 1-65535"));
        } else if let Some(other) = ports.insert(port, what.clone()) {
            problems.push(format!("{what} and {other} both use port {port}"));
        }
    };
    let mut listener_names = BTreeSet::new();
    for l in &listeners {
        if !is_listener_name(&l.name) {
            problems.push(format!(
                "listener {:?}: the name must be upper case letters, digits and '_'",
                l.name
            ));
        }
        if l.name == CONTROLLER_LISTENER || l.name == REPLICATION_LISTENER {
            problems.push(format!(
                "listener {:?} is reserved for the operator's own listeners",
                l.name
            ));
        }
        if l.authentication == ListenerAuthentication::Tls && !l.tls {
            problems.push(format!(
                "listener {}: authentication tls (client certificates) needs tls: true",
                l.name
            ));
        }
        if l.kind != ListenerType::Internal {
            for p in spec
                .pools
                .iter()
                .filter(|p| p.nodes.roles.contains(&Role::Broker))
            {
                // A broker's Service is `<statefulset>-<ordinal>-<listener>`, a DNS label.
                let longest = format!("{name}-{}-999-{}", p.name, dns_suffix(&l.name));
                if longest.len() > 63 {
                    problems.push(format!(
                        "listener {}: the Service names of pool {:?} ({longest:?}) would be longer than 63 characters; shorten the cluster, pool or listener name",
                        l.name, p.name
                    ));
                }
            }
        }
        if l.certificate.is_some() && !l.tls {
            problems.push(format!(
                "listener {}: a certificate is set but tls is false",
                l.name
            ));
        }
        if !listener_names.insert(l.name.clone()) {
            problems.push(format!("listener {:?} appears twice", l.name));
        }
        claim_port(l.port, format!("listener {}", l.name), &mut problems);
    }
    if listeners
        .first()
        .is_some_and(|l| l.kind != ListenerType::Internal)
    {
        problems.push(format!(
            "listener {}: the first listener carries replication between brokers and must be internal; put an internal listener first",
            listeners[0].name
        ));
    }
    let internal_tls = spec.authorization.is_some()
        || listeners
            .iter()
            .any(|l| l.tls || l.authentication != ListenerAuthentication::None);
    if let Some(rack) = &spec.rack {
        if !is_label_key(&rack.topology_key) {
            problems.push(format!(
                "rack.topologyKey {:?} is not a label key such as topology.kubernetes.io/zone",
                rack.topology_key
            ));
        }
    }
    let operators_secrets: Vec<String> = ["cluster", "clients"]
        .iter()
        .flat_map(|ca| [ca_secret_name(&name, ca), ca_cert_secret_name(&name, ca)])
        .chain([format!("{name}-node-certs")])
        .collect();
    for (field, own) in [
        ("clusterCa", &spec.cluster_ca),
        ("clientsCa", &spec.clients_ca),
    ] {
        let Some(own) = own else { continue };
        if !internal_tls {
            problems.push(format!(
                "{field} is for a secured cluster: it needs a tls or authenticated listener, or authorization"
            ));
        }
        if operators_secrets.contains(&own.secret_name) {
            problems.push(format!(
                "{field}: Secret {:?} is one the operator writes; name another",
                own.secret_name
            ));
        }
    }
    if let (Some(cluster_ca), Some(clients_ca)) = (&spec.cluster_ca, &spec.clients_ca) {
        if cluster_ca.secret_name == clients_ca.secret_name {
            problems.push(
                "clusterCa and clientsCa name the same Secret: users' certificates would be trusted as nodes".into(),
            );
        }
    }
    if internal_tls {
        claim_port(
            REPLICATION_PORT,
            "the replication listener".into(),
            &mut problems,
        );
    }
    // The controllers' listener changes protocol with it, and a quorum half on TLS and half
    // on plaintext cannot elect a leader while the pods roll.
    let recorded_tls = cluster.status.as_ref().and_then(|s| {
        s.internal_tls
            .or_else(|| s.quorum_voters.as_ref().map(|_| false))
    });
    if let Some(recorded) = recorded_tls {
        if recorded != internal_tls {
            problems.push(format!(
                "the cluster was created {} mutual TLS between its nodes, and that is fixed: {}",
                if recorded { "with" } else { "without" },
                if recorded {
                    "keep a TLS or authenticated listener, or authorization"
                } else {
                    "TLS listeners, authentication and authorization need a cluster created with one of them"
                }
            ));
        }
    }
    for user in spec.authorization.iter().flat_map(|a| &a.super_users) {
        if !user
            .split_once(':')
            .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
        {
            problems.push(format!(
                "super user {user:?} is not a principal such as User:admin"
            ));
        }
    }
    claim_port(spec.controller_port, "controllerPort".into(), &mut problems);
    claim_port(spec.metrics.port, "metrics.port".into(), &mut problems);

    for key in spec.config.keys() {
        let reserved_prefix = [
            "config.providers",
            "listener.name.replication.",
            "listener.name.controller.",
        ]
        .iter()
        .any(|p| key.starts_with(p));
        if OPERATOR_OWNED_KEYS.contains(&key.as_str()) || reserved_prefix {
            problems.push(format!(
                "config key {key:?} is set by the operator and cannot be overridden"
            ));
        }
    }
    if let Some(policy) = &spec.image_pull_policy {
        if !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never") {
            problems.push(format!(
                "imagePullPolicy {policy:?} is not Always, IfNotPresent or Never"
            ));
        }
    }

    let valid = ValidCluster {
        name,
        namespace,
        image: spec.image.clone().unwrap_or_else(|| defaults.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        pools,
        listeners,
        controller_port: spec.controller_port,
        metrics_port: spec.metrics.port,
        scrape_annotations: spec.metrics.scrape_annotations,
        config: spec.config.clone(),
        cluster_domain: defaults.cluster_domain.clone(),
        removed_pools,
        internal_tls,
        authorization: spec.authorization.as_ref().map(|a| a.super_users.clone()),
        rack_label: spec.rack.as_ref().map(|r| r.topology_key.clone()),
    };
    // Strom's quorum membership is static (no KIP-853), so the voters fixed at creation stay.
    if let Some(recorded) = cluster
        .status
        .as_ref()
        .and_then(|s| s.quorum_voters.as_deref())
    {
        if problems.is_empty() && recorded != valid.voters() {
            problems.push(format!(
                "the controller quorum is fixed once created ({recorded}); controller pools, their replicas, nodeIdStart and controllerPort cannot change"
            ));
        }
    }
    if problems.is_empty() {
        Ok(valid)
    } else {
        Err(InvalidSpec { problems })
    }
}
