//! DescribeClientQuotas and AlterClientQuotas (KIP-546): quotas live in the metadata log, so
//! every broker enforces the same ones.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;

use super::{controller_error, str_bytes, Access, ApiError, Context, RequestInfo};
use crate::metadata::image::MetadataRecord;
use crate::metadata::quotas::{
    invalid_value, ClientQuotasImage, QuotaChange, QuotaEntity, QuotaValue, CLIENT_ID, IP, USER,
};
use crate::security::acl::operation;

/// Kafka's wire `match_type` values.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// A DescribeClientQuotas filter: exact names (`None` for the default entity) and types that
/// must merely be present.
#[derive(Default)]
struct Filter {
    exact: BTreeMap<String, Option<String>>,
    present: BTreeSet<String>,
    strict: bool,
}

impl Filter {
    fn parse(request: &DescribeClientQuotasRequest) -> Result<Filter, ApiError> {
        let invalid = |m: String| ApiError::new(ResponseError::InvalidRequest, m);
        let mut filter = Filter {
            strict: request.strict,
            ..Filter::default()
        };
        for c in &request.components {
            let entity_type = c.entity_type.to_string();
            if entity_type.is_empty() {
                return Err(invalid("Invalid empty entity type.".into()));
            }
            if filter.exact.contains_key(&entity_type) || filter.present.contains(&entity_type) {
                return Err(invalid(format!(
                    "Entity type {entity_type} cannot appear more than once in the filter."
                )));
            }
            if ![USER, CLIENT_ID, IP].contains(&entity_type.as_str()) {
                return Err(ApiError::new(
                    ResponseError::UnsupportedVersion,
                    format!("Unsupported entity type {entity_type}"),
                ));
            }
            let name = c._match.as_ref().map(|m| m.to_string());
            match (c.match_type, name) {
                (MATCH_EXACT, Some(name)) => {
                    filter.exact.insert(entity_type, Some(name));
                }
                (MATCH_EXACT, None) => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                    ))
                }
                (MATCH_DEFAULT, None) => {
                    filter.exact.insert(entity_type, None);
                }
                (MATCH_SPECIFIED, None) => {
                    filter.present.insert(entity_type);
                }
                (MATCH_DEFAULT | MATCH_SPECIFIED, Some(_)) => {
                    let which = if c.match_type == MATCH_DEFAULT {
                        "MATCH_TYPE_DEFAULT"
                    } else {
                        "MATCH_TYPE_SPECIFIED"
                    };
                    return Err(invalid(format!(
                        "Request specified {which}, but also specified a match string."
                    )));
                }
                (other, _) => return Err(invalid(format!("Unknown match type {other}"))),
            }
        }
        let names = |t: &str| filter.exact.contains_key(t) || filter.present.contains(t);
        if names(IP) && (names(USER) || names(CLIENT_ID)) {
            return Err(invalid(
                "Invalid entity filter component combination. IP filter component should not \
                 be used with user or clientId filter component."
                    .into(),
            ));
        }
        Ok(filter)
    }

    fn matches(&self, entity: &QuotaEntity) -> bool {
        (!self.strict || entity.0.len() == self.exact.len() + self.present.len())
            && self
                .exact
                .iter()
                .all(|(t, name)| entity.0.get(t) == Some(name))
            && self.present.iter().all(|t| entity.0.contains_key(t))
    }
}

/// DescribeClientQuotas (DescribeConfigs on the cluster): the quotas of every entity the
/// filter matches.
pub fn describe(
    ctx: &Context,
    info: &RequestInfo,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let image = ctx.controller.image();
    let refused = |e: ApiError| {
        DescribeClientQuotasResponse::default()
            .with_error_code(e.code())
            .with_error_message(e.message())
            .with_entries(None)
    };
    if !Access::new(ctx, info, &image).allows_cluster(operation::DESCRIBE_CONFIGS) {
        return refused(ResponseError::ClusterAuthorizationFailed.into());
    }
    let filter = match Filter::parse(&request) {
        Ok(filter) => filter,
        Err(e) => return refused(e),
    };
    let entries = image
        .client_quotas
        .entities
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, quotas)| {
            EntryData::default()
                .with_entity(
                    entity
                        .0
                        .iter()
                        .map(|(t, name)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t))
                                .with_entity_name(name.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    quotas
                        .iter()
                        .map(|(key, value)| {
                            ValueData::default()
                                .with_key(str_bytes(key))
                                .with_value(value.0)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// One AlterClientQuotas entry's changes, or why it is refused. An entity type named twice
/// keeps its last name, as in Kafka, which reads the entity into a map.
fn entry_changes(
    quotas: &ClientQuotasImage,
    entity: &QuotaEntity,
    entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<Vec<QuotaChange>, ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidRequest, m);
    if let Some(reason) = entity.invalid() {
        return Err(invalid(reason));
    }
    let mut keys = BTreeSet::new();
    if let Some(op) = entry.ops.iter().find(|op| !keys.insert(op.key.as_str())) {
        return Err(invalid(format!(
            "Duplicate quota key {} not updating quota for this entity",
            op.key.as_str()
        )));
    }
    let current = quotas.entities.get(entity);
    let mut changes = Vec::new();
    for op in &entry.ops {
        let key = op.key.to_string();
        let now = current.and_then(|q| q.get(&key));
        if op.remove {
            if now.is_some() {
                changes.push(QuotaChange {
                    entity: entity.clone(),
                    key,
                    value: None,
                });
            }
            continue;
        }
        if let Some(reason) = invalid_value(entity, &key, op.value) {
            return Err(invalid(reason));
        }
        if now != Some(&QuotaValue(op.value)) {
            changes.push(QuotaChange {
                entity: entity.clone(),
                key,
                value: Some(QuotaValue(op.value)),
            });
        }
    }
    Ok(changes)
}

/// AlterClientQuotas (AlterConfigs on the cluster): the valid entries' changes are committed
/// in one record; an entry with any refused op changes nothing.
pub async fn alter(
    ctx: &Context,
    info: &RequestInfo,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let image = ctx.controller.image();
    let allowed = Access::new(ctx, info, &image).allows_cluster(operation::ALTER_CONFIGS);
    let mut seen = BTreeSet::new();
    let mut changes = Vec::new();
    let mut outcomes: Vec<Result<(), ApiError>> = Vec::with_capacity(request.entries.len());
    for entry in &request.entries {
        let entity = QuotaEntity(
            entry
                .entity
                .iter()
                .map(|e| {
                    (
                        e.entity_type.to_string(),
                        e.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
        );
        let outcome = if !allowed {
            Err(ResponseError::ClusterAuthorizationFailed.into())
        } else if !seen.insert(entity.clone()) {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                "Ignoring duplicate entity",
            ))
        } else {
            entry_changes(&image.client_quotas, &entity, entry).map(|c| changes.extend(c))
        };
        outcomes.push(outcome);
    }
    if !request.validate_only && !changes.is_empty() {
        if let Err(e) = ctx
            .controller
            .propose(MetadataRecord::ClientQuotas(changes))
            .await
        {
            let e = controller_error(e);
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(e.clone());
            }
        }
    }
    let entries = request
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let (code, message) = match outcome {
                Ok(()) => (0, None),
                Err(e) => (e.code(), e.message()),
            };
            AlteredEntry::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| {
                            AlteredEntity::default()
                                .with_entity_type(e.entity_type.clone())
                                .with_entity_name(e.entity_name.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
