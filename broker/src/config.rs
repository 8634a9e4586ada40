//! Broker configuration with Kafka's property names.
//!
//! Sources, later wins: built-in defaults, a `server.properties` file, `STROM_*` environment
//! variables (`STROM_LOG_DIRS` sets `log.dirs`), then `--override key=value`. Values may name
//! parts of themselves through Kafka's config providers (`${env:VAR}`, `${file:path:key}`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration problem that stops start-up; it always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The key is not a property this broker knows.
    #[error("unknown configuration key `{key}` (from {source_name})")]
    UnknownKey { key: String, source_name: String },
    /// The value does not parse or is out of range.
    #[error("invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A line of the properties file is not `key=value`.
    #[error("{path}:{line}: expected `key=value`")]
    Syntax { path: String, line: usize },
    /// The properties file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where a property value came from, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// The built-in default.
    Default,
    /// The properties file, environment or a command-line override.
    Static,
}

/// The type of a property, used to validate values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyType {
    /// A 16-bit signed integer with a lower bound.
    Short(i16),
    /// A 32-bit signed integer with a lower bound.
    Int(i32),
    /// A 64-bit signed integer with a lower bound.
    Long(i64),
    /// `true` or `false`.
    Bool,
    /// Free text.
    Text,
    /// A comma-separated list.
    List,
    /// A `host:port` socket address.
    Address,
    /// A fraction between 0 and 1.
    Ratio,
    /// Secret text (a key, a password, a JAAS line): never shown by DescribeConfigs.
    Password,
}

/// One known property: its name, type, default and whether it is secret.
#[derive(Debug)]
pub struct PropertyDef {
    /// Kafka's property name.
    pub name: &'static str,
    /// How the value is validated.
    pub ty: PropertyType,
    /// The default, `None` for "unset" (Kafka's `null`).
    pub default: Option<&'static str>,
    /// Whether Kafka has a default of its own: false for the properties Kafka requires and
    /// Strom defaults so that one command runs a single node. DescribeConfigs lists no
    /// default synonym for those, as Kafka lists none.
    pub kafka_default: bool,
}

const fn def(name: &'static str, ty: PropertyType, default: &'static str) -> PropertyDef {
    PropertyDef {
        name,
        ty,
        default: Some(default),
        kafka_default: true,
    }
}

/// A property Kafka requires, defaulted for Strom's single node.
const fn single_node(name: &'static str, ty: PropertyType, default: &'static str) -> PropertyDef {
    PropertyDef {
        name,
        ty,
        default: Some(default),
        kafka_default: false,
    }
}

const fn unset(name: &'static str, ty: PropertyType) -> PropertyDef {
    PropertyDef {
        name,
        ty,
        default: None,
        kafka_default: true,
    }
}

use PropertyType::*;

