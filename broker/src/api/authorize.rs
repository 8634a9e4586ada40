//! Kafka's authorization of each API, applied before a request runs: a request the principal
//! may not make at all is answered with Kafka's error; one it may make in part runs trimmed
//! to the allowed topics or groups, and the refused ones are added to its response (or, for
//! reads, hidden from it). Without an authorizer requests pass untouched.

use kafka_protocol::messages::*;

use super::{str_bytes, Access};
use crate::security::acl::operation::*;
use crate::security::acl::resource;

/// Changes a response after its request ran: refused entries added, hidden ones removed.
pub type Patch = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// What to do with a request.
pub enum Checked {
    /// Run it (maybe trimmed), then apply the patch to its response.
    Run(RequestKind, Option<Patch>),
    /// Answer this without running anything.
    Refused(ResponseKind),
}

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;

/// Kafka's DescribeConfigs/AlterConfigs resource types.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;

/// Splits `items` into (allowed, refused).
fn split<T>(items: Vec<T>, allowed: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|item| allowed(item))
}

fn patch(f: impl FnOnce(&mut ResponseKind) + Send + 'static) -> Option<Patch> {
    Some(Box::new(f))
}

/// The answer for `request` as `access` allows it.
pub fn check(access: &Access, version: i16, request: RequestKind) -> Checked {
    if !access.enabled() {
        return Checked::Run(request, None);
    }
    let a = access.clone();
    let topic = move |op: i8, name: &str| a.allows(op, resource::TOPIC, name);
    let group = |op: i8, name: &str| access.allows(op, resource::GROUP, name);
    let cluster = |op: i8| access.allows_cluster(op);
    match request {
        RequestKind::Produce(mut r) => {
            let (allowed, refused) =
                split(std::mem::take(&mut r.topic_data), |t| topic(WRITE, &t.name));
            r.topic_data = allowed;
            Checked::Run(
                RequestKind::Produce(r),
                patch(move |response| {
                    if let ResponseKind::Produce(p) = response {
                        for t in refused {
                            p.responses.push(
                                produce_response::TopicProduceResponse::default()
                                    .with_name(t.name)
                                    .with_partition_responses(
                                        t.partition_data
                                            .iter()
                                            .map(|d| {
                                                produce_response::PartitionProduceResponse::default(
                                                )
                                                .with_index(d.index)
                                                .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::Fetch(mut r) => {
            let replica = r.replica_id.0 >= 0 || r.replica_state.replica_id.0 >= 0;
            let follower_allowed = !replica || cluster(CLUSTER_ACTION);
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                follower_allowed && (replica || topic(READ, &t.topic))
            });
            r.topics = allowed;
            Checked::Run(
                RequestKind::Fetch(r),
                patch(move |response| {
                    if let ResponseKind::Fetch(f) = response {
                        for t in refused {
                            f.responses.push(
                                fetch_response::FetchableTopicResponse::default()
                                    .with_topic(t.topic)
                                    .with_topic_id(t.topic_id)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                fetch_response::PartitionData::default()
                                                    .with_partition_index(p.partition)
                                                    .with_error_code(TOPIC_DENIED)
                                                    .with_high_watermark(-1)
                                                    .with_last_stable_offset(-1)
                                                    .with_log_start_offset(-1)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::ListOffsets(mut r) => {
            let (allowed, refused) =
                split(std::mem::take(&mut r.topics), |t| topic(DESCRIBE, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::ListOffsets(r),
                patch(move |response| {
                    if let ResponseKind::ListOffsets(l) = response {
                        for t in refused {
                            l.topics.push(
                                list_offsets_response::ListOffsetsTopicResponse::default()
                                    .with_name(t.name)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                list_offsets_response::ListOffsetsPartitionResponse::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let replica = r.replica_id.0 >= 0;
            let follower_allowed = !replica || cluster(CLUSTER_ACTION);
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                follower_allowed && (replica || topic(DESCRIBE, &t.topic))
            });
            r.topics = allowed;
            Checked::Run(
                RequestKind::OffsetForLeaderEpoch(r),
                patch(move |response| {
                    if let ResponseKind::OffsetForLeaderEpoch(o) = response {
                        for t in refused {
                            o.topics.push(
                                offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                                    .with_topic(t.topic)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                offset_for_leader_epoch_response::EpochEndOffset::default()
                                                    .with_partition(p.partition)
                                                    .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::DeleteRecords(mut r) => {
            let (allowed, refused) =
                split(std::mem::take(&mut r.topics), |t| topic(DELETE, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::DeleteRecords(r),
                patch(move |response| {
                    if let ResponseKind::DeleteRecords(d) = response {
                        for t in refused {
                            d.topics.push(
                                delete_records_response::DeleteRecordsTopicResult::default()
                                    .with_name(t.name)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                delete_records_response::DeleteRecordsPartitionResult::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_low_watermark(-1)
                                                    .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::CreateTopics(mut r) => {
            let cluster_create = cluster(CREATE);
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                cluster_create || topic(CREATE, &t.name)
            });
            r.topics = allowed;
            Checked::Run(
                RequestKind::CreateTopics(r),
                patch(move |response| {
                    if let ResponseKind::CreateTopics(c) = response {
                        for t in refused {
                            c.topics.push(
                                create_topics_response::CreatableTopicResult::default()
                                    .with_name(t.name)
                                    .with_num_partitions(-1)
                                    .with_replication_factor(-1)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_error_message(Some(str_bytes("Authorization failed."))),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::DeleteTopics(mut r) => {
            let (names, refused_names) =
                split(std::mem::take(&mut r.topic_names), |n| topic(DELETE, n));
            r.topic_names = names;
            let (states, refused_states) = split(std::mem::take(&mut r.topics), |t| {
                t.name.as_ref().is_some_and(|n| topic(DELETE, n))
            });
            r.topics = states;
            Checked::Run(
                RequestKind::DeleteTopics(r),
                patch(move |response| {
                    if let ResponseKind::DeleteTopics(d) = response {
                        let refused = refused_names
                            .into_iter()
                            .map(|n| (Some(n), Default::default()))
                            .chain(refused_states.into_iter().map(|t| (t.name, t.topic_id)));
                        for (name, id) in refused {
                            d.responses.push(
                                delete_topics_response::DeletableTopicResult::default()
                                    .with_name(name)
                                    .with_topic_id(id)
                                    .with_error_code(TOPIC_DENIED),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::CreatePartitions(mut r) => {
            let (allowed, refused) =
                split(std::mem::take(&mut r.topics), |t| topic(ALTER, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::CreatePartitions(r),
                patch(move |response| {
                    if let ResponseKind::CreatePartitions(c) = response {
                        for t in refused {
                            c.results.push(
                                create_partitions_response::CreatePartitionsTopicResult::default()
                                    .with_name(t.name)
                                    .with_error_code(TOPIC_DENIED),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::DescribeConfigs(r) => {
            let access = access.clone();
            Checked::Run(
                RequestKind::DescribeConfigs(r),
                patch(move |response| {
                    if let ResponseKind::DescribeConfigs(d) = response {
                        for result in &mut d.results {
                            if let Some(code) = config_denied(
                                &access,
                                DESCRIBE_CONFIGS,
                                result.resource_type,
                                &result.resource_name,
                            ) {
                                result.error_code = code;
                                result.error_message = None;
                                result.configs.clear();
                            }
                        }
                    }
                }),
            )
        }
        RequestKind::AlterConfigs(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.resources), |c| {
                config_denied(access, ALTER_CONFIGS, c.resource_type, &c.resource_name).is_none()
            });
            r.resources = allowed;
            let access = access.clone();
            Checked::Run(
                RequestKind::AlterConfigs(r),
                patch(move |response| {
                    if let ResponseKind::AlterConfigs(a) = response {
                        for c in refused {
                            a.responses.push(
                                alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_error_code(
                                        config_denied(
                                            &access,
                                            ALTER_CONFIGS,
                                            c.resource_type,
                                            &c.resource_name,
                                        )
                                        .unwrap_or(CLUSTER_DENIED),
                                    )
                                    .with_resource_type(c.resource_type)
                                    .with_resource_name(c.resource_name),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.resources), |c| {
                config_denied(access, ALTER_CONFIGS, c.resource_type, &c.resource_name).is_none()
            });
            r.resources = allowed;
            let access = access.clone();
            Checked::Run(
                RequestKind::IncrementalAlterConfigs(r),
                patch(move |response| {
                    if let ResponseKind::IncrementalAlterConfigs(a) = response {
                        for c in refused {
                            a.responses.push(
                                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                                    .with_error_code(
                                        config_denied(&access, ALTER_CONFIGS, c.resource_type, &c.resource_name)
                                            .unwrap_or(CLUSTER_DENIED),
                                    )
                                    .with_resource_type(c.resource_type)
                                    .with_resource_name(c.resource_name),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::JoinGroup(r) if !group(READ, &r.group_id) => {
            Checked::Refused(ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_generation_id(-1),
            ))
        }
        RequestKind::SyncGroup(r) if !group(READ, &r.group_id) => Checked::Refused(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::Heartbeat(r) if !group(READ, &r.group_id) => Checked::Refused(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::LeaveGroup(r) if !group(READ, &r.group_id) => Checked::Refused(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::OffsetCommit(r) if !group(READ, &r.group_id) => {
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    offset_commit_response::OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_commit_response::OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(GROUP_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Refused(ResponseKind::OffsetCommit(
                OffsetCommitResponse::default().with_topics(topics),
            ))
        }
        RequestKind::OffsetCommit(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| topic(READ, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::OffsetCommit(r),
                patch(move |response| {
                    if let ResponseKind::OffsetCommit(o) = response {
                        for t in refused {
                            o.topics.push(
                                offset_commit_response::OffsetCommitResponseTopic::default()
                                    .with_name(t.name)
                                    .with_topic_id(t.topic_id)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                offset_commit_response::OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::OffsetFetch(r) => {
            let access = access.clone();
            Checked::Run(
                RequestKind::OffsetFetch(r.clone()),
                patch(move |response| {
                    if let ResponseKind::OffsetFetch(o) = response {
                        hide_offsets(&access, &r, o);
                    }
                }),
            )
        }
        RequestKind::OffsetDelete(r) if !group(DELETE, &r.group_id) => {
            Checked::Refused(ResponseKind::OffsetDelete(
                OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetDelete(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| topic(READ, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::OffsetDelete(r),
                patch(move |response| {
                    if let ResponseKind::OffsetDelete(o) = response {
                        for t in refused {
                            o.topics.push(
                                offset_delete_response::OffsetDeleteResponseTopic::default()
                                    .with_name(t.name)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                offset_delete_response::OffsetDeleteResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(TOPIC_DENIED)
                                            })
                                            .collect(),
                                    ),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::DeleteGroups(mut r) => {
            let (allowed, refused) =
                split(std::mem::take(&mut r.groups_names), |g| group(DELETE, g));
            r.groups_names = allowed;
            Checked::Run(
                RequestKind::DeleteGroups(r),
                patch(move |response| {
                    if let ResponseKind::DeleteGroups(d) = response {
                        for g in refused {
                            d.results.push(
                                delete_groups_response::DeletableGroupResult::default()
                                    .with_group_id(g)
                                    .with_error_code(GROUP_DENIED),
                            );
                        }
                    }
                }),
            )
        }
        RequestKind::DescribeGroups(r) => {
            let access = access.clone();
            let requested = version >= 3 && r.include_authorized_operations;
            Checked::Run(
                RequestKind::DescribeGroups(r),
                patch(move |response| {
                    if let ResponseKind::DescribeGroups(d) = response {
                        for g in &mut d.groups {
                            if access.allows(DESCRIBE, resource::GROUP, &g.group_id) {
                                g.authorized_operations =
                                    access.operations(requested, resource::GROUP, &g.group_id);
                            } else {
                                *g = describe_groups_response::DescribedGroup::default()
                                    .with_group_id(g.group_id.clone())
                                    .with_error_code(GROUP_DENIED);
                            }
                        }
                    }
                }),
            )
        }
        RequestKind::ListGroups(r) => {
            let access = access.clone();
            Checked::Run(
                RequestKind::ListGroups(r),
                patch(move |response| {
                    if let ResponseKind::ListGroups(l) = response {
                        if !access.allows_cluster(DESCRIBE) {
                            l.groups
                                .retain(|g| access.allows(DESCRIBE, resource::GROUP, &g.group_id));
                        }
                    }
                }),
            )
        }
        RequestKind::FindCoordinator(r) => {
            let access = access.clone();
            let key_type = r.key_type;
            let resource_type = if key_type == 1 {
                resource::TRANSACTIONAL_ID
            } else {
                resource::GROUP
            };
            let single = r.key.clone();
            Checked::Run(
                RequestKind::FindCoordinator(r),
                patch(move |response| {
                    if let ResponseKind::FindCoordinator(f) = response {
                        let code = if key_type == 1 { 53 } else { GROUP_DENIED };
                        for c in &mut f.coordinators {
                            if !access.allows(DESCRIBE, resource_type, &c.key) {
                                *c = find_coordinator_response::Coordinator::default()
                                    .with_key(c.key.clone())
                                    .with_node_id((-1).into())
                                    .with_port(-1)
                                    .with_error_code(code);
                            }
                        }
                        if f.coordinators.is_empty()
                            && !access.allows(DESCRIBE, resource_type, &single)
                        {
                            *f = FindCoordinatorResponse::default()
                                .with_node_id((-1).into())
                                .with_port(-1)
                                .with_error_code(code);
                        }
                    }
                }),
            )
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => access.allows(WRITE, resource::TRANSACTIONAL_ID, id),
                None => cluster(IDEMPOTENT_WRITE) || access.allows_any(WRITE, resource::TOPIC),
            };
            if allowed {
                Checked::Run(RequestKind::InitProducerId(r), None)
            } else {
                let code = if r.transactional_id.is_some() {
                    53
                } else {
                    CLUSTER_DENIED
                };
                Checked::Refused(ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(code)
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                ))
            }
        }
        RequestKind::ElectLeaders(_) if !cluster(ALTER) => {
            Checked::Refused(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::AlterPartitionReassignments(_) if !cluster(ALTER) => {
            Checked::Refused(ResponseKind::AlterPartitionReassignments(
                AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::ListPartitionReassignments(_) if !cluster(DESCRIBE) => {
            Checked::Refused(ResponseKind::ListPartitionReassignments(
                ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        // ApiVersions, Metadata, DescribeCluster, and the ACL and SCRAM APIs check inside.
        other => Checked::Run(other, None),
    }
}

/// The error for a config resource the principal may not `operation`, if any.
fn config_denied(access: &Access, operation: i8, resource_type: i8, name: &str) -> Option<i16> {
    match resource_type {
        CONFIG_TOPIC => (!access.allows(operation, resource::TOPIC, name)).then_some(TOPIC_DENIED),
        CONFIG_BROKER => (!access.allows_cluster(operation)).then_some(CLUSTER_DENIED),
        _ => None,
    }
}

/// OffsetFetch: a group the principal may not describe answers GROUP_AUTHORIZATION_FAILED;
/// topics it may not describe are refused when named and hidden when all were asked for.
fn hide_offsets(access: &Access, request: &OffsetFetchRequest, response: &mut OffsetFetchResponse) {
    let topic = |name: &str| access.allows(DESCRIBE, resource::TOPIC, name);
    if !request.groups.is_empty() {
        for (g, asked) in response.groups.iter_mut().zip(&request.groups) {
            if !access.allows(DESCRIBE, resource::GROUP, &g.group_id) {
                g.error_code = GROUP_DENIED;
                g.topics.clear();
                continue;
            }
            if asked.topics.is_none() {
                g.topics.retain(|t| topic(&t.name));
            }
            for t in g.topics.iter_mut().filter(|t| !topic(&t.name)) {
                for p in &mut t.partitions {
                    p.error_code = TOPIC_DENIED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
        }
        return;
    }
    if !access.allows(DESCRIBE, resource::GROUP, &request.group_id) {
        *response = OffsetFetchResponse::default().with_error_code(GROUP_DENIED);
        return;
    }
    if request.topics.is_none() {
        response.topics.retain(|t| topic(&t.name));
    }
    for t in response.topics.iter_mut().filter(|t| !topic(&t.name)) {
        for p in &mut t.partitions {
            p.error_code = TOPIC_DENIED;
            p.committed_offset = -1;
            p.metadata = None;
        }
    }
}
