//! Produce: validate batches, assign offsets, append.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tracing::warn;

use super::{led_log, storage_error, ApiError, Context, Handled};
use crate::group::store::OFFSETS_TOPIC;
use crate::log::batch::{self, BatchError};
use crate::log::producer_state::ProducerError;
use crate::log::segment::now_ms;
use crate::log::validate::{check_produced_batch, Invalid, Rules};
use crate::log::{AppendError, AppendInfo, Leadership, PartitionLog};

/// What an append waits for before it is acknowledged: an fsync when `flush.messages` is
/// reached (durable mode), then, with acks=all, the ISR.
struct AwaitingAck {
    log: Arc<PartitionLog>,
    end_offset: i64,
    sync: bool,
    isr: Option<AwaitingIsr>,
}

impl AwaitingAck {
    async fn wait(&self, deadline: Instant) -> Result<(), ApiError> {
        if self.sync {
            self.log
                .sync_through(self.end_offset)
                .await
                .map_err(storage_error)?;
        }
        match &self.isr {
            Some(isr) => isr.wait(deadline).await,
            None => Ok(()),
        }
    }
}

/// An acks=all append waiting for the ISR to reach `end_offset`.
pub(super) struct AwaitingIsr {
    pub(super) log: Arc<PartitionLog>,
    pub(super) end_offset: i64,
    pub(super) leader_epoch: i32,
    pub(super) min_isr: usize,
}

impl AwaitingIsr {
    /// Waits until the high watermark covers the append, leadership is lost, or `deadline`.
    pub(super) async fn wait(&self, deadline: Instant) -> Result<(), ApiError> {
        loop {
            let notified = self.log.changed();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self.log.replica_state();
            if !state.is_leader || state.leader_epoch != self.leader_epoch {
                return Err(ApiError::new(
                    ResponseError::NotLeaderOrFollower,
                    "leadership moved before the ISR acknowledged the append",
                ));
            }
            if self.log.high_watermark() >= self.end_offset {
                if state.isr.len() < self.min_isr {
                    return Err(ApiError::new(
                        ResponseError::NotEnoughReplicasAfterAppend,
                        format!(
                            "written, but the ISR shrank to {} below min.insync.replicas {}",
                            state.isr.len(),
                            self.min_isr
                        ),
                    ));
                }
                return Ok(());
            }
            // The ticker bounds the wait even if a wake-up is missed.
            let tick = Instant::now() + Duration::from_millis(100);
            if tokio::time::timeout_at(tick.min(deadline), notified)
                .await
                .is_err()
                && Instant::now() >= deadline
            {
                return Err(ApiError::new(
                    ResponseError::RequestTimedOut,
                    "the ISR did not acknowledge the append within the request timeout",
                ));
            }
        }
    }
}

/// Topics only the broker writes.
fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == crate::txn::TXN_TOPIC
}

