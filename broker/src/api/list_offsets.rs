//! ListOffsets: earliest, latest, max-timestamp and by timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::{led_log, storage_error, ApiError, Context};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Resolves each partition's requested timestamp to an offset.
pub fn handle(ctx: &Context, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let image = ctx.controller.image();
    // read_committed consumers see up to the last stable offset, others to the high watermark.
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let outcome = led_log(ctx, &image, &name, p.partition_index).and_then(
                        |(log, _, partition)| {
                            let visible_end = if read_committed {
                                log.last_stable_offset()
                            } else {
                                log.high_watermark()
                            };
                            let found = match p.timestamp {
                                LATEST => Some((visible_end, -1)),
                                EARLIEST => Some((log.log_start_offset(), -1)),
                                MAX_TIMESTAMP => {
                                    log.max_timestamp_offset().map_err(storage_error)?
                                }
                                ts if ts >= 0 => log
                                    .offset_for_timestamp(ts)
                                    .map_err(storage_error)?
                                    .filter(|(offset, _)| *offset < visible_end),
                                other => {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidRequest,
                                        format!("unsupported timestamp {other}"),
                                    ))
                                }
                            };
                            // The epoch field exists from v4; older versions must leave it unset.
                            let epoch = if version >= 4 {
                                partition.leader_epoch
                            } else {
                                -1
                            };
                            Ok((found, epoch))
                        },
                    );
                    match outcome {
                        Ok((Some((offset, timestamp)), epoch)) => r
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(epoch),
                        // No such record: Kafka answers no epoch either.
                        Ok((None, _)) => r.with_offset(-1).with_timestamp(-1).with_leader_epoch(-1),
                        Err(e) => r
                            .with_error_code(e.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
