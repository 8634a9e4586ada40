//! Replication progress of one partition as its leader sees it: the ISR, each follower's log
//! end offset and when it last caught up, and the high watermark they allow (Kafka's ISR model).

use std::collections::BTreeMap;

use super::{AppendError, Leadership};

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset), -1 before its first fetch.
    pub log_end_offset: i64,
    /// When the follower last fetched up to the leader's log end offset.
    pub caught_up_ms: i64,
}

/// The partition's role on this broker and, when leading, its followers' progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// This broker's id, or -1 until the metadata gave the partition a role here.
    pub me: i32,
    /// Whether this broker leads the partition.
    pub is_leader: bool,
    /// The leader epoch in force.
    pub leader_epoch: i32,
    /// The partition epoch of the ISR below, for AlterPartition.
    pub partition_epoch: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas as the controller last committed them.
    pub isr: Vec<i32>,
    /// Where the current leader epoch started in the log.
    pub epoch_start_offset: i64,
    /// Progress of each follower (leaders only).
    pub followers: BTreeMap<i32, FollowerProgress>,
    /// Members of an ISR expansion asked of the controller and not answered yet. They hold the
    /// high watermark at once (Kafka's maximal ISR): a replica that joins the ISR, and may be
    /// elected leader as soon as it has, holds every record acknowledged before it joined.
    pub joining: Vec<i32>,
    /// The partition epoch of an ISR change asked of the controller and not answered yet:
    /// the change is not asked again until the answer (the image may lag an accepted one).
    pub asked_at: Option<i32>,
}

impl Default for ReplicaState {
    fn default() -> Self {
        ReplicaState {
            me: -1,
            is_leader: false,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: Vec::new(),
            isr: Vec::new(),
            epoch_start_offset: 0,
            followers: BTreeMap::new(),
            joining: Vec::new(),
            asked_at: None,
        }
    }
}

impl ReplicaState {
    /// Takes leadership at `leader_epoch`; followers start unknown and caught up as of now,
    /// so none is dropped from the ISR before it had `replica.lag.time.max.ms` to fetch.
    pub fn become_leader(&mut self, me: i32, leader_epoch: i32, log_end_offset: i64, now_ms: i64) {
        let new_epoch = !self.is_leader || self.leader_epoch != leader_epoch || self.me != me;
        self.me = me;
        self.is_leader = true;
        if new_epoch {
            self.leader_epoch = leader_epoch;
            self.epoch_start_offset = log_end_offset;
            self.followers.clear();
            self.joining.clear();
            self.asked_at = None;
        }
        for r in self.replicas.iter().filter(|r| **r != me) {
            self.followers.entry(*r).or_insert(FollowerProgress {
                log_end_offset: -1,
                caught_up_ms: now_ms,
            });
        }
    }

    /// Whether a leader append under `leadership` may go ahead: this broker leads at that
    /// epoch and, for acks=all, the ISR is large enough. A role not applied yet is not
    /// leadership, so a just-created partition answers a retriable error, not an append.
    pub fn check_append(&self, leadership: Leadership) -> Result<(), AppendError> {
        if self.me < 0 || !self.is_leader {
            return Err(AppendError::NotLeader(
                "this broker does not lead the partition yet".to_string(),
            ));
        }
        if self.leader_epoch != leadership.leader_epoch {
            return Err(AppendError::NotLeader(format!(
                "leader epoch {} is not the current {}",
                leadership.leader_epoch, self.leader_epoch
            )));
        }
        match leadership.min_isr {
            Some(min) if self.isr.len() < min => Err(AppendError::NotEnoughReplicas {
                isr: self.isr.len(),
                min,
            }),
            _ => Ok(()),
        }
    }

    /// Follows another leader at `leader_epoch`.
    pub fn become_follower(&mut self, me: i32, leader_epoch: i32) {
        self.me = me;
        self.is_leader = false;
        self.leader_epoch = leader_epoch;
        self.followers.clear();
        self.joining.clear();
        self.asked_at = None;
    }

    /// The high watermark the ISR allows: the smallest log end offset among its members and
    /// the replicas joining it. Members whose offset is unknown hold it where it is.
    pub fn high_watermark(&self, current: i64, log_end_offset: i64) -> i64 {
        if !self.is_leader {
            return current;
        }
        let mut hw = log_end_offset;
        for member in self
            .isr
            .iter()
            .chain(&self.joining)
            .filter(|m| **m != self.me)
        {
            let leo = self.followers.get(member).map_or(-1, |f| f.log_end_offset);
            hw = hw.min(if leo < 0 { current } else { leo });
        }
        hw.max(current)
    }

