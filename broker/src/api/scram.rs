//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): credentials are
//! salted and iterated by the client, and stored in the metadata log as keys derived from
//! the salted password, never the password.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::{controller_error, str_bytes, Access, Context, RequestInfo};
use crate::metadata::image::{MetadataRecord, ScramChange, SecurityRecord};
use crate::security::acl::operation;
use crate::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

/// DescribeUserScramCredentials (Describe on the cluster): mechanisms and iterations only.
pub fn describe(
    ctx: &Context,
    info: &RequestInfo,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = ctx.controller.image();
    if !Access::new(ctx, info, &image).allows_cluster(operation::DESCRIBE) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let scram = &image.security.scram;
    let names: Vec<String> = match &request.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        _ => scram.keys().cloned().collect(),
    };
    let mut seen = BTreeSet::new();
    let duplicated: BTreeSet<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
    let mut reported = BTreeSet::new();
    let results = names
        .iter()
        .filter(|n| reported.insert(*n))
        .map(|name| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(name));
            if duplicated.contains(name) {
                return result
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(str_bytes("the user is named more than once")));
            }
            match scram.get(name) {
                Some(credentials) => result.with_credential_infos(
                    credentials
                        .iter()
                        .map(|(m, c)| {
                            CredentialInfo::default()
                                .with_mechanism(m.code())
                                .with_iterations(c.iterations)
                        })
                        .collect(),
                ),
                None => result
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Attempt to describe a user credential that does not exist: {name}"
                    )))),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// AlterUserScramCredentials (Alter on the cluster): each user's changes are checked as
/// Kafka checks them; the valid ones are committed in one record.
pub async fn alter(
    ctx: &Context,
    info: &RequestInfo,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let image = ctx.controller.image();
    let mut users: Vec<String> = request
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(request.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    users.dedup();
    let mut unique = BTreeSet::new();
    users.retain(|u| unique.insert(u.clone()));
    let result = |user: &str, error: Option<(ResponseError, String)>| {
        AlterUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_error_code(error.as_ref().map_or(0, |(e, _)| e.code()))
            .with_error_message(error.map(|(_, m)| str_bytes(&m)))
    };
    if !Access::new(ctx, info, &image).allows_cluster(operation::ALTER) {
        let denied = || Some((ResponseError::ClusterAuthorizationFailed, String::new()));
        let results = users.iter().map(|u| result(u, denied())).collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let mut errors: std::collections::BTreeMap<String, (ResponseError, String)> =
        Default::default();
    // As Kafka: a user named twice in one request, whatever the mechanisms, is refused.
    let mut mentions: std::collections::BTreeMap<String, usize> = Default::default();
    let names = request.deletions.iter().map(|d| &d.name);
    for name in names.chain(request.upsertions.iter().map(|u| &u.name)) {
        *mentions.entry(name.to_string()).or_default() += 1;
    }
    for (user, _) in mentions.iter().filter(|(_, n)| **n > 1) {
        errors.insert(
            user.clone(),
            (
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            ),
        );
    }
    let mut changes: Vec<ScramChange> = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        let change = match Mechanism::from_code(d.mechanism) {
            None => Err((
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            )),
            Some(_) if user.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "empty user name".into(),
            )),
            Some(m) if image.security.scram_credential(&user, m).is_none() => Err((
                ResponseError::ResourceNotFound,
                format!(
                    "Attempt to delete a user credential that does not exist: {user} {}",
                    m.name()
                ),
            )),
            Some(mechanism) => Ok(ScramChange::Delete {
                user: user.clone(),
                mechanism,
            }),
        };
        match change {
            Ok(c) => changes.push(c),
            Err(e) => {
                errors.entry(user).or_insert(e);
            }
        }
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let change = match Mechanism::from_code(u.mechanism) {
            None => Err((
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            )),
            Some(_) if user.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "empty user name".into(),
            )),
            Some(_) if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) => Err((
                ResponseError::UnacceptableCredential,
                format!(
                    "iterations {} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                    u.iterations
                ),
            )),
            Some(m) if u.salted_password.len() != m.output_len() || u.salt.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "the salted password or salt has the wrong length".into(),
            )),
            Some(mechanism) => Ok(ScramChange::Upsert {
                user: user.clone(),
                mechanism,
                credential: ScramCredential::from_salted_password(
                    mechanism,
                    &u.salted_password,
                    u.salt.to_vec(),
                    u.iterations,
                ),
            }),
        };
        match change {
            Ok(c) => changes.push(c),
            Err(e) => {
                errors.entry(user).or_insert(e);
            }
        }
    }
    // A user with any refused change keeps all their credentials as they were.
    changes.retain(|c| {
        let user = match c {
            ScramChange::Upsert { user, .. } | ScramChange::Delete { user, .. } => user,
        };
        !errors.contains_key(user)
    });
    if !changes.is_empty() {
        let record = MetadataRecord::Security(SecurityRecord::Scram(changes));
        if let Err(e) = ctx.controller.propose(record).await {
            let e = controller_error(e);
            for user in &users {
                errors
                    .entry(user.clone())
                    .or_insert((e.error, e.message.clone().unwrap_or_default()));
            }
        }
    }
    let results = users.iter().map(|u| result(u, errors.remove(u))).collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
