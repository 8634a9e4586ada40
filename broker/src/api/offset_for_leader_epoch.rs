//! OffsetForLeaderEpoch: where a leader epoch ends in this leader's log, so a follower (or a
//! consumer validating its position, KIP-320) can cut a divergent tail.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{check_leader_epoch, led_log, ApiError, Context};

/// Answers the end offset of each requested epoch.
pub fn handle(ctx: &Context, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let image = ctx.controller.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let outcome =
                        led_log(ctx, &image, &name, p.partition).and_then(|(log, _, part)| {
                            check_leader_epoch(p.current_leader_epoch, part.leader_epoch)?;
                            Ok::<_, ApiError>(log.end_offset_for_epoch(p.leader_epoch))
                        });
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    match outcome {
                        Ok(Some((epoch, end))) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Ok(None) => r.with_leader_epoch(-1).with_end_offset(-1),
                        Err(e) => r
                            .with_error_code(e.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
