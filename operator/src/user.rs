//! The KafkaUser controller: keeps a user's credentials in a Secret and in Kafka (a SCRAM
//! credential, or a certificate from the clients CA) and its ACLs in Kafka; behind a
//! finalizer, deleting the resource removes both from Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::{Api, Resource, ResourceExt};
use ring::rand::SecureRandom;
use serde_json::json;
use strom_client::{Acl, Admin, AdminError, ResponseError};

use crate::cluster::certs;
use crate::cluster::pki::{self, Subject};
use crate::conditions::{conditions, Report};
use crate::context::{apply, apply_status, finalized, object_key, sha256_hex, Context, Error};
use crate::crd::{
    AclOperation, AclPatternType, AclPermission, AclResourceType, KafkaCluster, KafkaUser,
    KafkaUserStatus, UserAuthenticationType,
};

/// Finalizer that removes the user's credentials and ACLs from Kafka before the resource goes.
pub const FINALIZER: &str = "strom.dev/delete-user";
/// Kafka's code for SCRAM-SHA-512.
const SCRAM_SHA_512: i8 = 2;
/// PBKDF2 iterations of a SCRAM credential (Kafka's minimum, and its tools' default).
const SCRAM_ITERATIONS: u32 = 4096;
/// Annotation on a SCRAM user's Secret with the SHA-256 of the password last written to Kafka.
const PASSWORD_HASH_ANNOTATION: &str = "strom.dev/password-sha256";
/// Length of a generated password.
const PASSWORD_LENGTH: usize = 32;
/// Kafka's name of the cluster resource in ACLs.
const CLUSTER_RESOURCE: &str = "kafka-cluster";

/// The principal Kafka gives the user.
pub fn principal(user: &KafkaUser) -> String {
    match user.spec.authentication.kind {
        UserAuthenticationType::ScramSha512 => format!("User:{}", user.name_any()),
        UserAuthenticationType::Tls => user_subject(user).principal(),
    }
}

fn user_subject(user: &KafkaUser) -> Subject {
    Subject {
        common_name: user.name_any(),
        internal: false,
    }
}

/// The spec's ACLs in Kafka's codes for `principal`, or what is wrong with them.
pub fn desired_acls(user: &KafkaUser, principal: &str) -> Result<Vec<Acl>, String> {
    let mut acls = Vec::new();
    let rules = user
        .spec
        .authorization
        .as_ref()
        .map(|a| a.acls.as_slice())
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let resource = &rule.resource;
        let name = match (resource.kind, resource.name.as_deref()) {
            (AclResourceType::Cluster, None | Some(CLUSTER_RESOURCE)) => CLUSTER_RESOURCE,
            (AclResourceType::Cluster, Some(other)) => {
                return Err(format!(
                    "acls[{i}]: a cluster resource is named {CLUSTER_RESOURCE:?} or not at all, not {other:?}"
                ))
            }
            (_, Some(name)) if !name.is_empty() => name,
            _ => return Err(format!("acls[{i}]: the resource needs a name (or \"*\")")),
        };
        if rule.operations.is_empty() {
            return Err(format!("acls[{i}]: operations is empty"));
        }
        for operation in &rule.operations {
            acls.push(Acl {
                resource_type: match resource.kind {
                    AclResourceType::Topic => 2,
                    AclResourceType::Group => 3,
                    AclResourceType::Cluster => 4,
                    AclResourceType::TransactionalId => 5,
                },
                resource_name: name.to_owned(),
                pattern_type: match resource.pattern_type {
                    AclPatternType::Literal => 3,
                    AclPatternType::Prefixed => 4,
                },
                principal: principal.to_owned(),
                host: rule.host.clone(),
                operation: match operation {
                    AclOperation::All => 2,
                    AclOperation::Read => 3,
                    AclOperation::Write => 4,
                    AclOperation::Create => 5,
                    AclOperation::Delete => 6,
                    AclOperation::Alter => 7,
                    AclOperation::Describe => 8,
                    AclOperation::ClusterAction => 9,
                    AclOperation::DescribeConfigs => 10,
                    AclOperation::AlterConfigs => 11,
                    AclOperation::IdempotentWrite => 12,
                },
                permission: match rule.kind {
                    AclPermission::Deny => 2,
                    AclPermission::Allow => 3,
                },
            });
        }
    }
    acls.sort();
    acls.dedup();
    Ok(acls)
}

