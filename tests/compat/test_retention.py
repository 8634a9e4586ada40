"""Retention deletes whole old segments by time and by size."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def fill(broker, topic, count, timestamp=None):
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "compression.type": "none"})
    for i in range(count):
        kwargs = {"timestamp": timestamp} if timestamp else {}
        p.produce(topic, value=b"x" * 200, partition=0, **kwargs)
        if i % 20 == 0:
            p.flush(10)
    assert p.flush(10) == 0


def wait_for_log_start(broker, topic, predicate, timeout=20):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    deadline = time.monotonic() + timeout
    low = high = None
    while time.monotonic() < deadline:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if predicate(low, high):
            break
        time.sleep(0.3)
    c.close()
    return low, high


def test_time_retention_deletes_old_segments(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(
        topic, 1, 1, config={"segment.bytes": "2048", "retention.ms": "60000"})])[topic].result(timeout=20)
    hour_ago = int(time.time() * 1000) - 3_600_000
    fill(broker, topic, 100, timestamp=hour_ago)
    low, high = wait_for_log_start(broker, topic, lambda low, high: low == high)
    assert (low, high) == (100, 100)
    part_dir = broker.data_dir / f"{topic}-0"
    assert len(list(part_dir.glob("*.log"))) == 1


def test_size_retention_keeps_the_newest_segments(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(
        topic, 1, 1, config={"segment.bytes": "2048", "retention.bytes": "4096"})])[topic].result(timeout=20)
    fill(broker, topic, 100)
    part_dir = broker.data_dir / f"{topic}-0"

    def within_retention():
        # Kafka's rule: drop the oldest segment while the rest alone still reaches retention.bytes.
        sizes = [f.stat().st_size for f in sorted(part_dir.glob("*.log"))]
        return sum(sizes) - sizes[0] < 4096

    # Retention runs every 500 ms; it may take a pass or two after the last write.
    deadline = time.monotonic() + 20
    while not within_retention() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert within_retention()
    low, high = wait_for_log_start(broker, topic, lambda low, high: low > 0)
    assert 0 < low < high == 100
