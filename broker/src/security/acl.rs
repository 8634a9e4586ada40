//! ACLs with Kafka's codes and matching rules: bindings, binding filters (DescribeAcls,
//! DeleteAcls), and the StandardAuthorizer's decision.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::principal::Principal;

/// Kafka's `ResourceType` codes.
pub mod resource {
    /// Matches every type in a filter.
    pub const ANY: i8 = 1;
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A consumer group.
    pub const GROUP: i8 = 3;
    /// The cluster (one resource, `kafka-cluster`).
    pub const CLUSTER: i8 = 4;
    /// A transactional id.
    pub const TRANSACTIONAL_ID: i8 = 5;
    /// A delegation token.
    pub const DELEGATION_TOKEN: i8 = 6;
    /// A user.
    pub const USER: i8 = 7;
}

/// Kafka's `PatternType` codes.
pub mod pattern {
    /// Matches every pattern type in a filter, names compared exactly.
    pub const ANY: i8 = 1;
    /// In a filter: every pattern that would apply to the named resource.
    pub const MATCH: i8 = 2;
    /// The name itself, or `*` for every resource.
    pub const LITERAL: i8 = 3;
    /// Every resource whose name starts with the pattern's.
    pub const PREFIXED: i8 = 4;
}

/// Kafka's `AclOperation` codes.
pub mod operation {
    /// Matches every operation in a filter.
    pub const ANY: i8 = 1;
    /// Every operation.
    pub const ALL: i8 = 2;
    /// Read.
    pub const READ: i8 = 3;
    /// Write.
    pub const WRITE: i8 = 4;
    /// Create.
    pub const CREATE: i8 = 5;
    /// Delete.
    pub const DELETE: i8 = 6;
    /// Alter.
    pub const ALTER: i8 = 7;
    /// Describe.
    pub const DESCRIBE: i8 = 8;
    /// Inter-broker and controller actions.
    pub const CLUSTER_ACTION: i8 = 9;
    /// Describe configs.
    pub const DESCRIBE_CONFIGS: i8 = 10;
    /// Alter configs.
    pub const ALTER_CONFIGS: i8 = 11;
    /// Idempotent produce.
    pub const IDEMPOTENT_WRITE: i8 = 12;
    /// Create delegation tokens.
    pub const CREATE_TOKENS: i8 = 13;
    /// Describe delegation tokens.
    pub const DESCRIBE_TOKENS: i8 = 14;
    /// Two-phase commit (KIP-939).
    pub const TWO_PHASE_COMMIT: i8 = 15;
}

/// Kafka's `AclPermissionType` codes.
pub mod permission {
    /// Matches both in a filter.
    pub const ANY: i8 = 1;
    /// Deny; wins over any allow.
    pub const DENY: i8 = 2;
    /// Allow.
    pub const ALLOW: i8 = 3;
}

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The wildcard resource name and host.
pub const WILDCARD: &str = "*";

/// One ACL: who may (or may not) do what to which resources from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBinding {
    /// A `resource` code.
    pub resource_type: i8,
    /// The resource name, prefix, or `*`.
    pub resource_name: String,
    /// `pattern::LITERAL` or `pattern::PREFIXED`.
    pub pattern_type: i8,
    /// `User:<name>`, or `User:*` for everyone.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// An `operation` code.
    pub operation: i8,
    /// `permission::ALLOW` or `permission::DENY`.
    pub permission: i8,
}

