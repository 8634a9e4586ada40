"""confluent-kafka (librdkafka 2.16): admin, producer and consumer round trips."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

BASE_TS = int(time.time() * 1000) - 600_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(broker, name, partitions=1, config=None):
    client = admin(broker)
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    futures[name].result(timeout=20)


def produce(broker, topic, messages, **conf):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})
    delivered = []

    def on_delivery(err, msg):
        assert err is None, err
        delivered.append((msg.partition(), msg.offset()))

    for m in messages:
        p.produce(topic, on_delivery=on_delivery, **m)
    assert p.flush(30) == 0
    assert len(delivered) == len(messages)
    return delivered


def consume(broker, topic, partitions, expected, start=0):
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, p, start) for p in partitions])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < expected and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m)
    c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
def test_keys_headers_timestamps_every_codec(broker, topic, codec):
    create(broker, topic, partitions=3)
    messages = [
        {
            "key": f"key-{i % 7}".encode(),
            "value": f"value-{i}".encode() * 10,
            "headers": [("n", str(i).encode()), ("codec", codec.encode())],
            "timestamp": BASE_TS + i,
        }
        for i in range(300)
    ]
    produce(broker, topic, messages, **{"compression.type": codec})
    got = consume(broker, topic, range(3), len(messages))
    assert len(got) == len(messages)
    by_value = {m.value(): m for m in got}
    for i, sent in enumerate(messages):
        m = by_value[sent["value"]]
        assert m.key() == sent["key"]
        assert dict(m.headers())["n"] == str(i).encode()
        assert m.timestamp()[1] == sent["timestamp"]
    # Same key, same partition; per-partition offsets are dense and ordered.
    partitions_by_key = {}
    for m in got:
        partitions_by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions_by_key.values())
    for p in range(3):
        offsets = [m.offset() for m in got if m.partition() == p]
        assert offsets == list(range(len(offsets)))


def test_offsets_for_times_and_watermarks(broker, topic):
    create(broker, topic)
    messages = [{"value": f"v{i}".encode(), "timestamp": BASE_TS + i * 1000} for i in range(50)]
    produce(broker, topic, messages, **{"linger.ms": 0, "batch.num.messages": 7})
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 50)
    for i in [0, 1, 13, 49]:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + i * 1000)], timeout=10)
        assert tp.offset == i
    [between] = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 13_500)], timeout=10)
    assert between.offset == 14
    [after] = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 10_000_000)], timeout=10)
    assert after.offset == -1
    c.close()


def test_describe_and_alter_configs(broker, topic):
    a = admin(broker)
    create(broker, topic, config={"retention.ms": "123456"})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    inc = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    a.incremental_alter_configs([inc])[inc].result(timeout=10)
    configs = a.describe_configs([res])[res].result(timeout=10)
    assert configs["max.message.bytes"].value == "2000"
    assert configs["retention.ms"].value == "604800000"
    assert configs["cleanup.policy"].value == "delete,compact"

    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(KafkaException) as err:
        a.incremental_alter_configs([bad])[bad].result(timeout=10)
    assert err.value.args[0].code() == KafkaError.INVALID_CONFIG

    # The lowered max.message.bytes is enforced on produce.
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "none"})
    errors = []
    p.produce(topic, value=b"x" * 5000, on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    assert errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    broker_res = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker_cfg = a.describe_configs([broker_res])[broker_res].result(timeout=10)
    assert broker_cfg["num.partitions"].value == "1"
    assert broker_cfg["log.dirs"].source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_create_validate_only_and_errors(broker, topic):
    a = admin(broker)
    f = a.create_topics([NewTopic(topic, 2, 1)], validate_only=True)
    f[topic].result(timeout=10)
    assert topic not in a.list_topics(timeout=10).topics
    create(broker, topic)
    with pytest.raises(KafkaException) as err:
        create(broker, topic)
    assert err.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as err:
        a.create_topics([NewTopic(topic + "-rf3", 1, 3)])[topic + "-rf3"].result(timeout=10)
    assert err.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaException) as err:
        create(broker, "bad topic name")
    assert err.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as err:
        create(broker, topic + "-cfg", config={"no.such.config": "1"})
    assert err.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_racing_create_partitions_add_them_once(broker, topic):
    a = admin(broker)
    create(broker, topic, partitions=5)
    # Requests racing to the same total add its partitions once: the rest answer
    # INVALID_PARTITIONS, as for a count the topic already has.
    for total in (8, 11, 14):
        clients = [admin(broker) for _ in range(6)]
        futures = [c.create_partitions([NewPartitions(topic, total)])[topic] for c in clients]
        codes = []
        for f in futures:
            try:
                f.result(timeout=10)
                codes.append(KafkaError.NO_ERROR)
            except KafkaException as e:
                codes.append(e.args[0].code())
        assert set(codes) <= {KafkaError.NO_ERROR, KafkaError.INVALID_PARTITIONS}, codes
        assert codes.count(KafkaError.NO_ERROR) == 1, codes
        assert len(a.list_topics(topic, timeout=10).topics[topic].partitions) == total


def test_create_partitions_then_delete_topic(broker, topic):
    a = admin(broker)
    create(broker, topic, partitions=2)
    a.create_partitions([NewPartitions(topic, 5)])[topic].result(timeout=10)
    md = a.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 5
    produce(broker, topic, [{"value": b"x", "partition": 4}])
    assert len(consume(broker, topic, [4], 1)) == 1
    with pytest.raises(KafkaException) as err:
        a.create_partitions([NewPartitions(topic, 3)])[topic].result(timeout=10)
    assert err.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    a.delete_topics([topic])[topic].result(timeout=10)
    assert topic not in a.list_topics(timeout=10).topics
    # The partition directories are moved aside, deleted after log.segment.delete.delay.ms.
    assert not [d for d in broker.data_dir.glob(f"{topic}-*") if not d.name.endswith("-delete")]
    with pytest.raises(KafkaException) as err:
        a.delete_topics([topic])[topic].result(timeout=10)
    assert err.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_records_moves_log_start(broker, topic):
    a = admin(broker)
    create(broker, topic)
    produce(broker, topic, [{"value": f"{i}".encode()} for i in range(20)])
    [future] = a.delete_records([TopicPartition(topic, 0, 12)]).values()
    assert future.result(timeout=10).low_watermark == 12
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (12, 20)
    c.close()
    got = consume(broker, topic, [0], 8, start=-2)
    assert [int(m.value()) for m in got] == list(range(12, 20))


def test_describe_cluster(broker):
    a = admin(broker)
    desc = a.describe_cluster().result(timeout=10)
    assert desc.controller.id == 1
    assert [n.id for n in desc.nodes] == [1]
    assert desc.nodes[0].port == broker.port
    assert desc.cluster_id
