//! How the active controller tells a dead broker from a slow one.
//!
//! A broker that stops heartbeating is fenced after `broker.session.timeout.ms`, as in Kafka.
//! A process that dies closes its sockets at once, though, so the controller does not wait for
//! the session when it has a reason to suspect a broker: its heartbeat connection closed, or
//! this controller was just elected and has not heard from it yet. It then probes the broker's
//! listeners; a refused connection means no process listens there any more, and the broker is
//! fenced now. A dying process may close its heartbeat connection before its listener, so a
//! suspect is probed again every [`PROBE_INTERVAL`] until it heartbeats, is fenced, or its
//! session ends. A stopped or cut-off broker does not refuse, so it still gets its full session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::image::BrokerRegistration;

/// How long a probe waits for a connection to be accepted or refused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a suspect is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);

/// Since when a broker is suspected, and when it is probed next.
struct Suspicion {
    since: Instant,
    next_probe: Instant,
}

/// The active controller's view of which brokers are alive.
#[derive(Default)]
pub struct Liveness {
    /// When each broker last heartbeated to this node while it was the active controller,
    /// and the metadata offset it had applied then.
    heartbeats: Mutex<HashMap<i32, (Instant, u64)>>,
    /// Brokers to probe: their heartbeat connection closed, or a new term began.
    suspects: Mutex<HashMap<i32, Suspicion>>,
    /// Wakes the fencing loop when a broker becomes a suspect.
    suspected: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Liveness {
    /// Records a heartbeat: the broker is alive now, and has applied `applied_index`.
    pub fn heartbeat(&self, id: i32, applied_index: u64) {
        lock(&self.heartbeats).insert(id, (Instant::now(), applied_index));
        lock(&self.suspects).remove(&id);
    }

    /// When `id` last heartbeated, if it has since this node started.
    pub fn last_heartbeat(&self, id: i32) -> Option<Instant> {
        self.last_progress(id).map(|(at, _)| at)
    }

    /// When `id` last heartbeated and the metadata offset it had applied then.
    pub fn last_progress(&self, id: i32) -> Option<(Instant, u64)> {
        lock(&self.heartbeats).get(&id).copied()
    }

    /// Marks brokers to be probed, and wakes the fencing loop.
    pub fn suspect(&self, ids: impl IntoIterator<Item = i32>) {
        let now = Instant::now();
        let mut suspects = lock(&self.suspects);
        for id in ids {
            suspects.entry(id).or_insert(Suspicion {
                since: now,
                next_probe: now,
            });
        }
        self.suspected.notify_one();
    }

    /// Replaces every suspicion with a fresh one of each of `ids`, as a newly elected
    /// controller does: a suspicion left from an earlier term would count from then and could
    /// expire before its first probe.
    pub fn suspect_afresh(&self, ids: impl IntoIterator<Item = i32>) {
        lock(&self.suspects).clear();
        self.suspect(ids);
    }

    /// The suspects due for a probe now; suspicions older than `limit` are dropped (the
    /// session timeout takes over).
    pub fn due_for_probe(&self, limit: Duration) -> Vec<i32> {
        let now = Instant::now();
        let mut suspects = lock(&self.suspects);
        suspects.retain(|_, s| now.duration_since(s.since) <= limit);
        suspects
            .iter_mut()
            .filter(|(_, s)| s.next_probe <= now)
            .map(|(id, s)| {
                s.next_probe = now + PROBE_INTERVAL;
                *id
            })
            .collect()
    }

    /// Drops the suspicion of a broker that was fenced.
    pub fn clear(&self, id: i32) {
        lock(&self.suspects).remove(&id);
    }

    /// Resolves when a broker becomes a suspect.
    pub async fn suspected(&self) {
        self.suspected.notified().await
    }
}

/// What a probe of a broker's listeners found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A listener accepted a connection: something runs there (perhaps stopped, see above).
    Alive,
    /// Every listener that answered refused, and none accepted.
    Dead,
    /// Nothing answered in time (a network cut, a host that is gone).
    Unknown,
}