    /// Records a follower fetch at `fetch_offset` (its log end offset).
    pub fn record_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        log_end_offset: i64,
        now_ms: i64,
    ) {
        let progress = self.followers.entry(replica).or_insert(FollowerProgress {
            log_end_offset: -1,
            caught_up_ms: now_ms,
        });
        progress.log_end_offset = fetch_offset;
        if fetch_offset >= log_end_offset {
            progress.caught_up_ms = now_ms;
        }
    }

    /// The ISR the leader should ask the controller for, if it differs from the current one:
    /// members that have not caught up within `lag_ms` leave, replicas that reached the high
    /// watermark (and this epoch's start) join.
    pub fn wanted_isr(
        &self,
        high_watermark: i64,
        now_ms: i64,
        lag_ms: i64,
        fenced: &[i32],
    ) -> Option<Vec<i32>> {
        if !self.is_leader || self.me < 0 {
            return None;
        }
        let mut isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|m| {
                *m == self.me
                    || self
                        .followers
                        .get(m)
                        .is_some_and(|f| now_ms - f.caught_up_ms <= lag_ms)
            })
            .collect();
        for r in &self.replicas {
            // The controller refuses a fenced broker (one still catching up with the
            // metadata) until it unfences.
            if isr.contains(r) || fenced.contains(r) {
                continue;
            }
            let caught_up = self.followers.get(r).is_some_and(|f| {
                f.log_end_offset >= high_watermark && f.log_end_offset >= self.epoch_start_offset
            });
            if caught_up {
                isr.push(*r);
            }
        }
        let same = isr.len() == self.isr.len() && isr.iter().all(|m| self.isr.contains(m));
        (!same).then_some(isr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> ReplicaState {
        let mut s = ReplicaState {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            ..Default::default()
        };
        s.become_leader(1, 5, 100, 0);
        s
    }

    #[test]
    fn a_joining_replica_holds_the_high_watermark_until_the_controller_answers() {
        let mut s = leader();
        s.isr = vec![1, 2];
        s.record_fetch(2, 100, 100, 0);
        s.record_fetch(3, 100, 100, 0);
        assert_eq!(s.wanted_isr(100, 0, 1000, &[]), Some(vec![1, 2, 3]));
        s.joining = vec![3];
        s.record_fetch(2, 110, 110, 1);
        assert_eq!(
            s.high_watermark(100, 110),
            100,
            "replica 3 may be elected once it joins: it must hold what is acknowledged"
        );
        s.record_fetch(3, 110, 110, 1);
        assert_eq!(s.high_watermark(100, 110), 110);
    }

    #[test]
    fn appends_need_an_applied_role_the_epoch_and_the_isr() {
        let at = |leader_epoch, min_isr| Leadership {
            leader_epoch,
            min_isr,
        };
        let not_leader = |r| matches!(r, Err(AppendError::NotLeader(_)));
        assert!(not_leader(
            ReplicaState::default().check_append(at(0, None))
        ));
        let mut s = leader();
        assert!(s.check_append(at(5, Some(3))).is_ok());
        assert!(not_leader(s.check_append(at(4, None))));
        s.isr = vec![1];
        assert!(matches!(
            s.check_append(at(5, Some(2))),
            Err(AppendError::NotEnoughReplicas { isr: 1, min: 2 })
        ));
        assert!(s.check_append(at(5, None)).is_ok());
        s.become_follower(1, 6);
        assert!(not_leader(s.check_append(at(6, None))));
    }

    #[test]
    fn high_watermark_follows_the_slowest_isr_member() {
        let mut s = leader();
        assert_eq!(s.high_watermark(90, 100), 90, "unknown followers hold it");
        s.record_fetch(2, 100, 100, 1);
        assert_eq!(s.high_watermark(90, 100), 90);
        s.record_fetch(3, 95, 100, 1);
        assert_eq!(s.high_watermark(90, 100), 95);
        s.isr = vec![1, 2];
        assert_eq!(
            s.high_watermark(95, 100),
            100,
            "a smaller ISR lets it advance"
        );
        assert_eq!(s.high_watermark(100, 100), 100);
        s.become_follower(1, 6);
        assert_eq!(s.high_watermark(100, 120), 100);
    }

    #[test]
    fn isr_shrinks_after_the_lag_and_expands_on_catch_up() {
        let mut s = leader();
        s.record_fetch(2, 100, 100, 1_000);
        s.record_fetch(3, 50, 100, 1_000);
        assert_eq!(s.wanted_isr(50, 20_000, 30_000, &[]), None);
        assert_eq!(s.wanted_isr(50, 31_000, 30_000, &[]), Some(vec![1, 2]));
        s.isr = vec![1, 2];
        s.record_fetch(3, 99, 100, 32_000);
        assert_eq!(
            s.wanted_isr(100, 32_000, 30_000, &[]),
            None,
            "behind the high watermark"
        );
        s.record_fetch(3, 100, 100, 33_000);
        assert_eq!(
            s.wanted_isr(100, 33_000, 30_000, &[3]),
            None,
            "a fenced replica waits to be unfenced"
        );
        assert_eq!(s.wanted_isr(100, 33_000, 30_000, &[]), Some(vec![1, 2, 3]));
    }
}
