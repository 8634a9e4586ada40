"""kafka-acls (add, list, remove, with prefixed patterns) on brokers running the
StandardAuthorizer, and on a broker without an authorizer; kafka-transactions (list, describe,
describe-producers) with a transaction open and after its commit."""

import re

from confluent_kafka import Producer
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from tools import admin_tool, tab_table

ALICE = ["--allow-principal", "User:alice", "--operation", "Read", "--operation", "Describe"]


def acl_listing(text):
    """kafka-acls --list: {(resource type, name, pattern type): {(principal, host, operation, permission)}}."""
    found = {}
    for block in re.split(r"\n(?=Current ACLs for resource)", text):
        m = re.search(r"ResourcePattern\(resourceType=(\w+), name=([^,]+), patternType=(\w+)\)", block)
        if m:
            found[m.groups()] = set(re.findall(
                r"\(principal=([^,]+), host=([^,]+), operation=(\w+), permissionType=(\w+)\)", block))
    return found


def test_acls_added_listed_and_removed(target, topic):
    prefix = f"{topic}-app-"
    out = admin_tool("acls", target, "--add", *ALICE, "--topic", topic, "--group", prefix,
                     "--resource-pattern-type", "prefixed").stdout
    assert f"Adding ACLs for resource `ResourcePattern(resourceType=TOPIC, name={topic}, patternType=PREFIXED)`" in out
    alice = {("User:alice", "*", "READ", "ALLOW"), ("User:alice", "*", "DESCRIBE", "ALLOW")}
    expected = {("TOPIC", topic, "PREFIXED"): alice, ("GROUP", prefix, "PREFIXED"): alice}
    listing = acl_listing(admin_tool("acls", target, "--list").stdout)
    assert {k: v for k, v in listing.items() if k in expected} == expected
    listing = acl_listing(admin_tool("acls", target, "--list", "--principal", "User:alice").stdout)
    assert {k: v for k, v in listing.items() if k in expected} == expected

    admin = target.admin()
    bindings = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice",
                                                    None, AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30)
    assert {(b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name) for b in bindings
            if b.name in (topic, prefix)} == \
        {(t, n, "PREFIXED", op) for t, n in (("TOPIC", topic), ("GROUP", prefix)) for op in ("READ", "DESCRIBE")}

    admin_tool("acls", target, "--remove", "--force", *ALICE, "--topic", topic, "--group", prefix,
               "--resource-pattern-type", "prefixed")
    listing = acl_listing(admin_tool("acls", target, "--list").stdout)
    assert not set(listing) & set(expected)


def test_acls_without_an_authorizer(plain_broker):
    """Apache Kafka without `authorizer.class.name` answers CreateAcls and DescribeAcls with
    SECURITY_DISABLED ("No Authorizer is configured on the broker"): ACLs that no authorizer
    enforces are refused, not stored, and kafka-acls exits 1."""
    for args in (("--add", *ALICE, "--topic", "t"), ("--list",)):
        done = admin_tool("acls", plain_broker, *args, ok=False)
        assert done.returncode == 1, done.stdout
        assert done.stdout.startswith(
            "Error while executing ACL command: org.apache.kafka.common.errors.SecurityDisabledException: ")


def test_transactions_listed_and_described(target, topic):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 1,
               "--replication-factor", target.replication)
    txn = f"{topic}-txn"
    p = Producer({"bootstrap.servers": target.bootstrap, "transactional.id": txn})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic, b"v", partition=0)
    assert p.flush(30) == 0

    rows = {r["TransactionalId"]: r for r in tab_table(admin_tool("transactions", target, "list").stdout)}
    assert rows[txn]["TransactionState"] == "Ongoing"
    assert int(rows[txn]["Coordinator"]) in target.broker_ids
    [described] = tab_table(admin_tool("transactions", target, "describe", "--transactional-id", txn).stdout)
    assert (described["TransactionalId"], described["TransactionState"], described["TopicPartitions"]) == \
        (txn, "Ongoing", f"{topic}-0")
    assert described["ProducerId"] == rows[txn]["ProducerId"]
    [producer] = tab_table(admin_tool("transactions", target, "describe-producers", "--topic", topic,
                                      "--partition", 0).stdout)
    assert producer["ProducerId"] == rows[txn]["ProducerId"]
    assert (producer["LastSequence"], producer["CurrentTransactionStartOffset"]) == ("0", "0")

    p.commit_transaction(30)
    rows = {r["TransactionalId"]: r for r in tab_table(admin_tool("transactions", target, "list").stdout)}
    assert rows[txn]["TransactionState"] == "CompleteCommit"
