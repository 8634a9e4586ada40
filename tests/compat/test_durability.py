"""Crash safety: kill -9 loses no acknowledged record, torn tails and broken indexes are
repaired on restart, and metadata (topics, configs) survives through its snapshot."""

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def read_all(bootstrap, topic, partitions, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = {}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < sum(ends.values()) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.setdefault(m.partition(), []).append((m.offset(), m.value()))
    c.close()
    return got, ends


def produce_until_killed(broker, topic, duration):
    """Produces with acks=all until the broker is killed mid-stream; returns acked records."""
    acked = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 5000, "retries": 0})

    def on_delivery(err, msg):
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    killer = threading.Timer(duration, broker.kill)
    killer.start()
    i = 0
    deadline = time.monotonic() + duration + 10
    while time.monotonic() < deadline:
        try:
            p.produce(topic, value=f"record-{i}".encode(), key=str(i % 4).encode(), on_delivery=on_delivery)
            i += 1
        except BufferError:
            pass
        p.poll(0)
        if broker.proc is None and i % 1000 == 0:
            break
    p.flush(10)
    killer.join()
    return acked


def assert_all_acked_present(acked, got):
    stored = {(p, o): v for p, records in got.items() for o, v in records}
    for partition, offset, value in acked:
        assert stored.get((partition, offset)) == value, (partition, offset)
    for p, records in got.items():
        offsets = [o for o, _ in records]
        assert offsets == list(range(len(offsets))), "offsets must be dense and ordered"


def test_kill_9_keeps_every_acknowledged_record(own_broker, topic):
    b = own_broker({"log.segment.bytes": "65536"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=20)
    acked = produce_until_killed(b, topic, duration=3)
    assert len(acked) > 100, "the producer should get acknowledgements before the kill"
    b.start()
    got, _ = read_all(b.bootstrap, topic, [0, 1])
    assert_all_acked_present(acked, got)
    p = Producer({"bootstrap.servers": b.bootstrap})
    delivered = []
    p.produce(topic, value=b"after", partition=0, on_delivery=lambda e, m: delivered.append(m.offset()))
    p.flush(10)
    assert delivered == [len(got.get(0, []))]
    b.stop()


def test_torn_tail_and_broken_index_are_repaired(own_broker, topic):
    b = own_broker({"log.segment.bytes": "4096"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=20)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    acked = []
    for i in range(300):
        p.produce(topic, value=f"v{i:04d}".encode() * 4, partition=0,
                  on_delivery=lambda e, m: acked.append((m.partition(), m.offset(), m.value())))
        if i % 50 == 0:
            p.flush(10)
    p.flush(10)
    assert len(acked) == 300
    b.kill()
    part_dir = b.data_dir / f"{topic}-0"
    segments = sorted(part_dir.glob("*.log"))
    assert len(segments) >= 3
    with open(segments[-1], "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x99\x00\x00\x01\x00garbage-torn-write")
    indexes = sorted(part_dir.glob("*.index"))
    indexes[1].write_bytes(indexes[1].read_bytes()[:-3])
    b.start()
    got, ends = read_all(b.bootstrap, topic, [0])
    assert ends[0] == 300
    assert_all_acked_present(acked, got)
    assert len(got[0]) == 300
    b.stop()


def test_metadata_survives_restart_through_snapshots(own_broker, topic):
    b = own_broker({"metadata.max.snapshot.entries": "5"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    names = [f"{topic}-{i}" for i in range(8)]
    for f in admin.create_topics([NewTopic(n, 2, 1, config={"retention.ms": "4242"}) for n in names]).values():
        f.result(timeout=20)
    admin.delete_topics([names[0]])[names[0]].result(timeout=20)
    b.stop()
    assert (b.data_dir / "__cluster_metadata-0" / "metadata-snapshot.json").exists()
    b.start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert set(names[1:]) <= set(topics) and names[0] not in topics
    res = ConfigResource(ConfigResource.Type.TOPIC, names[3])
    assert admin.describe_configs([res])[res].result(timeout=10)["retention.ms"].value == "4242"
    b.stop()
