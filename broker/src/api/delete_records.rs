//! DeleteRecords: moves a partition's log start offset forward.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{led_log, ApiError, Context};

/// Deletes records below the given offsets (-1: up to the high watermark).
pub fn handle(ctx: &Context, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let image = ctx.controller.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let outcome =
                        led_log(ctx, &image, &name, p.partition_index).and_then(|(log, _, _)| {
                            log.delete_records_before(p.offset).map_err(ApiError::from)
                        });
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match outcome {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_low_watermark(-1).with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
