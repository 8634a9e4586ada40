//! Client quota enforcement, as Kafka's quota managers do it: each sensor keeps a rate over
//! `quota.window.num` windows of `quota.window.size.seconds`, and a client over its quota is
//! told to wait (`throttle_time_ms`) while its connection stops being read for that long.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FetchResponse, RequestKind, ResponseKind};
use kafka_protocol::ResponseError;

use crate::metadata::quotas::{
    ClientQuotasImage, QuotaTags, CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
};

/// How long a sensor nobody recorded into is kept (Kafka's one hour).
const SENSOR_EXPIRY: Duration = Duration::from_secs(3600);

/// How often expired sensors are looked for.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Produce request bytes a second.
    Produce,
    /// Fetch response bytes a second (consumers, not followers).
    Fetch,
    /// Percent of one thread's time spent handling the client's requests.
    Request,
    /// Partitions a second created or deleted (KIP-599).
    ControllerMutation,
}

impl QuotaKind {
    /// The quota's config key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
            QuotaKind::ControllerMutation => CONTROLLER_MUTATION_RATE,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
            QuotaKind::ControllerMutation => "controller_mutation",
        }
    }
}

/// One window of a rate: what was recorded from `start` on.
#[derive(Debug)]
struct Sample {
    start: Instant,
    total: f64,
}

/// Kafka's sampled `Rate`: the total over the kept windows divided by the time they span,
/// counted as at least all but one full window so a new sensor does not start with a burst
/// of throttling.
#[derive(Debug)]
struct Rate {
    samples: VecDeque<Sample>,
    last_record: Instant,
}

impl Rate {
    fn new(now: Instant) -> Self {
        Rate {
            samples: VecDeque::new(),
            last_record: now,
        }
    }

    fn record(&mut self, value: f64, now: Instant, window: Duration, count: usize) {
        let span = window * count as u32;
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.start) >= span)
        {
            self.samples.pop_front();
        }
        if self
            .samples
            .back()
            .is_none_or(|s| now.saturating_duration_since(s.start) >= window)
        {
            if self.samples.len() == count {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                start: now,
                total: 0.0,
            });
        }
        if let Some(current) = self.samples.back_mut() {
            current.total += value;
        }
        self.last_record = now;
    }

    /// The time the rate is measured over, in seconds.
    fn window_size(&self, now: Instant, window: Duration, count: usize) -> f64 {
        let elapsed = self
            .samples
            .front()
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.start));
        let full = (elapsed.as_nanos() / window.as_nanos().max(1)) as usize;
        let min_full = count.saturating_sub(1);
        let padded = if full < min_full {
            elapsed + window * (min_full - full) as u32
        } else {
            elapsed
        };
        padded.as_secs_f64().max(window.as_secs_f64())
    }

    fn measure(&self, now: Instant, window: Duration, count: usize) -> f64 {
        let total: f64 = self.samples.iter().map(|s| s.total).sum();
        total / self.window_size(now, window, count)
    }
}

/// Kafka's `TokenBucket` for partition mutations (KIP-599): up to a burst of the quota times
/// the quota's whole span, refilled at the quota; a client in debt waits until it is repaid.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn refill(&mut self, bound: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + bound * elapsed).min(burst);
        self.refilled = now;
    }

    /// How long until the debt is repaid at `bound` a second.
    fn debt_wait(&self, bound: f64) -> Duration {
        Duration::from_secs_f64((-self.tokens / bound).max(0.0))
    }
}

/// Whose rate a sensor keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SensorKey {
    /// A user's or client's produce, fetch or request time.
    Client(QuotaKind, QuotaTags),
    /// Connections opened from one address.
    Address(IpAddr),
}

#[derive(Debug)]
struct Sensors {
    rates: HashMap<SensorKey, Rate>,
    buckets: HashMap<QuotaTags, TokenBucket>,
    purged: Instant,
}

/// The broker's quota sensors.
#[derive(Debug)]
pub struct QuotaManager {
    window: Duration,
    count: usize,
    sensors: Mutex<Sensors>,
}

impl QuotaManager {
    /// A manager with `count` windows of `window` each.
    pub fn new(window: Duration, count: usize) -> Self {
        QuotaManager {
            window,
            count: count.max(1),
            sensors: Mutex::new(Sensors {
                rates: HashMap::new(),
                buckets: HashMap::new(),
                purged: Instant::now(),
            }),
        }
    }

