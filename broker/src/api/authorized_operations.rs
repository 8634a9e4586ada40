//! The `authorized_operations` bit fields of Metadata, DescribeCluster and DescribeGroups.
//! Without an authorizer Kafka reports every operation the resource type supports when the
//! request asks for them, and `i32::MIN` ("not requested") when it does not.

/// AclOperation codes, as Kafka numbers them.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// The value of a field the request did not ask for.
pub const NOT_REQUESTED: i32 = i32::MIN;

const fn bits(operations: &[u8]) -> i32 {
    let mut field = 0;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i];
        i += 1;
    }
    field
}

const TOPIC: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
const CLUSTER: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);
const GROUP: i32 = bits(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

fn when(requested: bool, operations: i32) -> i32 {
    if requested {
        operations
    } else {
        NOT_REQUESTED
    }
}

/// A topic's operations.
pub fn topic(requested: bool) -> i32 {
    when(requested, TOPIC)
}

/// The cluster's operations.
pub fn cluster(requested: bool) -> i32 {
    when(requested, CLUSTER)
}

/// A group's operations.
pub fn group(requested: bool) -> i32 {
    when(requested, GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_kafkas_values_without_an_authorizer() {
        assert_eq!(topic(true), 3576);
        assert_eq!(cluster(true), 8096);
        assert_eq!(group(true), 3400);
        assert_eq!(topic(false), i32::MIN);
    }
}