impl AclBinding {
    /// Why Kafka would refuse to create this binding, if it would.
    pub fn invalid(&self) -> Option<String> {
        if !(resource::TOPIC..=resource::USER).contains(&self.resource_type) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some(format!("invalid pattern type {}", self.pattern_type));
        }
        if !(operation::ALL..=operation::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        if Principal::parse(&self.principal).is_none() {
            return Some(format!("invalid principal `{}`", self.principal));
        }
        if self.resource_name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if self.host.is_empty() {
            return Some("the host is empty".into());
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        if self.pattern_type == pattern::PREFIXED && self.resource_name == WILDCARD {
            return Some("a prefixed pattern cannot be `*`; use a literal `*`".into());
        }
        None
    }

    /// Whether this binding's pattern covers the resource `(resource_type, name)`.
    fn covers(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

/// DescribeAcls and DeleteAcls filters; `None` matches anything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    /// A `resource` code, `ANY` for all.
    pub resource_type: i8,
    /// The name, or any.
    pub resource_name: Option<String>,
    /// A `pattern` code (`ANY`, `MATCH`, `LITERAL`, `PREFIXED`).
    pub pattern_type: i8,
    /// The principal, or any.
    pub principal: Option<String>,
    /// The host, or any.
    pub host: Option<String>,
    /// An `operation` code, `ANY` for all.
    pub operation: i8,
    /// A `permission` code, `ANY` for both.
    pub permission: i8,
}

impl AclFilter {
    /// Why the filter cannot match anything Kafka would store, if so.
    pub fn invalid(&self) -> Option<String> {
        if !(resource::ANY..=resource::USER).contains(&self.resource_type) {
            return Some(format!("invalid resource type {}", self.resource_type));
        }
        if !(pattern::ANY..=pattern::PREFIXED).contains(&self.pattern_type) {
            return Some(format!("invalid pattern type {}", self.pattern_type));
        }
        if !(operation::ANY..=operation::TWO_PHASE_COMMIT).contains(&self.operation) {
            return Some(format!("invalid operation {}", self.operation));
        }
        if !(permission::ANY..=permission::ALLOW).contains(&self.permission) {
            return Some(format!("invalid permission type {}", self.permission));
        }
        None
    }

    /// Whether `acl` matches, by Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let resource_type =
            self.resource_type == resource::ANY || self.resource_type == acl.resource_type;
        let pattern_type = matches!(self.pattern_type, pattern::ANY | pattern::MATCH)
            || self.pattern_type == acl.pattern_type;
        let name = match &self.resource_name {
            None => true,
            Some(name) if self.pattern_type != pattern::MATCH => *name == acl.resource_name,
            Some(name) => match acl.pattern_type {
                pattern::LITERAL => *name == acl.resource_name || acl.resource_name == WILDCARD,
                pattern::PREFIXED => name.starts_with(&acl.resource_name),
                _ => false,
            },
        };
        let principal = self.principal.as_ref().is_none_or(|p| *p == acl.principal);
        let host = self.host.as_ref().is_none_or(|h| *h == acl.host);
        let operation = self.operation == operation::ANY || self.operation == acl.operation;
        let permission = self.permission == permission::ANY || self.permission == acl.permission;
        resource_type && pattern_type && name && principal && host && operation && permission
    }
}

/// A client address as Java's `InetAddress.getHostAddress()` writes it, which is what Kafka
/// compares ACL hosts with: IPv4-mapped IPv6 addresses as IPv4, IPv6 uncompressed
/// (`0:0:0:0:0:0:0:1`).
pub fn host_text(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:x}"))
            .collect::<Vec<_>>()
            .join(":"),
    }
}

/// Whether an ALLOW of `granted` also allows `wanted` (Kafka's implied operations).
fn allow_implies(granted: i8, wanted: i8) -> bool {
    granted == operation::ALL
        || granted == wanted
        || (wanted == operation::DESCRIBE
            && matches!(
                granted,
                operation::READ | operation::WRITE | operation::DELETE | operation::ALTER
            ))
        || (wanted == operation::DESCRIBE_CONFIGS && granted == operation::ALTER_CONFIGS)
}

/// The StandardAuthorizer's settings: `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerSettings {
    /// Principals allowed everything (`super.users`, `;`-separated).
    pub super_users: HashSet<String>,
    /// What a resource with no ACL at all allows.
    pub allow_if_no_acl: bool,
}

impl AuthorizerSettings {
    /// Parses `super.users` (`User:a;User:CN=b,O=c`).
    pub fn new(super_users: &str, allow_if_no_acl: bool) -> Self {
        AuthorizerSettings {
            super_users: super_users
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            allow_if_no_acl,
        }
    }

