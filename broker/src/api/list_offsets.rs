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
                            // Kafka's epochs: the current leader's for the latest offset,
                            // the epoch cache's for the log start, the found batch's otherwise.
                            let found = match p.timestamp {
                                LATEST => Some((visible_end, -1, partition.leader_epoch)),
                                EARLIEST => {
                                    let start = log.log_start_offset();
                                    Some((start, -1, log.epoch_at(start).unwrap_or(-1)))
                                }
                                MAX_TIMESTAMP => log
                                    .max_timestamp_offset()
                                    .map_err(storage_error)?
                                    .map(|m| (m.offset, m.timestamp, m.leader_epoch)),
                                ts if ts >= 0 => log
                                    .offset_for_timestamp(ts)
                                    .map_err(storage_error)?
                                    .filter(|m| m.offset < visible_end)
                                    .map(|m| (m.offset, m.timestamp, m.leader_epoch)),
                                other => {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidRequest,
                                        format!("unsupported timestamp {other}"),
                                    ))
                                }
                            };
                            Ok(found)
                        },
                    );
                    match outcome {
                        Ok(Some((offset, timestamp, epoch))) => r
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            // The epoch field exists from v4; older versions leave it unset.
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        // No such record: Kafka answers no epoch either.
                        Ok(None) => r.with_offset(-1).with_timestamp(-1).with_leader_epoch(-1),
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
