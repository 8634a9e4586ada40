//! Topic-level configs exactly as Kafka 4.0 defines them: names, types, defaults, the broker
//! properties each falls back to (its synonyms, in Kafka's order), validation with Kafka's
//! messages, and the effective settings a partition log runs with.

use std::collections::BTreeMap;

use crate::config::{split_list, BrokerConfig};

/// Kafka's ConfigDef types, numbered as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// true or false.
    Boolean = 1,
    /// Text.
    String = 2,
    /// 32-bit integer.
    Int = 3,
    /// 64-bit integer.
    Long = 5,
    /// Floating point.
    Double = 6,
    /// Comma-separated list.
    List = 7,
}

/// How values are checked (Kafka's validators).
#[derive(Debug, Clone, Copy)]
pub enum Validator {
    /// Anything of the type.
    Any,
    /// A number no lower than this.
    AtLeast(i64),
    /// A number within these bounds.
    Between(f64, f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A list whose every element is one of these.
    ListOf(&'static [&'static str]),
    /// 1 to 9, or -1 (gzip levels).
    GzipLevel,
    /// `*`, or `partition:broker` pairs.
    ThrottledReplicas,
}

/// Whether Strom acts on a config, for the README's table and DescribeConfigs users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Applied by the log, the cleaner or the replication path.
    Applied,
    /// Accepted, validated, stored and described, but with no effect in Strom yet.
    StoredOnly,
}

/// One topic config.
#[derive(Debug)]
pub struct TopicConfigDef {
    /// The topic-level name, for example `retention.ms`.
    pub name: &'static str,
    /// Kafka's type.
    pub ty: ConfigType,
    /// Kafka's default, used when no broker property supplies one.
    pub default: &'static str,
    /// Broker properties the default comes from, highest priority first; the first is the
    /// one Kafka names as the "server default property".
    pub synonyms: &'static [&'static str],
    /// Value checks.
    pub validator: Validator,
    /// Whether Strom acts on it.
    pub effect: Effect,
}

const LONG_MAX: &str = "9223372036854775807";

const fn c(
    name: &'static str,
    ty: ConfigType,
    default: &'static str,
    synonyms: &'static [&'static str],
    validator: Validator,
    effect: Effect,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        ty,
        default,
        synonyms,
        validator,
        effect,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long};
use Effect::{Applied, StoredOnly};
use Validator::{AtLeast, Between, GzipLevel, ListOf, OneOf, ThrottledReplicas};

