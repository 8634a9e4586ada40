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
const TXN_ID_DENIED: i16 = 53;
const NOT_ATTEMPTED: i16 = 55;

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
    let txn_id = |op: i8, id: &str| access.allows(op, resource::TRANSACTIONAL_ID, id);
    match request {
        RequestKind::Produce(r)
            if r.transactional_id
                .as_ref()
                .is_some_and(|id| !txn_id(WRITE, id)) =>
        {
            let responses = r
                .topic_data
                .iter()
                .map(|t| {
                    produce_response::TopicProduceResponse::default()
                        .with_name(t.name.clone())
                        .with_partition_responses(
                            t.partition_data
                                .iter()
                                .map(|d| {
                                    produce_response::PartitionProduceResponse::default()
                                        .with_index(d.index)
                                        .with_error_code(TXN_ID_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Refused(ResponseKind::Produce(
                ProduceResponse::default().with_responses(responses),
            ))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            // As in Kafka: the id must be writable, and when a topic is not, the request fails
            // with that topic's error and the others are not attempted.
            let id_allowed = txn_id(WRITE, &r.v3_and_below_transactional_id);
            let topics_allowed = r.v3_and_below_topics.iter().all(|t| topic(WRITE, &t.name));
            if id_allowed && topics_allowed {
                return Checked::Run(RequestKind::AddPartitionsToTxn(r), None);
            }
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let code = if !id_allowed {
                        TXN_ID_DENIED
                    } else if !topic(WRITE, &t.name) {
                        TOPIC_DENIED
                    } else {
                        NOT_ATTEMPTED
                    };
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Refused(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !txn_id(WRITE, &r.transactional_id) {
                TXN_ID_DENIED
            } else if !group(READ, &r.group_id) {
                GROUP_DENIED
            } else {
                return Checked::Run(RequestKind::AddOffsetsToTxn(r), None);
            };
            Checked::Refused(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ))
        }
        RequestKind::EndTxn(r) if !txn_id(WRITE, &r.transactional_id) => {
            Checked::Refused(ResponseKind::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(TXN_ID_DENIED)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ))
        }
        RequestKind::TxnOffsetCommit(r) => {
            // The whole commit is refused when the id, the group or any topic is not allowed,
            // so a transaction never commits part of its offsets.
            let denied = |t: &txn_offset_commit_request::TxnOffsetCommitRequestTopic| {
                if !txn_id(WRITE, &r.transactional_id) {
                    Some(TXN_ID_DENIED)
                } else if !group(READ, &r.group_id) {
                    Some(GROUP_DENIED)
                } else if !topic(READ, &t.name) {
                    Some(TOPIC_DENIED)
                } else {
                    None
                }
            };
            if r.topics.iter().all(|t| denied(t).is_none()) {
                return Checked::Run(RequestKind::TxnOffsetCommit(r), None);
            }
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    let code = denied(t).unwrap_or(NOT_ATTEMPTED);
                    txn_offset_commit_response::TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    txn_offset_commit_response::TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Refused(ResponseKind::TxnOffsetCommit(
                TxnOffsetCommitResponse::default().with_topics(topics),
            ))
        }
        RequestKind::DescribeTransactions(r) => {
            let access = access.clone();
            Checked::Run(
                RequestKind::DescribeTransactions(r),
                patch(move |response| {
                    if let ResponseKind::DescribeTransactions(d) = response {
                        for t in &mut d.transaction_states {
                            if !access.allows(
                                DESCRIBE,
                                resource::TRANSACTIONAL_ID,
                                &t.transactional_id,
                            ) {
                                *t = describe_transactions_response::TransactionState::default()
                                    .with_transactional_id(t.transactional_id.clone())
                                    .with_error_code(TXN_ID_DENIED)
                                    .with_producer_id((-1).into())
                                    .with_producer_epoch(-1)
                                    .with_transaction_start_time_ms(-1);
                            }
                        }
                    }
                }),
            )
        }
        RequestKind::ListTransactions(r) => {
            let access = access.clone();
            Checked::Run(
                RequestKind::ListTransactions(r),
                patch(move |response| {
                    if let ResponseKind::ListTransactions(l) = response {
                        l.transaction_states.retain(|t| {
                            access.allows(DESCRIBE, resource::TRANSACTIONAL_ID, &t.transactional_id)
                        });
                    }
                }),
            )
        }
        RequestKind::DescribeProducers(mut r) => {
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| topic(READ, &t.name));
            r.topics = allowed;
            Checked::Run(
                RequestKind::DescribeProducers(r),
                patch(move |response| {
                    if let ResponseKind::DescribeProducers(d) = response {
                        for t in refused {
                            d.topics.push(
                                describe_producers_response::TopicResponse::default()
                                    .with_name(t.name)
                                    .with_partitions(
                                        t.partition_indexes
                                            .iter()
                                            .map(|p| {
                                                describe_producers_response::PartitionResponse::default()
                                                    .with_partition_index(*p)
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
        RequestKind::WriteTxnMarkers(r) if !cluster(CLUSTER_ACTION) => {
            let markers = r
                .markers
                .iter()
                .map(|m| {
                    write_txn_markers_response::WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    write_txn_markers_response::WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    write_txn_markers_response::WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(CLUSTER_DENIED)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Checked::Refused(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(markers),
            ))
        }
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
            if replica && !cluster(CLUSTER_ACTION) {
                // Refused whole: its fetch session may hold partitions it does not name.
                let refused = std::mem::take(&mut r.topics)
                    .into_iter()
                    .map(refused_fetch)
                    .collect();
                return Checked::Refused(ResponseKind::Fetch(
                    FetchResponse::default()
                        .with_error_code(CLUSTER_DENIED)
                        .with_responses(refused),
                ));
            }
            // A consumer's topics are authorized by the handler, on every fetch: its session
            // holds partitions the request does not name.
            Checked::Run(RequestKind::Fetch(r), None)
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
            // Kafka: ClusterAction on the cluster, or Describe on the topic, whoever asks.
            let cluster_action = cluster(CLUSTER_ACTION);
            let (allowed, refused) = split(std::mem::take(&mut r.topics), |t| {
                cluster_action || topic(DESCRIBE, &t.topic)
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
            let access = access.clone();
            Checked::Run(
                RequestKind::CreateTopics(r),
                patch(move |response| {
                    if let ResponseKind::CreateTopics(c) = response {
                        // Configs are returned only to who may describe them, as in Kafka.
                        for t in c.topics.iter_mut().filter(|t| {
                            t.error_code == 0
                                && !access.allows(DESCRIBE_CONFIGS, resource::TOPIC, &t.name)
                        }) {
                            t.configs = None;
                            t.topic_config_error_code = TOPIC_DENIED;
                        }
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
            // Kafka: Delete on the cluster or on the topic; a topic named by id only is
            // judged by its name.
            let cluster_delete = cluster(DELETE);
            let deletable = |name: &str| cluster_delete || topic(DELETE, name);
            let (names, refused_names) =
                split(std::mem::take(&mut r.topic_names), |n| deletable(n));
            r.topic_names = names;
            let image = access.image();
            let name_of = |t: &delete_topics_request::DeleteTopicState| {
                t.name.as_ref().map(|n| n.to_string()).or_else(|| {
                    image
                        .topics
                        .iter()
                        .find(|(_, topic)| topic.id == t.topic_id)
                        .map(|(name, _)| name.clone())
                })
            };
            let (states, refused_states) = split(std::mem::take(&mut r.topics), |t| {
                // An id that names no topic is left to the handler (UNKNOWN_TOPIC_ID).
                name_of(t).is_none_or(|n| deletable(&n))
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
                        hide_offsets(&access, &r, version, o);
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
            let single = (version < 4).then(|| r.key.clone());
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
                        if single.is_some_and(|key| !access.allows(DESCRIBE, resource_type, &key)) {
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
        RequestKind::ElectLeaders(r) if !cluster(ALTER) => {
            // Every partition carries the error; v1 and later also at the top.
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    elect_leaders_response::ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders_response::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(CLUSTER_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            let response = ElectLeadersResponse::default().with_replica_election_results(results);
            Checked::Refused(ResponseKind::ElectLeaders(if version >= 1 {
                response.with_error_code(CLUSTER_DENIED)
            } else {
                response
            }))
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
        RequestKind::DescribeQuorum(_) if !cluster(DESCRIBE) => {
            Checked::Refused(ResponseKind::DescribeQuorum(
                DescribeQuorumResponse::default().with_error_code(CLUSTER_DENIED),
            ))
        }
        RequestKind::DescribeLogDirs(_) if !cluster(DESCRIBE) => {
            // No directory is shown; v3 and later also say why (KIP-784).
            let response = DescribeLogDirsResponse::default();
            Checked::Refused(ResponseKind::DescribeLogDirs(if version >= 3 {
                response.with_error_code(CLUSTER_DENIED)
            } else {
                response
            }))
        }
        // ApiVersions, Metadata, DescribeCluster, and the ACL and SCRAM APIs check inside.
        other => Checked::Run(other, None),
    }
}

/// A Fetch topic refused whole: each partition answers TOPIC_AUTHORIZATION_FAILED.
fn refused_fetch(t: fetch_request::FetchTopic) -> fetch_response::FetchableTopicResponse {
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
        )
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
fn hide_offsets(
    access: &Access,
    request: &OffsetFetchRequest,
    version: i16,
    response: &mut OffsetFetchResponse,
) {
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
        // Before v2 there is no top-level error: every asked partition carries it.
        let topics = request
            .topics
            .iter()
            .flatten()
            .filter(|_| version < 2)
            .map(|t| {
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                offset_fetch_response::OffsetFetchResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_error_code(GROUP_DENIED)
                            })
                            .collect(),
                    )
            })
            .collect();
        *response = OffsetFetchResponse::default()
            .with_error_code(GROUP_DENIED)
            .with_topics(topics);
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