    /// Records `value` against the sensor of the `kind` quota that applies to the user's
    /// client, and returns how long the client must wait; zero when no quota applies or the
    /// rate is within it. Kafka's formula: the excess over the quota, as a share of the
    /// quota, times the measured span; a request-time throttle is at most one window.
    pub fn record(
        &self,
        quotas: &ClientQuotasImage,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
    ) -> Duration {
        let Some((bound, tags)) = quotas.lookup(kind.key(), user, client_id) else {
            return Duration::ZERO;
        };
        let bounded = kind == QuotaKind::Request;
        self.record_on(SensorKey::Client(kind, tags), bound, value, bounded, false)
    }

    /// Records a connection from `ip` against its `connection_creation_rate` quota (KIP-612)
    /// and returns how long to hold the connection before closing it unserved; zero when it
    /// may be served. As Kafka, the wait is at most one window, and a connection refused is
    /// not counted, so a client that keeps trying is served again once its rate falls.
    pub fn record_connection(&self, quotas: &ClientQuotasImage, ip: IpAddr) -> Duration {
        match quotas.lookup_address(&ip.to_string()) {
            Some(bound) => self.record_on(SensorKey::Address(ip), bound, 1.0, true, true),
            None => Duration::ZERO,
        }
    }

    fn record_on(
        &self,
        key: SensorKey,
        bound: f64,
        value: f64,
        bounded: bool,
        refused_uncounted: bool,
    ) -> Duration {
        let now = Instant::now();
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(sensors.purged) >= PURGE_INTERVAL {
            sensors.purged = now;
            sensors
                .rates
                .retain(|_, r| now.saturating_duration_since(r.last_record) < SENSOR_EXPIRY);
            sensors
                .buckets
                .retain(|_, b| now.saturating_duration_since(b.refilled) < SENSOR_EXPIRY);
        }
        let rate = sensors.rates.entry(key).or_insert_with(|| Rate::new(now));
        rate.record(value, now, self.window, self.count);
        let observed = rate.measure(now, self.window, self.count);
        if observed <= bound {
            return Duration::ZERO;
        }
        let span = rate.window_size(now, self.window, self.count);
        let throttle = Duration::from_secs_f64(((observed - bound) / bound * span).max(0.0));
        if refused_uncounted {
            rate.record(-value, now, self.window, self.count);
        }
        if bounded {
            throttle.min(self.window)
        } else {
            throttle
        }
    }

