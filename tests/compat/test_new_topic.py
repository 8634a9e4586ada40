"""Producing right after a topic is auto-created: acks=all must not duplicate the batch (the
partition answers a retriable error until its leader role is applied, never
NOT_ENOUGH_REPLICAS_AFTER_APPEND after appending), and librdkafka 2.0.2 keeps its
compression codec."""

import struct
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
import wire  # noqa: E402

NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
RETRIABLE_BEFORE_APPEND = {3, 5, 6}  # UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER
CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def end_offset(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "end-offset-probe"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def test_kcat_202_lz4_acks_all_into_a_new_topic_stores_each_record_once(own_broker, topic):
    """The reproduction of the report: `kcat -L`, then 500 lines with lz4 and the default
    acks=all into a topic that does not exist yet, on a fresh node."""
    broker = own_broker().start()
    subprocess.run(["kcat", "-b", broker.bootstrap, "-L"], check=True, capture_output=True, timeout=60)
    lines = "".join(f"{i}\n" for i in range(1, 501)).encode()
    done = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-z", "lz4"],
                          input=lines, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"does not support compression" not in done.stderr, done.stderr.decode()
    assert end_offset(broker, topic) == 500
    batches = wire.stored_batches(broker.data_dir / f"{topic}-0")
    assert sum(count for _, count, _ in batches) == 500
    assert {codec for _, _, codec in batches} == {CODEC_IDS["lz4"]}


def test_kcat_202_keeps_every_codec(broker, topic):
    """librdkafka 2.0.2 drops gzip, snappy and lz4 unless Produce v0 is advertised."""
    for codec, codec_id in CODEC_IDS.items():
        name = f"{topic}-{codec}"
        done = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", name, "-z", codec],
                              input=b"x" * 200 + b"\n", capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert b"does not support compression" not in done.stderr, (codec, done.stderr.decode())
        codecs = {c for _, _, c in wire.stored_batches(broker.data_dir / f"{name}-0")}
        assert codecs == {codec_id}, codec


def test_raw_acks_all_produce_right_after_auto_creation(own_broker, topic):
    """A Metadata request that creates the topic, then at once an acks=all produce, for many
    new topics: the window between creation and the partition's leader role being applied
    is short, so one topic would rarely hit it (the old code did in about 4 of 100)."""
    broker = own_broker().start()
    batch = wire.record_batch([f"r{i}".encode() for i in range(10)])
    topics = [f"{topic}-{i}" for i in range(200)]
    answers = {}
    with wire.Connection(broker.port) as conn:
        for name in topics:
            conn.request(3, 4, wire.metadata_v4([name]))
            answers[name] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                [(_, error, _)] = wire.produce_v3_errors(conn.request(0, 3, wire.produce_v3(name, 0, batch)))
                answers[name].append(error)
                if error == 0:
                    break
                assert error in RETRIABLE_BEFORE_APPEND, (name, answers[name])
                time.sleep(0.05)
    assert all(a[-1] == 0 for a in answers.values()), answers
    assert not any(NOT_ENOUGH_REPLICAS_AFTER_APPEND in a for a in answers.values())
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "end-offset-probe"})
    try:
        ends = {name: c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)[1] for name in topics}
    finally:
        c.close()
    assert set(ends.values()) == {10}, {n: e for n, e in ends.items() if e != 10}


def test_produce_v0_to_v2_is_advertised_but_closes_the_connection(broker):
    """As Kafka 4 does: v0-v2 appear in ApiVersions for old librdkafka, but are not served."""
    with wire.Connection(broker.port) as conn:
        body = conn.request(18, 0, b"")
        error, count = struct.unpack_from(">hi", body, 0)
        ranges = {}
        for i in range(count):
            key, low, high = struct.unpack_from(">hhh", body, 6 + 6 * i)
            ranges[key] = (low, high)
        assert error == 0 and ranges[0] == (0, 11)
        try:
            conn.request(0, 2, struct.pack(">hi", 1, 1000) + wire.array([]))
            closed = False
        except ConnectionError:
            closed = True
    assert closed
    assert broker.proc.poll() is None
