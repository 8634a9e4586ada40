//! The broker as a client of other brokers: TCP, then TLS and a SASL login (PLAIN or SCRAM)
//! as the inter-broker listener asks.

use std::io;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use ring::rand::{SecureRandom, SystemRandom};
use strom_client::BrokerConnection;

use super::scram::{client_proof, Mechanism};
use super::{Outgoing, SaslLogin};
use crate::api::str_bytes;

/// Connects to `host:port` as `security` says, within `timeout`.
pub async fn connect(
    host: &str,
    port: u16,
    client_id: String,
    security: &Outgoing,
    timeout: Duration,
) -> io::Result<BrokerConnection> {
    let tcp = strom_client::tcp(&format!("{host}:{port}"), timeout).await?;
    let mut connection = match &security.tls {
        Some(tls) => {
            let stream = tokio::time::timeout(timeout, tls.connect(tcp, host))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
            BrokerConnection::over(stream, client_id)
        }
        None => BrokerConnection::over(tcp, client_id),
    };
    if let Some(login) = &security.sasl {
        authenticate(&mut connection, login, timeout).await?;
    }
    Ok(connection)
}

fn refused(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message.into())
}

/// SaslHandshake v1, then SaslAuthenticate until the mechanism completes.
async fn authenticate(
    connection: &mut BrokerConnection,
    login: &SaslLogin,
    timeout: Duration,
) -> io::Result<()> {
    let handshake = connection
        .send(
            &SaslHandshakeRequest::default().with_mechanism(str_bytes(&login.mechanism)),
            1,
            timeout,
        )
        .await?;
    if handshake.error_code != 0 {
        return Err(refused(format!(
            "the broker does not take SASL {} (error {})",
            login.mechanism, handshake.error_code
        )));
    }
    match Mechanism::from_name(&login.mechanism) {
        None => {
            let token = format!("\0{}\0{}", login.username, login.password);
            exchange(connection, login, token.into_bytes(), timeout).await?;
        }
        Some(mechanism) => {
            let mut nonce = [0u8; 24];
            SystemRandom::new()
                .fill(&mut nonce)
                .map_err(|_| io::Error::other("no randomness for a nonce"))?;
            let user = login.username.replace('=', "=3D").replace(',', "=2C");
            let client_first_bare = format!("n={user},r={}", BASE64.encode(nonce));
            let client_first = format!("n,,{client_first_bare}").into_bytes();
            let server_first = exchange(connection, login, client_first, timeout).await?;
            let server_first = String::from_utf8(server_first)
                .map_err(|_| refused("server-first is not UTF-8"))?;
            let (client_final, expected) = client_proof(
                mechanism,
                &login.password,
                &client_first_bare,
                &server_first,
            )
            .map_err(refused)?;
            let server_final =
                exchange(connection, login, client_final.into_bytes(), timeout).await?;
            if server_final != expected {
                return Err(refused("the broker's SCRAM signature does not match"));
            }
        }
    }
    Ok(())
}

/// One SaslAuthenticate round trip.
async fn exchange(
    connection: &mut BrokerConnection,
    login: &SaslLogin,
    token: Vec<u8>,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let response = connection.send(&request, 1, timeout).await?;
    if response.error_code != 0 {
        return Err(refused(format!(
            "SASL authentication as {} failed: {}",
            login.username,
            response.error_message.as_deref().unwrap_or("no message")
        )));
    }
    Ok(response.auth_bytes.to_vec())
}
