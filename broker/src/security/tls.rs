//! TLS for listeners and for the broker's own outgoing connections (inter-broker replication,
//! the controller quorum), from Kafka's `ssl.*` properties with PEM stores. Key and trust
//! store files are read again when they change, as Kubernetes rotates Secrets in place.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

use super::SecurityError;
use crate::config::{BrokerConfig, SecurityProtocol};

fn tls_error(key: &str, reason: impl std::fmt::Display) -> SecurityError {
    SecurityError {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Where a PEM store comes from: a file, or the property's own text.
#[derive(Debug, Clone)]
enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    fn read(&self, key: &str) -> Result<Vec<u8>, SecurityError> {
        match self {
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| tls_error(key, format!("cannot read {}: {e}", path.display()))),
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// Whether a server asks clients for certificates (`ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate is required.
    Required,
    /// A certificate is asked for; connections without one are anonymous.
    Requested,
    /// No certificate is asked for.
    None,
}

/// The `ssl.*` settings one listener (or one outgoing connection kind) uses.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Key and certificate chain, with the property that named them.
    keystore: Option<(Pem, Option<Pem>, &'static str)>,
    truststore: Option<(Pem, &'static str)>,
    client_auth: ClientAuth,
    verify_hostname: bool,
}

impl TlsSettings {
    /// The settings of `listener`, its `listener.name.<l>.` overrides first.
    pub fn for_listener(config: &BrokerConfig, listener: &str) -> Self {
        let protocol = config.protocol(listener).unwrap_or_default();
        // KIP-684: on SASL_SSL only the listener's own setting asks for certificates.
        let client_auth = if protocol == SecurityProtocol::SaslSsl {
            config.listener_override(listener, "ssl.client.auth")
        } else {
            config.listener_value(listener, "ssl.client.auth")
        };
        let value = |key: &str| config.listener_value(listener, key).map(str::to_string);
        let keystore = match (
            value("ssl.keystore.location"),
            value("ssl.keystore.key"),
            value("ssl.keystore.certificate.chain"),
        ) {
            (Some(path), _, _) => Some((Pem::File(path.into()), None, "ssl.keystore.location")),
            (None, Some(key), chain) => Some((
                Pem::Inline(key),
                Some(Pem::Inline(chain.unwrap_or_default())),
                "ssl.keystore.key",
            )),
            _ => None,
        };
        let truststore = match (
            value("ssl.truststore.location"),
            value("ssl.truststore.certificates"),
        ) {
            (Some(path), _) => Some((Pem::File(path.into()), "ssl.truststore.location")),
            (None, Some(text)) => Some((Pem::Inline(text), "ssl.truststore.certificates")),
            _ => None,
        };
        TlsSettings {
            keystore,
            truststore,
            client_auth: match client_auth {
                Some("required") => ClientAuth::Required,
                Some("requested") => ClientAuth::Requested,
                _ => ClientAuth::None,
            },
            verify_hostname: !value("ssl.endpoint.identification.algorithm")
                .unwrap_or_default()
                .is_empty(),
        }
    }

    /// The same settings, with client certificates required (the controller listener).
    pub fn requiring_client_certificates(mut self) -> Self {
        self.client_auth = ClientAuth::Required;
        self
    }

    /// Whether a key and certificate are configured.
    pub fn has_identity(&self) -> bool {
        self.keystore.is_some()
    }

    /// The files these settings read, for change detection.
    fn files(&self) -> Vec<PathBuf> {
        let keystore = self.keystore.iter().map(|(pem, _, _)| pem);
        let truststore = self.truststore.iter().map(|(pem, _)| pem);
        keystore
            .chain(truststore)
            .filter_map(|pem| match pem {
                Pem::File(path) => Some(path.clone()),
                Pem::Inline(_) => None,
            })
            .collect()
    }

    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, SecurityError> {
        let Some((key_pem, chain_pem, key)) = &self.keystore else {
            return Ok(None);
        };
        let key_bytes = key_pem.read(key)?;
        let chain_bytes = match chain_pem {
            Some(chain) => chain.read("ssl.keystore.certificate.chain")?,
            None => key_bytes.clone(),
        };
        let chain_key = if chain_pem.is_some() {
            "ssl.keystore.certificate.chain"
        } else {
            key
        };
        let chain = CertificateDer::pem_slice_iter(&chain_bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(chain_key, format!("bad PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(tls_error(
                chain_key,
                "no certificate (BEGIN CERTIFICATE) found",
            ));
        }
        let private_key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|e| tls_error(key, format!("no usable private key: {e}")))?;
        Ok(Some((chain, private_key)))
    }

    fn roots(&self) -> Result<Option<Arc<RootCertStore>>, SecurityError> {
        let Some((pem, key)) = &self.truststore else {
            return Ok(None);
        };
        let bytes = pem.read(key)?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| tls_error(key, format!("bad PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| tls_error(key, format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(tls_error(
                key,
                "no CA certificate (BEGIN CERTIFICATE) found",
            ));
        }
        Ok(Some(Arc::new(roots)))
    }

    /// The server side: this listener's certificate, and client certificates checked against
    /// the trust store as `ssl.client.auth` asks.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, SecurityError> {
        let (chain, key) = self.identity()?.ok_or_else(|| {
            tls_error(
                "ssl.keystore.location",
                "a TLS listener needs a key and certificate (ssl.keystore.location, or ssl.keystore.key and ssl.keystore.certificate.chain)",
            )
        })?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("ssl.enabled.protocols", e))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let roots = self.roots()?.ok_or_else(|| {
                    tls_error(
                        "ssl.truststore.location",
                        "client certificates are checked against a trust store: set ssl.truststore.location or ssl.truststore.certificates",
                    )
                })?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| tls_error("ssl.truststore.location", e))?,
                )
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| tls_error("ssl.keystore.location", e))?;
        Ok(Arc::new(config))
    }

    /// The client side: servers checked against the trust store (and their name, unless
    /// `ssl.endpoint.identification.algorithm` is empty); this node's certificate presented
    /// when it has one.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, SecurityError> {
        let roots = self.roots()?.ok_or_else(|| {
            tls_error(
                "ssl.truststore.location",
                "outgoing TLS connections check the server against a trust store: set ssl.truststore.location or ssl.truststore.certificates",
            )
        })?;
        let provider = provider();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| tls_error("ssl.truststore.location", e))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("ssl.enabled.protocols", e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier {
                inner: verifier,
                check_name: self.verify_hostname,
            }));
        let config = match self.identity()? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error("ssl.keystore.location", e))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The WebPKI check, with the name check left out when hostname verification is off.
