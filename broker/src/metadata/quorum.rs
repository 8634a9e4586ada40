//! How far each voter and each broker has followed the metadata log, as the active controller
//! sees it: what DescribeQuorum (`kafka-metadata-quorum describe`) reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// When each voter last answered this node's AppendEntries (heartbeats included).
#[derive(Default)]
pub struct PeerAnswers(Mutex<HashMap<u64, Instant>>);

impl PeerAnswers {
    /// Records an answer from `peer` now.
    pub fn answered(&self, peer: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now());
    }

    /// When `peer` last answered, if it has.
    pub fn last(&self, peer: u64) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&peer)
            .copied()
    }
}

/// One replica of the metadata log: a voter, or a broker following it (an observer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaProgress {
    /// Its node id.
    pub id: i32,
    /// The offset after the last record it holds (voters) or applied (brokers); -1 unknown.
    pub log_end_offset: i64,
    /// When it last fetched from the leader, in ms since the epoch; -1 unknown.
    pub last_fetch_ms: i64,
    /// When it last held everything the leader had, in ms since the epoch; -1 unknown.
    pub last_caught_up_ms: i64,
}

/// The metadata quorum as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    /// The active controller.
    pub leader_id: i32,
    /// Its Raft term, Kafka's leader epoch.
    pub leader_epoch: i32,
    /// The offset after the last applied record.
    pub high_watermark: i64,
    /// Every voter, the leader among them.
    pub voters: Vec<ReplicaProgress>,
    /// Brokers that are not voters.
    pub observers: Vec<ReplicaProgress>,
}

/// Converts monotonic instants to wall-clock milliseconds, from one reading of both clocks.
pub struct WallClock {
    now: Instant,
    now_ms: i64,
}

impl WallClock {
    /// Reads both clocks.
    pub fn now() -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        WallClock {
            now: Instant::now(),
            now_ms,
        }
    }

    /// The current time in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// `at` in ms since the epoch.
    pub fn ms(&self, at: Instant) -> i64 {
        self.now_ms - self.now.saturating_duration_since(at).as_millis() as i64
    }
}

/// A follower's progress: it is caught up at its last fetch when it holds the leader's end.
pub fn follower(
    id: i32,
    log_end: Option<u64>,
    fetched_at: Option<Instant>,
    leader_end: u64,
    clock: &WallClock,
) -> ReplicaProgress {
    let last_fetch_ms = fetched_at.map_or(-1, |at| clock.ms(at));
    let caught_up = log_end.is_some_and(|end| end >= leader_end);
    ReplicaProgress {
        id,
        log_end_offset: log_end.map_or(-1, |end| end as i64),
        last_fetch_ms,
        last_caught_up_ms: if caught_up { last_fetch_ms } else { -1 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_follower_is_caught_up_at_its_last_fetch_only_when_it_holds_the_leaders_end() {
        let clock = WallClock::now();
        let fetched = clock.now - Duration::from_millis(300);
        let behind = follower(2, Some(9), Some(fetched), 10, &clock);
        assert_eq!(behind.log_end_offset, 9);
        assert_eq!(behind.last_fetch_ms, clock.now_ms() - 300);
        assert_eq!(behind.last_caught_up_ms, -1);
        let caught_up = follower(3, Some(10), Some(fetched), 10, &clock);
        assert_eq!(caught_up.last_caught_up_ms, clock.now_ms() - 300);
        let never_heard = follower(4, None, None, 10, &clock);
        assert_eq!(
            (
                never_heard.log_end_offset,
                never_heard.last_fetch_ms,
                never_heard.last_caught_up_ms
            ),
            (-1, -1, -1)
        );
    }
}
