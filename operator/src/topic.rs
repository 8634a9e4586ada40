//! The KafkaTopic controller: creates, grows, configures and (behind a finalizer) deletes a
//! topic over the Kafka protocol, through its cluster's bootstrap Service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Api, Resource, ResourceExt};
use strom_client::{Admin, AdminError, ResponseError, TopicView};

use crate::cluster::certs;
use crate::conditions::{conditions, Report};
use crate::context::{apply_status, finalized, object_key, Context, Error};
use crate::crd::{DeletionPolicy, KafkaCluster, KafkaTopic, KafkaTopicStatus};

/// Finalizer that deletes the Kafka topic before the resource goes.
pub const FINALIZER: &str = "strom.dev/delete-topic";

/// A topic spec that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTopic {
    /// Name in Kafka.
    pub name: String,
    /// Desired partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i16,
    /// Desired configs.
    pub config: BTreeMap<String, String>,
    /// Configs applied before and no longer wanted, to reset to their defaults.
    pub removed_config: Vec<String>,
}

/// Why a topic spec cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTopic(pub String);

fn is_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Checks a topic spec on its own and against the topic as it exists (`existing`), if it does.
pub fn validate(
    topic: &KafkaTopic,
    existing: Option<&TopicView>,
) -> Result<ValidTopic, InvalidTopic> {
    let spec = &topic.spec;
    let name = spec.topic_name.clone().unwrap_or_else(|| topic.name_any());
    let status = topic.status.clone().unwrap_or_default();
    if !is_topic_name(&name) {
        return Err(InvalidTopic(format!(
            "topic name {name:?} is not valid in Kafka: use 1-249 of a-z A-Z 0-9 . _ -"
        )));
    }
    if let Some(created) = &status.topic_name {
        if created != &name {
            return Err(InvalidTopic(format!(
                "topicName cannot change once the topic exists (it is {created:?})"
            )));
        }
    }
    if spec.partitions < 1 {
        return Err(InvalidTopic(format!(
            "partitions is {}, must be at least 1",
            spec.partitions
        )));
    }
    if spec.replication_factor < 1 {
        return Err(InvalidTopic(format!(
            "replicationFactor is {}, must be at least 1",
            spec.replication_factor
        )));
    }
    if let Some(existing) = existing {
        let current = existing.partitions.len() as i32;
        if spec.partitions < current {
            return Err(InvalidTopic(format!(
                "partitions cannot decrease: the topic has {current} and Kafka cannot remove partitions; set partitions to {current} or more"
            )));
        }
        let ours = status.topic_id.as_deref() == Some(existing.id.as_str());
        if !ours && !spec.adopt {
            return Err(InvalidTopic(match &status.topic_id {
                None => format!(
                    "topic {name:?} already exists in Kafka and this KafkaTopic did not create it; set adopt: true to manage it"
                ),
                Some(id) => format!(
                    "topic {name:?} in Kafka has id {}, not {id}, the one this KafkaTopic manages (it was deleted and created again outside this resource); set adopt: true to manage the new one",
                    existing.id
                ),
            }));
        }
        let factor = existing
            .partitions
            .first()
            .map(|p| p.replicas.len())
            .unwrap_or(0);
        if factor != spec.replication_factor as usize {
            return Err(InvalidTopic(format!(
                "replicationFactor cannot change once the topic exists (it is {factor})"
            )));
        }
    }
    let removed_config = status
        .applied_config
        .keys()
        .filter(|k| !spec.config.contains_key(*k))
        .cloned()
        .collect();
    Ok(ValidTopic {
        name,
        partitions: spec.partitions,
        replication_factor: spec.replication_factor,
        config: spec.config.clone(),
        removed_config,
    })
}

/// Reconciles one KafkaTopic.
pub async fn reconcile(topic: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("kafkatopic");
    let namespace = topic.namespace().unwrap_or_else(|| "default".into());
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = object_key(topic.as_ref());
    let action = finalized(&api, FINALIZER, topic.clone(), |event| async {
        match event {
            Finalizer::Apply(topic) => apply_topic(&topic, &ctx).await,
            Finalizer::Cleanup(topic) => delete_topic(&topic, &ctx).await,
        }
    })
    .await;
    match action {
        Ok(action) => {
            ctx.succeeded(&key);
            Ok(action)
        }
        Err(error) => {
            report_failure(&topic, &ctx, &error).await;
            Err(error)
        }
    }
}

/// Puts a failed reconcile (the cluster unreachable, an API call refused) on the resource as
/// `Ready=False` with reason `ReconcileFailed`, so that it is not only in the operator's log.
async fn report_failure(topic: &KafkaTopic, ctx: &Context, error: &Error) {
    let message = format!("reconcile failed and is retried: {}", error.plain());
    let status = topic.status.clone().unwrap_or_default();
    let ready = Report::new("Ready", false, "ReconcileFailed", message);
    if let Err(e) = report(ctx, topic, status, ready, Duration::ZERO).await {
        tracing::debug!(error = %e, "cannot record the failure in the status");
    }
}

/// Counts the error and retries with backoff.
pub fn error_policy(topic: Arc<KafkaTopic>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(topic = %topic.name_any(), %error, "reconcile failed");
    ctx.metrics.error("kafkatopic", error.kind());
    ctx.backoff(&object_key(topic.as_ref()))
}

/// The admin client of the topic's cluster, or `None` when the cluster does not exist.
async fn cluster_admin(topic: &KafkaTopic, ctx: &Context) -> Result<Option<Admin>, Error> {
    let namespace = topic.namespace().unwrap_or_else(|| "default".into());
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(cluster) = clusters.get_opt(&topic.spec.cluster_ref.name).await? else {
        return Ok(None);
    };
    Ok(Some(certs::admin(ctx, &cluster).await?))
}