fn append_partition(
    ctx: &Context,
    transactional: bool,
    acks: i16,
    topic: &str,
    partition: i32,
    records: Option<&bytes::Bytes>,
) -> Result<(AppendInfo, Option<AwaitingAck>), ApiError> {
    if is_internal(topic) {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("Cannot append to internal topic {topic}"),
        ));
    }
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
        // A negative count or offset range: Kafka's LogValidator answers INVALID_RECORD.
        e @ BatchError::Invalid(_) => ApiError::new(ResponseError::InvalidRecord, e.to_string()),
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
    if headers[0].is_transactional() && (!transactional || headers[0].producer_id < 0) {
        return Err(ApiError::new(
            ResponseError::InvalidRecord,
            "a transactional batch needs a producer id and the request's transactional id",
        ));
    }
    let config = log.config();
    // As in Kafka, the size is checked before the records.
    if headers[0].size > config.max_message_bytes {
        return Err(ApiError::new(
            ResponseError::MessageTooLarge,
            format!(
                "batch of {} bytes is larger than max.message.bytes {}",
                headers[0].size, config.max_message_bytes
            ),
        ));
    }
    let rules = Rules {
        compacted: config.compact_enabled,
        log_append_time: config.log_append_time,
        before_max_ms: config.timestamp_before_max_ms,
        after_max_ms: config.timestamp_after_max_ms,
        max_uncompressed_bytes: config.max_uncompressed_bytes,
    };
    let max_timestamp =
        check_produced_batch(records, &headers[0], &rules, now_ms()).map_err(|e| match e {
            Invalid::Record(m) => ApiError::new(ResponseError::InvalidRecord, m),
            Invalid::Timestamp(m) => ApiError::new(ResponseError::InvalidTimestamp, m),
            Invalid::Corrupt(m) => ApiError::new(ResponseError::CorruptMessage, m),
        })?;
    // Like Kafka, keep the records' true largest timestamp when the header claims another.
    let corrected;
    let (records, headers) = if !rules.log_append_time && max_timestamp != headers[0].max_timestamp
    {
        let mut fixed = records.to_vec();
        batch::set_max_timestamp(&mut fixed, max_timestamp);
        corrected = fixed;
        let header = batch::parse_header(&corrected)
            .map_err(|e| ApiError::new(ResponseError::CorruptMessage, e.to_string()))?;
        (&corrected[..], vec![header])
    } else {
        (&records[..], headers)
    };
    // Only acks=all reads the ISR settings; acks=0/1 appends stay on the short path.
    let min_isr = (acks == -1).then(|| {
        t.configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.config.int("min.insync.replicas") as usize)
    });
    let leadership = Leadership {
        leader_epoch: p.leader_epoch,
        min_isr,
    };
    let info = log
        .append(records, &headers, leadership)
        .map_err(|e| match e {
            AppendError::NotLeader(reason) => {
                ApiError::new(ResponseError::NotLeaderOrFollower, reason)
            }
            e @ AppendError::NotEnoughReplicas { .. } => {
                ApiError::new(ResponseError::NotEnoughReplicas, e.to_string())
            }
            AppendError::Producer(e @ ProducerError::InvalidEpoch { .. }) => {
                ApiError::new(ResponseError::InvalidProducerEpoch, e.to_string())
            }
            AppendError::Producer(e @ ProducerError::CoordinatorFenced { .. }) => {
                ApiError::new(ResponseError::TransactionCoordinatorFenced, e.to_string())
            }
            AppendError::Producer(e @ ProducerError::OutOfOrder { .. }) => {
                ApiError::new(ResponseError::OutOfOrderSequenceNumber, e.to_string())
            }
            AppendError::TooLarge { .. } => {
                ApiError::new(ResponseError::MessageTooLarge, e.to_string())
            }
            AppendError::NotContiguous { .. } | AppendError::Corrupt(_) => {
                ApiError::new(ResponseError::CorruptMessage, e.to_string())
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
    let end_offset = info.last_offset + 1;
    let isr = min_isr.map(|min_isr| AwaitingIsr {
        log: log.clone(),
        end_offset,
        leader_epoch: p.leader_epoch,
        min_isr,
    });
    let awaiting = (info.needs_sync || isr.is_some()).then_some(AwaitingAck {
        log,
        end_offset,
        sync: info.needs_sync,
        isr,
    });
    Ok((info, awaiting))
}

fn error_response(ctx: &Context, index: i32, e: &ApiError) -> PartitionProduceResponse {
    ctx.metrics
        .request_errors
        .with_label_values(&["Produce"])
        .inc();
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_error_message(e.message())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Appends every partition's batches. With acks=all the response completes once the ISR
/// has them; acks=0 gets no response.
pub fn handle(ctx: &Arc<Context>, request: ProduceRequest) -> Handled {
    let acks = request.acks;
    let transactional = request.transactional_id.is_some();
    let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let mut awaiting = Vec::new();
    for (t, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (i, pd) in topic.partition_data.iter().enumerate() {
            let outcome = if !matches!(acks, -1..=1) {
                Err(ApiError::from(ResponseError::InvalidRequiredAcks))
            } else {
                append_partition(
                    ctx,
                    transactional,
                    acks,
                    name,
                    pd.index,
                    pd.records.as_ref(),
                )
            };
            partitions.push(match outcome {
                Ok((info, wait)) => {
                    if let Some(wait) = wait {
                        awaiting.push((t, i, wait));
                    }
                    PartitionProduceResponse::default()
                        .with_index(pd.index)
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset)
                }
                Err(e) => error_response(ctx, pd.index, &e),
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        // Nobody waits for the acknowledgement, but flush.messages still applies.
        for (_, _, pending) in awaiting {
            if pending.sync {
                tokio::spawn(async move {
                    if let Err(e) = pending.log.sync_through(pending.end_offset).await {
                        warn!(error = %e, "flush failed");
                    }
                });
            }
        }
        return Handled::Now(None);
    }
    if awaiting.is_empty() {
        return Handled::Now(Some(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        )));
    }
    let ctx = ctx.clone();
    Handled::Later(Box::pin(async move {
        for (t, i, wait) in awaiting {
            if let Err(e) = wait.wait(deadline).await {
                let r: &mut TopicProduceResponse = &mut responses[t];
                let index = r.partition_responses[i].index;
                r.partition_responses[i] = error_response(&ctx, index, &e);
            }
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}
