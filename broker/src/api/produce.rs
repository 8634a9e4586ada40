//! Produce: validate batches, assign offsets, append.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use tracing::warn;

use super::{led_log, storage_error, ApiError, Context};
use crate::log::batch::{self, BatchError};
use crate::log::producer_state::ProducerError;
use crate::log::{AppendError, AppendInfo};

fn append_partition(
    ctx: &Context,
    acks: i16,
    topic: &str,
    partition: i32,
    records: Option<&bytes::Bytes>,
) -> Result<AppendInfo, ApiError> {
    let image = ctx.controller.image();
    let (log, t, p) = led_log(ctx, &image, topic, partition)?;
    let records = records.filter(|r| !r.is_empty()).ok_or_else(|| {
        ApiError::new(
            ResponseError::CorruptMessage,
            "produce request without records",
        )
    })?;
    let headers = batch::validate_all(records).map_err(|e| match e {
        BatchError::Magic(m) => ApiError::new(
            ResponseError::UnsupportedForMessageFormat,
            format!("message format v{m} is not supported; v2 is required"),
        ),
        other => ApiError::new(ResponseError::CorruptMessage, other.to_string()),
    })?;
    if headers.len() != 1 {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            format!(
                "produce requests carry exactly one record batch per partition, got {}",
                headers.len()
            ),
        ));
    }
    if headers[0].is_transactional() {
        return Err(ApiError::new(
            ResponseError::InvalidTxnState,
            "transactions are not supported by this broker",
        ));
    }
    if acks == -1 {
        let min_isr = t
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.config.int("min.insync.replicas") as usize);
        if p.isr.len() < min_isr {
            return Err(ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "ISR has {} replicas, min.insync.replicas is {min_isr}",
                    p.isr.len()
                ),
            ));
        }
    }
    let info = log
        .append(records, &headers, p.leader_epoch)
        .map_err(|e| match e {
            AppendError::Producer(e @ ProducerError::InvalidEpoch { .. }) => {
                ApiError::new(ResponseError::InvalidProducerEpoch, e.to_string())
            }
            AppendError::Producer(e @ ProducerError::OutOfOrder { .. }) => {
                ApiError::new(ResponseError::OutOfOrderSequenceNumber, e.to_string())
            }
            AppendError::TooLarge { .. } => {
                ApiError::new(ResponseError::MessageTooLarge, e.to_string())
            }
            AppendError::Io(e) => {
                warn!(%topic, partition, error = %e, "append failed");
                storage_error(e)
            }
        })?;
    let metrics = &ctx.metrics;
    metrics
        .bytes_in
        .with_label_values(&[topic])
        .inc_by(records.len() as u64);
    metrics
        .records_in
        .with_label_values(&[topic])
        .inc_by(headers.iter().map(|h| h.records_count.max(0) as u64).sum());
    Ok(info)
}

/// Appends every partition's batches; `None` for acks=0, which gets no response.
pub async fn handle(ctx: &Context, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let mut appended = false;
    for topic in &request.topic_data {
        let name = topic.name.0.as_str();
        let partitions = topic
            .partition_data
            .iter()
            .map(|pd| {
                let outcome = if !matches!(acks, -1..=1) {
                    Err(ApiError::from(ResponseError::InvalidRequiredAcks))
                } else {
                    append_partition(ctx, acks, name, pd.index, pd.records.as_ref())
                };
                let r = PartitionProduceResponse::default().with_index(pd.index);
                match outcome {
                    Ok(info) => {
                        appended = true;
                        r.with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset)
                    }
                    Err(e) => {
                        ctx.metrics
                            .request_errors
                            .with_label_values(&["Produce"])
                            .inc();
                        r.with_error_code(e.code())
                            .with_error_message(e.message())
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                    }
                }
            })
            .collect();
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions),
        );
    }
    if appended {
        ctx.logs.appended().notify_waiters();
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