/// Every broker property Strom understands, with Kafka's defaults.
pub static PROPERTIES: &[PropertyDef] = &[
    single_node("node.id", Int(0), "1"),
    single_node("process.roles", List, "broker,controller"),
    def(
        "listeners",
        List,
        "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093",
    ),
    unset("advertised.listeners", List),
    unset("broker.rack", Text),
    single_node("controller.listener.names", List, "CONTROLLER"),
    unset("inter.broker.listener.name", Text),
    def("security.inter.broker.protocol", Text, "PLAINTEXT"),
    def(
        "listener.security.protocol.map",
        Text,
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
    ),
    def("ssl.keystore.type", Text, "PEM"),
    unset("ssl.keystore.location", Text),
    unset("ssl.keystore.key", Password),
    unset("ssl.keystore.certificate.chain", Password),
    def("ssl.truststore.type", Text, "PEM"),
    unset("ssl.truststore.location", Text),
    unset("ssl.truststore.certificates", Password),
    def("ssl.client.auth", Text, "none"),
    def("ssl.principal.mapping.rules", Text, "DEFAULT"),
    def("ssl.endpoint.identification.algorithm", Text, "https"),
    def("ssl.reload.interval.ms", Long(1), "10000"),
    def("sasl.enabled.mechanisms", List, "SCRAM-SHA-256,SCRAM-SHA-512"),
    def("sasl.mechanism.inter.broker.protocol", Text, "PLAIN"),
    def("sasl.server.max.receive.size", Int(1), "524288"),
    def("connections.max.reauth.ms", Long(0), "0"),
    def("authorizer.class.name", Text, ""),
    unset("super.users", Text),
    def("allow.everyone.if.no.acl.found", Bool, "false"),
    def("controller.quorum.voters", List, "1@localhost:9093"),
    def("controller.quorum.election.timeout.ms", Int(50), "500"),
    single_node("log.dirs", List, "./data"),
    def("num.partitions", Int(1), "1"),
    def("max.partitions", Int(1), "2147483647"),
    def("max.broker.partitions", Int(1), "5000"),
    def("default.replication.factor", Int(1), "1"),
    def("min.insync.replicas", Int(1), "1"),
    def("auto.create.topics.enable", Bool, "true"),
    def("delete.topic.enable", Bool, "true"),
    def("log.segment.bytes", Int(14), "1073741824"),
    unset("log.roll.ms", Long(1)),
    def("log.roll.hours", Int(1), "168"),
    unset("log.roll.jitter.ms", Long(0)),
    def("log.roll.jitter.hours", Int(0), "0"),
    unset("log.retention.ms", Long(-1)),
    unset("log.retention.minutes", Int(-1)),
    def("log.retention.hours", Int(-1), "168"),
    def("log.retention.bytes", Long(-1), "-1"),
    def("log.local.retention.ms", Long(-2), "-2"),
    def("log.local.retention.bytes", Long(-2), "-2"),
    def("log.segment.delete.delay.ms", Long(0), "60000"),
    def("log.index.size.max.bytes", Int(4), "10485760"),
    def("log.preallocate", Bool, "false"),
    def(
        "log.message.timestamp.before.max.ms",
        Long(0),
        "9223372036854775807",
    ),
    def("log.message.timestamp.after.max.ms", Long(0), "3600000"),
    def("log.retention.check.interval.ms", Long(1), "300000"),
    def("log.index.interval.bytes", Int(0), "4096"),
    def("log.cleanup.policy", List, "delete"),
    def("log.message.timestamp.type", Text, "CreateTime"),
    def("message.max.bytes", Int(0), "1048588"),
    def("socket.request.max.bytes", Int(1), "104857600"),
    def("max.connections", Int(0), "2147483647"),
    def("max.connections.per.ip", Int(0), "2147483647"),
    def("connections.max.idle.ms", Long(1), "600000"),
    def("quota.window.num", Int(1), "11"),
    def("quota.window.size.seconds", Int(1), "1"),
    def("request.read.timeout.ms", Long(1), "30000"),
    def("queued.max.request.bytes", Long(-1), "536870912"),
    def("fetch.max.bytes", Int(1024), "57671680"),
    def("max.incremental.fetch.session.cache.slots", Int(0), "1000"),
    def("max.request.partition.size.limit", Int(1), "2000"),
    def(
        "log.flush.interval.messages",
        Long(1),
        "9223372036854775807",
    ),
    unset("log.flush.interval.ms", Long(0)),
    def("log.flush.scheduler.interval.ms", Long(1), "1000"),
    def(
        "replica.high.watermark.checkpoint.interval.ms",
        Long(1),
        "5000",
    ),
    def("compression.type", Text, "producer"),
    def("compression.gzip.level", Int(-1), "-1"),
    def("compression.lz4.level", Int(1), "9"),
    def("compression.zstd.level", Int(-131072), "3"),
    def("unclean.leader.election.enable", Bool, "false"),
    def("log.cleaner.delete.retention.ms", Long(0), "86400000"),
    def("log.cleaner.min.compaction.lag.ms", Long(0), "0"),
    def(
        "log.cleaner.max.compaction.lag.ms",
        Long(1),
        "9223372036854775807",
    ),
    def("log.cleaner.min.cleanable.ratio", Ratio, "0.5"),
    def("log.cleaner.backoff.ms", Long(1), "15000"),
    def("metadata.max.snapshot.entries", Long(1), "1000"),
    def("offsets.topic.num.partitions", Int(1), "50"),
    def("offsets.topic.replication.factor", Short(1), "3"),
    def("offsets.topic.segment.bytes", Int(14), "104857600"),
    def("offsets.retention.minutes", Int(1), "10080"),
    def("offsets.retention.check.interval.ms", Long(1), "600000"),
    def("producer.id.expiration.ms", Int(1), "86400000"),
    def("transaction.state.log.num.partitions", Int(1), "50"),
    def("transaction.state.log.replication.factor", Short(1), "3"),
    def("transaction.state.log.min.isr", Int(1), "2"),
    def("transaction.state.log.segment.bytes", Int(14), "104857600"),
    def("transaction.max.timeout.ms", Int(1), "900000"),
    def("transactional.id.expiration.ms", Int(1), "604800000"),
    def(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        Int(1),
        "10000",
    ),
    def(
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        Int(1),
        "3600000",
    ),
    def("group.initial.rebalance.delay.ms", Int(0), "3000"),
    def("group.min.session.timeout.ms", Int(0), "6000"),
    def("group.max.session.timeout.ms", Int(0), "1800000"),
    def("group.max.size", Int(1), "2147483647"),
    def("broker.session.timeout.ms", Int(1), "9000"),
    def("broker.heartbeat.interval.ms", Int(1), "2000"),
    def("replica.lag.time.max.ms", Long(1), "30000"),
    def("replica.fetch.max.bytes", Int(1024), "1048576"),
    def("replica.fetch.wait.max.ms", Int(0), "500"),
    def("replica.fetch.backoff.ms", Int(0), "1000"),
    def("auto.leader.rebalance.enable", Bool, "true"),
    def("leader.imbalance.check.interval.seconds", Long(1), "300"),
    def("metrics.listener", Address, "0.0.0.0:9644"),
];

