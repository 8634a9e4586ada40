//! Admin calls for who may do what: SCRAM credentials (KIP-554) and ACLs.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::admin::{check, Admin, AdminError};

/// Kafka's `ANY` code in ACL filters (resource type, pattern type, operation, permission).
const ANY: i8 = 1;

/// One ACL binding, in Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    /// Resource type (2 topic, 3 group, 4 cluster, 5 transactional id).
    pub resource_type: i8,
    /// Resource name (`*` for all).
    pub resource_name: String,
    /// Pattern type (3 literal, 4 prefixed).
    pub pattern_type: i8,
    /// Principal, such as `User:alice`.
    pub principal: String,
    /// Host, `*` for any.
    pub host: String,
    /// Operation (2 all, 3 read, 4 write, ...).
    pub operation: i8,
    /// Permission (2 deny, 3 allow).
    pub permission: i8,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl Admin {
    /// Sets `user`'s SCRAM credential for `mechanism` (1 SHA-256, 2 SHA-512) from a salted
    /// password; the password itself never leaves the caller.
    pub async fn upsert_scram_credential(
        &mut self,
        user: &str,
        mechanism: i8,
        iterations: i32,
        salt: Vec<u8>,
        salted_password: Vec<u8>,
    ) -> Result<(), AdminError> {
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(text(user))
                .with_mechanism(mechanism)
                .with_iterations(iterations)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted_password)),
        ]);
        let response = self.send("AlterUserScramCredentials", &request, 0).await?;
        for result in &response.results {
            check(
                || format!("set the SCRAM credential of {user}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// The SCRAM mechanisms (1 SHA-256, 2 SHA-512) `user` has a credential for.
    pub async fn scram_mechanisms(&mut self, user: &str) -> Result<Vec<i8>, AdminError> {
        let request = DescribeUserScramCredentialsRequest::default()
            .with_users(Some(vec![UserName::default().with_name(text(user))]));
        let response = self
            .send("DescribeUserScramCredentials", &request, 0)
            .await?;
        check(
            || "describe SCRAM credentials".to_owned(),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut mechanisms = Vec::new();
        for result in &response.results {
            if result.error_code == ResponseError::ResourceNotFound.code() {
                continue;
            }
            check(
                || format!("describe the SCRAM credentials of {user}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
            mechanisms.extend(result.credential_infos.iter().map(|c| c.mechanism));
        }
        Ok(mechanisms)
    }

    /// Removes `user`'s SCRAM credential for `mechanism`; a credential that is already gone
    /// is fine.
    pub async fn delete_scram_credential(
        &mut self,
        user: &str,
        mechanism: i8,
    ) -> Result<(), AdminError> {
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(text(user))
                .with_mechanism(mechanism),
        ]);
        let response = self.send("AlterUserScramCredentials", &request, 0).await?;
        for result in &response.results {
            if result.error_code == ResponseError::ResourceNotFound.code() {
                continue;
            }
            check(
                || format!("delete the SCRAM credential of {user}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Every ACL whose principal is `principal`.
    pub async fn acls_of(&mut self, principal: &str) -> Result<Vec<Acl>, AdminError> {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(ANY)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(ANY)
            .with_principal_filter(Some(text(principal)))
            .with_host_filter(None)
            .with_operation(ANY)
            .with_permission_type(ANY);
        let response = self.send("DescribeAcls", &request, 1).await?;
        check(
            || format!("describe the ACLs of {principal}"),
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut acls = Vec::new();
        for resource in &response.resources {
            for acl in &resource.acls {
                acls.push(Acl {
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.to_string(),
                    pattern_type: resource.pattern_type,
                    principal: acl.principal.to_string(),
                    host: acl.host.to_string(),
                    operation: acl.operation,
                    permission: acl.permission_type,
                });
            }
        }
        Ok(acls)
    }

    /// Creates `acls`.
    pub async fn create_acls(&mut self, acls: &[Acl]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let creations = acls
            .iter()
            .map(|a| {
                AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(text(&a.resource_name))
                    .with_resource_pattern_type(a.pattern_type)
                    .with_principal(text(&a.principal))
                    .with_host(text(&a.host))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let request = CreateAclsRequest::default().with_creations(creations);
        let response = self.send("CreateAcls", &request, 1).await?;
        for (acl, result) in acls.iter().zip(&response.results) {
            check(
                || format!("create ACL {acl:?}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes exactly `acls`.
    pub async fn delete_acls(&mut self, acls: &[Acl]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let filters = acls
            .iter()
            .map(|a| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(a.resource_type)
                    .with_resource_name_filter(Some(text(&a.resource_name)))
                    .with_pattern_type_filter(a.pattern_type)
                    .with_principal_filter(Some(text(&a.principal)))
                    .with_host_filter(Some(text(&a.host)))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let request = DeleteAclsRequest::default().with_filters(filters);
        let response = self.send("DeleteAcls", &request, 1).await?;
        for (acl, result) in acls.iter().zip(&response.filter_results) {
            check(
                || format!("delete ACL {acl:?}"),
                result.error_code,
                result.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}
