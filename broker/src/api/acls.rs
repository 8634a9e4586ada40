//! CreateAcls, DescribeAcls and DeleteAcls: ACLs live in the metadata log, so every broker
//! enforces the same ones.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{controller_error, str_bytes, Access, ApiError, Context, RequestInfo};
use crate::metadata::image::{MetadataRecord, SecurityRecord};
use crate::security::acl::{operation, AclBinding, AclFilter};

/// Kafka's answer to the ACL APIs on a broker without `authorizer.class.name`.
const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Why an ACL request is refused whole, if it is: the principal lacks `cluster_operation`
/// on the cluster, or the broker has no authorizer to keep ACLs for.
fn refusal(ctx: &Context, info: &RequestInfo, cluster_operation: i8) -> Option<ApiError> {
    if !Access::new(ctx, info, &ctx.controller.image()).allows_cluster(cluster_operation) {
        return Some(ResponseError::ClusterAuthorizationFailed.into());
    }
    ctx.authorizer
        .is_none()
        .then(|| ApiError::new(ResponseError::SecurityDisabled, NO_AUTHORIZER))
}

fn filter(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern_type: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: resource_name.map(|s| s.to_string()),
        pattern_type,
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation,
        permission,
    }
}

/// CreateAcls (Alter on the cluster, with an authorizer): valid new bindings are committed in one record;
/// bindings that already exist succeed without a copy.
pub async fn create(
    ctx: &Context,
    info: &RequestInfo,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    let image = ctx.controller.image();
    let result = |code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.as_deref().map(str_bytes))
    };
    if let Some(e) = refusal(ctx, info, operation::ALTER) {
        let results = request
            .creations
            .iter()
            .map(|_| result(e.code(), e.message.clone()))
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let mut results = Vec::with_capacity(request.creations.len());
    let mut new: Vec<(Uuid, AclBinding)> = Vec::new();
    for c in &request.creations {
        let binding = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        if let Some(reason) = binding.invalid() {
            results.push(result(ResponseError::InvalidRequest.code(), Some(reason)));
            continue;
        }
        let exists = image.security.acls.values().any(|a| *a == binding)
            || new.iter().any(|(_, a)| *a == binding);
        if !exists {
            new.push((Uuid::new_v4(), binding));
        }
        results.push(result(0, None));
    }
    if !new.is_empty() {
        let record = MetadataRecord::Security(SecurityRecord::CreateAcls(new));
        if let Err(e) = ctx.controller.propose(record).await {
            let e = controller_error(e);
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                *r = result(e.code(), e.message.clone());
            }
        }
    }
    CreateAclsResponse::default().with_results(results)
}

/// DescribeAcls (Describe on the cluster): the bindings matching the filter, grouped by
/// resource pattern.
pub fn describe(ctx: &Context, info: &RequestInfo, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let image = ctx.controller.image();
    if let Some(e) = refusal(ctx, info, operation::DESCRIBE) {
        return DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(e.message());
    }
    let f = filter(
        r.resource_type_filter,
        r.resource_name_filter.as_ref(),
        r.pattern_type_filter,
        r.principal_filter.as_ref(),
        r.host_filter.as_ref(),
        r.operation,
        r.permission_type,
    );
    if let Some(reason) = f.invalid() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(&reason)));
    }
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for acl in image.security.acls.values().filter(|a| f.matches(a)) {
        let description = AclDescription::default()
            .with_principal(str_bytes(&acl.principal))
            .with_host(str_bytes(&acl.host))
            .with_operation(acl.operation)
            .with_permission_type(acl.permission);
        let same = |r: &&mut DescribeAclsResource| {
            r.resource_type == acl.resource_type
                && r.pattern_type == acl.pattern_type
                && r.resource_name.as_str() == acl.resource_name
        };
        match resources.iter_mut().find(same) {
            Some(resource) => resource.acls.push(description),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(acl.resource_type)
                    .with_resource_name(str_bytes(&acl.resource_name))
                    .with_pattern_type(acl.pattern_type)
                    .with_acls(vec![description]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

/// DeleteAcls (Alter on the cluster): every binding matching any filter is removed in one
/// record, and reported under each filter it matched.
pub async fn delete(
    ctx: &Context,
    info: &RequestInfo,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let image = ctx.controller.image();
    if let Some(e) = refusal(ctx, info, operation::ALTER) {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(e.message())
            })
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let mut removed: Vec<Uuid> = Vec::new();
    let mut results: Vec<DeleteAclsFilterResult> = request
        .filters
        .iter()
        .map(|r| {
            let f = filter(
                r.resource_type_filter,
                r.resource_name_filter.as_ref(),
                r.pattern_type_filter,
                r.principal_filter.as_ref(),
                r.host_filter.as_ref(),
                r.operation,
                r.permission_type,
            );
            if let Some(reason) = f.invalid() {
                return DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&reason)));
            }
            let matching = image
                .security
                .acls
                .iter()
                .filter(|(_, a)| f.matches(a))
                .map(|(id, acl)| {
                    if !removed.contains(id) {
                        removed.push(*id);
                    }
                    DeleteAclsMatchingAcl::default()
                        .with_resource_type(acl.resource_type)
                        .with_resource_name(str_bytes(&acl.resource_name))
                        .with_pattern_type(acl.pattern_type)
                        .with_principal(str_bytes(&acl.principal))
                        .with_host(str_bytes(&acl.host))
                        .with_operation(acl.operation)
                        .with_permission_type(acl.permission)
                })
                .collect();
            DeleteAclsFilterResult::default().with_matching_acls(matching)
        })
        .collect();
    if !removed.is_empty() {
        let record = MetadataRecord::Security(SecurityRecord::DeleteAcls(removed));
        if let Err(e) = ctx.controller.propose(record).await {
            let e = controller_error(e);
            for r in results.iter_mut().filter(|r| r.error_code == 0) {
                *r = DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(e.message());
            }
        }
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
