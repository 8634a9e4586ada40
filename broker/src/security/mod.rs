//! Authentication and authorization: TLS listeners and outgoing TLS, SASL (PLAIN, SCRAM),
//! principals, and the ACL authorizer, all configured with Kafka's property names.

pub mod acl;
pub mod login;
pub mod principal;
pub mod sasl;
pub mod scram;
pub mod session;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{split_list, BrokerConfig, Role, SecurityProtocol};
use acl::AuthorizerSettings;
use principal::PrincipalMapper;
use sasl::JaasConfig;
use tls::{ClientTls, ServerTls, TlsSettings};

/// A security setting that cannot be used; it names the property.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SecurityError {
    /// The property at fault.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn setting_error(key: impl Into<String>, reason: impl Into<String>) -> SecurityError {
    SecurityError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// How one listener authenticates its connections.
pub struct ListenerSecurity {
    /// The listener name.
    pub name: String,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
    /// The TLS acceptor, for SSL and SASL_SSL.
    pub tls: Option<Arc<ServerTls>>,
    /// Certificate subject to principal name.
    pub mapper: PrincipalMapper,
    /// `sasl.enabled.mechanisms` for this listener.
    pub mechanisms: Vec<String>,
    /// PLAIN users from the listener's JAAS line.
    pub plain_users: BTreeMap<String, String>,
}

impl std::fmt::Debug for ListenerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSecurity")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl ListenerSecurity {
    /// A PLAINTEXT listener: no TLS, no SASL, every connection `User:ANONYMOUS`.
    pub fn plaintext(name: &str) -> Self {
        ListenerSecurity {
            name: name.to_string(),
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            mapper: PrincipalMapper::parse("DEFAULT").expect("DEFAULT is a rule"),
            mechanisms: Vec::new(),
            plain_users: BTreeMap::new(),
        }
    }

    fn new(
        config: &BrokerConfig,
        name: &str,
        protocol: SecurityProtocol,
        settings: TlsSettings,
    ) -> Result<Self, SecurityError> {
        let tls = protocol
            .tls()
            .then(|| tls::server(settings, name))
            .transpose()?;
        let value = |key: &str| config.listener_value(name, key).unwrap_or_default();
        let mapper = PrincipalMapper::parse(value("ssl.principal.mapping.rules"))
            .map_err(|e| setting_error("ssl.principal.mapping.rules", e))?;
        let mechanisms = split_list(value("sasl.enabled.mechanisms"));
        let mut plain_users = BTreeMap::new();
        if protocol.sasl() && mechanisms.iter().any(|m| m == "PLAIN") {
            let key = format!(
                "listener.name.{}.plain.sasl.jaas.config",
                name.to_lowercase()
            );
            let line = config.listener_jaas(name, "PLAIN").ok_or_else(|| {
                setting_error(
                    &key,
                    "PLAIN is enabled on this listener but no JAAS line names its users (user_<name>=\"<password>\")",
                )
            })?;
            plain_users = JaasConfig::parse(line)
                .map_err(|e| setting_error(&key, e))?
                .plain_users();
        }
        Ok(ListenerSecurity {
            name: name.to_string(),
            protocol,
            tls,
            mapper,
            mechanisms,
            plain_users,
        })
    }
}

/// A SASL login this broker makes to other brokers on the inter-broker listener.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    /// The mechanism (`sasl.mechanism.inter.broker.protocol`).
    pub mechanism: String,
    /// `username` of the listener's JAAS line.
    pub username: String,
    /// `password` of the listener's JAAS line.
    pub password: String,
}

/// How the broker's own outgoing connections to one listener of other nodes are secured.
#[derive(Clone, Default)]
pub struct Outgoing {
    /// TLS, when the listener is SSL or SASL_SSL.
    pub tls: Option<Arc<ClientTls>>,
    /// The SASL login, when the listener is SASL_PLAINTEXT or SASL_SSL.
    pub sasl: Option<SaslLogin>,
}

