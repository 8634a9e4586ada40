//! Asks a controller node which node is the active controller, from its `/metrics`
//! (`strom_kraft_current_leader`): only the quorum knows, and controller-only nodes have no
//! Kafka listener to ask.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Reads the value of an unlabelled gauge from a Prometheus text exposition.
pub fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name)
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// The active controller's node id as `host:port` reports it, or `None` when the node does
/// not answer or knows no leader.
pub async fn active_controller(host: &str, port: i32, timeout: Duration) -> Option<i32> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{host}:{port}/metrics").parse().ok()?;
    let body = tokio::time::timeout(timeout, async {
        let response = client.get(uri).await.ok()?;
        response.into_body().collect().await.ok()
    })
    .await
    .ok()??
    .to_bytes();
    let leader = gauge(
        std::str::from_utf8(&body).ok()?,
        "strom_kraft_current_leader",
    )?;
    (leader >= 0.0).then_some(leader as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_gauge() {
        let text = "# HELP strom_kraft_current_leader x\n# TYPE strom_kraft_current_leader gauge\nstrom_kraft_current_leader 2\nstrom_kraft_current_leader_epoch 7\n";
        assert_eq!(gauge(text, "strom_kraft_current_leader"), Some(2.0));
        assert_eq!(gauge(text, "strom_kraft_current_leader_epoch"), Some(7.0));
        assert_eq!(gauge(text, "strom_missing"), None);
    }
}