/// The compression codecs a topic may force, in Kafka's order.
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config of Kafka 4.0, by name.
#[rustfmt::skip]
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    c("cleanup.policy", List, "delete", &["log.cleanup.policy"], ListOf(&["compact", "delete"]), Applied),
    c("compression.gzip.level", Int, "-1", &["compression.gzip.level"], GzipLevel, StoredOnly),
    c("compression.lz4.level", Int, "9", &["compression.lz4.level"], Between(1.0, 17.0), StoredOnly),
    c("compression.type", ConfigType::String, "producer", &["compression.type"], OneOf(COMPRESSION_TYPES), StoredOnly),
    c("compression.zstd.level", Int, "3", &["compression.zstd.level"], Between(-131072.0, 22.0), StoredOnly),
    c("delete.retention.ms", Long, "86400000", &["log.cleaner.delete.retention.ms"], AtLeast(0), Applied),
    c("file.delete.delay.ms", Long, "60000", &["log.segment.delete.delay.ms"], AtLeast(0), Applied),
    c("flush.messages", Long, LONG_MAX, &["log.flush.interval.messages"], AtLeast(1), Applied),
    c("flush.ms", Long, LONG_MAX, &["log.flush.interval.ms"], AtLeast(0), Applied),
    c("follower.replication.throttled.replicas", List, "", &[], ThrottledReplicas, StoredOnly),
    c("index.interval.bytes", Int, "4096", &["log.index.interval.bytes"], AtLeast(0), Applied),
    c("leader.replication.throttled.replicas", List, "", &[], ThrottledReplicas, StoredOnly),
    c("local.retention.bytes", Long, "-2", &["log.local.retention.bytes"], AtLeast(-2), StoredOnly),
    c("local.retention.ms", Long, "-2", &["log.local.retention.ms"], AtLeast(-2), StoredOnly),
    c("max.compaction.lag.ms", Long, LONG_MAX, &["log.cleaner.max.compaction.lag.ms"], AtLeast(1), Applied),
    c("max.message.bytes", Int, "1048588", &["message.max.bytes"], AtLeast(0), Applied),
    c("message.timestamp.after.max.ms", Long, "3600000", &["log.message.timestamp.after.max.ms"], AtLeast(0), Applied),
    c("message.timestamp.before.max.ms", Long, LONG_MAX, &["log.message.timestamp.before.max.ms"], AtLeast(0), Applied),
    c("message.timestamp.type", ConfigType::String, "CreateTime", &["log.message.timestamp.type"], OneOf(&["CreateTime", "LogAppendTime"]), Applied),
    c("min.cleanable.dirty.ratio", Double, "0.5", &["log.cleaner.min.cleanable.ratio"], Between(0.0, 1.0), Applied),
    c("min.compaction.lag.ms", Long, "0", &["log.cleaner.min.compaction.lag.ms"], AtLeast(0), Applied),
    c("min.insync.replicas", Int, "1", &["min.insync.replicas"], AtLeast(1), Applied),
    c("preallocate", Boolean, "false", &["log.preallocate"], Validator::Any, StoredOnly),
    c("remote.log.copy.disable", Boolean, "false", &[], Validator::Any, StoredOnly),
    c("remote.log.delete.on.disable", Boolean, "false", &[], Validator::Any, StoredOnly),
    c("remote.storage.enable", Boolean, "false", &[], Validator::Any, StoredOnly),
    c("retention.bytes", Long, "-1", &["log.retention.bytes"], Validator::Any, Applied),
    c("retention.ms", Long, "604800000", &["log.retention.ms", "log.retention.minutes", "log.retention.hours"], AtLeast(-1), Applied),
    c("segment.bytes", Int, "1073741824", &["log.segment.bytes"], AtLeast(14), Applied),
    c("segment.index.bytes", Int, "10485760", &["log.index.size.max.bytes"], AtLeast(4), StoredOnly),
    c("segment.jitter.ms", Long, "0", &["log.roll.jitter.ms", "log.roll.jitter.hours"], AtLeast(0), Applied),
    c("segment.ms", Long, "604800000", &["log.roll.ms", "log.roll.hours"], AtLeast(1), Applied),
    c("unclean.leader.election.enable", Boolean, "false", &["unclean.leader.election.enable"], Validator::Any, Applied),
];

/// Looks up a topic config by its topic-level name.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// How many milliseconds one unit of a broker property is (Kafka's `.minutes`, `.hours`).
fn unit_ms(broker_key: &str) -> i64 {
    if broker_key.ends_with(".hours") {
        3_600_000
    } else if broker_key.ends_with(".minutes") {
        60_000
    } else {
        1
    }
}