    /// Takes `partitions` mutations from the client's `controller_mutation_rate` bucket.
    /// With `strict` (the request versions of KIP-599), a client already in debt is refused
    /// and nothing is taken; older versions are never refused, only throttled.
    pub fn record_mutations(
        &self,
        quotas: &ClientQuotasImage,
        who: (&str, &str),
        partitions: usize,
        strict: bool,
    ) -> Result<(), MutationQuotaExceeded> {
        self.with_mutation_bucket(quotas, who, |bucket, _| {
            if strict && bucket.tokens < 0.0 {
                return Err(MutationQuotaExceeded);
            }
            bucket.tokens -= partitions as f64;
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    /// How long a client in partition-mutation debt must wait; zero without a quota or debt.
    fn mutation_wait(&self, quotas: &ClientQuotasImage, who: (&str, &str)) -> Duration {
        self.with_mutation_bucket(quotas, who, |bucket, bound| bucket.debt_wait(bound))
            .unwrap_or(Duration::ZERO)
    }

    /// Runs `f` on the client's refilled partition-mutation bucket (full when new) with the
    /// quota; `None` when no `controller_mutation_rate` applies.
    fn with_mutation_bucket<R>(
        &self,
        quotas: &ClientQuotasImage,
        who: (&str, &str),
        f: impl FnOnce(&mut TokenBucket, f64) -> R,
    ) -> Option<R> {
        let (bound, tags) = quotas.lookup(CONTROLLER_MUTATION_RATE, who.0, who.1)?;
        let burst = bound * (self.window * self.count as u32).as_secs_f64();
        let now = Instant::now();
        let mut sensors = self.sensors.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = sensors.buckets.entry(tags).or_insert(TokenBucket {
            tokens: burst,
            refilled: now,
        });
        bucket.refill(bound, burst, now);
        Some(f(bucket, bound))
    }

    /// How many sensors are kept (for tests).
    #[cfg(test)]
    fn sensor_count(&self) -> usize {
        self.sensors.lock().unwrap().rates.len()
    }
}

/// A strict partition-mutation quota refused a topic: Kafka's THROTTLING_QUOTA_EXCEEDED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The throttling quota has been exceeded.")]
pub struct MutationQuotaExceeded;

/// Kafka's unit of request time: percent of one thread for a second.
pub fn request_time_percent(busy: Duration) -> f64 {
    busy.as_secs_f64() * 100.0
}

/// Which quotas a request counts against, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A produce request of this many bytes: the produce and request-time quotas.
    Produce(usize),
    /// A consumer's fetch: the fetch quota by response size, and request time.
    ConsumerFetch,
    /// Creating or deleting topics or partitions: the partition-mutation quota (which the
    /// handler charges) and request time. A `strict` version (KIP-599) is refused rather
    /// than throttled, and told to wait only when refused.
    Mutation {
        /// Whether the request's version may be refused.
        strict: bool,
    },
    /// Request time only.
    Other,
    /// No quota: version negotiation, and the brokers' own replication and markers.
    Exempt,
}

impl Usage {
    /// The usage of a request of `size` bytes at `version`.
    pub fn of(request: &RequestKind, version: i16, size: usize) -> Usage {
        match request {
            RequestKind::Produce(_) => Usage::Produce(size),
            RequestKind::Fetch(r) if r.replica_id.0 < 0 => Usage::ConsumerFetch,
            RequestKind::Fetch(_)
            | RequestKind::ApiVersions(_)
            | RequestKind::WriteTxnMarkers(_) => Usage::Exempt,
            RequestKind::CreateTopics(_) => Usage::Mutation {
                strict: version >= 6,
            },
            RequestKind::CreatePartitions(_) => Usage::Mutation {
                strict: version >= 3,
            },
            RequestKind::DeleteTopics(_) => Usage::Mutation {
                strict: version >= 5,
            },
            _ => Usage::Other,
        }
    }
}

/// Whether a topic or partition change was refused for its partition-mutation quota.
fn refused_mutations(response: &ResponseKind) -> bool {
    let code = ResponseError::ThrottlingQuotaExceeded.code();
    match response {
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code == code),
        ResponseKind::CreatePartitions(r) => r.results.iter().any(|t| t.error_code == code),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code == code),
        _ => false,
    }
}

/// The record bytes a fetch response carries.
fn fetched_bytes(response: &FetchResponse) -> usize {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref().map(|r| r.len()))
        .sum()
}

impl QuotaManager {
    /// Records a handled request against the quotas it counts against and returns the
    /// longest wait any of them asks for, as Kafka answers with the larger of the bandwidth
    /// and request-time throttles. `busy` is the time the request kept a worker thread;
    /// `response` is `None` while a produce still waits for its replicas.
    pub fn throttle(
        &self,
        quotas: &ClientQuotasImage,
        who: (&str, &str),
        usage: Usage,
        busy: Duration,
        response: Option<&ResponseKind>,
    ) -> Option<(QuotaKind, Duration)> {
        if quotas.entities.is_empty() || usage == Usage::Exempt {
            return None;
        }
        let (user, client_id) = who;
        let bandwidth = match (usage, response) {
            (Usage::Produce(bytes), _) => Some((QuotaKind::Produce, bytes)),
            (Usage::ConsumerFetch, Some(ResponseKind::Fetch(r))) => {
                Some((QuotaKind::Fetch, fetched_bytes(r)))
            }
            _ => None,
        }
        .map(|(kind, bytes)| {
            (
                kind,
                self.record(quotas, kind, user, client_id, bytes as f64),
            )
        });
        let mutations = match usage {
            Usage::Mutation { strict } if !strict || response.is_some_and(refused_mutations) => {
                Some((
                    QuotaKind::ControllerMutation,
                    self.mutation_wait(quotas, who),
                ))
            }
            _ => None,
        };
        let request_time = (
            QuotaKind::Request,
            self.record(
                quotas,
                QuotaKind::Request,
                user,
                client_id,
                request_time_percent(busy),
            ),
        );
        [bandwidth, mutations, Some(request_time)]
            .into_iter()
            .flatten()
            .filter(|(_, wait)| !wait.is_zero())
            .max_by_key(|(_, wait)| *wait)
    }
}

