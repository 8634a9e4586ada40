//! Cancelling background work when the node stops.

use std::future::Future;

use tokio::sync::watch;

/// Runs `work` unless shutdown is signalled first (`None` then), so a task blocked on a
/// quorum that is gone still stops promptly.
pub async fn unless_shutdown<F: Future>(
    shutdown: &mut watch::Receiver<bool>,
    work: F,
) -> Option<F::Output> {
    if *shutdown.borrow() {
        return None;
    }
    tokio::select! {
        output = work => Some(output),
        _ = shutdown.changed() => None,
    }
}
