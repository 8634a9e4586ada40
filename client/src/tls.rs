//! TLS for admin connections: trust in one CA bundle, and optionally a client certificate for
//! listeners that require one (mutual TLS).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::connection::{tcp, BrokerConnection};

/// What a TLS client setting can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM text holds no usable certificate or key.
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    /// rustls refused the settings.
    #[error("TLS settings: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS client: the CA bundle servers are checked against, and the client's identity.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

fn pem_error(what: &'static str, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        what,
        reason: reason.to_string(),
    }
}

impl TlsClient {
    /// Trusts the CA certificates in `ca_pem`; presents `identity` (certificate chain PEM, key
    /// PEM) when given.
    pub fn from_pem(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| pem_error("CA bundle", e))?)
                .map_err(|e| pem_error("CA bundle", e))?;
        }
        if roots.is_empty() {
            return Err(pem_error("CA bundle", "no certificate found"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some((chain_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_error("client certificate", e))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| pem_error("client key", e))?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// Connects to `host:port` and completes the handshake within `timeout`, checking the
    /// server's certificate against `host`.
    pub async fn connect(
        &self,
        address: &str,
        client_id: String,
        timeout: Duration,
    ) -> io::Result<BrokerConnection> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let server = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tcp(address, timeout).await?;
        let connector = TlsConnector::from(self.config.clone());
        let stream = tokio::time::timeout(timeout, connector.connect(server, stream))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {address}"),
                )
            })??;
        Ok(BrokerConnection::over(stream, client_id))
    }
}