/// Looks up a property definition by name.
pub fn property(name: &str) -> Option<&'static PropertyDef> {
    PROPERTIES.iter().find(|p| p.name == name)
}

/// A listener's security protocol, from `listener.security.protocol.map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS; the principal comes from the client certificate, if any.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Whether connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A listener from `listeners`: name, bind host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, for example `PLAINTEXT`.
    pub name: String,
    /// Host to bind (empty means all interfaces).
    pub host: String,
    /// TCP port (0 picks a free one).
    pub port: u16,
    /// From `listener.security.protocol.map`.
    pub protocol: SecurityProtocol,
}

impl Listener {
    /// The address to bind.
    pub fn bind_address(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }
}

/// One entry of `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The controller's node id.
    pub id: i32,
    /// Its controller listener host.
    pub host: String,
    /// Its controller listener port.
    pub port: u16,
}

/// A process role from `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves clients and stores partitions.
    Broker,
    /// A voter of the metadata quorum.
    Controller,
}

/// The properties a listener may override with Kafka's `listener.name.<name>.` prefix.
const LISTENER_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.principal.mapping.rules",
    "ssl.endpoint.identification.algorithm",
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
];

/// The SASL mechanisms a broker serves, as `sasl.enabled.mechanisms` names them.
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The value of `authorizer.class.name` that turns on the ACL authorizer.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

