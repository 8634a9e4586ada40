//! Serves the controller listener: one task per connection, requests answered in order.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::rpc::{read_frame, write_frame, Request};
use super::Controller;

/// Accepts controller connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let controller = controller.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, controller, shutdown).await {
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

async fn serve_connection(
    mut stream: TcpStream,
    controller: Arc<Controller>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let request: Request = tokio::select! {
            request = read_frame(&mut stream) => match request? {
                Some(request) => request,
                None => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        let response = controller.serve(request).await;
        write_frame(&mut stream, &response).await?;
    }
}