#[derive(Debug)]
struct ServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS configuration that is rebuilt when the files it was read from change.
pub struct Reloading<T> {
    settings: TlsSettings,
    build: fn(&TlsSettings) -> Result<T, SecurityError>,
    current: RwLock<(T, Vec<Stamp>)>,
    what: String,
}

/// What identifies one version of a file: modification time, size and inode (a Secret update
/// swaps a symlink to a new file).
type Stamp = Option<(SystemTime, u64, u64)>;

fn modified(files: &[PathBuf]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

impl<T: Clone> Reloading<T> {
    fn new(
        settings: TlsSettings,
        build: fn(&TlsSettings) -> Result<T, SecurityError>,
        what: String,
    ) -> Result<Arc<Self>, SecurityError> {
        let stamps = modified(&settings.files());
        let value = build(&settings)?;
        Ok(Arc::new(Reloading {
            settings,
            build,
            current: RwLock::new((value, stamps)),
            what,
        }))
    }

    /// The configuration now in force.
    pub fn get(&self) -> T {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Rebuilds when a file changed; a store that does not load keeps the previous one.
    pub fn reload_if_changed(&self) {
        let stamps = modified(&self.settings.files());
        if self.current.read().unwrap_or_else(|e| e.into_inner()).1 == stamps {
            return;
        }
        match (self.build)(&self.settings) {
            Ok(value) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = (value, stamps);
                info!(what = %self.what, "reloaded TLS key and trust stores");
            }
            Err(e) => {
                // Tried again next tick: the file may be half written.
                warn!(what = %self.what, error = %e, "TLS stores changed but do not load; keeping the previous ones");
            }
        }
    }
}

/// A listener's TLS acceptor, reloaded when its stores change.
pub type ServerTls = Reloading<TlsAcceptor>;

/// Outgoing TLS for one listener's peers, reloaded when the stores change.
pub type ClientTls = Reloading<TlsConnector>;

/// The acceptor for a listener.
pub fn server(settings: TlsSettings, listener: &str) -> Result<Arc<ServerTls>, SecurityError> {
    Reloading::new(
        settings,
        |s| s.server_config().map(TlsAcceptor::from),
        format!("listener {listener}"),
    )
}

/// The connector for connections to a listener of other nodes.
pub fn client(settings: TlsSettings, listener: &str) -> Result<Arc<ClientTls>, SecurityError> {
    Reloading::new(
        settings,
        |s| s.client_config().map(TlsConnector::from),
        format!("connections to {listener}"),
    )
}

impl ClientTls {
    /// Opens TLS over `tcp` to `host`, checking the server's certificate.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.get().connect(name, tcp).await
    }
}

/// Checks the stores of every TLS configuration every `interval` until shutdown.
pub async fn reload_on_change(
    servers: Vec<Arc<ServerTls>>,
    clients: Vec<Arc<ClientTls>>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        for s in &servers {
            s.reload_if_changed();
        }
        for c in &clients {
            c.reload_if_changed();
        }
    }
}
