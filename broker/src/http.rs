//! The small HTTP listener (`metrics.listener`): `/metrics`, `/healthz` and `/readyz`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Context;
use crate::config::Role;

async fn healthz() -> &'static str {
    "ok\n"
}

/// Set once the broker serves clients; until then it is starting.
pub type Serving = Arc<OnceLock<Arc<Context>>>;

/// Ready once serving, and while the node is in the quorum and, as a broker, unfenced.
async fn readyz(State(serving): State<Serving>) -> (StatusCode, String) {
    let Some(ctx) = serving.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into());
    };
    let session = Duration::from_millis(ctx.config.long("broker.session.timeout.ms") as u64);
    match ctx
        .controller
        .unready_reason(ctx.config.has_role(Role::Broker), session)
    {
        None => (StatusCode::OK, "ready\n".into()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn metrics(
    State(serving): State<Serving>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let content_type = [("content-type", "text/plain; version=0.0.4")];
    match serving.get() {
        Some(ctx) => (StatusCode::OK, content_type, ctx.metrics.render(ctx)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            content_type,
            "starting\n".into(),
        ),
    }
}

/// Serves `/healthz` (alive), `/readyz` (serving clients, in the quorum, unfenced) and `/metrics` until shutdown.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(serving);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
}
