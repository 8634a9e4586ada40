"""MirrorMaker 2 between two Strom clusters: its MirrorSourceConnector, run by a Connect worker
whose internal topics are on the target cluster, copies a topic of the 3-node cluster into the
single-node one as `source.<topic>`: every record with its key, value and headers, in its
partition and in order, the topic's partition count and configs, and records produced later;
its MirrorCheckpointConnector translates a consumer group's committed offsets into the target
cluster's offsets of the copy and commits them there."""

import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from kafka_checks import wait_until

BYTES = "org.apache.kafka.connect.converters.ByteArrayConverter"


def produce(bootstrap, topic, start, stop, partitions):
    """Records start..stop round-robin over the partitions; {partition: [(key, value)]}."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    sent = {p: [] for p in range(partitions)}
    for i in range(start, stop):
        key, value = f"k{i}".encode(), f"v{i} {uuid.uuid4().hex}".encode()
        producer.produce(topic, key=key, value=value, partition=i % partitions, headers={"n": str(i).encode()})
        sent[i % partitions].append((key, value, str(i).encode()))
    assert producer.flush(30) == 0
    return sent


def consume(bootstrap, topic, partitions, count, timeout=90):
    """Every record of `topic` from the start until `count` have come: {partition: [(key, value, header n)]}."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout
    try:
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=1):
                assert m.error() is None, m.error()
                got[m.partition()].append((m.key(), m.value(), dict(m.headers() or []).get("n")))
    finally:
        consumer.close()
    return got


def topic_config(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def commit(bootstrap, group, topic, offsets):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap, group, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions(group)
    try:
        result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
    except Exception:
        return {}
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == topic}


def test_mirror_maker_copies_a_topic_between_strom_clusters(cluster, target, workers):
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    remote = f"source.{topic}"
    cluster.create_topic(topic, partitions=3, replication=3, config={"retention.ms": "123456789"})
    sent = produce(cluster.bootstrap, topic, 0, 3000, 3)
    # A consumer group of the source cluster that has read part of each partition.
    app = f"app-{uuid.uuid4().hex[:8]}"
    commit(cluster.bootstrap, app, topic, {0: 1000, 1: 600, 2: 1})

    worker = workers(f"mm2-{uuid.uuid4().hex[:6]}", bootstrap=target.bootstrap, replication=1)
    common = {
        "source.cluster.alias": "source",
        "target.cluster.alias": "target",
        "source.cluster.bootstrap.servers": cluster.bootstrap,
        "target.cluster.bootstrap.servers": target.bootstrap,
        "key.converter": BYTES,
        "value.converter": BYTES,
        "header.converter": BYTES,
        "offset-syncs.topic.replication.factor": "3",
    }
    worker.put_connector("mirror", {
        **common,
        "connector.class": "org.apache.kafka.connect.mirror.MirrorSourceConnector",
        "topics": topic,
        "tasks.max": "2",
        "replication.factor": "1",
        "sync.topic.acls.enabled": "false",
        "refresh.topics.interval.seconds": "1",
        "sync.topic.configs.interval.seconds": "1",
    })
    worker.put_connector("checkpoints", {
        **common,
        "connector.class": "org.apache.kafka.connect.mirror.MirrorCheckpointConnector",
        "groups": app,
        "tasks.max": "1",
        "checkpoints.topic.replication.factor": "1",
        "emit.checkpoints.interval.seconds": "1",
        "refresh.groups.interval.seconds": "1",
        "sync.group.offsets.enabled": "true",
        "sync.group.offsets.interval.seconds": "1",
    })
    wait_until(lambda: worker.running("mirror"), 90, "MirrorSourceConnector and its tasks running")

    admin = AdminClient({"bootstrap.servers": target.bootstrap})
    wait_until(lambda: remote in admin.list_topics(timeout=10).topics, 60, f"{remote} on the target cluster")
    assert len(admin.list_topics(remote, timeout=10).topics[remote].partitions) == 3
    got = consume(target.bootstrap, remote, 3, 3000)
    assert got == sent

    wait_until(lambda: topic_config(target.bootstrap, remote)["retention.ms"].value == "123456789", 60,
               f"{remote} with the source topic's retention.ms")

    # MirrorMaker translates a group's offset through the offset syncs that its source task
    # records (every offset.lag.max records, and for the last record copied) and that its
    # checkpoint task keeps, fewer the older they are: to the record after the nearest sync at or
    # below it, never past it. So the group's offsets at the end of partition 0 and at 1 on
    # partition 2 translate exactly, and 600 on partition 1 to something no later.
    def translated():
        offsets = committed(target.bootstrap, app, remote)
        return offsets.get(0) == 1000 and offsets.get(2) == 1 and 0 < offsets.get(1, -1) <= 600

    wait_until(translated, 90, f"{app}'s offsets translated onto {remote}")

    more = produce(cluster.bootstrap, topic, 3000, 4000, 3)
    got = consume(target.bootstrap, remote, 3, 4000)
    assert got == {p: sent[p] + more[p] for p in range(3)}
