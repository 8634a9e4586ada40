//! The metadata quorum's own runtime: Raft, the controller listener and the broker's
//! heartbeats run on a thread of their own, so that a burst of client or replica requests
//! on the request workers (a fetch over 30,000 partitions) never delays a Raft heartbeat or
//! a vote past its timeout, as Kafka's controller and broker lifecycle threads are kept apart
//! from its request handlers.

use std::future::Future;
use std::io;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

/// The quorum runtime, started on first use and kept for the life of the process (the
/// voters of every node started in one process share it).
pub fn quorum_runtime() -> io::Result<Handle> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static STARTING: Mutex<()> = Mutex::new(());
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let runtime = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("strom-quorum")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| runtime).handle().clone())
}

/// Runs `task` on the quorum runtime.
pub fn spawn_on_quorum<F>(task: F) -> io::Result<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(quorum_runtime()?.spawn(task))
}