async fn apply_topic(topic: &KafkaTopic, ctx: &Context) -> Result<Action, Error> {
    let mut status = topic.status.clone().unwrap_or_default();
    let Some(mut admin) = cluster_admin(topic, ctx).await? else {
        let message = format!(
            "KafkaCluster {:?} does not exist",
            topic.spec.cluster_ref.name
        );
        return report(
            ctx,
            topic,
            status,
            Report::new("Ready", false, "ClusterNotFound", message),
            Duration::from_secs(30),
        )
        .await;
    };
    let view = admin.cluster().await?;
    let name = topic
        .spec
        .topic_name
        .clone()
        .unwrap_or_else(|| topic.name_any());
    let existing = view.topics.get(&name);
    let valid = match validate(topic, existing) {
        Ok(valid) => valid,
        Err(invalid) => {
            ctx.event(
                &topic.object_ref(&()),
                None,
                true,
                "InvalidSpec",
                invalid.0.clone(),
            )
            .await;
            return report(
                ctx,
                topic,
                status,
                Report::new("Ready", false, "InvalidSpec", invalid.0),
                Duration::from_secs(300),
            )
            .await;
        }
    };
    let reference = topic.object_ref(&());
    match write_topic(&mut admin, ctx, &reference, &valid, existing).await {
        Ok(id) => status.topic_id = Some(id),
        // The brokers refused the change (a replication factor above the broker count, an
        // unknown config key): the user has to change the spec. A retriable answer (no
        // controller yet, a timeout) is retried with backoff instead.
        Err(e @ AdminError::Broker { error, .. }) if !error.is_retriable() => {
            let message = format!("Kafka refused topic {}: {e}", valid.name);
            ctx.event(&reference, None, true, "KafkaError", message.clone())
                .await;
            return report(
                ctx,
                topic,
                status,
                Report::new("Ready", false, "KafkaError", message),
                Duration::from_secs(60),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    status.topic_name = Some(valid.name.clone());
    status.partitions = Some(valid.partitions);
    status.applied_config = valid.config.clone();
    let message = format!("topic {} has {} partitions", valid.name, valid.partitions);
    report(
        ctx,
        topic,
        status,
        Report::new("Ready", true, "Ready", message),
        Duration::from_secs(300),
    )
    .await
}

/// Creates the topic, or grows and configures it; returns its id.
async fn write_topic(
    admin: &mut Admin,
    ctx: &Context,
    reference: &ObjectReference,
    valid: &ValidTopic,
    existing: Option<&TopicView>,
) -> Result<String, AdminError> {
    match existing {
        None => {
            let id = admin
                .create_topic(
                    &valid.name,
                    valid.partitions,
                    valid.replication_factor,
                    &valid.config,
                )
                .await?;
            ctx.event(
                reference,
                None,
                false,
                "Created",
                format!(
                    "created topic {} with {} partitions",
                    valid.name, valid.partitions
                ),
            )
            .await;
            Ok(id)
        }
        Some(existing) => {
            let current = existing.partitions.len() as i32;
            if valid.partitions > current {
                admin
                    .create_partitions(&valid.name, valid.partitions)
                    .await?;
                ctx.event(
                    reference,
                    None,
                    false,
                    "PartitionsAdded",
                    format!(
                        "grew topic {} from {current} to {} partitions",
                        valid.name, valid.partitions
                    ),
                )
                .await;
            }
            if !valid.config.is_empty() || !valid.removed_config.is_empty() {
                admin
                    .alter_topic_configs(&valid.name, &valid.config, &valid.removed_config)
                    .await?;
            }
            Ok(existing.id.clone())
        }
    }
}

/// Deletes the Kafka topic this resource manages, unless its deletion policy keeps it. A topic
/// it never created or adopted, or one created again since, stays.
async fn delete_topic(topic: &KafkaTopic, ctx: &Context) -> Result<Action, Error> {
    let status = topic.status.clone().unwrap_or_default();
    let (Some(name), Some(id)) = (status.topic_name, status.topic_id) else {
        return Ok(Action::await_change());
    };
    if topic.spec.deletion_policy == DeletionPolicy::Keep {
        tracing::info!(topic = %name, "deletionPolicy keep: the topic stays in Kafka");
        return Ok(Action::await_change());
    }
    let Some(mut admin) = cluster_admin(topic, ctx).await? else {
        // The cluster, and the topic with it, is gone.
        return Ok(Action::await_change());
    };
    let view = admin.cluster().await?;
    if view.topics.get(&name).is_none_or(|t| t.id != id) {
        tracing::info!(topic = %name, "the topic this resource managed is gone; nothing to delete");
        return Ok(Action::await_change());
    }
    match admin.delete_topic(&name).await {
        Ok(()) => {}
        Err(AdminError::Broker {
            error: ResponseError::UnknownTopicOrPartition,
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(topic = %name, "deleted topic");
    Ok(Action::await_change())
}

async fn report(
    ctx: &Context,
    topic: &KafkaTopic,
    mut status: KafkaTopicStatus,
    ready: Report,
    requeue: Duration,
) -> Result<Action, Error> {
    let previous = status.conditions.clone();
    status.observed_generation = topic.metadata.generation;
    status.conditions = conditions(vec![ready], topic.metadata.generation, &previous);
    apply_status(&ctx.client, topic, &status).await?;
    Ok(Action::requeue(requeue))
}