/// What turns `current` into `desired`: ACLs to delete, then ACLs to create.
pub fn acl_changes(current: &[Acl], desired: &[Acl]) -> (Vec<Acl>, Vec<Acl>) {
    let delete = current
        .iter()
        .filter(|a| !desired.contains(a))
        .cloned()
        .collect();
    let create = desired
        .iter()
        .filter(|a| !current.contains(a))
        .cloned()
        .collect();
    (delete, create)
}

/// SCRAM's `Hi(password, salt, iterations)` for SHA-512 (RFC 5802): PBKDF2 with HMAC-SHA-512.
pub fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1");
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes
}

/// A random password of letters and digits.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // 248 is the largest multiple of 62 below 256: rejecting bytes above it keeps every
    // character equally likely.
    let mut password = String::with_capacity(PASSWORD_LENGTH);
    while password.len() < PASSWORD_LENGTH {
        for b in random_bytes(PASSWORD_LENGTH) {
            if b < 248 && password.len() < PASSWORD_LENGTH {
                password.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    password
}

/// Reconciles one KafkaUser.
pub async fn reconcile(user: Arc<KafkaUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("kafkauser");
    let namespace = user.namespace().unwrap_or_else(|| "default".into());
    let api: Api<KafkaUser> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = object_key(user.as_ref());
    let action = finalized(&api, FINALIZER, user.clone(), |event| async {
        match event {
            Finalizer::Apply(user) => apply_user(&user, &ctx).await,
            Finalizer::Cleanup(user) => delete_user(&user, &ctx).await,
        }
    })
    .await;
    match action {
        Ok(action) => {
            ctx.succeeded(&key);
            Ok(action)
        }
        Err(error) => {
            let message = format!("reconcile failed and is retried: {}", error.plain());
            let status = user.status.clone().unwrap_or_default();
            let ready = Report::new("Ready", false, "ReconcileFailed", message);
            if let Err(e) = report(&ctx, &user, status, ready, Duration::ZERO).await {
                tracing::debug!(error = %e, "cannot record the failure in the status");
            }
            Err(error)
        }
    }
}

/// Counts the error and retries with backoff.
pub fn error_policy(user: Arc<KafkaUser>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(user = %user.name_any(), %error, "reconcile failed");
    ctx.metrics.error("kafkauser", error.kind());
    ctx.backoff(&object_key(user.as_ref()))
}

async fn cluster_of(user: &KafkaUser, ctx: &Context) -> Result<Option<KafkaCluster>, Error> {
    let namespace = user.namespace().unwrap_or_else(|| "default".into());
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    Ok(clusters.get_opt(&user.spec.cluster_ref.name).await?)
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
}

/// The user's Secret when it exists: `Err` when it exists and another owner's (a Secret of the
/// cluster, or of anything else), which the user must not overwrite nor read.
async fn user_secret(
    ctx: &Context,
    user: &KafkaUser,
) -> Result<Result<Option<Secret>, String>, Error> {
    let namespace = user.namespace().unwrap_or_else(|| "default".into());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(secret) = secrets.get_opt(&user.name_any()).await? else {
        return Ok(Ok(None));
    };
    let ours = secret
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == user.metadata.uid.as_ref());
    Ok(if ours {
        Ok(Some(secret))
    } else {
        Err(format!(
            "Secret {:?} exists and does not belong to this KafkaUser; rename the user or remove the Secret",
            user.name_any()
        ))
    })
}

/// Writes the user's Secret, owned by the user so that it goes with it.
async fn write_secret(
    ctx: &Context,
    user: &KafkaUser,
    data: BTreeMap<&str, String>,
    annotations: BTreeMap<&str, String>,
) -> Result<(), Error> {
    let namespace = user.namespace().unwrap_or_else(|| "default".into());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let data: BTreeMap<&str, ByteString> = data
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": user.name_any(),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "strom-operator",
                "strom.dev/cluster": user.spec.cluster_ref.name,
            },
            "annotations": annotations,
            "ownerReferences": [user.controller_owner_ref(&()).expect("a stored KafkaUser has a uid")],
        },
        "type": "Opaque",
        "data": data,
    }))
    .expect("a Secret");
    apply(&secrets, &user.name_any(), &secret).await?;
    Ok(())
}