/// The validated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<&'static str, (Option<String>, ValueSource)>,
    /// `listener.name.<listener>.<key>` overrides, keyed by (lower-case listener, key).
    listener_values: BTreeMap<(String, String), String>,
    /// `node.id`.
    pub node_id: i32,
    /// `process.roles`.
    pub roles: Vec<Role>,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`, defaulting to the non-controller listeners.
    pub advertised_listeners: Vec<Listener>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `inter.broker.listener.name`, or the listener of `security.inter.broker.protocol`.
    pub inter_broker_listener: String,
    /// `listener.security.protocol.map`.
    protocols: BTreeMap<String, SecurityProtocol>,
    /// `controller.quorum.voters`.
    pub voters: Vec<Voter>,
    /// `log.dirs` (the first directory holds the metadata log).
    pub log_dirs: Vec<PathBuf>,
    /// `metrics.listener`.
    pub metrics_listener: SocketAddr,
}

impl BrokerConfig {
    /// Builds the configuration from all sources; `file` is an optional `server.properties`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut raw: BTreeMap<String, (String, String)> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                path: path.display().to_string(),
                source,
            })?;
            for (key, value) in parse_properties(&text, &path.display().to_string())? {
                raw.insert(key, (value, path.display().to_string()));
            }
        }
        let env: BTreeMap<String, String> = env.into_iter().collect();
        for (name, value) in &env {
            if let Some(rest) = name.strip_prefix("STROM_") {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                if property(&key).is_none() && (is_service_link(name) || is_tool_variable(name)) {
                    continue;
                }
                raw.insert(key, (value.clone(), format!("environment variable {name}")));
            }
        }
        for entry in overrides {
            let (key, value) = entry.split_once('=').ok_or(ConfigError::Syntax {
                path: "--override".into(),
                line: 1,
            })?;
            raw.insert(
                key.trim().to_string(),
                (value.trim().to_string(), "--override".into()),
            );
        }
        crate::config_provider::resolve(&mut raw, &env)?;
        Self::from_map(raw)
    }

    /// Builds the configuration from `key -> (value, where it came from)`.
    fn from_map(raw: BTreeMap<String, (String, String)>) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<&'static str, (Option<String>, ValueSource)> = PROPERTIES
            .iter()
            .map(|p| {
                (
                    p.name,
                    (p.default.map(str::to_string), ValueSource::Default),
                )
            })
            .collect();
        let mut listener_values = BTreeMap::new();
        for (key, (value, source_name)) in raw {
            if let Some(rest) = key.strip_prefix("listener.name.") {
                let (listener, name) = listener_key(&key, rest, &source_name)?;
                if let Some(def) = property(&name) {
                    validate_value(def, &value)
                        .map_err(|_| invalid(&key, &value, "not a valid value for this key"))?;
                }
                listener_values.insert((listener, name), value);
                continue;
            }
            let def = property(&key).ok_or_else(|| ConfigError::UnknownKey {
                key: key.clone(),
                source_name,
            })?;
            validate_value(def, &value)?;
            values.insert(def.name, (Some(value), ValueSource::Static));
        }
        let mut config = BrokerConfig {
            values,
            listener_values,
            node_id: 0,
            roles: Vec::new(),
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            controller_listener_names: Vec::new(),
            inter_broker_listener: String::new(),
            protocols: BTreeMap::new(),
            voters: Vec::new(),
            log_dirs: Vec::new(),
            metrics_listener: "0.0.0.0:9644".parse().expect("literal address"),
        };
        config.derive()?;
        Ok(config)
    }

    fn derive(&mut self) -> Result<(), ConfigError> {
        self.node_id = self.int("node.id");
        self.roles = self
            .list("process.roles")
            .iter()
            .map(|r| match r.as_str() {
                "broker" => Ok(Role::Broker),
                "controller" => Ok(Role::Controller),
                other => Err(invalid(
                    "process.roles",
                    other,
                    "roles are `broker` and `controller`",
                )),
            })
            .collect::<Result<_, _>>()?;
        if self.roles.is_empty() {
            return Err(invalid("process.roles", "", "at least one role is needed"));
        }
        self.listeners = parse_listeners("listeners", &self.list("listeners"))?;
        self.controller_listener_names = self.list("controller.listener.names");
        let protocols = self.protocol_map()?;
        self.advertised_listeners = match self.get("advertised.listeners") {
            Some(_) => parse_listeners("advertised.listeners", &self.list("advertised.listeners"))?,
            None => self
                .listeners
                .iter()
                .filter(|l| !self.controller_listener_names.contains(&l.name))
                .map(|l| Listener {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" {
                        "localhost".into()
                    } else {
                        l.host.clone()
                    },
                    ..l.clone()
                })
                .collect(),
        };
        for l in self
            .listeners
            .iter_mut()
            .chain(self.advertised_listeners.iter_mut())
        {
            l.protocol = *protocols.get(&l.name).ok_or_else(|| {
                invalid(
                    "listener.security.protocol.map",
                    &self.values["listener.security.protocol.map"]
                        .0
                        .clone()
                        .unwrap_or_default(),
                    &format!("listener {} has no security protocol here", l.name),
                )
            })?;
        }
        self.inter_broker_listener = self.derive_inter_broker_listener()?;
        self.protocols = protocols;
        self.check_security()?;
        self.voters = parse_voters(&self.list("controller.quorum.voters"))?;
        self.log_dirs = self
            .list("log.dirs")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        if self.log_dirs.is_empty() {
            return Err(invalid("log.dirs", "", "at least one directory is needed"));
        }
        let metrics = self.string("metrics.listener");
        self.metrics_listener = metrics
            .parse()
            .map_err(|_| invalid("metrics.listener", &metrics, "expected host:port"))?;

        let queued = self.long("queued.max.request.bytes");
        if queued > 0 && queued < self.long("socket.request.max.bytes") {
            return Err(invalid(
                "queued.max.request.bytes",
                &queued.to_string(),
                "must be -1 or at least socket.request.max.bytes, or the largest request could never be read",
            ));
        }
        if self.has_role(Role::Broker) && self.client_listener().is_none() {
            return Err(invalid(
                "listeners",
                &self.string("listeners"),
                "a broker needs a listener that is not a controller listener",
            ));
        }
        if self.has_role(Role::Controller) {
            if self.controller_listener().is_none() {
                return Err(invalid(
                    "controller.listener.names",
                    &self.string("controller.listener.names"),
                    "a controller needs one of these names among `listeners`",
                ));
            }
            if !self.voters.iter().any(|v| v.id == self.node_id) {
                return Err(invalid(
                    "controller.quorum.voters",
                    &self.string("controller.quorum.voters"),
                    &format!(
                        "this node has the controller role but node.id {} is not a voter",
                        self.node_id
                    ),
                ));
            }
        } else if self.voters.iter().any(|v| v.id == self.node_id) {
            return Err(invalid(
                "process.roles",
                &self.string("process.roles"),
                &format!(
                    "node.id {} is a voter in controller.quorum.voters but has no controller role",
                    self.node_id
                ),
            ));
        }
        Ok(())
    }

    /// `listener.security.protocol.map` as listener name -> protocol.
    fn protocol_map(&self) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
        let key = "listener.security.protocol.map";
        self.list(key)
            .iter()
            .map(|entry| {
                let (name, protocol) = entry
                    .split_once(':')
                    .ok_or_else(|| invalid(key, entry, "expected LISTENER:PROTOCOL"))?;
                let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
                    invalid(
                        key,
                        entry,
                        "protocols are PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL",
                    )
                })?;
                Ok((name.to_string(), protocol))
            })
            .collect()
    }

    /// Kafka's rule: `inter.broker.listener.name` if set, else the listener whose name is
    /// `security.inter.broker.protocol`. Only brokers need one.
    fn derive_inter_broker_listener(&self) -> Result<String, ConfigError> {
        let protocol_key = "security.inter.broker.protocol";
        let explicit_protocol = self.source(protocol_key) == ValueSource::Static;
        let (key, name) = match self.get("inter.broker.listener.name") {
            Some(name) if explicit_protocol => {
                return Err(invalid(
                    "inter.broker.listener.name",
                    name,
                    "only one of inter.broker.listener.name and security.inter.broker.protocol may be set",
                ))
            }
            Some(name) => ("inter.broker.listener.name", name.to_string()),
            None => (protocol_key, self.string(protocol_key)),
        };
        let known = self
            .advertised_listeners
            .iter()
            .any(|l| l.name == name && !self.controller_listener_names.contains(&l.name));
        if self.has_role(Role::Broker) && !known {
            if self.source(key) == ValueSource::Static {
                return Err(invalid(
                    key,
                    &name,
                    "not one of the broker's advertised listeners",
                ));
            }
            // Neither key set and no PLAINTEXT listener: the first client listener (Kafka
            // would refuse to start).
            return Ok(self.client_listener().map_or(name, |l| l.name.clone()));
        }
        Ok(name)
    }

    /// Checks the security properties a listener will use, so a mistake stops start-up.
    fn check_security(&self) -> Result<(), ConfigError> {
        for l in &self.listeners {
            let value = |key: &str| self.listener_value(&l.name, key).unwrap_or_default();
            let prefixed = |key: &str| {
                if self
                    .listener_values
                    .contains_key(&(l.name.to_lowercase(), key.to_string()))
                {
                    format!("listener.name.{}.{key}", l.name.to_lowercase())
                } else {
                    key.to_string()
                }
            };
            for key in ["ssl.keystore.type", "ssl.truststore.type"] {
                if value(key) != "PEM" {
                    return Err(invalid(
                        &prefixed(key),
                        value(key),
                        "only PEM key and trust stores are supported",
                    ));
                }
            }
            if !matches!(value("ssl.client.auth"), "required" | "requested" | "none") {
                return Err(invalid(
                    &prefixed("ssl.client.auth"),
                    value("ssl.client.auth"),
                    "must be `required`, `requested` or `none`",
                ));
            }
            if value("connections.max.reauth.ms") != "0" {
                return Err(invalid(
                    &prefixed("connections.max.reauth.ms"),
                    value("connections.max.reauth.ms"),
                    "re-authentication (KIP-368) is not supported: leave it 0, sessions do not expire",
                ));
            }
            let mechanisms = split_list(value("sasl.enabled.mechanisms"));
            if let Some(m) = mechanisms
                .iter()
                .find(|m| !SASL_MECHANISMS.contains(&m.as_str()))
            {
                return Err(invalid(
                    &prefixed("sasl.enabled.mechanisms"),
                    m,
                    "supported mechanisms are PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512",
                ));
            }
            if l.protocol.sasl() && mechanisms.is_empty() {
                return Err(invalid(
                    &prefixed("sasl.enabled.mechanisms"),
                    "",
                    &format!("SASL listener {} needs at least one mechanism", l.name),
                ));
            }
            let endpoint = value("ssl.endpoint.identification.algorithm");
            if !matches!(endpoint, "https" | "HTTPS" | "") {
                return Err(invalid(
                    &prefixed("ssl.endpoint.identification.algorithm"),
                    endpoint,
                    "must be `https` or empty",
                ));
            }
        }
        let authorizer = self.string("authorizer.class.name");
        if !authorizer.is_empty() && authorizer != STANDARD_AUTHORIZER {
            return Err(invalid(
                "authorizer.class.name",
                &authorizer,
                &format!("the one authorizer is {STANDARD_AUTHORIZER} (or empty for none)"),
            ));
        }
        Ok(())
    }

    /// A property as one listener sees it: its `listener.name.<name>.<key>` override, else
    /// the broker-wide value.
    pub fn listener_value(&self, listener: &str, key: &str) -> Option<&str> {
        self.listener_override(listener, key)
            .or_else(|| self.get(key))
    }

    /// Only a listener's own `listener.name.<name>.<key>` value.
    pub fn listener_override(&self, listener: &str, key: &str) -> Option<&str> {
        self.listener_values
            .get(&(listener.to_lowercase(), key.to_string()))
            .map(String::as_str)
    }

    /// `listener.name.<listener>.<mechanism>.sasl.jaas.config`, Kafka's per-mechanism JAAS line.
    pub fn listener_jaas(&self, listener: &str, mechanism: &str) -> Option<&str> {
        self.listener_values
            .get(&(
                listener.to_lowercase(),
                format!("{}.sasl.jaas.config", mechanism.to_lowercase()),
            ))
            .map(String::as_str)
    }

    /// The security protocol `listener.security.protocol.map` gives a listener name (the
    /// controller listener's too, on nodes that only connect to it).
    pub fn protocol(&self, listener: &str) -> Option<SecurityProtocol> {
        self.protocols.get(listener).copied()
    }

    /// A listener by name.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Every listener clients use (all but the controller listeners).
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .iter()
            .filter(|l| !self.controller_listener_names.contains(&l.name))
    }

    /// Whether `process.roles` includes `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The first listener clients use (not a controller listener).
    pub fn client_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| !self.controller_listener_names.contains(&l.name))
    }

    /// The listener the metadata quorum uses.
    pub fn controller_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| self.controller_listener_names.contains(&l.name))
    }

    /// The raw value of a property (`None` when unset).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|(v, _)| v.as_deref())
    }

    /// Where the value of `key` came from.
    pub fn source(&self, key: &str) -> ValueSource {
        self.values
            .get(key)
            .map(|(_, s)| *s)
            .unwrap_or(ValueSource::Default)
    }

    /// Every property with its current value, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, Option<&str>, ValueSource)> {
        self.values.iter().map(|(k, (v, s))| (*k, v.as_deref(), *s))
    }

    /// A property as text; panics on unknown keys, which are a programming error.
    pub fn string(&self, key: &str) -> String {
        self.get(key).unwrap_or_default().to_string()
    }

    /// An `Int` property (validated at load time).
    pub fn int(&self, key: &str) -> i32 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("property {key} is not a validated int"))
    }

    /// A `Long` property, `None` when unset.
    pub fn long_opt(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// A `Long` property (validated at load time).
    pub fn long(&self, key: &str) -> i64 {
        self.long_opt(key)
            .unwrap_or_else(|| panic!("property {key} is not a validated long"))
    }

    /// A `Bool` property.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }

    /// A `List` property, split on commas with blanks dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        split_list(self.get(key).unwrap_or_default())
    }

    /// Replaces a listener's port after binding port 0 (tests use ephemeral ports).
    pub fn set_bound_port(&mut self, listener_name: &str, port: u16) {
        for l in self
            .listeners
            .iter_mut()
            .chain(self.advertised_listeners.iter_mut())
        {
            if l.name == listener_name && l.port == 0 {
                l.port = port;
            }
        }
        if let Some(own) = self.voters.iter_mut().find(|v| v.id == self.node_id) {
            if own.port == 0 {
                own.port = port;
            }
        }
    }
}

