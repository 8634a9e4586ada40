//! Serves the controller listener: one task per connection, requests answered in order.
//! On SSL the listener requires client certificates (mutual TLS). With the authorizer on, only
//! principals allowed ClusterAction on the cluster may call it, as Kafka's ControllerApis
//! require; on PLAINTEXT that principal is `User:ANONYMOUS`, so such a cluster lists it in
//! `super.users` (as with Kafka) or, better, puts the controller listener on SSL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::rpc::{read_frame, write_frame, Request};
use super::Controller;
use crate::network::Transport;
use crate::security::acl::{operation, resource, AuthorizerSettings, CLUSTER_NAME};
use crate::security::principal::{subject_dn, Principal};
use crate::security::ListenerSecurity;

/// How long a peer has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use the controller listener.
pub struct ControllerAccess {
    /// The listener's TLS and principal mapping.
    pub security: Arc<ListenerSecurity>,
    /// The authorizer, when enabled.
    pub authorizer: Option<Arc<AuthorizerSettings>>,
}

/// Accepts controller connections until shutdown, registering the listener with the
/// runtime it runs on.
pub async fn serve(
    listener: std::net::TcpListener,
    controller: Arc<Controller>,
    access: Arc<ControllerAccess>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            warn!(error = %e, "cannot serve the controller listener");
            return;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let controller = controller.clone();
                    let shutdown = shutdown.clone();
                    let access = access.clone();
                    tokio::spawn(async move {
                        let admitted = admit(stream, peer, &controller, &access).await;
                        let (stream, principal) = match admitted {
                            Ok(admitted) => admitted,
                            Err(reason) => {
                                warn!(%peer, %reason, "controller listener refused a connection");
                                return;
                            }
                        };
                        let peer_access = PeerAccess { access, principal, peer };
                        if let Err(e) = serve_connection(stream, controller, peer_access, shutdown).await {
                            debug!(%peer, error = %e, "controller connection closed");
                        }
                    });
                }
                Err(e) => warn!(error = %e, "controller listener accept failed"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection's peer: who it is, and what the listener lets it do.
struct PeerAccess {
    access: Arc<ControllerAccess>,
    principal: Principal,
    peer: SocketAddr,
}

impl PeerAccess {
    /// Whether the peer may use the controller listener now (an ACL may have been revoked
    /// since it connected).
    fn check(&self, controller: &Controller) -> Result<(), String> {
        allowed(controller, &self.access, &self.principal, self.peer)
    }
}

/// With the authorizer on: whether `principal` is allowed ClusterAction on the cluster.
fn allowed(
    controller: &Controller,
    access: &ControllerAccess,
    principal: &Principal,
    peer: SocketAddr,
) -> Result<(), String> {
    let Some(authorizer) = &access.authorizer else {
        return Ok(());
    };
    let image = controller.image();
    if authorizer.authorize(
        &image.security.acls,
        principal,
        peer.ip(),
        operation::CLUSTER_ACTION,
        resource::CLUSTER,
        CLUSTER_NAME,
    ) {
        Ok(())
    } else {
        Err(format!(
            "{principal} is not allowed ClusterAction on the cluster"
        ))
    }
}

/// The TLS handshake (SSL) and the ClusterAction check (authorizer on).
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    controller: &Controller,
    access: &ControllerAccess,
) -> Result<(Box<dyn Transport>, Principal), String> {
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (stream, principal): (Box<dyn Transport>, Principal) = match &access.security.tls {
        None => (Box::new(stream), Principal::anonymous()),
        Some(tls) => {
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.get().accept(stream))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or("no client certificate")?;
            let dn = subject_dn(cert).map_err(|e| e.to_string())?;
            let name = access.security.mapper.map(&dn).map_err(|e| e.to_string())?;
            (Box::new(stream), Principal::user(name))
        }
    };
    allowed(controller, access, &principal, peer)?;
    Ok((stream, principal))
}

/// Serves one connection. When it carried a broker's heartbeats and closes (other than at
/// this node's shutdown), the controller is told, so that it can check the broker at once.
async fn serve_connection(
    stream: Box<dyn Transport>,
    controller: Arc<Controller>,
    peer: PeerAccess,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut heartbeats_from = None;
    let served = serve_requests(
        stream,
        &controller,
        &peer,
        &mut heartbeats_from,
        &mut shutdown,
    )
    .await;
    if let Some(broker) = heartbeats_from {
        if !*shutdown.borrow() {
            controller.heartbeat_connection_closed(broker);
        }
    }
    served
}

async fn serve_requests(
    mut stream: Box<dyn Transport>,
    controller: &Controller,
    peer: &PeerAccess,
    heartbeats_from: &mut Option<i32>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let request: Request = tokio::select! {
            request = read_frame(&mut stream) => match request? {
                Some(request) => request,
                None => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        if let Err(reason) = peer.check(controller) {
            warn!(peer = %peer.peer, %reason, "controller listener closed a connection");
            return Ok(());
        }
        if let Request::Heartbeat(heartbeat) = &request {
            *heartbeats_from = Some(heartbeat.id);
        }
        let response = controller.serve(request).await;
        write_frame(&mut stream, &response).await?;
    }
}
