"""Kafka's tools that move leaders and replicas, on the 3-node cluster: kafka-leader-election
(preferred) after a leader was killed and came back, and kafka-reassign-partitions."""

import json

from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition

from kafka_checks import wait_until
from tools import Target, admin_tool, describe_topic, retry

ASSIGNMENT = "1:2:3,2:3:1,3:1:2"


def three(cluster):
    return Target("cluster", cluster.bootstrap, [n.id for n in cluster.brokers], 3)


def test_preferred_leader_election(cluster, topic):
    target = three(cluster)
    admin_tool("topics", target, "--create", "--topic", topic, "--replica-assignment", ASSIGNMENT)
    cluster.wait_isr(topic, 3)
    node = cluster.node(1)
    node.kill()
    try:
        wait_until(lambda: cluster.leader(topic, 0) in (2, 3), 30, "partition 0 to move off node 1")
    finally:
        cluster.restart(node)
    cluster.wait_isr(topic, 3)
    target = three(cluster)

    _, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
    assert partitions[0]["leader"] != 1 and partitions[0]["replicas"] == [1, 2, 3]

    out = admin_tool("leader-election", target, "--election-type", "preferred", "--topic", topic,
                     "--partition", 0).stdout
    assert out.strip() == f"Successfully completed leader election (PREFERRED) for partitions {topic}-0"
    wait_until(lambda: cluster.leader(topic, 0) == 1, 30, "node 1 to lead partition 0 again")
    _, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
    assert [partitions[p]["leader"] for p in range(3)] == [1, 2, 3]

    out = admin_tool("leader-election", target, "--election-type", "preferred", "--topic", topic,
                     "--partition", 0).stdout
    assert out.strip() == f"Valid replica already elected for partitions {topic}-0"


def test_reassign_partitions(cluster, topic, tmp_path):
    """--generate and --execute ask every broker for its log directories (DescribeLogDirs, issue
    18), and --verify clears the replication throttles with broker configs (dynamic broker
    configs, issue 18): those fail with the errors asserted here. The move itself goes through
    kafka-python's alter_partition_reassignments, which --verify --preserve-throttles and
    kafka-topics then see."""
    target = three(cluster)
    admin_tool("topics", target, "--create", "--topic", topic, "--replica-assignment", "1:2,2:3,3:1")
    cluster.wait_isr(topic, 2)
    moves = tmp_path / "topics.json"
    moves.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    done = admin_tool("reassign-partitions", target, "--topics-to-move-json-file", moves, "--broker-list", "1,2,3",
                      "--generate", ok=False)
    assert done.returncode == 1
    assert done.stdout.startswith("Error: org.apache.kafka.common.errors.UnsupportedVersionException: "
                                  "The node does not support DESCRIBE_LOG_DIRS")

    target_replicas = {0: [3, 1], 1: [1, 2, 3], 2: [3, 1]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": r} for p, r in target_replicas.items()]}))
    done = admin_tool("reassign-partitions", target, "--reassignment-json-file", plan, "--execute", ok=False)
    assert done.returncode == 1
    assert done.stdout.startswith("Error: org.apache.kafka.common.errors.UnsupportedVersionException: "
                                  "The node does not support DESCRIBE_LOG_DIRS")

    admin = KafkaAdminClient(bootstrap_servers=target.bootstrap.split(","))
    try:
        result = admin.alter_partition_reassignments(
            {KafkaTopicPartition(topic, p): r for p, r in target_replicas.items()})
        assert set(result.values()) == {None}, result
    finally:
        admin.close()

    def completed():
        out = admin_tool("reassign-partitions", target, "--reassignment-json-file", plan, "--verify",
                         "--preserve-throttles").stdout
        assert out.splitlines()[1:4] == [f"Reassignment of partition {topic}-{p} is completed." for p in range(3)], out

    retry(completed, 60, "the reassignment to complete")
    _, partitions = describe_topic(admin_tool("topics", target, "--describe", "--topic", topic).stdout)
    assert {p: v["replicas"] for p, v in partitions.items()} == target_replicas
    assert admin_tool("reassign-partitions", target, "--list").stdout.strip() == "No partition reassignments found."

    done = admin_tool("reassign-partitions", target, "--reassignment-json-file", plan, "--verify", ok=False)
    assert done.returncode == 1
    assert "Clearing broker-level throttles on brokers 1,2,3" in done.stdout
    assert "InvalidRequestException: dynamic broker configs are not supported; set them in server.properties" \
        in done.stdout