/// Sets a response's `throttle_time_ms` (versions without the field leave it out).
pub fn set_throttle_time(response: &mut ResponseKind, wait: Duration) {
    let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    macro_rules! set {
        ($($api:ident),* $(,)?) => {
            match response {
                $(ResponseKind::$api(r) => r.throttle_time_ms = ms,)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeProducers,
        DescribeTransactions,
        ListTransactions,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        DeleteGroups,
        OffsetDelete,
        IncrementalAlterConfigs,
        DescribeCluster,
        DescribeLogDirs,
        DescribeTopicPartitions,
        OffsetForLeaderEpoch,
        ElectLeaders,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeClientQuotas,
        AlterClientQuotas,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::quotas::{QuotaChange, QuotaEntity, QuotaValue, CLIENT_ID};

    fn client_quota(key: &str, value: f64) -> ClientQuotasImage {
        let mut image = ClientQuotasImage::default();
        image.apply(&[QuotaChange {
            entity: QuotaEntity([(CLIENT_ID.to_string(), Some("c".to_string()))].into()),
            key: key.into(),
            value: Some(QuotaValue(value)),
        }]);
        image
    }

    #[test]
    fn a_client_over_its_quota_waits_in_proportion_to_the_excess() {
        let quotas = client_quota(PRODUCER_BYTE_RATE, 1000.0);
        let manager = QuotaManager::new(Duration::from_secs(1), 11);
        // 5,000 bytes over a span counted as 10 s is 500 B/s: within the quota.
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "u", "c", 5000.0),
            Duration::ZERO
        );
        // 20,000 bytes is 2,000 B/s: twice the quota, so the wait is the whole span again.
        let wait = manager.record(&quotas, QuotaKind::Produce, "u", "c", 15000.0);
        assert!(
            (9.9..=10.1).contains(&wait.as_secs_f64()),
            "throttled for {wait:?}"
        );
        // Another client, or another kind of quota, has a sensor of its own.
        assert_eq!(
            manager.record(&quotas, QuotaKind::Produce, "u", "d", 1e9),
            Duration::ZERO
        );
        assert_eq!(
            manager.record(&quotas, QuotaKind::Fetch, "u", "c", 1e9),
            Duration::ZERO
        );
        assert_eq!(manager.sensor_count(), 1);
    }

    #[test]
    fn request_time_throttles_are_bounded_by_one_window() {
        let quotas = client_quota(REQUEST_PERCENTAGE, 1.0);
        let manager = QuotaManager::new(Duration::from_secs(1), 11);
        let wait = manager.record(
            &quotas,
            QuotaKind::Request,
            "u",
            "c",
            request_time_percent(Duration::from_secs(5)),
        );
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn partition_mutations_spend_a_bucket_and_strict_requests_are_refused_in_debt() {
        let quotas = client_quota(CONTROLLER_MUTATION_RATE, 2.0);
        let manager = QuotaManager::new(Duration::from_secs(1), 11);
        let who = ("u", "c");
        // The burst is 2 a second over 11 s: 22 partitions, and a request may overdraw it.
        manager.record_mutations(&quotas, who, 20, true).unwrap();
        assert_eq!(manager.mutation_wait(&quotas, who), Duration::ZERO);
        manager.record_mutations(&quotas, who, 12, true).unwrap();
        let wait = manager.mutation_wait(&quotas, who);
        assert!((4.9..=5.0).contains(&wait.as_secs_f64()), "waits {wait:?}");
        assert_eq!(
            manager.record_mutations(&quotas, who, 1, true),
            Err(MutationQuotaExceeded)
        );
        // Versions before KIP-599's are throttled, never refused.
        manager.record_mutations(&quotas, who, 1, false).unwrap();
        assert!(manager.mutation_wait(&quotas, who) > wait);
    }

    #[test]
    fn old_windows_stop_counting() {
        let window = Duration::from_millis(20);
        let mut rate = Rate::new(Instant::now());
        let start = Instant::now();
        rate.record(100.0, start, window, 3);
        assert!(rate.measure(start, window, 3) > 0.0);
        let later = start + window * 4;
        rate.record(0.0, later, window, 3);
        assert_eq!(rate.measure(later, window, 3), 0.0);
    }
}