/// Whether an environment variable has the shape of the ones Kubernetes injects for every
/// Service (`<SVC>_SERVICE_HOST`, `<SVC>_PORT_9092_TCP_ADDR`, ...): a Service named `strom-*`
/// must not break start-up, as `KAFKA_PORT` once did for Kafka's images.
fn is_service_link(name: &str) -> bool {
    let is_proto = |s: &str| matches!(s, "TCP" | "UDP" | "SCTP");
    if name.ends_with("_SERVICE_HOST") || name.ends_with("_SERVICE_PORT") {
        return true;
    }
    if name.contains("_SERVICE_PORT_") {
        return true;
    }
    let parts: Vec<&str> = name.split('_').collect();
    match parts.as_slice() {
        [.., "PORT"] => true,
        [.., "PORT", number, proto] => number.parse::<u16>().is_ok() && is_proto(proto),
        [.., "PORT", number, proto, "PROTO" | "ADDR"] => {
            number.parse::<u16>().is_ok() && is_proto(proto)
        }
        _ => false,
    }
}

/// Whether an environment variable is one of the project's own scripts' settings
/// (`STROM_CACHE`, the end-to-end and fuzzing knobs), which a developer may have exported in
/// the shell a broker starts from.
fn is_tool_variable(name: &str) -> bool {
    matches!(
        name,
        "STROM_CACHE"
            | "STROM_E2E_TARGET"
            | "STROM_IMAGE"
            | "STROM_OPERATOR_IMAGE"
            | "STROM_CLIENT_IMAGE"
            | "STROM_LAB"
    ) || name.starts_with("STROM_FUZZ_")
}

