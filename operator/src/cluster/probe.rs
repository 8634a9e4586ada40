//! Asks a controller node which node is the active controller and how far it has applied the
//! metadata log, from its `/metrics` (`strom_kraft_current_leader`, `strom_kraft_applied_index`):
//! only the quorum knows, and controller-only nodes have no Kafka listener to ask.

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

/// What a controller node reports about the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerProbe {
    /// The active controller's node id, when the node knows one.
    pub leader: Option<i32>,
    /// The last metadata record the node applied.
    pub applied_index: i64,
}

/// What `host:port` reports about the quorum, or `None` when it does not answer.
pub async fn controller(host: &str, port: i32, timeout: Duration) -> Option<ControllerProbe> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{host}:{port}/metrics").parse().ok()?;
    let body = tokio::time::timeout(timeout, async {
        let response = client.get(uri).await.ok()?;
        response.into_body().collect().await.ok()
    })
    .await
    .ok()??
    .to_bytes();
    let text = std::str::from_utf8(&body).ok()?;
    let leader = gauge(text, "strom_kraft_current_leader")?;
    Some(ControllerProbe {
        leader: (leader >= 0.0).then_some(leader as i32),
        applied_index: gauge(text, "strom_kraft_applied_index")? as i64,
    })
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
