//! Fetch: sessionless, with long polling, size limits and isolation levels.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::{check_leader_epoch, led_log_known, ApiError, Context};
use crate::log::batch;
use crate::log::segment::now_ms;
use crate::log::{PartitionLog, ReadLimit};

/// The longest a fetch waits, whatever the client asks, so a connection is never stuck.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// Reads each partition of `request`; `logs` holds their logs in request order, as looked up
/// when the request arrived (none for a partition this broker had no log of then).
fn read_all(
    ctx: &Context,
    request: &FetchRequest,
    logs: &[Option<Arc<PartitionLog>>],
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut known = logs.iter();
    let image = ctx.controller.image();
    let mut total = 0usize;
    let mut any_error = false;
    let replica = request.replica_id.0;
    let limit = if request.isolation_level == 1 {
        ReadLimit::LastStable
    } else {
        ReadLimit::HighWatermark
    };
    // The broker's fetch.max.bytes bounds what one response may hold, whatever is asked.
    let max_bytes =
        (request.max_bytes.max(0) as usize).min(ctx.config.int("fetch.max.bytes") as usize);
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let r = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_aborted_transactions(Some(Vec::new()))
                        .with_preferred_read_replica((-1).into());
                    let log = known.next().and_then(Option::as_ref);
                    let outcome = (|| {
                        let (log, _, part) = led_log_known(ctx, &image, name, p.partition, log)
                            .map_err(|e| (e, -1, -1))?;
                        check_leader_epoch(p.current_leader_epoch, part.leader_epoch)
                            .map_err(|e| (e, -1, -1))?;
                        let budget = (p.partition_max_bytes.max(0) as usize)
                            .min(max_bytes.saturating_sub(total));
                        let read = if replica >= 0 {
                            log.record_follower_fetch(replica, p.fetch_offset, now_ms());
                            log.read_for_follower(p.fetch_offset, budget)
                        } else {
                            log.read_until(p.fetch_offset, budget, total == 0, limit)
                        };
                        read.map_err(|e| {
                            (
                                ApiError::from(e),
                                log.high_watermark(),
                                log.log_start_offset(),
                            )
                        })
                    })();
                    match outcome {
                        Ok(read) => {
                            total += read.records.len();
                            let aborted = read
                                .aborted
                                .iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect();
                            r.with_high_watermark(read.high_watermark)
                                .with_last_stable_offset(read.last_stable_offset)
                                .with_log_start_offset(read.log_start_offset)
                                .with_aborted_transactions(Some(aborted))
                                .with_records(Some(read.records))
                        }
                        Err((e, hw, start)) => {
                            any_error = true;
                            ctx.metrics
                                .request_errors
                                .with_label_values(&["Fetch"])
                                .inc();
                            r.with_error_code(e.code())
                                .with_high_watermark(hw)
                                .with_last_stable_offset(hw)
                                .with_log_start_offset(start)
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (topics, total, any_error)
}

/// Counts the record bytes and records (from batch headers) a response returns, per topic.
fn count_out(ctx: &Context, topics: &[FetchableTopicResponse]) {
    for topic in topics {
        let (mut bytes, mut records) = (0, 0);
        for records_bytes in topic.partitions.iter().filter_map(|p| p.records.as_ref()) {
            bytes += records_bytes.len() as u64;
            records += batch::count_records(records_bytes);
        }
        if bytes > 0 {
            let name = topic.topic.0.as_str();
            ctx.metrics
                .bytes_out
                .with_label_values(&[name])
                .inc_by(bytes);
            ctx.metrics
                .records_out
                .with_label_values(&[name])
                .inc_by(records);
        }
    }
}

/// Resolves when any of the partitions changes (never, when there are none).
async fn any_change(changes: &mut [Pin<Box<Notified<'_>>>]) {
    std::future::poll_fn(|cx| {
        if changes
            .iter_mut()
            .any(|change| change.as_mut().poll(cx).is_ready())
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Reads from each partition; waits up to `max_wait_ms` for `min_bytes` to arrive.
pub async fn handle(ctx: &Context, request: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let logs: Vec<Option<Arc<PartitionLog>>> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| ctx.logs.get(t.topic.0.as_str(), p.partition))
        })
        .collect();
    loop {
        // Enabled before the read, so a change during it is not missed.
        let mut changes: Vec<Pin<Box<Notified<'_>>>> = logs
            .iter()
            .flatten()
            .map(|log| Box::pin(log.changed()))
            .collect();
        for change in &mut changes {
            change.as_mut().enable();
        }
        let (topics, total, any_error) = read_all(ctx, &request, &logs);
        if total >= min_bytes.max(1) || any_error || Instant::now() >= deadline {
            count_out(ctx, &topics);
            return FetchResponse::default().with_responses(topics);
        }
        if tokio::time::timeout_at(deadline, any_change(&mut changes))
            .await
            .is_err()
        {
            let (topics, _, _) = read_all(ctx, &request, &logs);
            count_out(ctx, &topics);
            return FetchResponse::default().with_responses(topics);
        }
    }
}