/// Splits a Kafka list value (`a, b,c`) into its items, dropping blanks.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Checks `value` against the property's type.
pub fn validate_value(def: &PropertyDef, value: &str) -> Result<(), ConfigError> {
    let value = value.trim();
    let fail = |reason: String| invalid(def.name, value, &reason);
    match def.ty {
        Short(min) => match value.parse::<i16>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(fail(format!("must be at least {min}"))),
            Err(_) => Err(fail("not a 16-bit integer".into())),
        },
        Int(min) => match value.parse::<i32>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(fail(format!("must be at least {min}"))),
            Err(_) => Err(fail("not a 32-bit integer".into())),
        },
        Long(min) => match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => Err(fail(format!("must be at least {min}"))),
            Err(_) => Err(fail("not a 64-bit integer".into())),
        },
        Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(fail("must be `true` or `false`".into())),
        },
        Ratio => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(fail("must be a number between 0 and 1".into())),
        },
        Address => value
            .parse::<SocketAddr>()
            .map(|_| ())
            .map_err(|_| fail("expected host:port with a numeric IP".into())),
        Text | List | Password => Ok(()),
    }
}

/// Parses Java-style `key=value` lines; `#` and `!` start comments.
pub fn parse_properties(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .or_else(|| line.split_once(':'))
            .ok_or(ConfigError::Syntax {
                path: origin.into(),
                line: i + 1,
            })?;
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// Splits `listener.name.<listener>.<key>` (given after its prefix) and checks that the key
/// is one a listener may override.
fn listener_key(
    full: &str,
    rest: &str,
    source_name: &str,
) -> Result<(String, String), ConfigError> {
    let unknown = || ConfigError::UnknownKey {
        key: full.to_string(),
        source_name: source_name.to_string(),
    };
    let (listener, key) = rest.split_once('.').ok_or_else(unknown)?;
    let jaas = key
        .strip_suffix(".sasl.jaas.config")
        .is_some_and(|mechanism| {
            SASL_MECHANISMS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(mechanism))
        });
    if listener.is_empty() || !(jaas || LISTENER_KEYS.contains(&key)) {
        return Err(unknown());
    }
    Ok((listener.to_lowercase(), key.to_string()))
}