/// Probes the advertised listeners of each registration, all at once.
pub async fn probe_all(brokers: Vec<BrokerRegistration>) -> Vec<(i32, Probe)> {
    let mut probes = JoinSet::new();
    for broker in brokers {
        probes.spawn(async move { (broker.id, probe(&listener_addresses(&broker)).await) });
    }
    let mut found = Vec::new();
    while let Some(result) = probes.join_next().await {
        if let Ok(probed) = result {
            found.push(probed);
        }
    }
    found
}

fn listener_addresses(broker: &BrokerRegistration) -> Vec<(String, u16)> {
    if broker.endpoints.is_empty() {
        return vec![(broker.host.clone(), broker.port)];
    }
    broker
        .endpoints
        .iter()
        .map(|e| (e.host.clone(), e.port))
        .collect()
}

async fn probe(addresses: &[(String, u16)]) -> Probe {
    let mut refused = false;
    for (host, port) in addresses {
        match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect((host.as_str(), *port))).await
        {
            Ok(Ok(_)) => return Probe::Alive,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Ok(Err(_)) | Err(_) => {}
        }
    }
    if refused {
        Probe::Dead
    } else {
        Probe::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::Endpoint;

    fn registration(id: i32, ports: &[u16]) -> BrokerRegistration {
        BrokerRegistration {
            id,
            host: "127.0.0.1".into(),
            port: ports[0],
            rack: None,
            incarnation: uuid::Uuid::new_v4(),
            fenced: false,
            registered_at: 0,
            unresponsive: false,
            endpoints: ports
                .iter()
                .map(|p| Endpoint {
                    name: format!("L{p}"),
                    host: "127.0.0.1".into(),
                    port: *p,
                })
                .collect(),
        }
    }

    /// A port nothing listens on: bound once, then released.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_listening_broker_is_alive_and_a_closed_one_dead() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = closed_port();
        let mut found = probe_all(vec![
            registration(1, &[open]),
            registration(2, &[closed]),
            registration(3, &[closed, open]),
        ])
        .await;
        found.sort_by_key(|(id, _)| *id);
        assert_eq!(
            found,
            vec![(1, Probe::Alive), (2, Probe::Dead), (3, Probe::Alive)]
        );
    }

    #[test]
    fn a_new_term_suspects_afresh_where_an_old_suspicion_has_run_out() {
        let liveness = Liveness::default();
        let limit = Duration::from_millis(50);
        liveness.suspect([1]);
        std::thread::sleep(limit * 2);
        liveness.suspect([1]);
        assert!(
            liveness.due_for_probe(limit).is_empty(),
            "suspect keeps the earlier suspicion"
        );
        liveness.suspect([1]);
        std::thread::sleep(limit * 2);
        liveness.suspect_afresh([1, 2]);
        assert_eq!(sorted(liveness.due_for_probe(limit)), vec![1, 2]);
    }

    fn sorted(mut ids: Vec<i32>) -> Vec<i32> {
        ids.sort_unstable();
        ids
    }

    #[test]
    fn a_suspect_is_probed_again_until_it_heartbeats_or_its_suspicion_ends() {
        let liveness = Liveness::default();
        liveness.suspect([1, 2]);
        liveness.heartbeat(1, 7);
        let limit = Duration::from_secs(60);
        assert_eq!(liveness.due_for_probe(limit), vec![2]);
        assert!(
            liveness.due_for_probe(limit).is_empty(),
            "not before the interval"
        );
        std::thread::sleep(PROBE_INTERVAL);
        assert_eq!(liveness.due_for_probe(limit), vec![2]);
        assert!(liveness.due_for_probe(Duration::ZERO).is_empty());
        std::thread::sleep(PROBE_INTERVAL);
        assert!(
            liveness.due_for_probe(limit).is_empty(),
            "dropped past the limit"
        );
        assert!(liveness.last_heartbeat(1).is_some());
        assert_eq!(
            liveness.last_progress(1).map(|(_, applied)| applied),
            Some(7)
        );
        assert!(liveness.last_heartbeat(2).is_none());
    }
}
