//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the member
//! checks of OffsetCommit), answering as Kafka's group coordinator does in each group state:
//! Empty → PreparingRebalance → CompletingRebalance → Stable, with static membership (KIP-345),
//! the member id round trip (KIP-394) and skipped assignment for a rejoining static leader
//! (KIP-814).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info};

use super::store::{GroupSnapshot, MemberSnapshot};
use super::{valid_group_id, GroupCoordinator, GroupState};

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
    /// Whether the client understands `skip_assignment` (JoinGroup v9+, KIP-814).
    pub supports_skip_assignment: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    /// Error, if any.
    pub error: Option<ResponseError>,
    /// The generation.
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

impl JoinResult {
    fn failed(error: ResponseError, member_id: &str) -> Self {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// A SyncGroup as the coordinator needs it.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    /// Group id.
    pub group_id: String,
    /// Member id.
    pub member_id: String,
    /// Static membership id (v3+).
    pub group_instance_id: Option<String>,
    /// The generation the member joined.
    pub generation: i32,
    /// Protocol type the member expects (v5+).
    pub protocol_type: Option<String>,
    /// Protocol name the member expects (v5+).
    pub protocol_name: Option<String>,
    /// The leader's assignment per member id (empty from followers).
    pub assignments: Vec<(String, Bytes)>,
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

impl SyncResult {
    fn failed(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            ..Default::default()
        }
    }
}

/// Who an OffsetCommit comes from.
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    /// Member id ("" from admin tools and simple consumers).
    pub member_id: &'a str,
    /// Static membership id (v7+).
    pub group_instance_id: Option<&'a str>,
    /// Generation (-1 from admin tools and simple consumers).
    pub generation: i32,
}

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_heartbeat: Instant,
}

impl Member {
    fn from_request(request: &JoinRequest, now: Instant) -> Self {
        Member {
            instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: millis(request.session_timeout_ms),
            rebalance_timeout: millis(request.rebalance_timeout_ms),
            protocols: request.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat: now,
        }
    }

    fn update(&mut self, request: &JoinRequest, now: Instant) {
        self.session_timeout = millis(request.session_timeout_ms);
        self.rebalance_timeout = millis(request.rebalance_timeout_ms);
        self.protocols = request.protocols.clone();
        self.last_heartbeat = now;
    }
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined, with their expiry.
    pending_members: HashMap<String, Instant>,
    /// Static instance id → its current member id.
    pub(super) static_members: HashMap<String, String>,
    awaiting_join: HashMap<String, oneshot::Sender<JoinResult>>,
    awaiting_sync: HashMap<String, oneshot::Sender<SyncResult>>,
    /// Bumped whenever a rebalance starts, so stale timers do nothing.
    rebalance_round: u64,
    join_deadline: Option<Instant>,
    /// The rebalance started from Empty: it waits out `group.initial.rebalance.delay.ms`,
    /// extended while new members arrive, instead of completing as soon as all joined.
    initial_rebalance: Option<InitialRebalance>,
}

#[derive(Debug, Clone, Copy)]
struct InitialRebalance {
    /// No extension goes past this (the rebalance timeout).
    until: Instant,
}

