//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups and DeleteGroups.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::warn;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::produce::AwaitingIsr;
use super::{authorized_operations, str_bytes, topic_name, Context, RequestInfo};
use crate::group::store::{partition_for, CommittedOffset, OFFSETS_TOPIC};
use crate::group::{Committer, GroupState, JoinRequest, SyncRequest};
use crate::log::segment::now_ms;
use crate::security::acl::resource;
use crate::txn::TXN_TOPIC;

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn opt_str(s: Option<String>) -> Option<StrBytes> {
    s.map(StrBytes::from_string)
}

/// FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets`
/// partition, a transactional id's the leader of its `__transaction_state` partition (the
/// topic is created on the first such request).
pub fn find_coordinator(
    ctx: &Arc<Context>,
    info: &RequestInfo,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let internal_topic = match request.key_type {
        0 => OFFSETS_TOPIC,
        1 => {
            super::transactions::ensure_txn_topic(ctx);
            TXN_TOPIC
        }
        _ => "",
    };
    let image = ctx.controller.image();
    let answer = |key: StrBytes| {
        let c = Coordinator::default().with_key(key.clone());
        if internal_topic.is_empty() {
            return c
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes("unknown coordinator key type")));
        }
        let leader = image.topics.get(internal_topic).and_then(|t| {
            let p = &t.partitions[partition_for(&key, t.partitions.len()) as usize];
            image.brokers.get(&p.leader).filter(|b| !b.fenced)
        });
        match leader.map(|b| (b.id, b.endpoint(&info.listener.name))) {
            Some((id, (host, port))) => c
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port as i32),
            None => c
                .with_node_id(BrokerId(-1))
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        }
    };
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .iter()
                .cloned()
                .map(answer)
                .collect(),
        );
    }
    let c = answer(request.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

/// JoinGroup (KIP-394 member id round trip from v4, static members from v5).
pub async fn join_group(
    ctx: &Context,
    info: &RequestInfo,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let result = ctx
        .groups
        .join(JoinRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            client_id: info.client_id.clone(),
            client_host: format!("/{}", info.peer.ip()),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        })
        .await;
    JoinGroupResponse::default()
        .with_error_code(code(result.error))
        .with_generation_id(result.generation_id)
        .with_protocol_type(if version >= 7 {
            opt_str(result.protocol_type)
        } else {
            None
        })
        .with_protocol_name(match result.protocol_name {
            Some(name) => Some(StrBytes::from_string(name)),
            // Before v7 the field is not nullable.
            None if version < 7 => Some(StrBytes::default()),
            None => None,
        })
        .with_leader(StrBytes::from_string(result.leader))
        .with_skip_assignment(version >= 9 && result.skip_assignment)
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(if version >= 5 {
                            opt_str(instance)
                        } else {
                            None
                        })
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

/// SyncGroup.
pub async fn sync_group(
    ctx: &Context,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let result = ctx
        .groups
        .sync(SyncRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            generation: request.generation_id,
            protocol_type: request.protocol_type.map(|s| s.to_string()),
            protocol_name: request.protocol_name.map(|s| s.to_string()),
            assignments: request
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        })
        .await;
    let response = SyncGroupResponse::default()
        .with_error_code(code(result.error))
        .with_assignment(result.assignment);
    if version >= 5 {
        response
            .with_protocol_type(opt_str(result.protocol_type))
            // Nullable in every version that has it (v5+), unlike JoinGroup's before v7.
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
    } else {
        response
    }
}

/// Heartbeat.
pub fn heartbeat(ctx: &Context, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = ctx.groups.heartbeat(
        &request.group_id.0,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code(error))
}

/// LeaveGroup, single member (v0-2) or batched (v3+).
pub fn leave_group(ctx: &Context, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match ctx.groups.leave(&request.group_id.0, &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), error)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(opt_str(instance))
                        .with_error_code(code(error))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(code(results[0])),
    }
}