fn parse_listeners(key: &str, entries: &[String]) -> Result<Vec<Listener>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let (name, address) = entry
                .split_once("://")
                .ok_or_else(|| invalid(key, entry, "expected NAME://host:port"))?;
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| invalid(key, entry, "expected NAME://host:port"))?;
            let port = port
                .parse()
                .map_err(|_| invalid(key, entry, "port is not a number from 0 to 65535"))?;
            Ok(Listener {
                name: name.to_string(),
                host: host.trim_matches(['[', ']']).to_string(),
                port,
                protocol: SecurityProtocol::default(),
            })
        })
        .collect()
}

fn parse_voters(entries: &[String]) -> Result<Vec<Voter>, ConfigError> {
    let key = "controller.quorum.voters";
    let mut voters: Vec<Voter> = Vec::new();
    for entry in entries {
        let bad = || invalid(key, entry, "expected id@host:port");
        let (id, address) = entry.split_once('@').ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let id: i32 = id.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        if voters.iter().any(|v| v.id == id) {
            return Err(invalid(key, entry, "voter id appears twice"));
        }
        voters.push(Voter {
            id,
            host: host.to_string(),
            port,
        });
    }
    if voters.is_empty() {
        return Err(invalid(key, "", "at least one voter is needed"));
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: &str,
        env: &[(&str, &str)],
        overrides: &[&str],
    ) -> Result<BrokerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, file).unwrap();
        BrokerConfig::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn defaults_are_a_single_combined_node() {
        let c = BrokerConfig::load(None, Vec::new(), &[]).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.roles, vec![Role::Broker, Role::Controller]);
        assert_eq!(
            c.client_listener().unwrap().bind_address(),
            "localhost:9092"
        );
        assert_eq!(c.controller_listener().unwrap().port, 9093);
        assert_eq!(c.advertised_listeners.len(), 1);
        assert_eq!(c.log_dirs, vec![PathBuf::from("./data")]);
        assert_eq!(c.source("num.partitions"), ValueSource::Default);
        assert_eq!(c.metrics_listener.port(), 9644);
    }

    #[test]
    fn later_sources_win() {
        let c = load(
            "# comment\nnum.partitions=3\nlog.dirs=/from/file\nlog.segment.bytes = 2048\n",
            &[
                ("STROM_LOG_DIRS", "/from/env"),
                ("STROM_NUM_PARTITIONS", "4"),
                ("OTHER", "x"),
            ],
            &["num.partitions=5"],
        )
        .unwrap();
        assert_eq!(c.int("num.partitions"), 5);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/from/env")]);
        assert_eq!(c.int("log.segment.bytes"), 2048);
        assert_eq!(c.source("log.segment.bytes"), ValueSource::Static);
    }

    #[test]
    fn kubernetes_service_links_and_the_projects_tool_variables_are_not_config() {
        let links = [
            ("STROM_BOOTSTRAP_SERVICE_HOST", "10.96.0.5"),
            ("STROM_BOOTSTRAP_SERVICE_PORT", "9092"),
            ("STROM_BOOTSTRAP_SERVICE_PORT_KAFKA", "9092"),
            ("STROM_BOOTSTRAP_PORT", "tcp://10.96.0.5:9092"),
            ("STROM_BOOTSTRAP_PORT_9092_TCP", "tcp://10.96.0.5:9092"),
            ("STROM_BOOTSTRAP_PORT_9092_TCP_ADDR", "10.96.0.5"),
            ("STROM_BOOTSTRAP_PORT_9092_TCP_PROTO", "tcp"),
        ];
        let c = load("", &links, &[]).unwrap();
        assert_eq!(c.int("num.partitions"), 1);
        let tools = [
            ("STROM_CACHE", "/home/dev/.cache/strom"),
            ("STROM_E2E_TARGET", "local"),
            ("STROM_FUZZ_ARGS", "-max_len=4096"),
        ];
        load("", &tools, &[]).unwrap();
        let err = load("", &[("STROM_NO_SUCH_KEY", "1")], &[]).unwrap_err();
        assert!(err.to_string().contains("STROM_NO_SUCH_KEY"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_source() {
        let err = load("no.such.key=1\n", &[], &[]).unwrap_err().to_string();
        assert!(err.contains("no.such.key"), "{err}");
        assert!(err.contains("server.properties"), "{err}");
    }

    #[test]
    fn bad_values_name_key_and_reason() {
        let err = load("", &[], &["num.partitions=zero"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num.partitions") && err.contains("not a 32-bit integer"),
            "{err}"
        );
        let err = load("", &[], &["num.partitions=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
        let err = load("", &[], &["auto.create.topics.enable=yes"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto.create.topics.enable"), "{err}");
        let err = load("", &[], &["listeners=localhost:9092"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listeners") && err.contains("NAME://"),
            "{err}"
        );
        let err = load("garbage line\n", &[], &[]).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }

    #[test]
    fn voters_are_validated() {
        let err = load("", &[], &["controller.quorum.voters=1@host"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("controller.quorum.voters") && err.contains("id@host:port"),
            "{err}"
        );
        let err = load("", &[], &["controller.quorum.voters=2@h:1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a voter"), "{err}");
        let err = load("", &[], &["process.roles=broker"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no controller role"), "{err}");
        let c = load("", &[], &["controller.quorum.voters=1@a:1,2@b:2,3@c:3"]).unwrap();
        assert_eq!(
            c.voters[2],
            Voter {
                id: 3,
                host: "c".into(),
                port: 3
            }
        );
    }

    #[test]
    fn advertised_listeners_default_to_client_listeners() {
        let c = load(
            "",
            &[],
            &["listeners=PLAINTEXT://:19092,CONTROLLER://:19093"],
        )
        .unwrap();
        assert_eq!(
            c.advertised_listeners,
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 19092,
                protocol: SecurityProtocol::Plaintext,
            }]
        );
        assert_eq!(c.client_listener().unwrap().bind_address(), "0.0.0.0:19092");
    }

    #[test]
    fn security_protocols_and_listener_overrides() {
        let c = load(
            "",
            &[],
            &[
                "listeners=SSL://:9094,SASL_SSL://:9095,CONTROLLER://:9093",
                "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.SASL_SSL.scram-sha-512.sasl.jaas.config=M required a=\"b\";",
                "ssl.client.auth=required",
            ],
        )
        .unwrap();
        let protocols: Vec<_> = c.listeners.iter().map(|l| l.protocol).collect();
        assert_eq!(
            protocols,
            [
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslSsl,
                SecurityProtocol::Plaintext
            ]
        );
        assert_eq!(
            c.listener_value("SASL_SSL", "sasl.enabled.mechanisms"),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(c.listener_value("SSL", "ssl.client.auth"), Some("required"));
        assert_eq!(c.listener_override("SSL", "ssl.client.auth"), None);
        assert!(c.listener_jaas("SASL_SSL", "SCRAM-SHA-512").is_some());
        // No PLAINTEXT listener and neither inter-broker key: the first client listener.
        assert_eq!(c.inter_broker_listener, "SSL");
    }

    #[test]
    fn security_mistakes_name_their_key() {
        let base = "listeners=SSL://:9094,CONTROLLER://:9093";
        for (bad, key) in [
            (
                "listener.name.ssl.ssl.bogus=1",
                "listener.name.ssl.ssl.bogus",
            ),
            (
                "listener.security.protocol.map=SSL:TLS",
                "listener.security.protocol.map",
            ),
            (
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT",
                "listener.security.protocol.map",
            ),
            (
                "inter.broker.listener.name=PLAINTEXT",
                "inter.broker.listener.name",
            ),
            (
                "security.inter.broker.protocol=SASL_SSL",
                "security.inter.broker.protocol",
            ),
            ("ssl.client.auth=sometimes", "ssl.client.auth"),
            (
                "listener.name.ssl.ssl.keystore.type=JKS",
                "listener.name.ssl.ssl.keystore.type",
            ),
            ("sasl.enabled.mechanisms=GSSAPI", "sasl.enabled.mechanisms"),
            (
                "connections.max.reauth.ms=1000",
                "connections.max.reauth.ms",
            ),
            (
                "authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
                "authorizer.class.name",
            ),
        ] {
            let error = load("", &[], &[base, bad]).unwrap_err().to_string();
            assert!(error.contains(key), "{bad}: {error}");
        }
        let both = load(
            "",
            &[],
            &[
                base,
                "inter.broker.listener.name=SSL",
                "security.inter.broker.protocol=SSL",
            ],
        );
        assert!(both.unwrap_err().to_string().contains("only one of"));
    }
}
