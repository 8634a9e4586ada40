//! One connection's authentication: the principal TLS gave it, then, on SASL listeners, the
//! SaslHandshake and SaslAuthenticate exchange (or raw SASL tokens after a v0 handshake).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::ResponseError;

use super::principal::Principal;
use super::sasl::Authenticator;
use super::scram::Step;
use super::ListenerSecurity;
use crate::api::str_bytes;
use crate::metadata::image::SecurityImage;

enum State {
    /// Not a SASL listener, or authenticated.
    Authenticated,
    /// A SASL listener before SaslHandshake.
    AwaitingHandshake,
    /// After SaslHandshake; `raw` after a v0 handshake, whose tokens come without Kafka framing.
    Authenticating {
        authenticator: Authenticator,
        raw: bool,
    },
}

/// The authentication state of one connection.
pub struct Session {
    listener: Arc<ListenerSecurity>,
    principal: Arc<Principal>,
    state: State,
}

/// Whether the connection stays open after a SASL answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Go on.
    KeepOpen,
    /// Send the answer, then close (a refused mechanism or failed authentication).
    Close,
}

impl Session {
    /// A new connection on `listener`, with the principal TLS established (or `ANONYMOUS`).
    pub fn new(listener: Arc<ListenerSecurity>, principal: Principal) -> Self {
        let state = if listener.protocol.sasl() {
            State::AwaitingHandshake
        } else {
            State::Authenticated
        };
        Session {
            listener,
            principal: Arc::new(principal),
            state,
        }
    }

    /// Who the connection acts as.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The listener it arrived on.
    pub fn listener(&self) -> &Arc<ListenerSecurity> {
        &self.listener
    }

    /// Whether the connection may make requests other than SASL's.
    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Whether the next frame is a raw SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Authenticating { raw: true, .. })
    }

    /// Whether `api` may be called now; anything else before authentication closes the
    /// connection, as Kafka does.
    pub fn allows(&self, api: ApiKey) -> bool {
        match self.state {
            State::Authenticated => true,
            State::AwaitingHandshake => matches!(api, ApiKey::ApiVersions | ApiKey::SaslHandshake),
            State::Authenticating { raw: false, .. } => api == ApiKey::SaslAuthenticate,
            State::Authenticating { raw: true, .. } => false,
        }
    }

    /// SaslHandshake: picks the mechanism, or refuses it with the enabled ones.
    pub fn handshake(
        &mut self,
        request: &SaslHandshakeRequest,
        version: i16,
    ) -> (SaslHandshakeResponse, After) {
        let mechanisms = self
            .listener
            .mechanisms
            .iter()
            .map(|m| str_bytes(m))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
        if !matches!(self.state, State::AwaitingHandshake) {
            // A non-SASL listener, or a second handshake (re-authentication is not supported).
            return (
                response.with_error_code(ResponseError::IllegalSaslState.code()),
                After::KeepOpen,
            );
        }
        let mechanism = request.mechanism.as_str();
        match Authenticator::new(mechanism)
            .filter(|_| self.listener.mechanisms.iter().any(|m| m == mechanism))
        {
            Some(authenticator) => {
                self.state = State::Authenticating {
                    authenticator,
                    raw: version == 0,
                };
                (response, After::KeepOpen)
            }
            None => (
                response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                After::Close,
            ),
        }
    }

    /// One SASL token: the reply to send, or the failure message. Success sets the principal
    /// to `User:<name>`.
    pub fn authenticate(&mut self, token: &[u8], image: &SecurityImage) -> Result<Vec<u8>, String> {
        let State::Authenticating { authenticator, .. } = &mut self.state else {
            return Err("SASL token before SaslHandshake".into());
        };
        let step = authenticator.step(token, &self.listener.plain_users, |user, mechanism| {
            image.scram_credential(user, mechanism)
        });
        match step {
            Ok(Step::Continue(reply)) => Ok(reply),
            Ok(Step::Complete { user, reply }) => {
                self.principal = Arc::new(Principal::user(user));
                self.state = State::Authenticated;
                Ok(reply)
            }
            Err(message) => {
                self.state = State::AwaitingHandshake;
                Err(message)
            }
        }
    }

    /// SaslAuthenticate: runs the token, answers with the reply or Kafka's failure.
    pub fn authenticate_request(
        &mut self,
        token: &[u8],
        image: &SecurityImage,
    ) -> (SaslAuthenticateResponse, After) {
        if !matches!(self.state, State::Authenticating { raw: false, .. }) {
            return (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(str_bytes(
                        "SaslAuthenticate without a SaslHandshake v1",
                    ))),
                After::KeepOpen,
            );
        }
        match self.authenticate(token, image) {
            Ok(reply) => (
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)),
                After::KeepOpen,
            ),
            Err(message) => (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(str_bytes(&message))),
                After::Close,
            ),
        }
    }
}