/// The SCRAM password: the Secret's, or a new one; its credential is written to Kafka when it
/// is missing there or the password changed. The password's hash is kept on the Secret, where
/// only those who may read the password see it.
async fn scram_credentials(
    ctx: &Context,
    user: &KafkaUser,
    existing: Option<&Secret>,
    admin: &mut Admin,
) -> Result<(), Error> {
    let name = user.name_any();
    let password = existing
        .and_then(|s| secret_text(s, "password"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(generate_password);
    let written = existing.and_then(|s| s.annotations().get(PASSWORD_HASH_ANNOTATION).cloned());
    let hash = sha256_hex(password.as_bytes());
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{name}\" password=\"{password}\";"
    );
    let known = admin
        .scram_mechanisms(&name)
        .await?
        .contains(&SCRAM_SHA_512);
    if !known || written.as_deref() != Some(hash.as_str()) {
        let salt = random_bytes(32);
        let salted = salted_password(&password, &salt, SCRAM_ITERATIONS);
        admin
            .upsert_scram_credential(&name, SCRAM_SHA_512, SCRAM_ITERATIONS as i32, salt, salted)
            .await?;
        ctx.event(
            &user.object_ref(&()),
            None,
            false,
            "CredentialWritten",
            format!("wrote the SCRAM-SHA-512 credential of {name}"),
        )
        .await;
    }
    write_secret(
        ctx,
        user,
        BTreeMap::from([("password", password), ("sasl.jaas.config", jaas)]),
        BTreeMap::from([(PASSWORD_HASH_ANNOTATION, hash)]),
    )
    .await
}

/// The user's certificate from the clients CA, issued again when it nears its end or the CA
/// changed.
async fn tls_credentials(
    ctx: &Context,
    user: &KafkaUser,
    existing: Option<&Secret>,
    cluster: &KafkaCluster,
) -> Result<Result<(), String>, Error> {
    let Some(ca) = certs::clients_ca(ctx, cluster).await? else {
        return Ok(Err(format!(
            "KafkaCluster {:?} has no clients CA: tls users need a cluster with a TLS listener",
            cluster.name_any()
        )));
    };
    let subject = user_subject(user);
    let now = certs::now();
    let current = existing.and_then(|s| {
        let cert = secret_text(s, "user.crt")?;
        let key = secret_text(s, "user.key")?;
        pki::reissue_reason(&cert, &ca.authority, &subject, &[], now)
            .is_none()
            .then_some((cert, key))
    });
    let (cert, key) = match current {
        Some(kept) => kept,
        None => {
            let issued = ca.authority.issue(&subject, &[], now)?;
            ctx.event(
                &user.object_ref(&()),
                None,
                false,
                "CertificateIssued",
                format!("issued a certificate for {}", subject.principal()),
            )
            .await;
            (issued.cert_pem, issued.key_pem)
        }
    };
    write_secret(
        ctx,
        user,
        BTreeMap::from([("user.crt", cert), ("user.key", key), ("ca.crt", ca.bundle)]),
        BTreeMap::new(),
    )
    .await?;
    Ok(Ok(()))
}

async fn apply_user(user: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    let mut status = user.status.clone().unwrap_or_default();
    let Some(cluster) = cluster_of(user, ctx).await? else {
        let message = format!(
            "KafkaCluster {:?} does not exist",
            user.spec.cluster_ref.name
        );
        let ready = Report::new("Ready", false, "ClusterNotFound", message);
        return report(ctx, user, status, ready, Duration::from_secs(30)).await;
    };
    let principal = principal(user);
    let acls = match desired_acls(user, &principal) {
        Ok(acls) => acls,
        Err(problem) => {
            return refuse(
                ctx,
                user,
                status,
                "InvalidSpec",
                problem,
                Duration::from_secs(300),
            )
            .await;
        }
    };
    let existing = match user_secret(ctx, user).await? {
        Ok(existing) => existing,
        Err(problem) => {
            return refuse(
                ctx,
                user,
                status,
                "SecretConflict",
                problem,
                Duration::from_secs(60),
            )
            .await;
        }
    };
    if user.spec.authentication.kind == UserAuthenticationType::Tls {
        if let Err(problem) = tls_credentials(ctx, user, existing.as_ref(), &cluster).await? {
            let ready = Report::new("Ready", false, "NoClientsCa", problem);
            return report(ctx, user, status, ready, Duration::from_secs(60)).await;
        }
    }
    let mut admin = certs::admin(ctx, &cluster).await?;
    let written = async {
        // A changed authentication type changes the principal: the old one's grants go.
        if let Some(old) = status.principal.clone().filter(|p| *p != principal) {
            forget(&mut admin, &old, &user.name_any()).await?;
        }
        if user.spec.authentication.kind == UserAuthenticationType::ScramSha512 {
            scram_credentials(ctx, user, existing.as_ref(), &mut admin).await?;
        }
        // No authorization section means no ACLs; a cluster without an authorizer has none.
        match admin.acls_of(&principal).await {
            Ok(current) => {
                let (delete, create) = acl_changes(&current, &acls);
                admin.delete_acls(&delete).await?;
                admin.create_acls(&create).await?;
            }
            Err(AdminError::Broker {
                error: ResponseError::SecurityDisabled,
                ..
            }) if acls.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
        Ok::<_, Error>(())
    };
    match written.await {
        Ok(()) => {}
        Err(Error::Admin(e @ AdminError::Broker { error, .. })) if !error.is_retriable() => {
            let message = format!("Kafka refused user {}: {e}", user.name_any());
            return refuse(
                ctx,
                user,
                status,
                "KafkaError",
                message,
                Duration::from_secs(60),
            )
            .await;
        }
        Err(e) => return Err(e),
    }
    status.principal = Some(principal.clone());
    status.secret = Some(user.name_any());
    let message = format!("{principal} has its credentials and {} ACLs", acls.len());
    let ready = Report::new("Ready", true, "Ready", message);
    report(ctx, user, status, ready, Duration::from_secs(300)).await
}

/// Removes `principal`'s ACLs and `name`'s SCRAM credential from Kafka. A cluster without an
/// authorizer has no ACLs to remove.
async fn forget(admin: &mut Admin, principal: &str, name: &str) -> Result<(), Error> {
    match admin.acls_of(principal).await {
        Ok(acls) => admin.delete_acls(&acls).await?,
        Err(AdminError::Broker {
            error: ResponseError::SecurityDisabled,
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    admin.delete_scram_credential(name, SCRAM_SHA_512).await?;
    Ok(())
}

async fn delete_user(user: &KafkaUser, ctx: &Context) -> Result<Action, Error> {
    let Some(principal) = user.status.as_ref().and_then(|s| s.principal.clone()) else {
        return Ok(Action::await_change());
    };
    let Some(cluster) = cluster_of(user, ctx).await? else {
        // The cluster, and the user's grants with it, is gone.
        return Ok(Action::await_change());
    };
    let mut admin = certs::admin(ctx, &cluster).await?;
    forget(&mut admin, &principal, &user.name_any()).await?;
    tracing::info!(user = %user.name_any(), "removed the user's credentials and ACLs");
    Ok(Action::await_change())
}

/// Reports what keeps the user from being applied: a warning Event and `Ready=False`.
async fn refuse(
    ctx: &Context,
    user: &KafkaUser,
    status: KafkaUserStatus,
    reason: &str,
    message: String,
    requeue: Duration,
) -> Result<Action, Error> {
    ctx.event(&user.object_ref(&()), None, true, reason, message.clone())
        .await;
    let ready = Report::new("Ready", false, reason, message);
    report(ctx, user, status, ready, requeue).await
}

async fn report(
    ctx: &Context,
    user: &KafkaUser,
    mut status: KafkaUserStatus,
    ready: Report,
    requeue: Duration,
) -> Result<Action, Error> {
    let previous = status.conditions.clone();
    status.observed_generation = user.metadata.generation;
    status.conditions = conditions(vec![ready], user.metadata.generation, &previous);
    apply_status(&ctx.client, user, &status).await?;
    Ok(Action::requeue(requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(yaml: &str) -> KafkaUser {
        serde_yaml::from_str(yaml).unwrap()
    }

    const ALICE: &str = r#"
apiVersion: strom.dev/v1alpha1
kind: KafkaUser
metadata: {name: alice, namespace: apps}
spec:
  clusterRef: {name: demo}
  authentication: {type: scram-sha-512}
  authorization:
    acls:
      - resource: {type: topic, name: orders}
        operations: [Read, Describe]
      - resource: {type: group, name: billing-, patternType: prefixed}
        operations: [Read]
      - resource: {type: cluster}
        operations: [IdempotentWrite]
        type: deny
"#;

    #[test]
    fn rules_become_one_acl_per_operation() {
        let alice = user(ALICE);
        assert_eq!(principal(&alice), "User:alice");
        let acls = desired_acls(&alice, "User:alice").unwrap();
        assert_eq!(acls.len(), 4);
        assert!(acls.contains(&Acl {
            resource_type: 3,
            resource_name: "billing-".into(),
            pattern_type: 4,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission: 3,
        }));
        assert!(acls
            .iter()
            .any(|a| a.resource_name == "kafka-cluster" && a.operation == 12 && a.permission == 2));
    }

    #[test]
    fn only_the_difference_is_written() {
        let alice = user(ALICE);
        let desired = desired_acls(&alice, "User:alice").unwrap();
        let mut stale = desired[0].clone();
        stale.operation = 4;
        let current = vec![desired[1].clone(), stale.clone()];
        let (delete, create) = acl_changes(&current, &desired);
        assert_eq!(delete, vec![stale]);
        assert_eq!(create.len(), desired.len() - 1);
    }

    #[test]
    fn a_tls_user_is_its_certificate_subject_and_a_named_cluster_is_refused() {
        let mut bob = user(
            &ALICE
                .replace("alice", "bob")
                .replace("scram-sha-512", "tls"),
        );
        assert_eq!(principal(&bob), "User:CN=bob");
        bob.spec.authorization.as_mut().unwrap().acls[2]
            .resource
            .name = Some("other".into());
        assert!(desired_acls(&bob, "User:CN=bob")
            .unwrap_err()
            .contains("kafka-cluster"));
    }

    #[test]
    fn scram_salting_matches_rfc_7677_style_vectors() {
        // PBKDF2-HMAC-SHA512("password", "salt", 1), RFC 6070's inputs.
        let out = salted_password("password", b"salt", 1);
        let hex: String = out[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "867f70cf1ade02cf");
        let password = generate_password();
        assert_eq!(password.len(), PASSWORD_LENGTH);
        assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
