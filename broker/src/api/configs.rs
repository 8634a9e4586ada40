//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use super::{str_bytes, ApiError, Context};
use crate::config::{self, split_list, BrokerConfig, PropertyType, ValueSource};
use crate::metadata::image::MetadataRecord;
use crate::topic_config::{
    effective_value, topic_config, validate_topic_configs, ConfigType, TopicConfigDef,
    TOPIC_CONFIGS,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// One described config entry.
pub struct ConfigEntry {
    /// Config name.
    pub name: &'static str,
    /// Effective value (`None` when unset).
    pub value: Option<String>,
    /// Where the value comes from (Kafka's ConfigSource ids).
    pub source: i8,
    /// Lower-priority values that this one overrides: (name, value, source).
    pub synonyms: Vec<(&'static str, Option<String>, i8)>,
    /// Kafka's ConfigType id.
    pub config_type: i8,
    /// Whether it can be altered at run time.
    pub read_only: bool,
}

fn config_type(ty: PropertyType) -> i8 {
    match ty {
        PropertyType::Bool => 1,
        PropertyType::Text | PropertyType::Address => 2,
        PropertyType::Int(_) => 3,
        PropertyType::Short(_) => 4,
        PropertyType::Long(_) => 5,
        PropertyType::Ratio => 6,
        PropertyType::List => 7,
        PropertyType::Password => 9,
    }
}

fn broker_source(source: ValueSource) -> i8 {
    match source {
        ValueSource::Default => SOURCE_DEFAULT,
        ValueSource::Static => SOURCE_STATIC_BROKER,
    }
}

/// The broker part of a topic config's synonyms, as Kafka builds it: the statically set
/// synonyms, then those with a built-in default, dropping any before the primary one.
fn broker_synonyms(
    broker: &BrokerConfig,
    def: &TopicConfigDef,
) -> Vec<(&'static str, Option<String>, i8)> {
    let Some(primary) = def.synonyms.first() else {
        return Vec::new();
    };
    let static_set = def
        .synonyms
        .iter()
        .filter(|k| broker.source(k) == ValueSource::Static)
        .map(|k| (*k, broker.get(k).map(str::to_string), SOURCE_STATIC_BROKER));
    let defaults = def.synonyms.iter().filter_map(|k| {
        let default = config::property(k)?.default?;
        Some((*k, Some(default.to_string()), SOURCE_DEFAULT))
    });
    let mut entries: Vec<_> = static_set.chain(defaults).collect();
    match entries.iter().position(|(k, _, _)| k == primary) {
        Some(first) => entries.split_off(first),
        None => Vec::new(),
    }
}

/// The configs of a topic with these overrides (optionally only `keys`), as DescribeConfigs
/// reports them: every topic config, its source and its synonyms, the override first.
pub fn topic_entries(
    ctx: &Context,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[StrBytes]>,
) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .filter(|def| keys.is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == def.name)))
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name, Some(v.clone()), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.extend(broker_synonyms(&ctx.config, def));
            ConfigEntry {
                name: def.name,
                value: Some(effective_value(&ctx.config, overrides, def)),
                source: synonyms.first().map_or(SOURCE_DEFAULT, |s| s.2),
                synonyms,
                config_type: def.ty as i8,
                read_only: false,
            }
        })
        .collect()
}

/// The configs a CreateTopics response reports (v5+): Kafka resolves them on the controller,
/// so a statically set synonym counts (in its unit) even where DescribeConfigs would not.
pub fn created_topic_entries(
    ctx: &Context,
    overrides: &BTreeMap<String, String>,
) -> Vec<(&'static str, String, i8)> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| match overrides.get(def.name) {
            Some(v) => (def.name, v.clone(), SOURCE_DYNAMIC_TOPIC),
            None if def
                .synonyms
                .iter()
                .any(|k| ctx.config.source(k) == ValueSource::Static) =>
            {
                (
                    def.name,
                    def.broker_value(&ctx.config),
                    SOURCE_STATIC_BROKER,
                )
            }
            None => (def.name, def.broker_value(&ctx.config), SOURCE_DEFAULT),
        })
        .collect()
}

