"""A consumer group after the same joins, commits and leaves on Apache Kafka and on Strom: its
description (state, assignor, members and their assignments) and its committed offsets, through
confluent-kafka's AdminClient and raw DescribeGroups and OffsetFetch requests."""

import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka.protocol.admin import DescribeGroupsRequest
from kafka.protocol.consumer import OffsetFetchRequest

from compare import compare
from raw import Raw, create_ready_topic, group_coordinator_ready, produce_ok

PARTITIONS = 2


def consumer(bootstrap, group, client_id):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": client_id,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "partition.assignment.strategy": "range", "session.timeout.ms": 10000,
                     "heartbeat.interval.ms": 500})


def poll_until(consumers, condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(0.2)
        if condition():
            return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def owned(c):
    return sorted(tp.partition for tp in c.assignment())


def describe(admin, group, owner):
    """The group as AdminClient describes it, members by client id, partitions by owner label."""
    [future] = admin.describe_consumer_groups([group], request_timeout=15).values()
    d = future.result(timeout=30)
    members = {m.client_id: {"group_instance_id": m.group_instance_id,
                             "assignment": sorted(owner.get(tp.partition, tp.partition)
                                                  for tp in m.assignment.topic_partitions)}
               for m in d.members}
    return {"state": str(d.state), "partition_assignor": d.partition_assignor,
            "is_simple_consumer_group": d.is_simple_consumer_group, "members": members,
            "type": str(getattr(d, "type", None))}


def committed(admin, group, topic, owner):
    [future] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values()
    result = future.result(timeout=30)
    return {str(owner.get(tp.partition, tp.partition)): tp.offset
            for tp in result.topic_partitions if tp.topic == topic}


def raw_state(bootstrap, group, topic, owner):
    with Raw(bootstrap) as r:
        group_coordinator_ready(r, group)
        groups = r.request(DescribeGroupsRequest, 5, groups=[group], include_authorized_operations=False).to_dict()
        offsets = r.request(OffsetFetchRequest, 8, require_stable=True, groups=[
            OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=None)]).to_dict()
    for g in groups["groups"]:
        g["group_id"] = "<group>"
    for g in offsets["groups"]:
        g["group_id"] = "<group>"
        for t in g["topics"]:
            t["name"] = "<topic>"
            for p in t["partitions"]:
                p["partition_index"] = owner.get(p["partition_index"], p["partition_index"])
    return {"describe_groups": groups, "offset_fetch": offsets}


def scenario(bootstrap):
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"grp-{suffix}", f"grp-{suffix}"
    with Raw(bootstrap) as r:
        create_ready_topic(r, topic, PARTITIONS)
        for p in range(PARTITIONS):
            produce_ok(r, topic, [b"%d" % i for i in range(10)], partition=p)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    out, owner = {}, {}
    c1 = consumer(bootstrap, group, "c1")
    c2 = consumer(bootstrap, group, "c2")
    try:
        c1.subscribe([topic])
        poll_until([c1], lambda: len(owned(c1)) == PARTITIONS, "c1 to own every partition")
        out["one_member"] = describe(admin, group, {})
        c1.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 5)], asynchronous=False)
        out["committed_by_c1"] = committed(admin, group, topic, {})

        c2.subscribe([topic])
        poll_until([c1, c2], lambda: len(owned(c1)) == 1 and len(owned(c2)) == 1, "the partitions to be shared")
        owner = {owned(c1)[0]: "p_c1", owned(c2)[0]: "p_c2"}
        out["two_members"] = describe(admin, group, owner)
        c2.commit(offsets=[TopicPartition(topic, owned(c2)[0], 7)], asynchronous=False)
        out["committed_by_c2"] = committed(admin, group, topic, owner)

        c2.close()
        c2 = None
        poll_until([c1], lambda: len(owned(c1)) == PARTITIONS, "c1 to own every partition again")
        out["after_c2_left"] = describe(admin, group, owner)
        c1.close()
        c1 = None
        out["after_all_left"] = describe(admin, group, owner)
        out["committed_at_end"] = committed(admin, group, topic, owner)
        out["raw_at_end"] = raw_state(bootstrap, group, topic, owner)
    finally:
        for c in (c1, c2):
            if c is not None:
                c.close()
    return out


def test_group_joins_commits_and_leaves(both):
    found = {side: scenario(bootstrap) for side, bootstrap in both.items()}
    compare("group", found["kafka"], found["strom"])
