"""kafka-python (pure Python): admin, producer and consumer."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic

BASE_TS = int(time.time() * 1000) - 60_000
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip(broker, topic, codec):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    # kafka-python 3 is idempotent by default: this exercises InitProducerId too.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=5)
    futures = [
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                      headers=[("i", str(i).encode())], timestamp_ms=BASE_TS + i)
        for i in range(200)
    ]
    producer.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    assert sorted(m.offset for m in metas if m.partition == 0) == list(
        range(sum(1 for m in metas if m.partition == 0)))
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    got = list(consumer)
    consumer.close()
    assert len(got) == 200
    for m in got:
        i = int(m.value.decode()[1:])
        assert m.key == f"k{i}".encode()
        assert m.headers == [("i", str(i).encode())]
        assert m.timestamp == BASE_TS + i
    admin.close()


def test_admin_configs_and_partitions(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"retention.bytes": "1048576"})])
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    entry = described["topic"][topic]["retention.bytes"]
    assert entry["value"] == "1048576"
    assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    admin.create_partitions({topic: NewPartitions(total_count=4)})
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
    consumer.close()
    admin.delete_topics([topic])
    assert topic not in admin.list_topics()
    admin.close()