fn broker_entries(ctx: &Context, keys: Option<&[StrBytes]>) -> Vec<ConfigEntry> {
    ctx.config
        .entries()
        .filter(|(name, _, _)| {
            keys.is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == *name))
        })
        .map(|(name, value, source)| {
            let property = config::property(name);
            let ty = property.map(|p| p.ty);
            // Kafka never returns a password's value, only that it is sensitive.
            let shown = |value: Option<&str>| {
                value
                    .filter(|_| ty != Some(PropertyType::Password))
                    .map(str::to_string)
            };
            let value = shown(value);
            // As Kafka lists them: the static value, then the built-in default unless it is
            // null (or Kafka has none).
            let mut synonyms = Vec::new();
            if source == ValueSource::Static {
                synonyms.push((name, value.clone(), SOURCE_STATIC_BROKER));
            }
            let default = property.filter(|p| p.kafka_default).and_then(|p| p.default);
            if let Some(default) = default {
                synonyms.push((name, shown(Some(default)), SOURCE_DEFAULT));
            }
            ConfigEntry {
                name,
                value,
                source: broker_source(source),
                synonyms,
                config_type: ty.map_or(0, config_type),
                read_only: true,
            }
        })
        .collect()
}

/// DescribeConfigs for topics and this broker.
pub fn describe(
    ctx: &Context,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = ctx.controller.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let keys = resource.configuration_keys.as_deref();
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match image.topics.get(&name) {
                    Some(t) => Ok(topic_entries(ctx, &t.configs, keys)),
                    None => Err(ApiError::new(
                        ResponseError::UnknownTopicOrPartition,
                        format!("Topic {name} does not exist"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == ctx.config.node_id.to_string() => {
                    Ok(broker_entries(ctx, keys))
                }
                RESOURCE_BROKER => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("broker {name} is not this broker ({})", ctx.config.node_id),
                )),
                other => Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .map(|e| {
                            let synonyms = if request.include_synonyms {
                                e.synonyms
                                    .iter()
                                    .map(|(n, v, s)| {
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(n))
                                            .with_value(v.as_deref().map(str_bytes))
                                            .with_source(*s)
                                    })
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(e.name))
                                .with_value(e.value.as_deref().map(str_bytes))
                                .with_is_sensitive(e.config_type == 9)
                                .with_read_only(e.read_only)
                                .with_config_source(e.source)
                                .with_synonyms(synonyms)
                                .with_config_type(if version >= 3 { e.config_type } else { 0 })
                                // Strom keeps no documentation: null, as Kafka answers
                                // without include_documentation.
                                .with_documentation(None)
                        })
                        .collect(),
                ),
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(e.message()),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Validates the new override set of a topic and commits it. As in Kafka, the values are
/// checked before the topic's existence.
async fn apply_topic_configs(
    ctx: &Context,
    topic: &str,
    new: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let new = validate_topic_configs(&ctx.config, &new)
        .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
    let image = ctx.controller.image();
    let current = &image
        .topics
        .get(topic)
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{topic}' does not exist."),
            )
        })?
        .configs;
    if validate_only {
        return Ok(());
    }
    let delete = current
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    ctx.controller
        .propose(MetadataRecord::AlterTopicConfigs {
            name: topic.to_string(),
            set: new,
            delete,
        })
        .await
        .map_err(|e| ApiError::new(ResponseError::InvalidRequest, e.to_string()))?;
    ctx.local_metadata_applied().await;
    info!(%topic, "altered topic configs");
    Ok(())
}

fn not_dynamic(resource_type: i8) -> ApiError {
    if resource_type == RESOURCE_BROKER {
        ApiError::new(
            ResponseError::InvalidRequest,
            "dynamic broker configs are not supported; set them in server.properties",
        )
    } else {
        ApiError::new(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type} is not supported"),
        )
    }
}

/// AlterConfigs: replaces a topic's whole override set.
pub async fn alter(ctx: &Context, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let outcome = if resource.resource_type == RESOURCE_TOPIC {
            let new = resource
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            apply_topic_configs(ctx, &resource.resource_name, new, request.validate_only).await
        } else {
            Err(not_dynamic(resource.resource_type))
        };
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        if let Err(e) = outcome {
            r = r.with_error_code(e.code()).with_error_message(e.message());
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Applies SET (0), DELETE (1), APPEND (2) and SUBTRACT (3) to an override set.
fn incremental(
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
    default_of: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut new = current.clone();
    for (name, op, value) in ops {
        let list = |m: &BTreeMap<String, String>| {
            split_list(
                &m.get(name)
                    .cloned()
                    .or_else(|| default_of(name))
                    .unwrap_or_default(),
            )
        };
        let is_list = topic_config(name).is_some_and(|d| d.ty == ConfigType::List);
        if matches!(op, 2 | 3) && !is_list {
            let verb = if *op == 2 { "APPEND" } else { "SUBTRACT" };
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("Can't {verb} to key {name} because its type is not LIST."),
            ));
        }
        if *op != 1 && value.is_none() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Null value not supported for : {name}"),
            ));
        }
        let value = value.clone().unwrap_or_default();
        match op {
            0 => {
                new.insert(name.clone(), value);
            }
            1 => {
                new.remove(name);
            }
            2 => {
                let mut items = list(&new);
                for v in split_list(&value) {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                }
                new.insert(name.clone(), items.join(","));
            }
            3 => {
                let remove = split_list(&value);
                let items: Vec<String> = list(&new)
                    .into_iter()
                    .filter(|i| !remove.contains(i))
                    .collect();
                new.insert(name.clone(), items.join(","));
            }
            other => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(new)
}