/// How long an offset commit waits for the ISR of its `__consumer_offsets` partition.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// OffsetCommit: validates, appends to `__consumer_offsets`, waits for the ISR to have it
/// (as Kafka's acks=all append does), then updates memory.
pub async fn offset_commit(ctx: &Context, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let check = ctx.groups.check_commit(
        &group_id,
        Committer {
            member_id: &request.member_id,
            group_instance_id: request.group_instance_id.as_deref(),
            generation: request.generation_id_or_member_epoch,
        },
    );
    let image = ctx.controller.image();
    let now = now_ms();
    let mut accepted = Vec::new();
    let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::new();
    for topic in &request.topics {
        let known = image.topics.get(topic.name.0.as_str());
        errors.push(
            topic
                .partitions
                .iter()
                .map(|p| {
                    if let Err(e) = check {
                        return Some(e);
                    }
                    let exists = known.is_some_and(|t| {
                        p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
                    });
                    if !exists {
                        return Some(ResponseError::UnknownTopicOrPartition);
                    }
                    accepted.push((
                        (topic.name.0.to_string(), p.partition_index),
                        Some(CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                            commit_timestamp: now,
                        }),
                    ));
                    None
                })
                .collect(),
        );
    }
    let mut storage_error = None;
    match ctx.offset_store.append(&image, &group_id, &accepted) {
        Err(e) => {
            warn!(group = %group_id, error = %e, "could not persist committed offsets");
            storage_error = Some(ResponseError::CoordinatorNotAvailable);
        }
        Ok(appended) => {
            let replicated = match appended {
                Some(a) => {
                    let wait = AwaitingIsr {
                        log: a.log,
                        end_offset: a.end_offset,
                        leader_epoch: a.leader_epoch,
                        min_isr: 1,
                    };
                    wait.wait(Instant::now() + COMMIT_TIMEOUT).await
                }
                None => Ok(()),
            };
            match replicated {
                Ok(()) => ctx.groups.record_offsets(&group_id, &accepted),
                Err(e) => {
                    warn!(group = %group_id, error = ?e.error, "committed offsets were not replicated");
                    storage_error = Some(match e.error {
                        ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                        _ => ResponseError::RequestTimedOut,
                    });
                }
            }
        }
    }
    let topics = request
        .topics
        .iter()
        .zip(errors)
        .map(|(topic, errors)| {
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .zip(errors)
                        .map(|(p, error)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(error.or(storage_error)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Committed offsets by topic: (topic, [(partition, offset if committed)]).
type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// The committed offsets of one group for the requested (or all) partitions.
fn fetch_group(
    ctx: &Context,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> TopicOffsets {
    let committed = ctx.groups.committed(group);
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let offsets = parts
                    .into_iter()
                    .map(|p| (p, committed.get(&(t.clone(), p)).cloned()))
                    .collect();
                (t, offsets)
            })
            .collect(),
        None => {
            let mut by_topic: TopicOffsets = Vec::new();
            for ((t, p), o) in committed {
                match by_topic.last_mut() {
                    Some((last, parts)) if *last == t => parts.push((p, Some(o))),
                    _ => by_topic.push((t, vec![(p, Some(o))])),
                }
            }
            by_topic
        }
    }
}

/// UNSTABLE_OFFSET_COMMIT for a partition whose offset an open transaction is committing,
/// when the consumer asked for stable offsets (KIP-447); it retries.
fn unstable_code(unstable: bool) -> i16 {
    if unstable {
        ResponseError::UnstableOffsetCommit.code()
    } else {
        0
    }
}

/// OffsetFetch, single group (v1-7) or batched groups (v8+).
pub fn offset_fetch(
    ctx: &Context,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let result = fetch_group(ctx, &g.group_id.0, topics);
                let response =
                    OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                if !ctx.groups.owns(&g.group_id.0) {
                    return response.with_error_code(ResponseError::NotCoordinator.code());
                }
                response.with_topics(
                    result
                        .into_iter()
                        .map(|(t, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(topic_name(&t))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, o)| {
                                            let (offset, epoch, metadata) = split(o);
                                            let unstable = request.require_stable
                                                && ctx.groups.has_pending_offset(
                                                    &g.group_id,
                                                    &t,
                                                    p,
                                                );
                                            OffsetFetchResponsePartitions::default()
                                                .with_error_code(unstable_code(unstable))
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(metadata)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    if !ctx.groups.owns(&request.group_id.0) {
        return OffsetFetchResponse::default()
            .with_error_code(ResponseError::NotCoordinator.code());
    }
    let result = fetch_group(ctx, &request.group_id.0, topics);
    OffsetFetchResponse::default().with_topics(
        result
            .into_iter()
            .map(|(t, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, o)| {
                                let (offset, epoch, metadata) = split(o);
                                let unstable = request.require_stable
                                    && ctx.groups.has_pending_offset(&request.group_id, &t, p);
                                OffsetFetchResponsePartition::default()
                                    .with_error_code(unstable_code(unstable))
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(if version >= 5 {
                                        epoch
                                    } else {
                                        -1
                                    })
                                    .with_metadata(metadata)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

fn split(o: Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match o {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(StrBytes::from_string(o.metadata.unwrap_or_default())),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

/// DescribeGroups; a group that does not exist is "Dead" with no error, as in Kafka.
pub fn describe_groups(
    ctx: &Context,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let operations = authorized_operations::field(
        version >= 3 && request.include_authorized_operations,
        resource::GROUP,
        |_| true,
    );
    let groups = request
        .groups
        .into_iter()
        .map(|id| match ctx.groups.describe(&id.0) {
            _ if !ctx.groups.owns(&id.0) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(ResponseError::NotCoordinator.code()),
            Some(g) => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(g.state.name()))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_protocol_data(StrBytes::from_string(g.protocol))
                .with_authorized_operations(operations)
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    opt_str(m.group_instance_id)
                                } else {
                                    None
                                })
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            // From v6 (KIP-1043) an unknown group is an error rather than a Dead group.
            None if version >= 6 => DescribedGroup::default()
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(&format!("Group {} not found.", id.0))))
                .with_group_id(id)
                .with_group_state(str_bytes(GroupState::Dead.name())),
            None => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(GroupState::Dead.name()))
                .with_authorized_operations(operations),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups, with the states filter (v4+).
pub fn list_groups(ctx: &Context, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let groups = ctx
        .groups
        .list()
        .into_iter()
        .filter(|g| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(g.state.name()))
        })
        .filter(|_| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case("classic"))
        })
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(str_bytes(g.state.name()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(str_bytes("classic"))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// OffsetDelete: removes committed offsets of topics the group is not subscribed to.
pub fn offset_delete(ctx: &Context, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    let subscribed = match ctx.groups.offset_delete_check(&group) {
        Ok(topics) => topics,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut tombstones = Vec::new();
    let mut topics = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let r = OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index);
                if subscribed.as_ref().is_none_or(|s| s.contains(&name)) {
                    r.with_error_code(ResponseError::GroupSubscribedToTopic.code())
                } else {
                    tombstones.push(((name.clone(), p.partition_index), None));
                    r
                }
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    if let Err(e) = ctx
        .offset_store
        .append(&ctx.controller.image(), &group, &tombstones)
    {
        warn!(%group, error = %e, "could not delete offsets");
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    ctx.groups.record_offsets(&group, &tombstones);
    OffsetDeleteResponse::default().with_topics(topics)
}

/// DeleteGroups: only empty groups; their offsets are tombstoned.
pub fn delete_groups(ctx: &Context, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let image = ctx.controller.image();
    let results = request
        .groups_names
        .into_iter()
        .map(|id| {
            let error = match ctx.groups.delete(&id.0) {
                Err(e) => Some(e),
                Ok(keys) => {
                    let tombstones: Vec<_> = keys.into_iter().map(|k| (k, None)).collect();
                    match ctx.offset_store.append(&image, &id.0, &tombstones) {
                        Ok(_) => {
                            ctx.groups.record_offsets(&id.0, &tombstones);
                            None
                        }
                        Err(e) => {
                            warn!(group = %id.0.as_str(), error = %e, "could not delete offsets");
                            Some(ResponseError::CoordinatorNotAvailable)
                        }
                    }
                }
            };
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code(error))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
