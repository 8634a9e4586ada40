//! The group coordinator for the groups whose `__consumer_offsets` partition this broker
//! leads: which partitions it owns, the groups' membership (the classic protocol, in
//! `classic`), committed offsets (durable in `__consumer_offsets`, see `store`), and what
//! DescribeGroups, ListGroups, OffsetDelete and DeleteGroups see of them.

mod classic;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;

use crate::coordinator::Ownership;
use classic::Group;
pub use classic::{Committer, JoinRequest, JoinResult, SyncRequest, SyncResult};
use store::{
    apply_offsets, CommittedOffset, GroupSnapshot, LoadedPartition, OffsetEntry, OffsetMap,
    PendingTxnOffsets,
};

/// Group states, named as Kafka reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Unknown to the coordinator (how DescribeGroups shows a group that does not exist).
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Settings of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscription metadata for the chosen protocol (Stable groups only, as in Kafka).
    pub metadata: Bytes,
    /// Current assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Protocol type ("" when none, as for a group known only by committed offsets).
    pub protocol_type: String,
    /// Chosen protocol ("" unless Stable).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// Stores a group's metadata durably (`None` deletes it); called under the group lock.
pub type PersistGroup = Box<dyn Fn(&str, Option<&GroupSnapshot>) + Send + Sync>;

/// The coordinator for the groups whose `__consumer_offsets` partition this broker leads.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<OffsetMap>,
    /// Offsets committed in transactions not yet ended.
    pending: Mutex<PendingTxnOffsets>,
    ownership: Mutex<Ownership>,
    persist: PersistGroup,
}

/// The group id check of the membership APIs (OffsetCommit and the admin APIs take "").
fn valid_group_id(id: &str) -> Result<(), ResponseError> {
    if id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        Ok(())
    }
}