/// Every listener's security, outgoing TLS and the authorizer.
pub struct Security {
    /// By listener name.
    pub listeners: BTreeMap<String, Arc<ListenerSecurity>>,
    /// Replica fetchers' connections to other brokers.
    pub inter_broker: Outgoing,
    /// Connections to the controllers.
    pub controller: Outgoing,
    /// The ACL authorizer, when `authorizer.class.name` names it.
    pub authorizer: Option<Arc<AuthorizerSettings>>,
}

impl Security {
    /// Builds and checks everything the configuration asks for; an error stops start-up.
    pub fn from_config(config: &BrokerConfig) -> Result<Self, SecurityError> {
        let controller_name = config
            .controller_listener_names
            .first()
            .cloned()
            .unwrap_or_default();
        let controller_protocol = config.protocol(&controller_name).unwrap_or_default();
        for name in &config.controller_listener_names {
            if config.protocol(name).unwrap_or_default().sasl() {
                return Err(setting_error(
                    "listener.security.protocol.map",
                    format!("the controller listener {name} must be PLAINTEXT or SSL (mutual TLS)"),
                ));
            }
        }
        let mut listeners = BTreeMap::new();
        for l in &config.listeners {
            let settings = TlsSettings::for_listener(config, &l.name);
            let settings = if config.controller_listener_names.contains(&l.name) {
                settings.requiring_client_certificates()
            } else {
                settings
            };
            listeners.insert(
                l.name.clone(),
                Arc::new(ListenerSecurity::new(
                    config, &l.name, l.protocol, settings,
                )?),
            );
        }
        let controller = Outgoing {
            tls: controller_protocol
                .tls()
                .then(|| {
                    tls::client(
                        TlsSettings::for_listener(config, &controller_name),
                        &controller_name,
                    )
                })
                .transpose()?,
            sasl: None,
        };
        if controller.tls.is_some()
            && !TlsSettings::for_listener(config, &controller_name).has_identity()
        {
            return Err(setting_error(
                "ssl.keystore.location",
                "the controller listener uses mutual TLS: every node needs its own key and certificate",
            ));
        }
        let inter_broker = if config.has_role(Role::Broker) {
            Self::inter_broker(config)?
        } else {
            Outgoing::default()
        };
        let authorizer = (!config.string("authorizer.class.name").is_empty()).then(|| {
            Arc::new(AuthorizerSettings::new(
                config.get("super.users").unwrap_or_default(),
                config.bool("allow.everyone.if.no.acl.found"),
            ))
        });
        Ok(Security {
            listeners,
            inter_broker,
            controller,
            authorizer,
        })
    }

    fn inter_broker(config: &BrokerConfig) -> Result<Outgoing, SecurityError> {
        let name = &config.inter_broker_listener;
        let protocol = config.protocol(name).unwrap_or_default();
        let tls = protocol
            .tls()
            .then(|| tls::client(TlsSettings::for_listener(config, name), name))
            .transpose()?;
        let sasl = if protocol.sasl() {
            let mechanism = config.string("sasl.mechanism.inter.broker.protocol");
            let key = format!(
                "listener.name.{}.{}.sasl.jaas.config",
                name.to_lowercase(),
                mechanism.to_lowercase()
            );
            let line = config.listener_jaas(name, &mechanism).ok_or_else(|| {
                setting_error(
                    &key,
                    "the inter-broker listener uses SASL: its JAAS line needs username and password",
                )
            })?;
            let jaas = JaasConfig::parse(line).map_err(|e| setting_error(&key, e))?;
            match (jaas.options.get("username"), jaas.options.get("password")) {
                (Some(username), Some(password)) => Some(SaslLogin {
                    mechanism,
                    username: username.clone(),
                    password: password.clone(),
                }),
                _ => {
                    return Err(setting_error(
                        &key,
                        "the inter-broker login needs username=\"...\" and password=\"...\"",
                    ))
                }
            }
        } else {
            None
        };
        Ok(Outgoing { tls, sasl })
    }

    /// Every TLS configuration, for the reload task.
    pub fn reloadable(&self) -> (Vec<Arc<ServerTls>>, Vec<Arc<ClientTls>>) {
        let servers = self
            .listeners
            .values()
            .filter_map(|l| l.tls.clone())
            .collect();
        let clients = [&self.inter_broker.tls, &self.controller.tls]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        (servers, clients)
    }
}
