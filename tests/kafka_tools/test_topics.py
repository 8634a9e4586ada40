"""kafka-topics: create with configs and with a replica assignment, list, describe, alter the
partition count and delete, each cross-checked with confluent-kafka's AdminClient."""

import re

from confluent_kafka.admin import ConfigResource

from kafka_checks import wait_until
from tools import admin_tool, describe_topic, retry


def listed(target):
    return set(admin_tool("topics", target, "--list").stdout.split())


def metadata_partitions(target, topic):
    md = target.admin().list_topics(topic, timeout=10).topics[topic]
    assert md.error is None, md.error
    return {p.id: sorted(p.replicas) for p in md.partitions.values()}


def test_create_with_configs_describe_alter_and_delete(target, topic):
    r = target.replication
    out = admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 3, "--replication-factor", r,
                     "--config", "retention.ms=123456", "--config", "cleanup.policy=compact").stdout
    assert out.strip() == f"Created topic {topic}."
    assert topic in listed(target)

    summary, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
    assert summary == {"PartitionCount": 3, "ReplicationFactor": r,
                       "Configs": {"cleanup.policy": "compact", "retention.ms": "123456"}}
    assert sorted(partitions) == [0, 1, 2]
    for p in partitions.values():
        assert len(p["replicas"]) == r and set(p["replicas"]) <= set(target.broker_ids)
        assert p["leader"] in p["replicas"]
    assert {p: sorted(v["replicas"]) for p, v in partitions.items()} == metadata_partitions(target, topic)
    admin, res = target.admin(), ConfigResource("topic", topic)
    configs = admin.describe_configs([res])[res].result(timeout=30)
    assert configs["retention.ms"].value == "123456" and configs["cleanup.policy"].value == "compact"

    assert admin_tool("topics", target, "--alter", "--topic", topic, "--partitions", 5).returncode == 0
    summary, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
    assert summary["PartitionCount"] == 5 and sorted(partitions) == [0, 1, 2, 3, 4]
    wait_until(lambda: len(metadata_partitions(target, topic)) == 5, 30, "the new partitions in the metadata")

    assert admin_tool("topics", target, "--delete", "--topic", topic).returncode == 0
    assert topic not in listed(target)
    wait_until(lambda: topic not in target.admin().list_topics(timeout=10).topics, 30, "the topic to go")


def test_create_with_replica_assignment(target, topic):
    if target.replication == 3:
        assignment = [[1, 2, 3], [2, 3, 1], [3, 1, 2]]
    else:
        assignment = [[1], [1]]
    spec = ",".join(":".join(map(str, replicas)) for replicas in assignment)
    out = admin_tool("topics", target, "--create", "--topic", topic, "--replica-assignment", spec).stdout
    assert out.strip() == f"Created topic {topic}."

    def described():
        summary, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
        assert summary["PartitionCount"] == len(assignment)
        assert summary["ReplicationFactor"] == len(assignment[0])
        assert summary["Configs"] == {}
        for p, replicas in enumerate(assignment):
            assert partitions[p]["replicas"] == replicas
            assert partitions[p]["leader"] == replicas[0]
            assert partitions[p]["isr"] == sorted(replicas)

    retry(described, 30, "every replica of the assignment in sync")
    assert metadata_partitions(target, topic) == {p: sorted(r) for p, r in enumerate(assignment)}


def test_describe_pages_through_every_partition(target, topic):
    """kafka-topics describes with DescribeTopicPartitions (KIP-966), which pages by a partition
    limit and a cursor: with one partition per response, the tool still lists every partition of
    every topic once, with the eligible leader replica columns Kafka 4.4 prints."""
    other = f"{topic}-b"
    for name, count in ((topic, 4), (other, 3)):
        admin_tool("topics", target, "--create", "--topic", name, "--partitions", count,
                   "--replication-factor", target.replication)
    out = admin_tool("topics", target, "--describe", "--topic", f"{topic}.*",
                     "--partition-size-limit-per-response", 1).stdout
    rows = re.findall(r"^\tTopic: (\S+)\tPartition: (\d+)\tLeader: \d+\tReplicas: [\d,]+\tIsr: [\d,]+"
                      r"\tElr: \tLastKnownElr: $", out, re.M)
    assert sorted((t, int(p)) for t, p in rows) == [(topic, p) for p in range(4)] + [(other, p) for p in range(3)], out
    summaries = re.findall(r"^Topic: (\S+)\tTopicId: \S+\tPartitionCount: (\d+)\t", out, re.M)
    assert sorted(summaries) == [(topic, "4"), (other, "3")]