impl GroupCoordinator {
    /// A coordinator that owns no partition yet.
    pub fn new(config: GroupConfig, persist: PersistGroup) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(OffsetMap::new()),
            pending: Mutex::new(PendingTxnOffsets::new()),
            ownership: Mutex::new(Ownership::default()),
            persist,
        })
    }

    fn ownership(&self) -> MutexGuard<'_, Ownership> {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this broker coordinates `group_id` now.
    pub fn owns(&self, group_id: &str) -> bool {
        self.ownership().partition_of(group_id).is_some()
    }

    /// Loaded partitions and the leader epoch each was loaded at.
    pub fn owned_partitions(&self) -> HashMap<i32, i32> {
        self.ownership().partitions().clone()
    }

    /// Takes over one partition's groups and offsets, as read from its log; restored members
    /// keep their generation and assignment and must heartbeat in time.
    pub fn load_partition(
        &self,
        partition: i32,
        leader_epoch: i32,
        partition_count: usize,
        loaded: LoadedPartition,
    ) {
        self.unload_partition(partition);
        self.groups().extend(
            loaded
                .groups
                .into_iter()
                .map(|(id, snapshot)| (id, Group::restore(snapshot))),
        );
        self.offsets().extend(loaded.offsets);
        let mut pending = self.pending();
        for (producer, groups) in loaded.pending {
            pending.entry(producer).or_default().extend(groups);
        }
        drop(pending);
        self.ownership()
            .load(partition, leader_epoch, partition_count);
    }

    /// Forgets one partition's groups and offsets (leadership moved away).
    pub fn unload_partition(&self, partition: i32) {
        let Some(mine) = self.ownership().unload(partition) else {
            return;
        };
        self.groups().retain(|id, _| !mine(id));
        self.offsets().retain(|id, _| !mine(id));
        let mut pending = self.pending();
        for groups in pending.values_mut() {
            groups.retain(|id, _| !mine(id));
        }
        pending.retain(|_, groups| !groups.is_empty());
    }

    fn pending(&self) -> MutexGuard<'_, PendingTxnOffsets> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends offsets committed in `producer_id`'s transaction with `append` and, if it
    /// succeeds, stages them, both under the lock `end_txn` takes: a marker appended after them
    /// always finds them staged, and one appended before never does.
    pub fn append_txn_offsets<T, E>(
        &self,
        producer_id: i64,
        group_id: &str,
        entries: Vec<OffsetEntry>,
        append: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut pending = self.pending();
        let appended = append()?;
        pending
            .entry(producer_id)
            .or_default()
            .entry(group_id.to_string())
            .or_default()
            .extend(entries);
        Ok(appended)
    }

    /// Ends `producer_id`'s transaction for the groups of `__consumer_offsets-<partition>`:
    /// a commit makes their staged offsets the committed ones, an abort drops them.
    pub fn end_txn(&self, producer_id: i64, partition: i32, commit: bool) {
        let count = self.ownership().partition_count();
        let staged: Vec<(String, Vec<OffsetEntry>)> = {
            let mut pending = self.pending();
            let Some(groups) = pending.get_mut(&producer_id) else {
                return;
            };
            let mine: Vec<String> = groups
                .keys()
                .filter(|id| {
                    count == 0 || crate::coordinator::partition_for(id, count) == partition
                })
                .cloned()
                .collect();
            let staged = mine
                .into_iter()
                .filter_map(|id| groups.remove_entry(&id))
                .collect();
            if groups.is_empty() {
                pending.remove(&producer_id);
            }
            staged
        };
        if commit {
            let mut offsets = self.offsets();
            for (group, entries) in staged {
                apply_offsets(&mut offsets, &group, entries);
            }
        }
    }

    /// Whether an open transaction has committed an offset for this group's partition
    /// (KIP-447: a consumer asking for stable offsets must wait for it).
    pub fn has_pending_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.pending().values().any(|groups| {
            groups.get(group_id).is_some_and(|entries| {
                entries
                    .iter()
                    .any(|((t, p), _)| t == topic && *p == partition)
            })
        })
    }

    fn persist(&self, group_id: &str, group: &Group) {
        (self.persist)(group_id, Some(&group.snapshot()));
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn offsets(&self) -> MutexGuard<'_, OffsetMap> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records committed offsets in memory (after they are durable).
    pub fn record_offsets(&self, group_id: &str, entries: &[OffsetEntry]) {
        apply_offsets(&mut self.offsets(), group_id, entries.to_vec());
    }

    /// The committed offsets of a group.
    pub fn committed(&self, group_id: &str) -> BTreeMap<(String, i32), CommittedOffset> {
        self.offsets().get(group_id).cloned().unwrap_or_default()
    }

    /// Every group id known by membership or by committed offsets.
    pub fn list(&self) -> Vec<GroupDescription> {
        let mut ids: Vec<String> = self.groups().keys().cloned().collect();
        ids.extend(self.offsets().keys().cloned());
        ids.sort();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.describe(id))
            .filter(|g| g.state != GroupState::Dead)
            .collect()
    }

    /// A group's state and members; `None` when the group is unknown. As in Kafka, the
    /// selected protocol and the members' metadata show only while the group is Stable, and
    /// a group known only by its committed offsets is Empty with no protocol type.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups();
        match groups.get(group_id) {
            Some(group) => {
                let stable = group.state == GroupState::Stable;
                Some(GroupDescription {
                    group_id: group_id.to_string(),
                    state: group.state,
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol: if stable {
                        group.protocol.clone().unwrap_or_default()
                    } else {
                        String::new()
                    },
                    members: group
                        .members
                        .iter()
                        .map(|(id, m)| MemberDescription {
                            member_id: id.clone(),
                            group_instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            metadata: if stable {
                                group.metadata_for(m)
                            } else {
                                Bytes::new()
                            },
                            assignment: m.assignment.clone(),
                        })
                        .collect(),
                })
            }
            None if self.offsets().contains_key(group_id) => Some(GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Empty,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// What OffsetDelete may remove: Ok with the topics the group subscribes to (`None`:
    /// unknown, so every topic), GROUP_ID_NOT_FOUND for an unknown group, NON_EMPTY_GROUP for
    /// a group with members that is not a consumer group.
    pub fn offset_delete_check(
        &self,
        group_id: &str,
    ) -> Result<Option<HashSet<String>>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups();
        let Some(group) = groups.get(group_id) else {
            return if self.offsets().contains_key(group_id) {
                Ok(Some(HashSet::new()))
            } else {
                Err(ResponseError::GroupIdNotFound)
            };
        };
        if group.state == GroupState::Empty {
            return Ok(Some(HashSet::new()));
        }
        if group.protocol_type.as_deref() != Some("consumer") {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut topics = HashSet::new();
        for member in group.members.values() {
            let mut metadata = group.metadata_for(member);
            if metadata.len() < 2 {
                return Ok(None);
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            metadata.advance(2);
            match ConsumerProtocolSubscription::decode(&mut metadata, version) {
                Ok(sub) => topics.extend(sub.topics.iter().map(|t| t.to_string())),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(topics))
    }

    /// Committed offsets of groups without members that are older than `retention_ms`.
    pub fn expired_offsets(
        &self,
        now_ms: i64,
        retention_ms: i64,
    ) -> Vec<(String, Vec<(String, i32)>)> {
        let groups = self.groups();
        self.offsets()
            .iter()
            .filter(|(id, _)| groups.get(*id).is_none_or(|g| g.members.is_empty()))
            .map(|(id, offsets)| {
                let old = offsets
                    .iter()
                    .filter(|(_, o)| o.commit_timestamp < now_ms - retention_ms)
                    .map(|(key, _)| key.clone())
                    .collect();
                (id.clone(), old)
            })
            .filter(|(_, old): &(String, Vec<(String, i32)>)| !old.is_empty())
            .collect()
    }

    /// Deletes an empty group; returns the offsets that must be tombstoned.
    pub fn delete(&self, group_id: &str) -> Result<Vec<(String, i32)>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        if let Some(group) = groups.get(group_id) {
            if !group.members.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
        } else if !self.offsets().contains_key(group_id) {
            return Err(ResponseError::GroupIdNotFound);
        }
        groups.remove(group_id);
        (self.persist)(group_id, None);
        Ok(self.committed(group_id).into_keys().collect())
    }
}

#[cfg(test)]
mod state_matrix;
#[cfg(test)]
mod tests;