/// IncrementalAlterConfigs on topic configs.
pub async fn incremental_alter(
    ctx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let outcome = if resource.resource_type == RESOURCE_TOPIC {
            let topic = resource.resource_name.to_string();
            let current = ctx
                .controller
                .image()
                .topics
                .get(&topic)
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            let ops: Vec<(String, i8, Option<String>)> = resource
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            let default_of = |name: &str| topic_config(name).map(|d| d.broker_value(&ctx.config));
            match incremental(&current, &ops, default_of) {
                Ok(new) => apply_topic_configs(ctx, &topic, new, request.validate_only).await,
                Err(e) => Err(e),
            }
        } else {
            Err(not_dynamic(resource.resource_type))
        };
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        if let Err(e) = outcome {
            r = r.with_error_code(e.code()).with_error_message(e.message());
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synonyms_of(overrides: &[&str], name: &str) -> Vec<(&'static str, Option<String>, i8)> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let broker = BrokerConfig::load(None, Vec::new(), &overrides).unwrap();
        broker_synonyms(&broker, topic_config(name).unwrap())
    }

    #[test]
    fn synonyms_follow_kafkas_order_and_drop_what_precedes_the_primary() {
        assert_eq!(
            synonyms_of(&[], "cleanup.policy"),
            vec![("log.cleanup.policy", Some("delete".into()), SOURCE_DEFAULT)]
        );
        assert_eq!(
            synonyms_of(&["log.segment.bytes=2048"], "segment.bytes"),
            vec![
                (
                    "log.segment.bytes",
                    Some("2048".into()),
                    SOURCE_STATIC_BROKER
                ),
                (
                    "log.segment.bytes",
                    Some("1073741824".into()),
                    SOURCE_DEFAULT
                ),
            ]
        );
        assert_eq!(synonyms_of(&[], "retention.ms"), vec![]);
        assert_eq!(
            synonyms_of(&["log.retention.hours=24"], "retention.ms"),
            vec![]
        );
        assert_eq!(
            synonyms_of(&["log.retention.ms=5000"], "retention.ms"),
            vec![
                (
                    "log.retention.ms",
                    Some("5000".into()),
                    SOURCE_STATIC_BROKER
                ),
                ("log.retention.hours", Some("168".into()), SOURCE_DEFAULT),
            ]
        );
        assert_eq!(synonyms_of(&[], "remote.storage.enable"), vec![]);
    }

    #[test]
    fn append_needs_a_list() {
        let e = incremental(
            &BTreeMap::new(),
            &[("retention.ms".into(), 2, Some("5".into()))],
            |_| None,
        )
        .unwrap_err();
        assert_eq!(e.error, ResponseError::InvalidConfig);
    }

    #[test]
    fn incremental_operations() {
        let current = BTreeMap::from([("retention.ms".to_string(), "5".to_string())]);
        let ops = vec![
            ("retention.ms".to_string(), 1, None),
            ("segment.bytes".to_string(), 0, Some("2000".to_string())),
            ("cleanup.policy".to_string(), 2, Some("compact".to_string())),
        ];
        let new = incremental(&current, &ops, |n| {
            (n == "cleanup.policy").then(|| "delete".to_string())
        })
        .unwrap();
        assert_eq!(new.get("retention.ms"), None);
        assert_eq!(new["segment.bytes"], "2000");
        assert_eq!(new["cleanup.policy"], "delete,compact");
        let new = incremental(
            &new,
            &[("cleanup.policy".into(), 3, Some("delete".into()))],
            |_| None,
        )
        .unwrap();
        assert_eq!(new["cleanup.policy"], "compact");
        assert!(incremental(&new, &[("x".into(), 9, None)], |_| None).is_err());
    }
}
