"""Kafka's tools that move leaders and replicas, on the 3-node cluster: kafka-leader-election
(preferred) after a leader was killed and came back, and kafka-reassign-partitions."""

import json

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
    """--generate proposes a plan from every broker's log directories (DescribeLogDirs),
    --execute starts it, --verify --preserve-throttles and kafka-topics see it done. Plain
    --verify clears the replication throttles with dynamic broker configs (issue 18), and fails
    with the error asserted here."""
    target = three(cluster)
    admin_tool("topics", target, "--create", "--topic", topic, "--replica-assignment", "1:2,2:3,3:1")
    cluster.wait_isr(topic, 2)
    moves = tmp_path / "topics.json"
    moves.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    out = admin_tool("reassign-partitions", target, "--topics-to-move-json-file", moves, "--broker-list", "1,2,3",
                     "--generate").stdout.splitlines()
    assert out[0] == "Current partition replica assignment" and out[3] == "Proposed partition reassignment configuration"
    current = json.loads(out[1])
    assert {p["partition"]: p["replicas"] for p in current["partitions"]} == {0: [1, 2], 1: [2, 3], 2: [3, 1]}
    assert all(len(p["log_dirs"]) == 2 and all(d.startswith("/") for d in p["log_dirs"])
               for p in current["partitions"]), "each replica's log directory, from its broker"
    proposed = json.loads(out[4])["partitions"]
    assert sorted(p["partition"] for p in proposed) == [0, 1, 2]
    assert all(len(p["replicas"]) == 2 and set(p["replicas"]) <= {1, 2, 3} for p in proposed)

    target_replicas = {0: [3, 1], 1: [1, 2, 3], 2: [3, 1]}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": r} for p, r in target_replicas.items()]}))
    out = admin_tool("reassign-partitions", target, "--reassignment-json-file", plan, "--execute").stdout
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert printed == [current], f"--execute prints the assignment it replaces:\n{out}"
    assert f"Successfully started partition reassignments for {topic}-0,{topic}-1,{topic}-2" in out, out

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