/// Formats a double as Java's `Double.toString` does for ordinary values (`2.0`, `0.5`).
fn java_double(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

/// Kafka's bound as its messages print it: integral bounds without a fraction.
fn bound(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

impl TopicConfigDef {
    /// Validates a value and returns it as Kafka stores and shows it (trimmed, numbers and
    /// booleans re-rendered, lists joined by commas); the error is Kafka's INVALID_CONFIG text.
    pub fn normalize(&self, raw: &str) -> Result<String, String> {
        let name = self.name;
        let value = raw.trim();
        let invalid = |shown: &str, reason: String| {
            Err(format!(
                "Invalid value {shown} for configuration {name}: {reason}"
            ))
        };
        let number = |type_name: &str| invalid(raw, format!("Not a number of type {type_name}"));
        let rendered = match self.ty {
            Int => match value.parse::<i32>() {
                Ok(v) => v.to_string(),
                Err(_) => return number("INT"),
            },
            Long => match value.parse::<i64>() {
                Ok(v) => v.to_string(),
                Err(_) => return number("LONG"),
            },
            Double => match value.parse::<f64>() {
                Ok(v) => java_double(v),
                Err(_) => return number("DOUBLE"),
            },
            Boolean => match value.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => b.to_string(),
                _ => return invalid(raw, "Expected value to be either true or false".into()),
            },
            ConfigType::String => value.to_string(),
            List => split_list(value).join(","),
        };
        match self.validator {
            Validator::Any => {}
            AtLeast(min) => {
                if rendered.parse::<i64>().is_ok_and(|v| v < min) {
                    return invalid(&rendered, format!("Value must be at least {min}"));
                }
            }
            Between(low, high) => {
                let v: f64 = rendered.parse().unwrap_or(f64::NAN);
                if v < low {
                    return invalid(&rendered, format!("Value must be at least {}", bound(low)));
                }
                if v > high {
                    return invalid(
                        &rendered,
                        format!("Value must be no more than {}", bound(high)),
                    );
                }
            }
            GzipLevel => {
                let v: i64 = rendered.parse().unwrap_or(0);
                if v != -1 && !(1..=9).contains(&v) {
                    return invalid(
                        &rendered,
                        "Value must be between 1 and 9 or equal to -1".into(),
                    );
                }
            }
            OneOf(choices) => {
                if !choices.contains(&rendered.as_str()) {
                    return invalid(
                        &rendered,
                        format!("String must be one of: {}", choices.join(", ")),
                    );
                }
            }
            ListOf(choices) => {
                if let Some(bad) = kafka_list(value)
                    .into_iter()
                    .find(|v| !choices.contains(&v.as_str()))
                {
                    return invalid(
                        &bad,
                        format!("String must be one of: {}", choices.join(", ")),
                    );
                }
            }
            ThrottledReplicas => {
                let items = kafka_list(value);
                let pair = |s: &str| {
                    s.is_empty()
                        || s.split_once(':').is_some_and(|(p, b)| {
                            !p.is_empty()
                                && !b.is_empty()
                                && p.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
                        })
                };
                if !(value == "*" || items.iter().all(|s| pair(s))) {
                    return invalid(
                        &format!("[{}]", items.join(", ")),
                        format!("{name} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
                    );
                }
            }
        }
        Ok(rendered)
    }

    /// The value without a topic override: the first broker synonym set (statically or by
    /// default), in its unit, else Kafka's topic default.
    pub fn broker_value(&self, broker: &BrokerConfig) -> String {
        for key in self.synonyms {
            if let Some(v) = broker.get(key) {
                let unit = unit_ms(key);
                return match (unit, v.trim().parse::<i64>()) {
                    (1, _) => v.to_string(),
                    (unit, Ok(n)) if n < 0 => (if unit > 1 { -1 } else { n }).to_string(),
                    (unit, Ok(n)) => n.saturating_mul(unit).to_string(),
                    (_, Err(_)) => v.to_string(),
                };
            }
        }
        self.default.to_string()
    }
}

/// Kafka's list parsing: blank is empty, otherwise split on commas keeping empty elements.
fn kafka_list(value: &str) -> Vec<String> {
    if value.trim().is_empty() {
        Vec::new()
    } else {
        value.split(',').map(|s| s.trim().to_string()).collect()
    }
}

/// Validates a topic's whole override set as Kafka does on create and alter: every name must
/// be a topic config, every value valid, then the checks across keys. Returns the overrides
/// as they are stored (normalized).
pub fn validate_topic_configs(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    if let Some(unknown) = overrides.keys().find(|k| topic_config(k).is_none()) {
        return Err(format!("Unknown topic config name: {unknown}"));
    }
    let mut normalized = BTreeMap::new();
    for (key, value) in overrides {
        let def = topic_config(key).expect("checked above");
        normalized.insert(key.clone(), def.normalize(value)?);
    }
    let effective = |name: &str| -> i64 {
        let def = topic_config(name).expect("known topic config");
        normalized
            .get(name)
            .cloned()
            .unwrap_or_else(|| def.broker_value(broker))
            .parse()
            .unwrap_or(0)
    };
    let (min_lag, max_lag) = (
        effective("min.compaction.lag.ms"),
        effective("max.compaction.lag.ms"),
    );
    if min_lag > max_lag {
        return Err(format!("conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"));
    }
    if normalized.get("remote.storage.enable").map(String::as_str) == Some("true") {
        return Err("Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.".into());
    }
    Ok(normalized)
}

/// The value of a topic config: the override if set, else the broker's, else Kafka's default.
pub fn effective_value(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    def: &TopicConfigDef,
) -> String {
    overrides
        .get(def.name)
        .cloned()
        .unwrap_or_else(|| def.broker_value(broker))
}

/// The settings one partition log runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll a segment at this size.
    pub segment_bytes: u64,
    /// Roll a segment this old (`segment.ms`, capped by `max.compaction.lag.ms` when compacted).
    pub roll_ms: i64,
    /// Each new segment rolls up to this much earlier, at random (`segment.jitter.ms`).
    pub roll_jitter_ms: i64,
    /// Delete segments older than this (-1: never).
    pub retention_ms: i64,
    /// Delete old segments while the log is bigger than this (-1: no limit).
    pub retention_bytes: i64,
    /// Largest accepted batch.
    pub max_message_bytes: usize,
    /// Bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// fsync after this many messages.
    pub flush_messages: i64,
    /// fsync when the oldest unflushed data is this old.
    pub flush_ms: i64,
    /// Whether old segments are deleted by time and size.
    pub delete_enabled: bool,
    /// Whether the broker stamps its own time on batches.
    pub log_append_time: bool,
    /// Whether the cleaner keeps only the latest record per key.
    pub compact_enabled: bool,
    /// How long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// Records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// Records older than this are compacted whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// Clean only when this share of the log is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// How long deleted segment files stay on disk (renamed `.deleted`) before removal.
    pub file_delete_delay_ms: i64,
    /// Produced timestamps may be at most this far in the past.
    pub timestamp_before_max_ms: i64,
    /// Produced timestamps may be at most this far in the future.
    pub timestamp_after_max_ms: i64,
    /// The most a compressed batch may expand to: `socket.request.max.bytes`, the most a
    /// client could have sent uncompressed.
    pub max_uncompressed_bytes: u64,
}

impl LogConfig {
    /// Derives the settings from the broker config and a topic's overrides.
    pub fn new(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| {
            let def = topic_config(name).expect("known topic config");
            effective_value(broker, overrides, def)
        };
        let long = |name: &str| {
            let def = topic_config(name).expect("known topic config");
            get(name)
                .trim()
                .parse::<i64>()
                .or_else(|_| def.default.parse())
                .unwrap_or(0)
        };
        let policy = split_list(&get("cleanup.policy"));
        let has_policy = |name: &str| policy.iter().any(|s| s == name);
        let compact_enabled = has_policy("compact");
        let segment_ms = long("segment.ms");
        let max_compaction_lag_ms = long("max.compaction.lag.ms");
        LogConfig {
            segment_bytes: long("segment.bytes").max(14) as u64,
            roll_ms: if compact_enabled {
                segment_ms.min(max_compaction_lag_ms)
            } else {
                segment_ms
            },
            roll_jitter_ms: long("segment.jitter.ms").min(segment_ms),
            retention_ms: long("retention.ms"),
            retention_bytes: long("retention.bytes"),
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            index_interval_bytes: long("index.interval.bytes").clamp(0, u32::MAX as i64) as u32,
            flush_messages: long("flush.messages"),
            flush_ms: long("flush.ms"),
            delete_enabled: has_policy("delete"),
            log_append_time: get("message.timestamp.type") == "LogAppendTime",
            compact_enabled,
            delete_retention_ms: long("delete.retention.ms"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms,
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            file_delete_delay_ms: long("file.delete.delay.ms"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms"),
            max_uncompressed_bytes: broker.int("socket.request.max.bytes").max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(overrides: &[&str]) -> BrokerConfig {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        BrokerConfig::load(None, Vec::new(), &overrides).unwrap()
    }

    #[test]
    fn kafka_4_0_has_33_topic_configs_and_every_synonym_is_a_broker_property() {
        assert_eq!(TOPIC_CONFIGS.len(), 33);
        for def in TOPIC_CONFIGS {
            for key in def.synonyms {
                assert!(
                    crate::config::property(key).is_some(),
                    "{} -> {key}",
                    def.name
                );
            }
            assert_eq!(
                def.normalize(def.default).as_deref(),
                Ok(def.default),
                "{}'s default is valid",
                def.name
            );
        }
    }

    #[test]
    fn the_readme_says_what_strom_does_with_each_config() {
        let readme = include_str!("../../README.md");
        for def in TOPIC_CONFIGS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", def.name)))
                .unwrap_or_else(|| panic!("README lacks a row for {}", def.name));
            let applied = row.contains("| applied");
            assert_eq!(applied, def.effect == Applied, "{row}");
        }
    }

    #[test]
    fn without_overrides_the_values_are_kafkas_defaults() {
        let b = broker(&[]);
        for def in TOPIC_CONFIGS {
            assert_eq!(def.broker_value(&b), def.default, "{}", def.name);
        }
    }

    #[test]
    fn values_are_checked_with_kafkas_messages() {
        let check = |name: &str, value: &str| topic_config(name).unwrap().normalize(value);
        assert_eq!(check("retention.ms", " 1000 ").as_deref(), Ok("1000"));
        assert_eq!(
            check("cleanup.policy", "compact, delete").as_deref(),
            Ok("compact,delete")
        );
        assert_eq!(check("preallocate", "TRUE").as_deref(), Ok("true"));
        assert_eq!(
            check("min.cleanable.dirty.ratio", "0.50").as_deref(),
            Ok("0.5")
        );
        assert_eq!(
            check("retention.ms", "soon").unwrap_err(),
            "Invalid value soon for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            check("retention.ms", "-5").unwrap_err(),
            "Invalid value -5 for configuration retention.ms: Value must be at least -1"
        );
        assert_eq!(
            check("min.cleanable.dirty.ratio", "2").unwrap_err(),
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        assert_eq!(
            check("cleanup.policy", "delete,shred").unwrap_err(),
            "Invalid value shred for configuration cleanup.policy: String must be one of: compact, delete"
        );
        assert_eq!(
            check("compression.gzip.level", "10").unwrap_err(),
            "Invalid value 10 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"
        );
        assert!(check("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(check("leader.replication.throttled.replicas", "*").is_ok());
        assert!(check("leader.replication.throttled.replicas", "x").is_err());
        assert!(check("compression.type", "brotli").is_err());
    }

    #[test]
    fn the_override_set_is_checked_as_a_whole() {
        let b = broker(&[]);
        let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            validate_topic_configs(&b, &set(&[("message.downconversion.enable", "true")]))
                .unwrap_err(),
            "Unknown topic config name: message.downconversion.enable"
        );
        assert!(validate_topic_configs(
            &b,
            &set(&[
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5")
            ])
        )
        .unwrap_err()
        .starts_with("conflict topic config setting min.compaction.lag.ms (10)"));
        assert!(validate_topic_configs(&b, &set(&[("remote.storage.enable", "true")])).is_err());
        assert_eq!(
            validate_topic_configs(&b, &set(&[("retention.ms", " 42 ")])).unwrap()["retention.ms"],
            "42"
        );
    }

    #[test]
    fn broker_units_and_overrides_give_the_effective_settings() {
        let b = broker(&["log.retention.hours=24", "log.roll.ms=5000"]);
        let mut overrides = BTreeMap::new();
        let c = LogConfig::new(&b, &overrides);
        assert_eq!((c.retention_ms, c.roll_ms), (86_400_000, 5000));
        assert_eq!(c.flush_ms, i64::MAX);
        overrides.insert("retention.ms".into(), "77".into());
        overrides.insert("cleanup.policy".into(), "compact".into());
        overrides.insert("max.compaction.lag.ms".into(), "1000".into());
        let c = LogConfig::new(&b, &overrides);
        assert_eq!(c.retention_ms, 77);
        assert!(!c.delete_enabled && c.compact_enabled);
        assert_eq!(
            c.roll_ms, 1000,
            "a compacted topic rolls by max.compaction.lag.ms"
        );
    }
}
