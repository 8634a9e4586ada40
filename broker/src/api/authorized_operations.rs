//! The `authorized_operations` bit fields of Metadata, DescribeCluster and DescribeGroups:
//! one bit per operation the resource type supports that the principal is allowed. Without an
//! authorizer every supported operation is allowed, as in Kafka; `i32::MIN` means "not
//! requested".

use crate::security::acl::{operation::*, resource};

/// The value of a field the request did not ask for.
pub const NOT_REQUESTED: i32 = i32::MIN;

const TOPIC: &[i8] = &[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
];
const CLUSTER: &[i8] = &[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
];
const GROUP: &[i8] = &[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS];

/// The field for a resource of `resource_type`; `allows` answers for one operation.
pub fn field(requested: bool, resource_type: i8, allows: impl Fn(i8) -> bool) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    let operations = match resource_type {
        resource::TOPIC => TOPIC,
        resource::CLUSTER => CLUSTER,
        resource::GROUP => GROUP,
        _ => &[],
    };
    operations
        .iter()
        .filter(|op| allows(**op))
        .fold(0, |bits, op| bits | (1 << op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_kafkas_values_without_an_authorizer() {
        assert_eq!(field(true, resource::TOPIC, |_| true), 3576);
        assert_eq!(field(true, resource::CLUSTER, |_| true), 8096);
        assert_eq!(field(true, resource::GROUP, |_| true), 3400);
        assert_eq!(field(false, resource::TOPIC, |_| true), i32::MIN);
        assert_eq!(field(true, resource::TOPIC, |op| op == READ), 1 << READ);
    }
}
