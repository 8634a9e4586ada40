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

    /// The ISR this leader should ask for, with the role it was computed under.
    pub fn wanted_isr(&self, now: i64, lag_ms: i64) -> Option<(ReplicaState, Vec<i32>)> {
        let state = self.lock();
        let isr = state
            .replica
            .wanted_isr(state.high_watermark, now, lag_ms)?;
        Some((state.replica.clone(), isr))
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

    /// OffsetForLeaderEpoch: the largest epoch not above `epoch` and where it ends.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let state = self.lock();
        state.epochs.end_offset_for(epoch, state.next_offset)
    }
}
