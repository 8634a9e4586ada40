//! DescribeQuorum: the metadata quorum's leader, epoch, high watermark and how far each voter
//! and broker has followed it, answered by the active controller wherever the request lands
//! (a Kafka broker forwards it there too).

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::ResponseError;

use super::{controller_error, str_bytes, topic_name, Context};
use crate::metadata::quorum::ReplicaProgress;

/// The metadata log's topic, the only one DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

fn top_level_error(
    error: ResponseError,
    message: Option<String>,
    version: i16,
) -> DescribeQuorumResponse {
    let response = DescribeQuorumResponse::default().with_error_code(error.code());
    if version >= 2 {
        response.with_error_message(message.as_deref().map(str_bytes))
    } else {
        response
    }
}

/// A replica's state; the timestamps exist from v1.
fn replica_state(replica: &ReplicaProgress, version: i16) -> ReplicaState {
    let state = ReplicaState::default()
        .with_replica_id(BrokerId(replica.id))
        .with_log_end_offset(replica.log_end_offset);
    if version >= 1 {
        state
            .with_last_fetch_timestamp(replica.last_fetch_ms)
            .with_last_caught_up_timestamp(replica.last_caught_up_ms)
    } else {
        state
    }
}

/// Answers for `__cluster_metadata` partition 0; any other request is refused whole, as
/// Kafka refuses it.
pub async fn handle(
    ctx: &Context,
    request: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let singleton = matches!(request.topics.as_slice(), [t]
        if t.topic_name.0.as_str() == METADATA_TOPIC
            && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0));
    if !singleton {
        return top_level_error(ResponseError::UnknownTopicOrPartition, None, version);
    }
    let quorum = match ctx.controller.describe_quorum().await {
        Ok(quorum) => quorum,
        Err(e) => {
            let e = controller_error(e);
            return top_level_error(e.error, e.message, version);
        }
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(quorum.leader_id))
        .with_leader_epoch(quorum.leader_epoch)
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(
            quorum
                .voters
                .iter()
                .map(|r| replica_state(r, version))
                .collect(),
        )
        .with_observers(
            quorum
                .observers
                .iter()
                .map(|r| replica_state(r, version))
                .collect(),
        );
    let response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition])]);
    // The voters' endpoints exist from v2.
    if version < 2 {
        return response;
    }
    let listener = ctx
        .config
        .controller_listener_names
        .first()
        .cloned()
        .unwrap_or_default();
    let nodes = ctx
        .controller
        .voter_endpoints()
        .into_iter()
        .map(|(id, host, port)| {
            Node::default()
                .with_node_id(BrokerId(id))
                .with_listeners(vec![Listener::default()
                    .with_name(str_bytes(&listener))
                    .with_host(str_bytes(&host))
                    .with_port(port)])
        })
        .collect();
    response.with_nodes(nodes)
}
