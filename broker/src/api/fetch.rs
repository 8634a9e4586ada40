//! Fetch: full or incremental (KIP-227), with long polling, size limits and isolation levels.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::ResponseError;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::fetch_session::Partitions;
use super::{check_leader_epoch, led_log_known, Access, ApiError, Context, RequestInfo};
use crate::log::batch;
use crate::log::segment::now_ms;
use crate::log::{PartitionLog, ReadLimit};
use crate::security::acl::operation::READ;
use crate::security::acl::resource;

/// The longest a fetch waits, whatever the client asks, so a connection is never stuck.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// How a request reads, whichever partitions it names.
struct ReadSettings {
    /// The fetching replica (-1 for a consumer).
    replica: i32,
    limit: ReadLimit,
    /// What one response may hold.
    max_bytes: usize,
}

impl ReadSettings {
    fn new(ctx: &Context, request: &FetchRequest) -> Self {
        let limit = if request.isolation_level == 1 {
            ReadLimit::LastStable
        } else {
            ReadLimit::HighWatermark
        };
        // The broker's fetch.max.bytes bounds what one response may hold, whatever is asked.
        let max_bytes =
            (request.max_bytes.max(0) as usize).min(ctx.config.int("fetch.max.bytes") as usize);
        ReadSettings {
            replica: request.replica_id.0,
            limit,
            max_bytes,
        }
    }
}

/// The topics of a consumer's fetch it may not read. A session holds partitions its request
/// does not name, so they are authorized again on every fetch, as Kafka does; a follower's
/// fetch is authorized whole (`ClusterAction`) before it runs.
fn denied_topics(
    ctx: &Context,
    info: &RequestInfo,
    settings: &ReadSettings,
    partitions: &Partitions,
) -> HashSet<TopicName> {
    let mut denied = HashSet::new();
    if ctx.authorizer.is_none() || settings.replica >= 0 {
        return denied;
    }
    let access = Access::new(ctx, info, &ctx.controller.image());
    let topics: HashSet<&TopicName> = partitions.iter().map(|p| &p.topic).collect();
    for topic in topics {
        if !access.allows(READ, resource::TOPIC, topic.0.as_str()) {
            denied.insert(topic.clone());
        }
    }
    denied
}

/// Reads each partition, in order; keeps the log each one was found in for the next read.
fn read_all(
    ctx: &Context,
    settings: &ReadSettings,
    denied: &HashSet<TopicName>,
    partitions: &mut Partitions,
) -> (Vec<PartitionData>, usize, bool) {
    let image = ctx.controller.image();
    let mut total = 0usize;
    let mut any_error = false;
    let read = partitions
        .iter_mut()
        .map(|p| {
            let r = PartitionData::default()
                .with_partition_index(p.partition)
                .with_aborted_transactions(Some(Vec::new()))
                .with_preferred_read_replica((-1).into());
            let outcome = (|| {
                if denied.contains(&p.topic) {
                    let e = ApiError::new(ResponseError::TopicAuthorizationFailed, "not allowed");
                    return Err((e, -1, -1));
                }
                let (log, _, part) =
                    led_log_known(ctx, &image, p.topic.0.as_str(), p.partition, p.log.as_ref())
                        .map_err(|e| (e, -1, -1))?;
                if !p.log.as_ref().is_some_and(|known| Arc::ptr_eq(known, &log)) {
                    p.log = Some(log.clone());
                }
                check_leader_epoch(p.current_leader_epoch, part.leader_epoch)
                    .map_err(|e| (e, -1, -1))?;
                let budget =
                    (p.max_bytes.max(0) as usize).min(settings.max_bytes.saturating_sub(total));
                let read = if settings.replica >= 0 {
                    log.record_follower_fetch(settings.replica, p.fetch_offset, now_ms());
                    log.read_for_follower(p.fetch_offset, budget)
                } else {
                    log.read_until(p.fetch_offset, budget, total == 0, settings.limit)
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
                    // A refused topic stays refused: it does not end the wait for the others.
                    any_error |= e.error != ResponseError::TopicAuthorizationFailed;
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
    (read, total, any_error)
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

/// Reads from each partition of the request, or of its session; waits up to `max_wait_ms`
/// for `min_bytes` to arrive.
pub async fn handle(ctx: &Context, info: &RequestInfo, request: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let settings = ReadSettings::new(ctx, &request);
    let mut fetch = match ctx.fetch_sessions.begin(&request, settings.replica) {
        Ok(fetch) => fetch,
        Err(e) => return FetchResponse::default().with_error_code(e.code()),
    };
    drop(request);
    // Looked up before the first read, so that the wait after it hears every partition.
    for p in fetch.partitions.iter_mut() {
        if p.log.as_ref().is_none_or(|log| log.is_dropped()) {
            p.log = ctx.logs.get(p.topic.0.as_str(), p.partition);
        }
    }
    let denied = denied_topics(ctx, info, &settings, &fetch.partitions);
    // Nothing to wait for when every partition is refused, as in Kafka.
    let all_denied =
        !fetch.partitions.is_empty() && fetch.partitions.iter().all(|p| denied.contains(&p.topic));
    let read = loop {
        // Enabled before the read, so a change during it is not missed.
        let logs: Vec<Arc<PartitionLog>> = fetch
            .partitions
            .iter()
            .filter_map(|p| p.log.clone())
            .collect();
        let mut changes: Vec<Pin<Box<Notified<'_>>>> =
            logs.iter().map(|log| Box::pin(log.changed())).collect();
        for change in &mut changes {
            change.as_mut().enable();
        }
        let (read, total, any_error) = read_all(ctx, &settings, &denied, &mut fetch.partitions);
        if total >= min_bytes.max(1) || any_error || all_denied || Instant::now() >= deadline {
            break read;
        }
        if tokio::time::timeout_at(deadline, any_change(&mut changes))
            .await
            .is_err()
        {
            // Nothing changed since the wait was enabled, before the read: it still holds.
            break read;
        }
    };
    let topics = fetch.respond(read);
    count_out(ctx, &topics);
    let slots = ctx.config.int("max.incremental.fetch.session.cache.slots") as usize;
    let session_id = ctx.fetch_sessions.finish(fetch, slots);
    FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
}