    /// Kafka's decision for one operation on one resource.
    pub fn authorize(
        &self,
        acls: &BTreeMap<Uuid, AclBinding>,
        principal: &Principal,
        host: IpAddr,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        let who = principal.to_string();
        if self.super_users.contains(&who) {
            return true;
        }
        let everyone = format!("{}:{WILDCARD}", principal.kind);
        let host = host_text(host);
        let mut any_acl = false;
        let mut allowed = false;
        for acl in acls.values().filter(|a| a.covers(resource_type, name)) {
            any_acl = true;
            let applies = (acl.principal == who || acl.principal == everyone)
                && (acl.host == WILDCARD || acl.host == host);
            if !applies {
                continue;
            }
            match acl.permission {
                permission::DENY
                    if acl.operation == operation::ALL || acl.operation == operation =>
                {
                    return false
                }
                permission::ALLOW if allow_implies(acl.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }

    /// Whether the principal may do `operation` on at least one resource of a type (Kafka's
    /// `authorizeByResourceType`, used for idempotent producers without a transactional id):
    /// an ALLOW on some pattern that no DENY of the same principal takes back.
    pub fn authorize_any(
        &self,
        acls: &BTreeMap<Uuid, AclBinding>,
        principal: &Principal,
        host: IpAddr,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        // As Kafka: a hard-coded name first, so super users and the no-ACL rule apply.
        if self.authorize(acls, principal, host, operation, resource_type, "hardcode") {
            return true;
        }
        let who = principal.to_string();
        let everyone = format!("{}:{WILDCARD}", principal.kind);
        let host = host_text(host);
        let applies = |a: &&AclBinding| {
            a.resource_type == resource_type
                && (a.principal == who || a.principal == everyone)
                && (a.host == WILDCARD || a.host == host)
        };
        let denied = |allow: &AclBinding| {
            acls.values().filter(applies).any(|d| {
                d.permission == permission::DENY
                    && (d.operation == operation::ALL || d.operation == operation)
                    && (d.resource_name == WILDCARD && d.pattern_type == pattern::LITERAL
                        || (d.pattern_type == pattern::PREFIXED
                            && allow.resource_name.starts_with(&d.resource_name))
                        || (d.pattern_type == allow.pattern_type
                            && d.resource_name == allow.resource_name))
            })
        };
        acls.values().filter(applies).any(|a| {
            a.permission == permission::ALLOW
                && (a.operation == operation::ALL || a.operation == operation)
                && !denied(a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission: perm,
        }
    }

    fn table(acls: Vec<AclBinding>) -> BTreeMap<Uuid, AclBinding> {
        acls.into_iter().map(|a| (Uuid::new_v4(), a)).collect()
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn prefixed_allow_and_implied_describe() {
        let acls = table(vec![acl(
            resource::TOPIC,
            "bob-",
            pattern::PREFIXED,
            "User:bob",
            operation::WRITE,
            permission::ALLOW,
        )]);
        let s = AuthorizerSettings::new("User:admin", false);
        let bob = Principal::user("bob");
        assert!(s.authorize(
            &acls,
            &bob,
            HOST,
            operation::WRITE,
            resource::TOPIC,
            "bob-1"
        ));
        assert!(s.authorize(
            &acls,
            &bob,
            HOST,
            operation::DESCRIBE,
            resource::TOPIC,
            "bob-1"
        ));
        assert!(!s.authorize(&acls, &bob, HOST, operation::READ, resource::TOPIC, "bob-1"));
        assert!(!s.authorize(
            &acls,
            &bob,
            HOST,
            operation::WRITE,
            resource::TOPIC,
            "other"
        ));
        assert!(s.authorize(
            &acls,
            &Principal::user("admin"),
            HOST,
            operation::DELETE,
            resource::TOPIC,
            "x"
        ));
        assert!(s.authorize_any(&acls, &bob, HOST, operation::WRITE, resource::TOPIC));
        assert!(!s.authorize_any(
            &acls,
            &Principal::user("eve"),
            HOST,
            operation::WRITE,
            resource::TOPIC
        ));
    }

    #[test]
    fn deny_wins_and_no_acl_rule() {
        let acls = table(vec![
            acl(
                resource::TOPIC,
                "*",
                pattern::LITERAL,
                "User:*",
                operation::ALL,
                permission::ALLOW,
            ),
            acl(
                resource::TOPIC,
                "secret",
                pattern::LITERAL,
                "User:eve",
                operation::READ,
                permission::DENY,
            ),
        ]);
        let eve = Principal::user("eve");
        let strict = AuthorizerSettings::new("", false);
        assert!(strict.authorize(
            &acls,
            &eve,
            HOST,
            operation::READ,
            resource::TOPIC,
            "public"
        ));
        assert!(!strict.authorize(
            &acls,
            &eve,
            HOST,
            operation::READ,
            resource::TOPIC,
            "secret"
        ));
        // A deny of READ does not deny DESCRIBE.
        assert!(strict.authorize(
            &acls,
            &eve,
            HOST,
            operation::DESCRIBE,
            resource::TOPIC,
            "secret"
        ));
        assert!(!strict.authorize(&acls, &eve, HOST, operation::READ, resource::GROUP, "g"));
        let open = AuthorizerSettings::new("", true);
        assert!(open.authorize(&acls, &eve, HOST, operation::READ, resource::GROUP, "g"));
        assert!(!open.authorize(
            &acls,
            &eve,
            HOST,
            operation::READ,
            resource::TOPIC,
            "secret"
        ));
    }

    #[test]
    fn hosts_are_written_as_java_writes_them() {
        assert_eq!(host_text("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(host_text("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(host_text("::1".parse().unwrap()), "0:0:0:0:0:0:0:1");
        assert_eq!(
            host_text("fe80::1:abcd".parse().unwrap()),
            "fe80:0:0:0:0:0:1:abcd"
        );
    }

    #[test]
    fn hosts_must_match() {
        let mut a = acl(
            resource::GROUP,
            "g",
            pattern::LITERAL,
            "User:bob",
            operation::READ,
            permission::ALLOW,
        );
        a.host = "10.0.0.1".into();
        let acls = table(vec![a]);
        let s = AuthorizerSettings::default();
        let bob = Principal::user("bob");
        assert!(!s.authorize(&acls, &bob, HOST, operation::READ, resource::GROUP, "g"));
        assert!(s.authorize(
            &acls,
            &bob,
            "10.0.0.1".parse().unwrap(),
            operation::READ,
            resource::GROUP,
            "g"
        ));
        // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
        let mapped = "::ffff:10.0.0.1".parse().unwrap();
        assert!(s.authorize(&acls, &bob, mapped, operation::READ, resource::GROUP, "g"));
    }

    #[test]
    fn filters_as_kafka_matches_them() {
        let prefixed = acl(
            resource::TOPIC,
            "bob-",
            pattern::PREFIXED,
            "User:bob",
            operation::WRITE,
            permission::ALLOW,
        );
        let literal = acl(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:bob",
            operation::READ,
            permission::ALLOW,
        );
        let any = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission: permission::ANY,
        };
        assert!(any.matches(&prefixed) && any.matches(&literal));
        let matching = AclFilter {
            resource_type: resource::TOPIC,
            resource_name: Some("bob-x".into()),
            pattern_type: pattern::MATCH,
            ..any.clone()
        };
        assert!(matching.matches(&prefixed) && matching.matches(&literal));
        let exact = AclFilter {
            pattern_type: pattern::ANY,
            ..matching.clone()
        };
        assert!(!exact.matches(&prefixed));
        let by_principal = AclFilter {
            principal: Some("User:eve".into()),
            ..any
        };
        assert!(!by_principal.matches(&prefixed));
    }

    #[test]
    fn invalid_bindings_are_named() {
        let ok = acl(
            resource::CLUSTER,
            CLUSTER_NAME,
            pattern::LITERAL,
            "User:a",
            operation::ALTER,
            permission::ALLOW,
        );
        assert!(ok.invalid().is_none());
        for bad in [
            AclBinding {
                resource_name: "other".into(),
                ..ok.clone()
            },
            AclBinding {
                principal: "nobody".into(),
                ..ok.clone()
            },
            AclBinding {
                operation: operation::ANY,
                ..ok.clone()
            },
            AclBinding {
                pattern_type: pattern::MATCH,
                ..ok.clone()
            },
            AclBinding {
                permission: permission::ANY,
                ..ok.clone()
            },
            AclBinding {
                resource_type: resource::ANY,
                ..ok.clone()
            },
        ] {
            assert!(bad.invalid().is_some(), "{bad:?}");
        }
    }
}
