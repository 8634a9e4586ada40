"""Hostile record batches in Produce, each with a valid CRC so the broker's checks past it are
what judge them (Kafka's LogValidator): the error code each must get, and nothing appended.
The broker caps requests at 10 MB (socket.request.max.bytes, which is also the decompression
cap, and queued.max.request.bytes), so a 64 MB decompression bomb costs the test little."""

import uuid

import pytest

import wire
from health import malformed, wait_until

CAP = 10 * 1024 * 1024
BROKER_OVERRIDES = {"socket.request.max.bytes": str(CAP), "queued.max.request.bytes": str(CAP)}
# Measured: ~10 MB after start; the zstd bomb peaks ~10 MB higher (its decoder's window, the
# output capped at 10 MB), the others within ~2 MB. 64 MB above the baseline fails a broker
# that decompressed a 64 MB bomb whole.
RSS_BUDGET_MB = 64

CORRUPT_MESSAGE = 2
INVALID_TIMESTAMP = 32
INVALID_TOPIC_EXCEPTION = 17
POLICY_VIOLATION = 44
INVALID_RECORD = 87
HUGE = 2**31 - 1


def create_topic(conn, partitions=1, configs=()):
    name = f"hostile-{uuid.uuid4().hex[:10]}"
    results = wire.topic_results(conn.request(19, 4, wire.create_topics_v4([(name, partitions, 1)], configs=configs)))
    assert [(n, e) for n, e, _ in results] == [(name, 0)], results
    # Until the new partition's log has taken the leader role it answers
    # NOT_LEADER_OR_FOLLOWER, as clients expect (they retry).
    wait_until(lambda: all(e == 0 for e, _ in wire.list_offsets_v1_answer(
        conn.request(2, 1, wire.list_offsets_v1(name, range(partitions)))).values()), 10, f"{name} to have a leader")
    return name


def produce(conn, topic, batch, partition=0):
    [(index, error, _base)] = wire.produce_v3_errors(conn.request(0, 3, wire.produce_v3(topic, partition, batch)))
    assert index == partition
    return error


def end_offset(conn, topic, partition=0):
    answer = wire.list_offsets_v1_answer(conn.request(2, 1, wire.list_offsets_v1(topic, [partition])))
    error, offset = answer[partition]
    assert error == 0, f"ListOffsets error {error}"
    return offset


def one_record(value=b"v", key=None):
    return wire.raw_batch(wire.record(value, key=key), 1)


CONTROL = 0x20
LOG_APPEND_TIME = 0x08

# name -> (batch, expected error). Every batch has a correct CRC.
HOSTILE = {
    "codec id 5": (wire.raw_batch(wire.record(b"x"), 1, attributes=5), CORRUPT_MESSAGE),
    "codec id 6": (wire.raw_batch(wire.record(b"x"), 1, attributes=6), CORRUPT_MESSAGE),
    "codec id 7": (wire.raw_batch(wire.record(b"x"), 1, attributes=7), CORRUPT_MESSAGE),
    # Two records, a header that says the last offset delta is 5.
    "last_offset_delta 5 for 2 records": (
        wire.raw_batch(wire.record(b"a") + wire.record(b"b", offset_delta=1), 2, last_offset_delta=5), INVALID_RECORD),
    # One record, a header that claims 2^31-1 of them (last_offset_delta agrees).
    "records count 2^31-1 for 1 record": (wire.raw_batch(wire.record(b"a"), HUGE), CORRUPT_MESSAGE),
    "records count 0": (wire.raw_batch(b"", 0, last_offset_delta=0), INVALID_RECORD),
    # Kafka's LogValidator.validateBatch: "Batch has an invalid offset range" (87) for a last
    # offset before the base, "Invalid reported count for record batch" (87) for count <= 0.
    "last_offset_delta -1 for 1 record": (wire.raw_batch(wire.record(b"a"), 1, last_offset_delta=-1), INVALID_RECORD),
    "records count -1": (wire.raw_batch(wire.record(b"a"), -1, last_offset_delta=0), INVALID_RECORD),
    # A control batch (an abort marker: key version 0 type 0, value version 0 epoch 0).
    "control batch": (wire.raw_batch(wire.record(b"\x00\x00\x00\x00\x00\x00", key=b"\x00\x00\x00\x00"), 1,
                                     attributes=CONTROL), INVALID_RECORD),
    "LogAppendTime set by the producer": (wire.raw_batch(wire.record(b"x"), 1, attributes=LOG_APPEND_TIME),
                                          INVALID_TIMESTAMP),
    # A record whose length claims more bytes than the batch has.
    "record length past the batch": (wire.raw_batch(wire.varint(1000) + wire.record(b"x")[1:], 1), CORRUPT_MESSAGE),
}


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_batch_is_refused_and_not_appended(module_broker, request, case):
    broker, health = module_broker
    batch, expected = case
    name = request.node.callspec.id
    with wire.Connection(broker.port) as conn:
        topic = create_topic(conn)
        assert produce(conn, topic, one_record()) == 0
        before = sorted(wire.stored_batches(broker.data_dir / f"{topic}-0"))
        assert end_offset(conn, topic) == 1
        assert produce(conn, topic, batch) == expected
        assert end_offset(conn, topic) == 1
        assert sorted(wire.stored_batches(broker.data_dir / f"{topic}-0")) == before
        # The connection is still served: a good batch after the bad one gets offset 1.
        assert produce(conn, topic, one_record()) == 0
        assert end_offset(conn, topic) == 2
    health.check(f"2 batch: {name}")


