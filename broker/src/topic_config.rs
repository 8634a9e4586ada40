//! Topic-level configs: Kafka's names, the broker property each one defaults to, validation,
//! and the effective settings a partition log runs with.

use std::collections::BTreeMap;

use crate::config::{split_list, validate_value, BrokerConfig, PropertyDef, PropertyType};

/// A topic config and the broker property that supplies its default.
pub struct TopicConfigDef {
    /// The topic-level name, for example `retention.ms`.
    pub name: &'static str,
    /// The broker-level property, for example `log.retention.ms`.
    pub broker_key: &'static str,
    /// Validation of values.
    pub ty: PropertyType,
    /// The allowed values, when the config is an enumeration.
    pub choices: &'static [&'static str],
}

const fn t(name: &'static str, broker_key: &'static str, ty: PropertyType) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_key,
        ty,
        choices: &[],
    }
}

/// Every topic config Strom accepts.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        choices: &["delete", "compact"],
        ..t("cleanup.policy", "log.cleanup.policy", PropertyType::List)
    },
    TopicConfigDef {
        choices: &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        ..t("compression.type", "compression.type", PropertyType::Text)
    },
    t(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        PropertyType::Long(0),
    ),
    t(
        "flush.messages",
        "log.flush.interval.messages",
        PropertyType::Long(1),
    ),
    t("flush.ms", "log.flush.interval.ms", PropertyType::Long(0)),
    t(
        "index.interval.bytes",
        "log.index.interval.bytes",
        PropertyType::Int(0),
    ),
    t(
        "max.message.bytes",
        "message.max.bytes",
        PropertyType::Int(0),
    ),
    TopicConfigDef {
        choices: &["CreateTime", "LogAppendTime"],
        ..t(
            "message.timestamp.type",
            "log.message.timestamp.type",
            PropertyType::Text,
        )
    },
    t(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        PropertyType::Ratio,
    ),
    t(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        PropertyType::Long(0),
    ),
    t(
        "min.insync.replicas",
        "min.insync.replicas",
        PropertyType::Int(1),
    ),
    t(
        "retention.bytes",
        "log.retention.bytes",
        PropertyType::Long(-1),
    ),
    t("retention.ms", "log.retention.ms", PropertyType::Long(-1)),
    t("segment.bytes", "log.segment.bytes", PropertyType::Int(14)),
    t("segment.ms", "log.roll.ms", PropertyType::Long(1)),
    t(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        PropertyType::Bool,
    ),
];

/// Looks up a topic config by its topic-level name.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// Checks one topic config entry; the error text is what clients see.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let def = topic_config(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let prop = PropertyDef {
        name: def.name,
        ty: def.ty,
        default: None,
    };
    validate_value(&prop, value).map_err(|e| e.to_string())?;
    if !def.choices.is_empty() {
        let items = match def.ty {
            PropertyType::List => split_list(value),
            _ => vec![value.trim().to_string()],
        };
        if let Some(bad) = items.iter().find(|v| !def.choices.contains(&v.as_str())) {
            return Err(format!(
                "Invalid value {bad} for configuration {name}: must be one of {}",
                def.choices.join(", ")
            ));
        }
    }
    Ok(())
}

/// The value of a topic config: the topic override if set, else the broker's.
pub fn effective_value(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    def: &TopicConfigDef,
) -> Option<String> {
    overrides
        .get(def.name)
        .cloned()
        .or_else(|| broker.get(def.broker_key).map(str::to_string))
}

/// The settings one partition log runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll a segment at this size.
    pub segment_bytes: u64,
    /// Roll a segment this old.
    pub segment_ms: i64,
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
    /// fsync when the oldest unflushed data is this old (`None`: never by time).
    pub flush_ms: Option<i64>,
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
    /// Clean only when this share of the log is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
}

impl LogConfig {
    /// Derives the settings from the broker config and a topic's overrides.
    pub fn new(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Self {
        let get = |name: &str| {
            let def = topic_config(name).expect("known topic config");
            effective_value(broker, overrides, def)
        };
        let long = |name: &str, fallback: i64| {
            get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let policy = get("cleanup.policy").map(|p| split_list(&p));
        let has_policy = |name: &str| policy.as_ref().is_some_and(|p| p.iter().any(|s| s == name));
        LogConfig {
            segment_bytes: long("segment.bytes", 1 << 30) as u64,
            segment_ms: long("segment.ms", 604_800_000),
            retention_ms: long("retention.ms", 604_800_000),
            retention_bytes: long("retention.bytes", -1),
            max_message_bytes: long("max.message.bytes", 1_048_588) as usize,
            index_interval_bytes: long("index.interval.bytes", 4096) as u32,
            flush_messages: long("flush.messages", i64::MAX),
            flush_ms: get("flush.ms").and_then(|v| v.trim().parse().ok()),
            delete_enabled: policy.is_none() || has_policy("delete"),
            log_append_time: get("message.timestamp.type").as_deref() == Some("LogAppendTime"),
            compact_enabled: has_policy("compact"),
            delete_retention_ms: long("delete.retention.ms", 86_400_000),
            min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_maps_to_a_broker_property() {
        for def in TOPIC_CONFIGS {
            assert!(
                crate::config::property(def.broker_key).is_some(),
                "{} -> {}",
                def.name,
                def.broker_key
            );
        }
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(validate_topic_config("retention.ms", "1000").is_ok());
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        let e = validate_topic_config("cleanup.policy", "shred").unwrap_err();
        assert!(e.contains("shred"), "{e}");
        let e = validate_topic_config("retention.ms", "soon").unwrap_err();
        assert!(e.contains("retention.ms"), "{e}");
        let e = validate_topic_config("no.such", "1").unwrap_err();
        assert!(e.contains("Unknown topic config"), "{e}");
    }

    #[test]
    fn overrides_beat_broker_defaults() {
        let broker =
            BrokerConfig::load(None, Vec::new(), &["log.retention.ms=5000".into()]).unwrap();
        let mut overrides = BTreeMap::new();
        assert_eq!(LogConfig::new(&broker, &overrides).retention_ms, 5000);
        overrides.insert("retention.ms".into(), "77".into());
        overrides.insert("cleanup.policy".into(), "compact".into());
        let c = LogConfig::new(&broker, &overrides);
        assert_eq!(c.retention_ms, 77);
        assert!(!c.delete_enabled);
        assert_eq!(c.flush_ms, None);
    }
}
