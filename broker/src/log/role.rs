//! The log's replication role: leadership, the ISR, the high watermark and leader epochs.

use std::io;

use tokio::sync::futures::Notified;

use super::replica::ReplicaState;
use super::segment::now_ms;
use super::{PartitionLog, EPOCH_CHECKPOINT_FILE};

impl PartitionLog {
    /// Whether this broker leads the partition at `leader_epoch`, by the role the log has
    /// applied (the metadata image may already say so before the role is applied).
    pub fn leads_at(&self, leader_epoch: i32) -> bool {
        let state = self.lock();
        let r = &state.replica;
        r.me >= 0 && r.is_leader && r.leader_epoch == leader_epoch
    }

    /// A wake-up for the next change of the log end, the high watermark or the replication
    /// role. Enable it before checking the state it waits for, so no change is missed between.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }

    /// This partition's replication role and progress.
    pub fn replica_state(&self) -> ReplicaState {
        self.lock().replica.clone()
    }

    /// Applies the controller's view of the partition: leads it at `leader_epoch` with this
    /// ISR, or follows.
    pub fn set_replica_role(
        &self,
        me: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> io::Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        if state.replica.partition_epoch != partition_epoch {
            // The controller answered: the ISR below is what it committed.
            state.replica.joining.clear();
            state.replica.asked_at = None;
        }
        state.replica.replicas = replicas.to_vec();
        state.replica.isr = isr.to_vec();
        state.replica.partition_epoch = partition_epoch;
        if leader == me {
            state
                .replica
                .become_leader(me, leader_epoch, state.next_offset, now_ms());
            if state.epochs.assign(leader_epoch, state.next_offset) {
                state.epochs.save(&self.dir.join(EPOCH_CHECKPOINT_FILE))?;
            }
        } else {
            state.replica.become_follower(me, leader_epoch);
        }
        state.advance_high_watermark();
        self.changed.notify_waiters();
        Ok(())
    }

    /// Records a follower's fetch (the leader side), which may move the high watermark.
    pub fn record_follower_fetch(&self, replica: i32, fetch_offset: i64, now: i64) {
        let mut state = self.lock();
        let state = &mut *state;
        state
            .replica
            .record_fetch(replica, fetch_offset, state.next_offset, now);
        if state.advance_high_watermark() {
            self.changed.notify_waiters();
        }
    }

    /// The ISR this leader should ask for, with the role it was computed under; none while
    /// an earlier ask is unanswered. Replicas it adds hold the high watermark from now until
    /// the controller answers.
    pub fn wanted_isr(
        &self,
        now: i64,
        lag_ms: i64,
        fenced: &[i32],
    ) -> Option<(ReplicaState, Vec<i32>)> {
        let mut state = self.lock();
        if state.replica.asked_at == Some(state.replica.partition_epoch) {
            return None;
        }
        let isr = state
            .replica
            .wanted_isr(state.high_watermark, now, lag_ms, fenced)?;
        let asked = state.replica.clone();
        state.replica.joining = isr
            .iter()
            .copied()
            .filter(|r| !asked.isr.contains(r))
            .collect();
        state.replica.asked_at = Some(asked.partition_epoch);
        Some((asked, isr))
    }

    /// The controller refused the ISR change: the replicas it would have added no longer hold
    /// the high watermark.
    pub fn isr_change_refused(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        state.replica.joining.clear();
        state.replica.asked_at = None;
        if state.advance_high_watermark() {
            self.changed.notify_waiters();
        }
    }

    /// A follower takes the leader's high watermark, capped by its own log end.
    pub fn set_follower_high_watermark(&self, leader_high_watermark: i64) {
        let mut state = self.lock();
        let high_watermark = leader_high_watermark.min(state.next_offset);
        if high_watermark != state.high_watermark {
            state.high_watermark = high_watermark;
            self.changed.notify_waiters();
        }
    }

    /// The latest leader epoch in the log's epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock().epochs.latest()
    }

    /// The leader epoch `offset` was written in, from the epoch cache.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        self.lock().epochs.epoch_at(offset)
    }

    /// OffsetForLeaderEpoch: the largest epoch not above `epoch` and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.next_offset)
    }
}

#[cfg(test)]
mod tests {
    use crate::log::segment::now_ms;
    use crate::log::tests::{append, config, open_leader};

    #[test]
    fn an_isr_expansion_holds_the_high_watermark_from_the_ask_to_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_leader(dir.path(), config(&[]), "t").unwrap();
        log.set_replica_role(1, 1, 0, 1, &[1, 2], &[1]).unwrap();
        append(&log, 5, 100);
        assert_eq!(log.high_watermark(), 5);
        log.record_follower_fetch(2, 5, now_ms());
        let (_, isr) = log.wanted_isr(now_ms(), 30_000, &[]).unwrap();
        assert_eq!(isr, vec![1, 2]);
        assert!(
            log.wanted_isr(now_ms(), 30_000, &[]).is_none(),
            "not asked again before the answer"
        );

        append(&log, 5, 100);
        assert_eq!(
            log.high_watermark(),
            5,
            "replica 2 is joining: it holds the HW"
        );
        log.isr_change_refused();
        assert_eq!(log.high_watermark(), 10, "refused: it no longer does");

        log.record_follower_fetch(2, 10, now_ms());
        log.wanted_isr(now_ms(), 30_000, &[]).unwrap();
        append(&log, 5, 100);
        assert_eq!(log.high_watermark(), 10);
        log.set_replica_role(1, 1, 0, 1, &[1, 2], &[1]).unwrap();
        assert_eq!(
            log.high_watermark(),
            10,
            "the same partition epoch: no answer yet"
        );
        log.set_replica_role(1, 1, 0, 2, &[1, 2], &[1, 2]).unwrap();
        log.record_follower_fetch(2, 15, now_ms());
        assert_eq!(log.high_watermark(), 15);
    }
}
