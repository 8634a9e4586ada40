//! Prometheus metrics: counters and histograms updated on the request path, and gauges
//! computed from the broker's state at scrape time.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::api::{Context, SUPPORTED_APIS};

/// Every metric the broker exports.
pub struct BrokerMetrics {
    registry: Registry,
    /// Partition- or resource-level errors returned, by API.
    pub request_errors: IntCounterVec,
    /// Request count and handling time of each implemented API, resolved once so the
    /// request path neither formats labels nor hashes them.
    per_api: HashMap<ApiKey, (IntCounter, Histogram)>,
    /// Frames that could not be decoded; each closed its connection.
    pub malformed_requests: IntCounter,
    /// Open client connections, by listener.
    pub connections: IntGaugeVec,
    /// Connections the broker refused or closed, by listener and reason.
    pub connections_closed: IntCounterVec,
    /// Failed TLS handshakes and SASL authentications, by listener.
    pub failed_authentications: IntCounterVec,
    /// Record batch bytes appended, by topic.
    pub bytes_in: IntCounterVec,
    /// Record batch bytes returned to consumers, by topic.
    pub bytes_out: IntCounterVec,
    /// Records returned by Fetch, per topic (followers' fetches included).
    pub records_out: IntCounterVec,
    /// Records appended, by topic.
    pub records_in: IntCounterVec,
    /// ISR changes this broker's leaders committed, by `change` (shrink, expand).
    pub isr_changes: IntCounterVec,
    /// Transactions completed, by outcome (commit, abort).
    pub txn_completed: IntCounterVec,
    /// Responses that told a client over its quota to wait, by quota (produce, fetch,
    /// request).
    pub throttled_responses: IntCounterVec,
    /// Seconds clients over their quotas were told to wait, by quota.
    pub throttle_time: CounterVec,
    partitions: IntGauge,
    leaders: IntGauge,
    under_replicated: IntGauge,
    under_min_isr: IntGauge,
    offline: IntGauge,
    log_size: IntGaugeVec,
    log_dir_capacity: IntGaugeVec,
    log_dir_free: IntGaugeVec,
    log_start: IntGaugeVec,
    log_end: IntGaugeVec,
    committed_offset: IntGaugeVec,
    open_transactions: IntGaugeVec,
    lso_lag: IntGaugeVec,
    coordinated_transactions: IntGauge,
    lag: IntGaugeVec,
    kraft_leader: IntGauge,
    kraft_term: IntGauge,
    kraft_last_log_index: IntGauge,
    kraft_applied_index: IntGauge,
    metadata_invalid_records: IntGauge,
    kraft_voters: IntGauge,
    fenced_brokers: IntGauge,
    active_controllers: IntGauge,
    brokers: IntGauge,
    fetch_sessions: IntGauge,
    fetch_session_partitions: IntGauge,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl BrokerMetrics {
    /// Creates and registers every metric, plus the process collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "strom_request_duration_seconds",
                "Time to handle a request, by API",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["api"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("unique metric");
        let malformed_requests = IntCounter::new(
            "strom_malformed_requests_total",
            "Frames that could not be decoded; each closed its connection",
        )
        .expect("valid metric");
        registry
            .register(Box::new(malformed_requests.clone()))
            .expect("unique metric");
        let r = &registry;
        let partition_labels = &["topic", "partition"];
        let requests = counter_vec(
            r,
            "strom_requests_total",
            "Requests handled, by API",
            &["api"],
        );
        let per_api = SUPPORTED_APIS
            .iter()
            .map(|(key, _, _)| {
                let api = format!("{key:?}");
                let handles = (
                    requests.with_label_values(&[&api]),
                    request_duration.with_label_values(&[&api]),
                );
                (*key, handles)
            })
            .collect();
        let metrics = BrokerMetrics {
            per_api,
            request_errors: counter_vec(
                r,
                "strom_request_errors_total",
                "Partition- or resource-level errors returned, by API",
                &["api"],
            ),
            malformed_requests,
            connections: gauge_vec(
                r,
                "strom_connections_active",
                "Open client connections, by listener",
                &["listener"],
            ),
            connections_closed: counter_vec(
                r,
                "strom_connections_closed_total",
                "Connections the broker refused or closed: over max.connections or max.connections.per.ip, idle, or a request too slow to arrive",
                &["listener", "reason"],
            ),
            failed_authentications: counter_vec(
                r,
                "strom_failed_authentications_total",
                "Connections closed for a failed TLS handshake, an unmapped certificate or a failed SASL authentication",
                &["listener"],
            ),
            bytes_in: counter_vec(
                r,
                "strom_topic_bytes_in_total",
                "Record batch bytes appended",
                &["topic"],
            ),
            bytes_out: counter_vec(
                r,
                "strom_topic_bytes_out_total",
                "Record batch bytes returned to consumers",
                &["topic"],
            ),
            records_in: counter_vec(
                r,
                "strom_topic_records_in_total",
                "Records appended",
                &["topic"],
            ),
            records_out: counter_vec(
                r,
                "strom_topic_records_out_total",
                "Records returned by Fetch (followers included)",
                &["topic"],
            ),
            isr_changes: counter_vec(
                r,
                "strom_isr_changes_total",
                "ISR shrinks and expands committed for partitions this broker leads",
                &["change"],
            ),
            throttled_responses: counter_vec(
                r,
                "strom_quota_throttled_responses_total",
                "Responses that told a client over its quota to wait, by the quota it exceeded",
                &["quota"],
            ),
            throttle_time: {
                let metric = CounterVec::new(
                    Opts::new(
                        "strom_quota_throttle_seconds_total",
                        "Seconds clients over their quotas were told to wait, by the quota they exceeded",
                    ),
                    &["quota"],
                )
                .expect("valid metric");
                r.register(Box::new(metric.clone())).expect("unique metric");
                metric
            },
            txn_completed: counter_vec(
                r,
                "strom_transactions_completed_total",
                "Transactions this broker coordinated to their end, by outcome",
                &["outcome"],
            ),
            partitions: gauge(r, "strom_partitions", "Partitions hosted by this broker"),
            leaders: gauge(r, "strom_partition_leaders", "Partitions this broker leads"),
            under_replicated: gauge(
                r,
                "strom_under_replicated_partitions",
                "Led partitions whose ISR is smaller than their replica set",
            ),
            under_min_isr: gauge(
                r,
                "strom_under_min_isr_partitions",
                "Led partitions whose ISR is below min.insync.replicas",
            ),
            offline: gauge(r, "strom_offline_partitions", "Partitions without a leader"),
            log_size: gauge_vec(
                r,
                "strom_log_size_bytes",
                "Bytes in a partition's segments",
                partition_labels,
            ),
            log_dir_capacity: gauge_vec(
                r,
                "strom_log_dir_capacity_bytes",
                "Size of the file system holding a log directory",
                &["dir"],
            ),
            log_dir_free: gauge_vec(
                r,
                "strom_log_dir_free_bytes",
                "Bytes available to the broker on the file system holding a log directory",
                &["dir"],
            ),
            log_start: gauge_vec(
                r,
                "strom_log_start_offset",
                "First offset in a partition",
                partition_labels,
            ),
            log_end: gauge_vec(
                r,
                "strom_log_end_offset",
                "Offset the next record gets",
                partition_labels,
            ),
            open_transactions: gauge_vec(
                r,
                "strom_partition_open_transactions",
                "Transactions with records in the partition and no marker yet (partitions with any)",
                partition_labels,
            ),
            lso_lag: gauge_vec(
                r,
                "strom_partition_lso_lag",
                "High watermark minus last stable offset: what read_committed consumers wait for",
                partition_labels,
            ),
            coordinated_transactions: gauge(
                r,
                "strom_transactions_open",
                "Transactions this broker coordinates that are open or ending",
            ),
            committed_offset: gauge_vec(
                r,
                "strom_group_committed_offset",
                "Committed offset of a consumer group",
                &["group", "topic", "partition"],
            ),
            lag: gauge_vec(
                r,
                "strom_group_lag",
                "High watermark minus the committed offset",
                &["group", "topic", "partition"],
            ),
            kraft_leader: gauge(
                r,
                "strom_kraft_current_leader",
                "Node id of the metadata quorum leader (-1: none)",
            ),
            kraft_term: gauge(
                r,
                "strom_kraft_current_term",
                "Current Raft term of the metadata quorum",
            ),
            kraft_last_log_index: gauge(
                r,
                "strom_kraft_last_log_index",
                "Last index in the metadata log",
            ),
            kraft_applied_index: gauge(
                r,
                "strom_kraft_applied_index",
                "Last metadata log index applied",
            ),
            metadata_invalid_records: gauge(
                r,
                "strom_metadata_invalid_records_skipped",
                "Committed metadata records that were invalid and skipped instead of applied",
            ),
            kraft_voters: gauge(r, "strom_kraft_voters", "Voters in the metadata quorum"),
            active_controllers: gauge(
                r,
                "strom_kraft_active_controllers",
                "1 when this node is the active controller",
            ),
            brokers: gauge(
                r,
                "strom_registered_brokers",
                "Brokers registered with the controller",
            ),
            fenced_brokers: gauge(
                r,
                "strom_fenced_brokers",
                "Registered brokers that are fenced (no leadership, out of the ISR)",
            ),
            fetch_sessions: gauge(
                r,
                "strom_fetch_sessions",
                "Incremental fetch sessions this broker keeps (KIP-227)",
            ),
            fetch_session_partitions: gauge(
                r,
                "strom_fetch_session_partitions",
                "Partitions remembered by all incremental fetch sessions",
            ),
            registry,
        };
        // Series that count rare events start at zero, so that dashboards and rate() see them
        // before the first event.
        for api in ["Produce", "Fetch"] {
            metrics.request_errors.with_label_values(&[api]);
        }
        for change in ["shrink", "expand"] {
            metrics.isr_changes.with_label_values(&[change]);
        }
        for quota in ["produce", "fetch", "request", "controller_mutation"] {
            metrics.throttled_responses.with_label_values(&[quota]);
            metrics.throttle_time.with_label_values(&[quota]);
        }
        metrics
    }

    /// Records one handled request.
    pub fn observe_request(&self, api: ApiKey, elapsed: Duration) {
        if let Some((count, duration)) = self.per_api.get(&api) {
            count.inc();
            duration.observe(elapsed.as_secs_f64());
        }
    }

    fn refresh(&self, ctx: &Context) {
        let image = ctx.controller.image();
        let node = ctx.config.node_id;
        let (mut partitions, mut leaders, mut under_replicated, mut under_min_isr, mut offline) =
            (0, 0, 0, 0, 0);
        let default_min_isr = ctx.config.int("min.insync.replicas") as usize;
        for topic in image.topics.values() {
            let min_isr = topic
                .configs
                .get("min.insync.replicas")
                .and_then(|v| v.parse().ok())
                .unwrap_or(default_min_isr);
            for p in &topic.partitions {
                if p.leader < 0 {
                    offline += 1;
                }
                if !p.replicas.contains(&node) {
                    continue;
                }
                partitions += 1;
                if p.leader == node {
                    leaders += 1;
                    under_replicated += (p.isr.len() < p.replicas.len()) as i64;
                    under_min_isr += (p.isr.len() < min_isr) as i64;
                }
            }
        }
        self.partitions.set(partitions);
        self.leaders.set(leaders);
        self.under_replicated.set(under_replicated);
        self.under_min_isr.set(under_min_isr);
        self.offline.set(offline);
        self.brokers.set(image.brokers.len() as i64);
        let (sessions, session_partitions) = ctx.fetch_sessions.size();
        self.fetch_sessions.set(sessions as i64);
        self.fetch_session_partitions.set(session_partitions as i64);
        self.fenced_brokers
            .set(image.brokers.values().filter(|b| b.fenced).count() as i64);

        for gauge in [
            &self.log_size,
            &self.log_start,
            &self.log_end,
            &self.open_transactions,
            &self.lso_lag,
        ] {
            gauge.reset();
        }
        for dir in &ctx.config.log_dirs {
            // A directory that cannot be measured keeps its last values.
            if let Ok(fs) = rustix::fs::statvfs(dir) {
                let label = [dir.to_string_lossy()];
                let block = fs.f_frsize as i64;
                self.log_dir_capacity
                    .with_label_values(&label)
                    .set(fs.f_blocks as i64 * block);
                self.log_dir_free
                    .with_label_values(&label)
                    .set(fs.f_bavail as i64 * block);
            }
        }
        let mut high_watermarks = std::collections::HashMap::new();
        for ((topic, partition), log) in ctx.logs.all() {
            let labels = [topic.as_str(), &partition.to_string()];
            self.log_size
                .with_label_values(&labels)
                .set(log.size_bytes() as i64);
            self.log_start
                .with_label_values(&labels)
                .set(log.log_start_offset());
            self.log_end
                .with_label_values(&labels)
                .set(log.log_end_offset());
            let open = log.open_transactions();
            if open > 0 {
                self.open_transactions
                    .with_label_values(&labels)
                    .set(open as i64);
                self.lso_lag
                    .with_label_values(&labels)
                    .set(log.high_watermark() - log.last_stable_offset());
            }
            high_watermarks.insert((topic, partition), log.high_watermark());
        }

        self.committed_offset.reset();
        self.lag.reset();
        for group in ctx.groups.list() {
            for ((topic, partition), committed) in ctx.groups.committed(&group.group_id) {
                let labels = [
                    group.group_id.as_str(),
                    topic.as_str(),
                    &partition.to_string(),
                ];
                self.committed_offset
                    .with_label_values(&labels)
                    .set(committed.offset);
                if let Some(hw) = high_watermarks.get(&(topic.clone(), partition)) {
                    self.lag
                        .with_label_values(&labels)
                        .set((hw - committed.offset).max(0));
                }
            }
        }

        self.coordinated_transactions
            .set(ctx.txns.open_count() as i64);

        let leader = ctx.controller.active_controller().map_or(-1, i64::from);
        self.kraft_leader.set(leader);
        self.kraft_applied_index.set(image.applied_index as i64);
        self.metadata_invalid_records
            .set(image.invalid_records_skipped as i64);
        self.kraft_voters.set(ctx.config.voters.len() as i64);
        if let Some(raft) = ctx.controller.raft_metrics() {
            self.kraft_term.set(raft.current_term as i64);
            self.kraft_last_log_index
                .set(raft.last_log_index.map_or(0, |i| i as i64));
        }
        self.active_controllers.set((leader == node as i64) as i64);
    }

    /// The current metrics in the Prometheus text format.
    pub fn render(&self, ctx: &Context) -> String {
        self.refresh(ctx);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