def test_unkeyed_record_on_a_compacted_topic(module_broker):
    broker, health = module_broker
    with wire.Connection(broker.port) as conn:
        topic = create_topic(conn, configs=[("cleanup.policy", "compact")])
        assert produce(conn, topic, one_record(key=b"k")) == 0
        assert produce(conn, topic, one_record()) == INVALID_RECORD
        assert end_offset(conn, topic) == 1
    health.check("2 batch: unkeyed record, compacted topic")


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lz4"])
def test_decompression_bomb(module_broker, codec):
    """One record of 64 MB of zeros, compressed to at most a few hundred KB: the broker stops
    decompressing at socket.request.max.bytes (10 MB here) and answers CORRUPT_MESSAGE."""
    broker, health = module_broker
    records = wire.compressed_bomb(codec, 64 * 1024 * 1024)
    batch = wire.raw_batch(records, 1, attributes=wire.CODECS[codec])
    assert len(batch) < 1024 * 1024
    with wire.Connection(broker.port, timeout=30) as conn:
        topic = create_topic(conn)
        assert produce(conn, topic, one_record()) == 0
        assert produce(conn, topic, batch) == CORRUPT_MESSAGE
        assert end_offset(conn, topic) == 1
        assert len(wire.stored_batches(broker.data_dir / f"{topic}-0")) == 1
    health.check(f"2 decompression bomb: {codec} 64 MB")


def test_produce_to_consumer_offsets(module_broker):
    broker, health = module_broker
    with wire.Connection(broker.port) as conn:
        # A standalone commit (generation -1) makes the broker create __consumer_offsets.
        errors = wire.offset_commit_v7_errors(conn.request(8, 7, wire.offset_commit_v7(
            "hostile-commit", -1, "", create_topic(conn), 0, 0)))
        assert errors == [0]
        before = wire.list_offsets_v1_answer(conn.request(2, 1, wire.list_offsets_v1("__consumer_offsets", range(50))))
        assert all(error == 0 for error, _ in before.values())
        for partition in (0, 1, 49):
            assert produce(conn, "__consumer_offsets", one_record(key=b"k"), partition) == INVALID_TOPIC_EXCEPTION
        after = wire.list_offsets_v1_answer(conn.request(2, 1, wire.list_offsets_v1("__consumer_offsets", range(50))))
        assert after == before
    health.check("2 produce to __consumer_offsets")


def test_create_partitions_bomb(module_broker):
    broker, health = module_broker
    with wire.Connection(broker.port) as conn:
        topic = create_topic(conn)
        partition_dirs = sorted(p.name for p in broker.data_dir.iterdir())
        for count, why in [(HUGE, "Excessively large number of partitions per request"),
                           (10002, "Excessively large number of partitions per request"),
                           (6000, "max.broker.partitions")]:
            results = wire.topic_results(conn.request(37, 1, wire.create_partitions_v1([(topic, count)])))
            assert [(n, e) for n, e, _ in results] == [(topic, POLICY_VIOLATION)], (count, results)
            assert why in results[0][2]
        topics = wire.metadata_v4_topics(conn.request(3, 4, wire.metadata_v4([topic], auto_create=False)))
        assert topics == {topic: (0, 1)}
        assert sorted(p.name for p in broker.data_dir.iterdir()) == partition_dirs
    assert malformed(broker) == 0
    health.check("2 CreatePartitions 2^31-1 / 10002 / 6000")
