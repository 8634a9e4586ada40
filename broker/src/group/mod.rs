//! The classic consumer group coordinator: membership, the rebalance state machine
//! (Empty → PreparingRebalance → CompletingRebalance → Stable → Dead), static membership,
//! session expiry, and committed offsets (durable in `__consumer_offsets`).

pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info};

use store::{partition_for, CommittedOffset, GroupMap, GroupSnapshot, MemberSnapshot, OffsetMap};

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
    /// Deleted.
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

/// Timing settings of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
}

/// A member's JoinGroup as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id ("" on the first join).
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id, for generated member ids and DescribeGroups.
    pub client_id: String,
    /// Client address, for DescribeGroups.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Usually "consumer".
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether the client understands MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// The new generation.
    pub generation_id: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader: every member's (id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader need not assign: the group keeps its current assignment (KIP-814).
    pub skip_assignment: bool,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// The chosen assignor.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
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
    /// Subscription metadata for the chosen protocol.
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
    /// Protocol type ("" when none).
    pub protocol_type: String,
    /// Chosen protocol ("" when none).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_members: Vec<String>,
    static_members: HashMap<String, String>,
    awaiting_join: HashMap<String, oneshot::Sender<JoinResult>>,
    awaiting_sync: HashMap<String, oneshot::Sender<SyncResult>>,
    /// Bumped whenever a rebalance starts, so stale timers do nothing.
    rebalance_round: u64,
    join_deadline: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: Vec::new(),
            static_members: HashMap::new(),
            awaiting_join: HashMap::new(),
            awaiting_sync: HashMap::new(),
            rebalance_round: 0,
            join_deadline: None,
        }
    }

    fn fail_syncs(&mut self, error: ResponseError) {
        for (_, tx) in self.awaiting_sync.drain() {
            let _ = tx.send(SyncResult {
                error: Some(error),
                ..Default::default()
            });
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(instance) = m.instance_id {
                self.static_members.remove(&instance);
            }
        }
        if let Some(tx) = self.awaiting_join.remove(member_id) {
            let _ = tx.send(JoinResult {
                error: Some(ResponseError::UnknownMemberId),
                member_id: member_id.to_string(),
                ..Default::default()
            });
        }
        self.awaiting_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    fn select_protocol(&self) -> Option<String> {
        let mut candidates: Option<Vec<String>> = None;
        for m in self.members.values() {
            let names: Vec<String> = m.protocols.iter().map(|(n, _)| n.clone()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
        let candidates = candidates?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| votes.get(c.as_str()).copied().unwrap_or(0))
            .cloned()
    }

    fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout.as_millis() as u64,
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                    protocols: m
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), b.to_vec()))
                        .collect(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    fn restore(snapshot: GroupSnapshot) -> Self {
        let mut group = Group::new();
        let now = Instant::now();
        group.generation = snapshot.generation;
        group.protocol_type = snapshot.protocol_type;
        group.protocol = snapshot.protocol;
        group.leader = snapshot.leader;
        for m in snapshot.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            group.members.insert(
                m.id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocols: m
                        .protocols
                        .into_iter()
                        .map(|(n, b)| (n, Bytes::from(b)))
                        .collect(),
                    assignment: Bytes::from(m.assignment),
                    last_heartbeat: now,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    fn metadata_for(&self, member: &Member) -> Bytes {
        let chosen = self.protocol.as_deref().unwrap_or_default();
        member
            .protocols
            .iter()
            .find(|(n, _)| n == chosen)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Stores a group's metadata durably (`None` deletes it); called under the group lock.
pub type PersistGroup = Box<dyn Fn(&str, Option<&GroupSnapshot>) + Send + Sync>;

/// The partitions of `__consumer_offsets` this broker leads and has loaded.
#[derive(Debug, Default)]
struct Ownership {
    /// How many partitions the topic has (the group hash's modulus).
    partition_count: usize,
    /// Loaded partitions with the leader epoch they were loaded at.
    partitions: HashMap<i32, i32>,
}

/// The coordinator for the groups whose `__consumer_offsets` partition this broker leads.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<OffsetMap>,
    ownership: Mutex<Ownership>,
    persist: PersistGroup,
}

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
            ownership: Mutex::new(Ownership::default()),
            persist,
        })
    }

    fn ownership(&self) -> MutexGuard<'_, Ownership> {
        self.ownership.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this broker coordinates `group_id` now.
    pub fn owns(&self, group_id: &str) -> bool {
        let ownership = self.ownership();
        ownership.partition_count > 0
            && ownership
                .partitions
                .contains_key(&partition_for(group_id, ownership.partition_count))
    }

    /// Loaded partitions and the leader epoch each was loaded at.
    pub fn owned_partitions(&self) -> HashMap<i32, i32> {
        self.ownership().partitions.clone()
    }

    /// Takes over one partition's groups and offsets, as read from its log; restored members
    /// keep their generation and assignment and must heartbeat in time.
    pub fn load_partition(
        &self,
        partition: i32,
        leader_epoch: i32,
        partition_count: usize,
        offsets: OffsetMap,
        groups: GroupMap,
    ) {
        self.unload_partition(partition);
        self.groups().extend(
            groups
                .into_iter()
                .map(|(id, snapshot)| (id, Group::restore(snapshot))),
        );
        self.offsets().extend(offsets);
        let mut ownership = self.ownership();
        ownership.partition_count = partition_count;
        ownership.partitions.insert(partition, leader_epoch);
    }

    /// Forgets one partition's groups and offsets (leadership moved away).
    pub fn unload_partition(&self, partition: i32) {
        let count = {
            let mut ownership = self.ownership();
            ownership.partitions.remove(&partition);
            ownership.partition_count
        };
        if count == 0 {
            return;
        }
        let mine = |id: &String| partition_for(id, count) == partition;
        self.groups().retain(|id, _| !mine(id));
        self.offsets().retain(|id, _| !mine(id));
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

    /// JoinGroup: registers the member and waits for the rebalance to complete.
    pub async fn join(self: &Arc<Self>, request: JoinRequest) -> JoinResult {
        let fail = |error| JoinResult {
            error: Some(error),
            generation_id: -1,
            member_id: request.member_id.clone(),
            ..Default::default()
        };
        if let Err(e) = valid_group_id(&request.group_id) {
            return fail(e);
        }
        if !self.owns(&request.group_id) {
            return fail(ResponseError::NotCoordinator);
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if request.protocols.is_empty() || request.protocol_type.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let receiver = {
            let mut groups = self.groups();
            let group = groups
                .entry(request.group_id.clone())
                .or_insert_with(Group::new);
            if group.state == GroupState::Dead {
                *group = Group::new();
            }
            if let Some(pt) = &group.protocol_type {
                if !group.members.is_empty() && *pt != request.protocol_type {
                    return fail(ResponseError::InconsistentGroupProtocol);
                }
            }
            let known_static = request.member_id.is_empty()
                && request
                    .group_instance_id
                    .as_ref()
                    .is_some_and(|i| group.static_members.contains_key(i));
            let member_id = match self.resolve_member_id(group, &request) {
                Ok(id) => id,
                Err(result) => return *result,
            };
            if known_static {
                if let Some(result) = self.rejoin_static_without_rebalance(
                    &request.group_id,
                    group,
                    &member_id,
                    &request,
                ) {
                    return result;
                }
            }
            let now = Instant::now();
            let previous_assignment = group
                .members
                .get(&member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            group.members.insert(
                member_id.clone(),
                Member {
                    instance_id: request.group_instance_id.clone(),
                    client_id: request.client_id.clone(),
                    client_host: request.client_host.clone(),
                    session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
                    rebalance_timeout: Duration::from_millis(
                        request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
                    ),
                    protocols: request.protocols.clone(),
                    assignment: previous_assignment,
                    last_heartbeat: now,
                },
            );
            if group.select_protocol().is_none() {
                group.members.remove(&member_id);
                return fail(ResponseError::InconsistentGroupProtocol);
            }
            if let Some(instance) = &request.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member_id.clone());
            }
            group.protocol_type = Some(request.protocol_type.clone());
            let (tx, rx) = oneshot::channel();
            if let Some(old) = group.awaiting_join.insert(member_id.clone(), tx) {
                let _ = old.send(JoinResult {
                    error: Some(ResponseError::RebalanceInProgress),
                    member_id: member_id.clone(),
                    ..Default::default()
                });
            }
            if group.state != GroupState::PreparingRebalance {
                self.start_rebalance(&request.group_id, group);
            }
            self.maybe_complete_join(&request.group_id, group, false);
            rx
        };
        match receiver.await {
            Ok(result) => result,
            Err(_) => fail(ResponseError::RebalanceInProgress),
        }
    }

    /// KIP-345: a static member that restarts with unchanged subscriptions while the group is
    /// stable takes its old place (and assignment) without a rebalance. A restarted leader gets
    /// the member list with `skip_assignment` (KIP-814); its SyncGroup returns the stored
    /// assignment because the group stays stable.
    fn rejoin_static_without_rebalance(
        &self,
        group_id: &str,
        group: &mut Group,
        member_id: &str,
        request: &JoinRequest,
    ) -> Option<JoinResult> {
        let is_leader = group.leader.as_deref() == Some(member_id);
        let member = group.members.get_mut(member_id)?;
        if group.state != GroupState::Stable || member.protocols != request.protocols {
            return None;
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.last_heartbeat = Instant::now();
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.to_string());
        }
        self.persist(group_id, group);
        info!(
            group = group_id,
            member = member_id,
            "static member rejoined without a rebalance"
        );
        let members = if is_leader {
            group
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.instance_id.clone(), group.metadata_for(m)))
                .collect()
        } else {
            Vec::new()
        };
        Some(JoinResult {
            error: None,
            generation_id: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            leader: group.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: is_leader,
        })
    }

    fn resolve_member_id(
        &self,
        group: &mut Group,
        request: &JoinRequest,
    ) -> Result<String, Box<JoinResult>> {
        if request.member_id.is_empty() {
            if let Some(instance) = &request.group_instance_id {
                if let Some(existing) = group.static_members.get(instance).cloned() {
                    // A restarted static member takes over its old identity under a new id.
                    let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                    if let Some(m) = group.members.remove(&existing) {
                        group.members.insert(new_id.clone(), m);
                    }
                    group.awaiting_join.remove(&existing);
                    if group.leader.as_deref() == Some(existing.as_str()) {
                        group.leader = Some(new_id.clone());
                    }
                    return Ok(new_id);
                }
                return Ok(format!("{instance}-{}", uuid::Uuid::new_v4()));
            }
            let new_id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
            if request.require_known_member_id {
                group.pending_members.push(new_id.clone());
                return Err(Box::new(JoinResult {
                    error: Some(ResponseError::MemberIdRequired),
                    generation_id: -1,
                    member_id: new_id,
                    ..Default::default()
                }));
            }
            return Ok(new_id);
        }
        let known = group.members.contains_key(&request.member_id)
            || group.pending_members.contains(&request.member_id);
        if !known {
            return Err(Box::new(JoinResult {
                error: Some(ResponseError::UnknownMemberId),
                generation_id: -1,
                member_id: request.member_id.clone(),
                ..Default::default()
            }));
        }
        group.pending_members.retain(|m| *m != request.member_id);
        Ok(request.member_id.clone())
    }

    fn start_rebalance(self: &Arc<Self>, group_id: &str, group: &mut Group) {
        let was_empty = group.state == GroupState::Empty;
        group.fail_syncs(ResponseError::RebalanceInProgress);
        group.state = GroupState::PreparingRebalance;
        group.rebalance_round += 1;
        let longest = group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let wait = if was_empty {
            self.config.initial_rebalance_delay.min(longest)
        } else {
            longest
        };
        let deadline = Instant::now() + wait;
        group.join_deadline = Some(deadline);
        debug!(
            group = group_id,
            generation = group.generation,
            "rebalance started"
        );
        let round = group.rebalance_round;
        let this = self.clone();
        let group_id = group_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let mut groups = this.groups();
            if let Some(group) = groups.get_mut(&group_id) {
                if group.rebalance_round == round && group.state == GroupState::PreparingRebalance {
                    this.maybe_complete_join(&group_id, group, true);
                }
            }
        });
    }

    /// Completes the join phase when every member has rejoined (after the initial delay)
    /// or when the deadline forces it; members that did not rejoin are removed.
    fn maybe_complete_join(&self, group_id: &str, group: &mut Group, deadline_passed: bool) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let everyone_joined = group
            .members
            .keys()
            .all(|m| group.awaiting_join.contains_key(m));
        let delay_over =
            group.join_deadline.is_some_and(|d| Instant::now() >= d) || deadline_passed;
        if !(delay_over || (everyone_joined && group.generation > 0)) {
            return;
        }
        if !everyone_joined && !deadline_passed {
            return;
        }
        let missing: Vec<String> = group
            .members
            .keys()
            .filter(|m| !group.awaiting_join.contains_key(*m))
            .cloned()
            .collect();
        for m in missing {
            group.remove_member(&m);
        }
        group.generation += 1;
        group.join_deadline = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol = None;
            group.leader = None;
            self.persist(group_id, group);
            return;
        }
        group.protocol = group.select_protocol();
        if group
            .leader
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.state = GroupState::CompletingRebalance;
        let leader = group.leader.clone().unwrap_or_default();
        let members: Vec<(String, Option<String>, Bytes)> = group
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), group.metadata_for(m)))
            .collect();
        let now = Instant::now();
        for m in group.members.values_mut() {
            m.last_heartbeat = now;
        }
        info!(
            group = group_id,
            generation = group.generation,
            members = members.len(),
            protocol = group.protocol.as_deref().unwrap_or(""),
            "rebalance completed join phase"
        );
        for (member_id, tx) in group.awaiting_join.drain() {
            let _ = tx.send(JoinResult {
                error: None,
                generation_id: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol_name: group.protocol.clone(),
                leader: leader.clone(),
                members: if member_id == leader {
                    members.clone()
                } else {
                    Vec::new()
                },
                member_id,
                skip_assignment: false,
            });
        }
    }

    fn check_member(group: &Group, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        if !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// SyncGroup: the leader hands out assignments; everyone waits for theirs.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        let fail = |error| SyncResult {
            error: Some(error),
            ..Default::default()
        };
        if !self.owns(group_id) {
            return fail(ResponseError::NotCoordinator);
        }
        let receiver = {
            let mut groups = self.groups();
            let Some(group) = groups.get_mut(group_id) else {
                return fail(ResponseError::UnknownMemberId);
            };
            if let Err(e) = Self::check_member(group, member_id, generation) {
                return fail(e);
            }
            match group.state {
                GroupState::PreparingRebalance => return fail(ResponseError::RebalanceInProgress),
                GroupState::Stable => {
                    return SyncResult {
                        error: None,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol.clone(),
                        assignment: group.members[member_id].assignment.clone(),
                    }
                }
                GroupState::Empty | GroupState::Dead => {
                    return fail(ResponseError::UnknownMemberId)
                }
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            group.awaiting_sync.insert(member_id.to_string(), tx);
            if group.leader.as_deref() == Some(member_id) {
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, m) in group.members.iter_mut() {
                    m.assignment = by_member.remove(id).unwrap_or_default();
                }
                group.state = GroupState::Stable;
                self.persist(group_id, group);
            }
            if group.state == GroupState::Stable {
                for (id, tx) in group.awaiting_sync.drain() {
                    let _ = tx.send(SyncResult {
                        error: None,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol.clone(),
                        assignment: group
                            .members
                            .get(&id)
                            .map(|m| m.assignment.clone())
                            .unwrap_or_default(),
                    });
                }
            }
            rx
        };
        receiver
            .await
            .unwrap_or_else(|_| fail(ResponseError::RebalanceInProgress))
    }

    /// Heartbeat: keeps the session alive and tells members when to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<ResponseError> {
        if !self.owns(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if !group.members.contains_key(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        if group.state == GroupState::PreparingRebalance {
            return Some(ResponseError::RebalanceInProgress);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        None
    }

    /// LeaveGroup for each (member id, instance id); returns one error per member.
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        let mut results = Vec::new();
        let mut removed = false;
        for (member_id, instance) in members {
            let id = if member_id.is_empty() {
                instance
                    .as_ref()
                    .and_then(|i| group.static_members.get(i).cloned())
                    .unwrap_or_default()
            } else {
                member_id.clone()
            };
            if group.members.contains_key(&id) {
                group.remove_member(&id);
                removed = true;
                results.push(None);
            } else {
                results.push(Some(ResponseError::UnknownMemberId));
            }
        }
        if removed {
            self.after_membership_loss(group_id, group);
        }
        Ok(results)
    }

    fn after_membership_loss(self: &Arc<Self>, group_id: &str, group: &mut Group) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if group.members.is_empty() {
                    group.fail_syncs(ResponseError::RebalanceInProgress);
                    group.state = GroupState::Empty;
                    group.generation += 1;
                    group.protocol = None;
                    group.leader = None;
                    self.persist(group_id, group);
                } else {
                    self.start_rebalance(group_id, group);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group_id, group, false),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Removes members whose session expired; run periodically.
    pub fn expire_sessions(self: &Arc<Self>) {
        let now = Instant::now();
        let mut groups = self.groups();
        for (group_id, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(id, m)| {
                    !group.awaiting_join.contains_key(*id)
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            for id in &expired {
                info!(group = %group_id, member = %id, "member session expired");
                group.remove_member(id);
            }
            self.after_membership_loss(group_id, group);
        }
    }

    /// Validates an OffsetCommit's member and generation (generation -1: a simple commit).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ResponseError> {
        valid_group_id(group_id)?;
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        if generation < 0 {
            return Ok(());
        }
        let groups = self.groups();
        let group = groups
            .get(group_id)
            .ok_or(ResponseError::IllegalGeneration)?;
        Self::check_member(group, member_id, generation)?;
        if group.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Records committed offsets in memory (after they are durable).
    pub fn record_offsets(
        &self,
        group_id: &str,
        entries: &[((String, i32), Option<CommittedOffset>)],
    ) {
        let mut offsets = self.offsets();
        let group = offsets.entry(group_id.to_string()).or_default();
        for (key, value) in entries {
            match value {
                Some(v) => {
                    group.insert(key.clone(), v.clone());
                }
                None => {
                    group.remove(key);
                }
            }
        }
        if group.is_empty() {
            offsets.remove(group_id);
        }
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

    /// A group's state and members; `None` when the group is unknown.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups();
        match groups.get(group_id) {
            Some(group) => Some(GroupDescription {
                group_id: group_id.to_string(),
                state: group.state,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocol: group.protocol.clone().unwrap_or_default(),
                members: group
                    .members
                    .iter()
                    .map(|(id, m)| MemberDescription {
                        member_id: id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: group.metadata_for(m),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            }),
            None if self.offsets().contains_key(group_id) => Some(GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Empty,
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            None => None,
        }
    }

    /// Topics the group's active members subscribe to (empty when it has no members).
    pub fn subscribed_topics(&self, group_id: &str) -> Result<HashSet<String>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups();
        let Some(group) = groups.get(group_id) else {
            return if self.offsets().contains_key(group_id) {
                Ok(HashSet::new())
            } else {
                Err(ResponseError::GroupIdNotFound)
            };
        };
        let mut topics = HashSet::new();
        if group.protocol_type.as_deref() != Some("consumer") {
            return Ok(topics);
        }
        for member in group.members.values() {
            let mut metadata = group.metadata_for(member);
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            metadata.advance(2);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut metadata, version) {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        Ok(topics)
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
mod tests {
    use super::*;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(0),
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 60_000,
        }
    }

    fn join_request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 2_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from_static(b"meta")))
                .collect(),
            require_known_member_id: true,
        }
    }

    /// A coordinator owning the single partition every group hashes to.
    fn coordinator() -> Arc<GroupCoordinator> {
        let c = GroupCoordinator::new(config(), Box::new(|_, _| {}));
        c.load_partition(0, 0, 1, OffsetMap::new(), GroupMap::new());
        c
    }

    #[tokio::test]
    async fn only_loaded_partitions_are_coordinated() {
        let c = GroupCoordinator::new(config(), Box::new(|_, _| {}));
        let result = c.join(join_request("", &["range"])).await;
        assert_eq!(result.error, Some(ResponseError::NotCoordinator));
        let offsets = OffsetMap::from([(
            "g".to_string(),
            BTreeMap::from([(
                ("t".to_string(), 0),
                CommittedOffset {
                    offset: 7,
                    leader_epoch: -1,
                    metadata: None,
                    commit_timestamp: 1,
                },
            )]),
        )]);
        c.load_partition(0, 3, 1, offsets, GroupMap::new());
        assert!(c.owns("g"));
        assert_eq!(c.committed("g")[&("t".to_string(), 0)].offset, 7);
        assert_eq!(c.owned_partitions(), HashMap::from([(0, 3)]));
        c.unload_partition(0);
        assert!(!c.owns("g"));
        assert!(c.committed("g").is_empty());
        assert_eq!(
            c.heartbeat("g", "m", 1),
            Some(ResponseError::NotCoordinator)
        );
    }

    async fn join_fully(c: &Arc<GroupCoordinator>, protocols: &[&str]) -> JoinResult {
        let first = c.join(join_request("", protocols)).await;
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        c.join(join_request(&first.member_id, protocols)).await
    }

    #[tokio::test]
    async fn single_member_goes_stable() {
        let c = coordinator();
        let joined = join_fully(&c, &["range"]).await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        let synced = c
            .sync(
                "g",
                &joined.member_id,
                1,
                vec![(joined.member_id.clone(), Bytes::from_static(b"a"))],
            )
            .await;
        assert_eq!(
            (synced.error, synced.assignment),
            (None, Bytes::from_static(b"a"))
        );
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
        assert_eq!(c.heartbeat("g", &joined.member_id, 1), None);
        assert_eq!(
            c.heartbeat("g", &joined.member_id, 0),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            c.heartbeat("g", "nobody", 1),
            Some(ResponseError::UnknownMemberId)
        );
        c.leave("g", &[(joined.member_id.clone(), None)]).unwrap();
        assert_eq!(c.describe("g").unwrap().state, GroupState::Empty);
    }

    #[tokio::test]
    async fn second_member_triggers_a_rebalance_with_a_common_protocol() {
        let c = coordinator();
        let a = join_fully(&c, &["cooperative-sticky", "range"]).await;
        c.sync("g", &a.member_id, 1, Vec::new()).await;
        let c2 = c.clone();
        let b_task = tokio::spawn(async move { join_fully(&c2, &["range"]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            c.heartbeat("g", &a.member_id, 1),
            Some(ResponseError::RebalanceInProgress)
        );
        let a2 = c
            .join(join_request(&a.member_id, &["cooperative-sticky", "range"]))
            .await;
        let b = b_task.await.unwrap();
        assert_eq!((a2.generation_id, b.generation_id), (2, 2));
        assert_eq!(a2.protocol_name.as_deref(), Some("range"));
        assert_eq!(a2.leader, a.member_id);
        assert_eq!(a2.members.len(), 2);
        assert!(b.members.is_empty());
    }

    #[tokio::test]
    async fn offsets_of_empty_groups_expire() {
        let old = CommittedOffset {
            offset: 3,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 1_000,
        };
        let fresh = CommittedOffset {
            commit_timestamp: 9_000,
            ..old.clone()
        };
        let c = coordinator();
        c.record_offsets(
            "idle",
            &[
                (("t".into(), 0), Some(old.clone())),
                (("t".into(), 1), Some(fresh)),
            ],
        );
        let joined = join_fully(&c, &["range"]).await;
        c.record_offsets("g", &[(("t".into(), 0), Some(old))]);
        assert_eq!(
            c.expired_offsets(10_000, 5_000),
            vec![("idle".to_string(), vec![("t".to_string(), 0)])]
        );
        c.leave("g", &[(joined.member_id, None)]).unwrap();
        assert_eq!(c.expired_offsets(10_000, 5_000).len(), 2);
    }

    #[tokio::test]
    async fn a_restarted_static_leader_causes_no_rebalance() {
        let c = coordinator();
        let static_join = |instance: &str| JoinRequest {
            group_instance_id: Some(instance.to_string()),
            ..join_request("", &["range"])
        };
        let a = c.join(static_join("a")).await;
        c.sync(
            "g",
            &a.member_id,
            1,
            vec![(a.member_id.clone(), Bytes::from_static(b"pa"))],
        )
        .await;
        let c2 = c.clone();
        let b = tokio::spawn(async move { c2.join(static_join("b")).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a2 = c
            .join(JoinRequest {
                member_id: a.member_id.clone(),
                ..static_join("a")
            })
            .await;
        let b = b.await.unwrap();
        assert_eq!(
            (a2.generation_id, a2.leader.clone()),
            (2, a.member_id.clone())
        );
        let (sa, sb) = tokio::join!(
            c.sync(
                "g",
                &a.member_id,
                2,
                vec![
                    (a.member_id.clone(), Bytes::from_static(b"pa")),
                    (b.member_id.clone(), Bytes::from_static(b"pb")),
                ]
            ),
            c.sync("g", &b.member_id, 2, Vec::new())
        );
        assert_eq!(
            (sa.assignment, sb.assignment.clone()),
            (Bytes::from_static(b"pa"), Bytes::from_static(b"pb"))
        );

        // The leader restarts with the same instance id: new member id, same generation.
        let restarted = c.join(static_join("a")).await;
        assert_eq!(restarted.error, None);
        assert_eq!(restarted.generation_id, 2);
        assert_ne!(restarted.member_id, a.member_id);
        assert_eq!(restarted.leader, restarted.member_id);
        assert!(restarted.skip_assignment);
        assert_eq!(restarted.members.len(), 2);
        assert_eq!(
            c.heartbeat("g", &b.member_id, 2),
            None,
            "the follower sees no rebalance"
        );
        let synced = c.sync("g", &restarted.member_id, 2, Vec::new()).await;
        assert_eq!(synced.assignment, Bytes::from_static(b"pa"));
        assert_eq!(c.describe("g").unwrap().state, GroupState::Stable);
    }

    #[tokio::test]
    async fn bad_joins_get_kafkas_errors() {
        let c = coordinator();
        let mut r = join_request("", &["range"]);
        r.session_timeout_ms = 1;
        assert_eq!(
            c.join(r).await.error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        let mut r = join_request("", &["range"]);
        r.group_id = String::new();
        assert_eq!(c.join(r).await.error, Some(ResponseError::InvalidGroupId));
        assert_eq!(
            c.join(join_request("made-up", &["range"])).await.error,
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(c.delete("nope"), Err(ResponseError::GroupIdNotFound));
    }
}