impl Group {
    pub(super) fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            awaiting_join: HashMap::new(),
            awaiting_sync: HashMap::new(),
            rebalance_round: 0,
            join_deadline: None,
            initial_rebalance: None,
        }
    }

    /// Never had a generation, members or live member ids: what a JoinGroup that got
    /// MEMBER_ID_REQUIRED (and never came back) or failed leaves behind.
    fn is_unused(&self) -> bool {
        self.state == GroupState::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending_members.is_empty()
    }

    /// Kafka's member check: a known instance id under another member id is fenced; an
    /// unknown instance id or member id is unknown.
    fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(current) if current != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    /// Whether a joining member's protocols fit the group.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.state == GroupState::Empty {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn fail_syncs(&mut self, error: ResponseError) {
        for (_, tx) in self.awaiting_sync.drain() {
            let _ = tx.send(SyncResult::failed(error));
        }
    }

    /// Removes a member; its parked JoinGroup gets UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(instance) = m.instance_id {
                self.static_members.remove(&instance);
            }
        }
        if let Some(tx) = self.awaiting_join.remove(member_id) {
            let _ = tx.send(JoinResult::failed(ResponseError::UnknownMemberId, ""));
        }
        self.awaiting_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// The protocol every member supports with the most first-choice votes.
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

    pub(super) fn metadata_for(&self, member: &Member) -> Bytes {
        let chosen = self.protocol.as_deref().unwrap_or_default();
        member
            .protocols
            .iter()
            .find(|(n, _)| n == chosen)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), self.metadata_for(m)))
            .collect()
    }

    /// The current generation as a JoinGroup answer; the leader gets the member list.
    fn current_generation(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.member_list()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn park_join(&mut self, member_id: &str) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(old) = self.awaiting_join.insert(member_id.to_string(), tx) {
            let _ = old.send(JoinResult::failed(
                ResponseError::RebalanceInProgress,
                member_id,
            ));
        }
        rx
    }

    pub(super) fn snapshot(&self) -> GroupSnapshot {
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

    /// A group as loaded from `__consumer_offsets`: Stable with members, else Empty; every
    /// member must heartbeat within its session from now.
    pub(super) fn restore(snapshot: GroupSnapshot) -> Self {
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
}

/// What a JoinGroup does once validated: answer now, or wait for the join phase.
pub(super) enum Joined {
    Now(JoinResult),
    Later(oneshot::Receiver<JoinResult>),
}

impl GroupCoordinator {
    /// JoinGroup: registers the member and waits for the rebalance to complete.
    pub async fn join(self: &Arc<Self>, request: JoinRequest) -> JoinResult {
        let joined = self.join_now(&request);
        match joined {
            Joined::Now(result) => result,
            Joined::Later(rx) => rx.await.unwrap_or_else(|_| {
                JoinResult::failed(ResponseError::RebalanceInProgress, &request.member_id)
            }),
        }
    }

    pub(super) fn join_now(self: &Arc<Self>, request: &JoinRequest) -> Joined {
        let fail = |error| Joined::Now(JoinResult::failed(error, &request.member_id));
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
        let mut groups = self.groups();
        if !groups.contains_key(&request.group_id) && !request.member_id.is_empty() {
            return fail(ResponseError::UnknownMemberId);
        }
        let group = groups
            .entry(request.group_id.clone())
            .or_insert_with(Group::new);
        let known = group.members.contains_key(&request.member_id)
            || group.pending_members.contains_key(&request.member_id);
        if !known && group.members.len() >= self.config.max_size {
            group.pending_members.remove(&request.member_id);
            return Joined::Now(JoinResult::failed(ResponseError::GroupMaxSizeReached, ""));
        }
        if !group.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let now = Instant::now();
        if request.member_id.is_empty() {
            return match &request.group_instance_id {
                Some(instance) => match group.static_members.get(instance).cloned() {
                    Some(old) => self.replace_static_member(group, request, &old),
                    None => {
                        let id = format!("{instance}-{}", uuid::Uuid::new_v4());
                        self.add_member(group, request, id, now)
                    }
                },
                None => {
                    let id = format!("{}-{}", request.client_id, uuid::Uuid::new_v4());
                    if request.require_known_member_id {
                        let expiry = now + millis(request.session_timeout_ms);
                        group.pending_members.insert(id.clone(), expiry);
                        Joined::Now(JoinResult::failed(ResponseError::MemberIdRequired, &id))
                    } else {
                        self.add_member(group, request, id, now)
                    }
                }
            };
        }
        if group.pending_members.remove(&request.member_id).is_some() {
            return self.add_member(group, request, request.member_id.clone(), now);
        }
        if let Err(e) =
            group.validate_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return fail(e);
        }
        self.rejoin(group, request, now)
    }

    /// A new member: added, then a rebalance starts (or the running one takes it in).
    fn add_member(
        self: &Arc<Self>,
        group: &mut Group,
        request: &JoinRequest,
        member_id: String,
        now: Instant,
    ) -> Joined {
        if group.state == GroupState::Empty {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        group
            .members
            .insert(member_id.clone(), Member::from_request(request, now));
        // As in Kafka, the first member added leads; with clients that read only their own
        // kind of subscription (kafka-go and sarama), another pick fails the rebalance.
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        let rx = group.park_join(&member_id);
        self.rebalance_or_complete_join(&request.group_id, group);
        Joined::Later(rx)
    }

    /// A known member joins again: unchanged metadata outside a rebalance gets the current
    /// generation back; anything else (or the leader in a stable group) rebalances.
    fn rejoin(self: &Arc<Self>, group: &mut Group, request: &JoinRequest, now: Instant) -> Joined {
        let member_id = request.member_id.as_str();
        let unchanged = group.members[member_id].protocols == request.protocols;
        let is_leader = group.leader.as_deref() == Some(member_id);
        match group.state {
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && (group.state == GroupState::CompletingRebalance || !is_leader) =>
            {
                if let Some(m) = group.members.get_mut(member_id) {
                    m.last_heartbeat = now;
                }
                Joined::Now(group.current_generation(member_id))
            }
            _ => {
                if let Some(m) = group.members.get_mut(member_id) {
                    m.update(request, now);
                }
                let rx = group.park_join(member_id);
                self.rebalance_or_complete_join(&request.group_id, group);
                Joined::Later(rx)
            }
        }
    }

    /// KIP-345: a static member that joins again with an empty member id takes over its old
    /// place under a new id; the old id is fenced. A stable group whose selected protocol
    /// would not change does not rebalance: the member gets the current generation, and a
    /// restarted leader the member list with `skip_assignment` (KIP-814).
    fn replace_static_member(
        self: &Arc<Self>,
        group: &mut Group,
        request: &JoinRequest,
        old_id: &str,
    ) -> Joined {
        let instance = request.group_instance_id.clone().unwrap_or_default();
        let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
        let leader_before = group.leader.clone().unwrap_or_default();
        let Some(mut member) = group.members.remove(old_id) else {
            return Joined::Now(JoinResult::failed(ResponseError::UnknownMemberId, ""));
        };
        if let Some(tx) = group.awaiting_join.remove(old_id) {
            let _ = tx.send(JoinResult::failed(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(tx) = group.awaiting_sync.remove(old_id) {
            let _ = tx.send(SyncResult::failed(ResponseError::FencedInstanceId));
        }
        let now = Instant::now();
        member.update(request, now);
        group.members.insert(new_id.clone(), member);
        group.static_members.insert(instance, new_id.clone());
        if group.leader.as_deref() == Some(old_id) {
            group.leader = Some(new_id.clone());
        }
        match group.state {
            GroupState::Stable if group.select_protocol() == group.protocol => {
                self.persist(&request.group_id, group);
                info!(
                    group = %request.group_id,
                    old = old_id,
                    new = %new_id,
                    "static member replaced without a rebalance"
                );
                let mut result = group.current_generation(&new_id);
                let is_leader = group.leader.as_deref() == Some(new_id.as_str());
                if request.supports_skip_assignment {
                    result.skip_assignment = is_leader;
                } else {
                    // Before KIP-814 a restarted leader must not assign: it is told the
                    // leader is its old id, so it acts as a follower.
                    result.leader = leader_before;
                    result.members = Vec::new();
                }
                Joined::Now(result)
            }
            _ => {
                let rx = group.park_join(&new_id);
                self.rebalance_or_complete_join(&request.group_id, group);
                Joined::Later(rx)
            }
        }
    }

    /// After a membership change: a settled group starts a rebalance; a rebalancing one
    /// checks whether its join phase is complete.
    fn rebalance_or_complete_join(self: &Arc<Self>, group_id: &str, group: &mut Group) {
        match group.state {
            GroupState::PreparingRebalance => {
                if let Some(initial) = group.initial_rebalance {
                    // A newcomer during the initial delay extends it, up to the rebalance timeout.
                    let extended =
                        (Instant::now() + self.config.initial_rebalance_delay).min(initial.until);
                    group.join_deadline =
                        Some(extended.max(group.join_deadline.unwrap_or(extended)));
                }
                self.maybe_complete_join(group_id, group, false);
            }
            GroupState::Empty | GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(group_id, group)
            }
            GroupState::Dead => {}
        }
    }

    fn prepare_rebalance(self: &Arc<Self>, group_id: &str, group: &mut Group) {
        if group.state == GroupState::CompletingRebalance {
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
            }
        }
        group.fail_syncs(ResponseError::RebalanceInProgress);
        let initial = group.state == GroupState::Empty;
        group.state = GroupState::PreparingRebalance;
        group.rebalance_round += 1;
        let longest = group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let now = Instant::now();
        let deadline = if initial {
            group.initial_rebalance = Some(InitialRebalance {
                until: now + longest,
            });
            now + self.config.initial_rebalance_delay.min(longest)
        } else {
            group.initial_rebalance = None;
            now + longest
        };
        group.join_deadline = Some(deadline);
        debug!(
            group = group_id,
            generation = group.generation,
            initial,
            "rebalance started"
        );
        self.arm_join_timer(group_id, group.rebalance_round);
        self.maybe_complete_join(group_id, group, false);
    }

    /// Completes the join phase at its deadline, unless the round moved on or the deadline
    /// was extended meanwhile.
    fn arm_join_timer(self: &Arc<Self>, group_id: &str, round: u64) {
        let this = self.clone();
        let group_id = group_id.to_string();
        tokio::spawn(async move {
            loop {
                let deadline = {
                    let groups = this.groups();
                    match groups.get(&group_id) {
                        Some(g)
                            if g.rebalance_round == round
                                && g.state == GroupState::PreparingRebalance =>
                        {
                            g.join_deadline
                        }
                        _ => return,
                    }
                };
                let Some(deadline) = deadline else { return };
                tokio::time::sleep_until(deadline).await;
                let mut groups = this.groups();
                let Some(group) = groups.get_mut(&group_id) else {
                    return;
                };
                if group.rebalance_round != round || group.state != GroupState::PreparingRebalance {
                    return;
                }
                if group.join_deadline.is_some_and(|d| Instant::now() < d) {
                    continue;
                }
                this.maybe_complete_join(&group_id, group, true);
                if group.rebalance_round != round || group.state != GroupState::PreparingRebalance {
                    return;
                }
            }
        });
    }

    /// Completes the join phase once every member (and no pending id) has joined, or at the
    /// deadline; dynamic members that did not rejoin by then are removed.
    fn maybe_complete_join(&self, group_id: &str, group: &mut Group, deadline_passed: bool) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let everyone_joined = group.pending_members.is_empty()
            && group
                .members
                .keys()
                .all(|m| group.awaiting_join.contains_key(m));
        if !deadline_passed && (group.initial_rebalance.is_some() || !everyone_joined) {
            return;
        }
        let missing: Vec<String> = group
            .members
            .iter()
            .filter(|(id, m)| !group.awaiting_join.contains_key(*id) && m.instance_id.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for m in missing {
            group.remove_member(&m);
        }
        if group.awaiting_join.is_empty() && !group.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them.
            let longest = group
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            group.join_deadline = Some(Instant::now() + longest);
            return;
        }
        group.generation += 1;
        group.join_deadline = None;
        group.initial_rebalance = None;
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
            .is_none_or(|l| !group.awaiting_join.contains_key(l))
        {
            group.leader = group
                .members
                .keys()
                .find(|id| group.awaiting_join.contains_key(*id))
                .cloned();
        }
        group.state = GroupState::CompletingRebalance;
        let now = Instant::now();
        for m in group.members.values_mut() {
            m.last_heartbeat = now;
        }
        info!(
            group = group_id,
            generation = group.generation,
            members = group.members.len(),
            protocol = group.protocol.as_deref().unwrap_or(""),
            "rebalance completed join phase"
        );
        let waiting: Vec<_> = group.awaiting_join.drain().collect();
        for (member_id, tx) in waiting {
            let _ = tx.send(group.current_generation(&member_id));
        }
    }

    /// SyncGroup: the leader hands out assignments; everyone waits for theirs.
    pub async fn sync(&self, request: SyncRequest) -> SyncResult {
        let receiver = match self.sync_now(request) {
            Ok(result) => return result,
            Err(rx) => rx,
        };
        receiver
            .await
            .unwrap_or_else(|_| SyncResult::failed(ResponseError::RebalanceInProgress))
    }

    pub(super) fn sync_now(
        &self,
        request: SyncRequest,
    ) -> Result<SyncResult, oneshot::Receiver<SyncResult>> {
        let fail = |e| Ok(SyncResult::failed(e));
        if let Err(e) = valid_group_id(&request.group_id) {
            return fail(e);
        }
        if !self.owns(&request.group_id) {
            return fail(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let Some(group) = groups
            .get_mut(&request.group_id)
            .filter(|g| g.state != GroupState::Empty)
        else {
            return fail(ResponseError::UnknownMemberId);
        };
        if let Err(e) =
            group.validate_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return fail(e);
        }
        if request.generation != group.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        let inconsistent = |asked: &Option<String>, have: &Option<String>| matches!((asked, have), (Some(a), Some(h)) if a != h);
        if inconsistent(&request.protocol_type, &group.protocol_type)
            || inconsistent(&request.protocol_name, &group.protocol)
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::PreparingRebalance => return fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                return Ok(SyncResult {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: group.members[&request.member_id].assignment.clone(),
                })
            }
            GroupState::Empty | GroupState::Dead => return fail(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance => {}
        }
        if group.leader.as_deref() != Some(request.member_id.as_str()) {
            let (tx, rx) = oneshot::channel();
            group.awaiting_sync.insert(request.member_id.clone(), tx);
            return Err(rx);
        }
        let mut by_member: HashMap<String, Bytes> = request.assignments.into_iter().collect();
        for (id, m) in group.members.iter_mut() {
            m.assignment = by_member.remove(id).unwrap_or_default();
        }
        group.state = GroupState::Stable;
        self.persist(&request.group_id, group);
        let assigned = |group: &Group, id: &str| SyncResult {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment: group
                .members
                .get(id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        };
        for (id, tx) in std::mem::take(&mut group.awaiting_sync) {
            let _ = tx.send(assigned(group, &id));
        }
        Ok(assigned(group, &request.member_id))
    }

    /// Heartbeat: keeps the session alive and tells members when to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        if let Err(e) = valid_group_id(group_id) {
            return Some(e);
        }
        if !self.owns(group_id) {
            return Some(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if let Err(e) = group.validate_member(member_id, instance_id) {
            return Some(e);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        match group.state {
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
        }
    }

    /// LeaveGroup for each (member id, instance id); returns one error per member. A member
    /// id "" with an instance id removes that static member (an admin removal).
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        valid_group_id(group_id)?;
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]);
        };
        let mut results = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance) in members {
            let outcome = if member_id.is_empty() {
                match instance
                    .as_ref()
                    .and_then(|i| group.static_members.get(i))
                    .cloned()
                {
                    Some(id) => Ok(id),
                    None => Err(ResponseError::UnknownMemberId),
                }
            } else if group.pending_members.remove(member_id).is_some() {
                results.push(None);
                continue;
            } else {
                group
                    .validate_member(member_id, instance.as_deref())
                    .map(|()| member_id.clone())
            };
            match outcome {
                Ok(id) => {
                    info!(group = group_id, member = %id, "member left");
                    group.remove_member(&id);
                    removed = true;
                    results.push(None);
                }
                Err(e) => results.push(Some(e)),
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
                self.prepare_rebalance(group_id, group)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group_id, group, false),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Removes members whose session expired, member ids never used, and groups left with
    /// nothing; run periodically.
    pub fn expire_sessions(self: &Arc<Self>) {
        let now = Instant::now();
        let mut groups = self.groups();
        groups.retain(|_, g| !g.is_unused());
        for (group_id, group) in groups.iter_mut() {
            group.pending_members.retain(|_, expiry| *expiry > now);
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(id, m)| {
                    !group.awaiting_join.contains_key(*id)
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                info!(group = %group_id, member = %id, "member session expired");
                group.remove_member(id);
            }
            if !expired.is_empty() {
                self.after_membership_loss(group_id, group);
            } else if group.state == GroupState::PreparingRebalance {
                // An expired pending id may have been all the join phase was waiting for.
                self.maybe_complete_join(group_id, group, false);
            }
        }
    }

    /// TxnOffsetCommit's check (KIP-447): a member id, static id or generation, when given,
    /// must be the group's current ones; without them the commit is accepted in any state.
    pub fn check_txn_commit(
        &self,
        group_id: &str,
        committer: Committer<'_>,
    ) -> Result<(), ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups();
        let Some(group) = groups.get(group_id) else {
            return Ok(());
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if !committer.member_id.is_empty() || committer.group_instance_id.is_some() {
            group.validate_member(committer.member_id, committer.group_instance_id)?;
        }
        if committer.generation >= 0 && committer.generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Validates an OffsetCommit's sender as Kafka does: a member must be current (and not
    /// fenced); a commit without member and generation (admin tools, simple consumers) is
    /// taken only by a group without members; CompletingRebalance refuses every commit.
    pub fn check_commit(
        &self,
        group_id: &str,
        committer: Committer<'_>,
    ) -> Result<(), ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            // No membership: a simple group, known by its offsets or new.
            return if committer.generation < 0 {
                Ok(())
            } else if self.offsets().contains_key(group_id) {
                Err(ResponseError::UnknownMemberId)
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if group.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if committer.generation < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if committer.generation >= 0
            || !committer.member_id.is_empty()
            || committer.group_instance_id.is_some()
        {
            group.validate_member(committer.member_id, committer.group_instance_id)?;
            if committer.generation != group.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if group.state != GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        match group.state {
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Stable | GroupState::PreparingRebalance => {
                if let Some(m) = group.members.get_mut(committer.member_id) {
                    m.last_heartbeat = Instant::now();
                }
                Ok(())
            }
            GroupState::Empty | GroupState::Dead => Ok(()),
        }
    }
}
