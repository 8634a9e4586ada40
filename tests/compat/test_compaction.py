"""Log compaction: after the cleaner runs, a compacted topic holds exactly the latest value
per key, tombstoned keys are gone, and a consumer from the beginning sees that view."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def messages_from_start(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, low)])
    got = []
    deadline = time.monotonic() + 20
    while (not got or got[-1].offset() < high - 1) and time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    return got


def read_from_start(bootstrap, topic):
    return [(m.offset(), m.key().decode(), m.value()) for m in messages_from_start(bootstrap, topic)]


def test_compacted_topic_keeps_latest_per_key(own_broker, topic):
    b = own_broker({"log.cleaner.backoff.ms": "200"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact", "segment.bytes": "1024",
        "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0",
    })])[topic].result(timeout=20)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "compression.type": "lz4"})
    for round_ in range(20):
        for k in range(10):
            p.produce(topic, key=f"k{k}", value=f"k{k}-v{round_}".encode())
        p.flush(10)
    p.produce(topic, key="k9", value=None)
    for i in range(40):
        p.produce(topic, key=f"sentinel-{i}", value=b"s")
        p.flush(10)

    deadline = time.monotonic() + 30
    view = read_from_start(b.bootstrap, topic)
    while time.monotonic() < deadline:
        keys = [k for _, k, _ in view if k.startswith("k")]
        if len(keys) == len(set(keys)):
            break
        time.sleep(0.5)
        view = read_from_start(b.bootstrap, topic)
    latest = {k: v for _, k, v in view if k.startswith("k")}
    assert latest == {f"k{k}": f"k{k}-v19".encode() for k in range(9)}
    assert [k for _, k, _ in view if k.startswith("k")] == sorted(latest, key=lambda k: int(k[1:]))
    offsets = [o for o, _, _ in view]
    assert offsets == sorted(offsets)
    b.stop()


def test_cleaned_records_keep_their_headers_and_timestamp_type(own_broker, topic):
    """What the cleaner keeps of a partly superseded batch reads back as it was produced:
    repeated header keys stay (Kafka keeps headers as a list), and a LogAppendTime topic's
    records stay LogAppendTime."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    b = own_broker({"log.cleaner.backoff.ms": "200"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact", "segment.bytes": "1024",
        "min.cleanable.dirty.ratio": "0.01", "message.timestamp.type": "LogAppendTime",
    })])[topic].result(timeout=20)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 100, "compression.type": "gzip"})
    headers = [("trace", b"a"), ("trace", b"b"), ("other", None)]
    # Each round is one batch: "old" is superseded by the next round, "keep-<round>" is not.
    for round_ in range(12):
        p.produce(topic, key="old", value=f"old-{round_}".encode())
        p.produce(topic, key=f"keep-{round_}", value=b"v", headers=headers)
        p.flush(10)
    # Sentinels fill the segments after them, so that theirs are no longer active.
    for i in range(40):
        p.produce(topic, key=f"sentinel-{i}", value=b"s")
        p.flush(10)

    deadline = time.monotonic() + 30
    while True:
        got = messages_from_start(b.bootstrap, topic)
        olds = [m for m in got if m.key() == b"old"]
        if len(olds) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [m.value() for m in olds] == [b"old-11"], "the cleaner ran"
    kept = [m for m in got if m.key().startswith(b"keep-")]
    assert [m.key() for m in kept] == [f"keep-{r}".encode() for r in range(12)]
    for m in kept:
        assert m.headers() == headers, m.key()
        assert m.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME, m.key()
    b.stop()
