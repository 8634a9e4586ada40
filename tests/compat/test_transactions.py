"""Transactions with confluent-kafka (librdkafka 2.16): commit, abort and an open transaction as
read_committed and read_uncommitted consumers see them, fencing of a zombie producer,
consume-transform-produce with send_offsets_to_transaction, the coordinator aborting a
transaction past its timeout, and transactions across a kill -9 of the broker."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from confluent_kafka import IsolationLevel

TXN_TIMEOUT = 60


def create(bootstrap, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def transactional(bootstrap, txn_id, **extra):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **extra})
    producer.init_transactions(TXN_TIMEOUT)
    return producer


def write(producer, topic, values, partition=0):
    for v in values:
        producer.produce(topic, value=v.encode(), partition=partition)
    # Sent before the transaction ends: librdkafka drops what is still queued on an abort.
    assert producer.flush(30) == 0


def read(bootstrap, topic, isolation, partitions=1, settle=3.0, timeout=30):
    """The values of `topic` from the beginning, read until nothing new arrives for `settle` s."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"read-{uuid.uuid4().hex[:8]}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last_new < settle:
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    values.append(m.value().decode())
                    last_new = time.monotonic()
    finally:
        consumer.close()
    return values


def latest_offset(bootstrap, topic, isolation_level):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0)
    futures = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation_level)
    return futures[tp].result(timeout=30).offset


def test_committed_aborted_and_open_transactions(broker, topic):
    create(broker.bootstrap, topic)
    committer = transactional(broker.bootstrap, f"c-{topic}")
    committer.begin_transaction()
    write(committer, topic, [f"c{i}" for i in range(5)])
    committer.commit_transaction(TXN_TIMEOUT)

    aborter = transactional(broker.bootstrap, f"a-{topic}")
    aborter.begin_transaction()
    write(aborter, topic, [f"a{i}" for i in range(5)])
    aborter.abort_transaction(TXN_TIMEOUT)

    opener = transactional(broker.bootstrap, f"o-{topic}")
    opener.begin_transaction()
    write(opener, topic, [f"o{i}" for i in range(5)])

    # c0-4 at 0-4, their marker at 5, a0-4 at 6-10, the abort marker at 11, o0-4 from 12.
    assert latest_offset(broker.bootstrap, topic, IsolationLevel.READ_COMMITTED) == 12
    assert latest_offset(broker.bootstrap, topic, IsolationLevel.READ_UNCOMMITTED) == 17
    assert read(broker.bootstrap, topic, "read_committed") == [f"c{i}" for i in range(5)]
    assert read(broker.bootstrap, topic, "read_uncommitted") == (
        [f"c{i}" for i in range(5)] + [f"a{i}" for i in range(5)] + [f"o{i}" for i in range(5)])

    opener.commit_transaction(TXN_TIMEOUT)
    assert read(broker.bootstrap, topic, "read_committed") == (
        [f"c{i}" for i in range(5)] + [f"o{i}" for i in range(5)])


def test_a_new_producer_fences_the_old_one(broker, topic):
    create(broker.bootstrap, topic)
    txn_id = f"f-{topic}"
    zombie = transactional(broker.bootstrap, txn_id)
    zombie.begin_transaction()
    write(zombie, topic, ["zombie"])

    # Same transactional id: the zombie's open transaction is aborted, its epoch fenced.
    successor = transactional(broker.bootstrap, txn_id)
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(TXN_TIMEOUT)
    error = raised.value.args[0]
    assert error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                            KafkaError.INVALID_PRODUCER_EPOCH), error

    successor.begin_transaction()
    write(successor, topic, ["successor"])
    successor.commit_transaction(TXN_TIMEOUT)
    assert read(broker.bootstrap, topic, "read_committed") == ["successor"]


def copy_in_transactions(bootstrap, source, sink, group, producer, batches, abort_batch=None):
    """Copies `batches` batches of 10 records from `source` to `sink` (values uppercased), each
    in a transaction that also commits the consumed offsets; batch `abort_batch` is aborted."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([source])
    done = 0
    deadline = time.monotonic() + 60
    try:
        while done < batches and time.monotonic() < deadline:
            msgs = [m for m in consumer.consume(10, timeout=1) if m.error() is None]
            if not msgs:
                continue
            producer.begin_transaction()
            for m in msgs:
                producer.produce(sink, value=m.value().upper(), partition=0)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TXN_TIMEOUT)
            if done == abort_batch:
                assert producer.flush(30) == 0
                producer.abort_transaction(TXN_TIMEOUT)
            else:
                producer.commit_transaction(TXN_TIMEOUT)
            done += 1
    finally:
        consumer.close()
    assert done == batches, "the input ran out"


def committed_offset(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        consumer.close()


def test_consume_transform_produce(broker):
    suffix = uuid.uuid4().hex[:8]
    source, sink, group = f"in-{suffix}", f"out-{suffix}", f"ctp-{suffix}"
    create(broker.bootstrap, source)
    create(broker.bootstrap, sink)
    feeder = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        feeder.produce(source, value=f"v{i}".encode(), partition=0)
    assert feeder.flush(30) == 0

    producer = transactional(broker.bootstrap, f"ctp-{suffix}")
    # Three batches of ten, the second aborted: its outputs and its offsets never count.
    copy_in_transactions(broker.bootstrap, source, sink, group, producer, batches=3, abort_batch=1)
    out = read(broker.bootstrap, sink, "read_committed")
    assert out == [f"V{i}" for i in range(10)] + [f"V{i}" for i in range(20, 30)]
    assert committed_offset(broker.bootstrap, group, source) == 30

    # A consumer of the group resumes from the last committed transaction.
    copy_in_transactions(broker.bootstrap, source, sink, group, producer, batches=7)
    out = read(broker.bootstrap, sink, "read_committed")
    assert out == [f"V{i}" for i in range(100) if not 10 <= i < 20]
    assert committed_offset(broker.bootstrap, group, source) == 100
    assert len(read(broker.bootstrap, sink, "read_uncommitted")) == 100, "the aborted ten are in the log"


def test_the_coordinator_aborts_a_transaction_past_its_timeout(own_broker, topic):
    b = own_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}).start()
    create(b.bootstrap, topic)
    stalled = transactional(b.bootstrap, f"s-{topic}", **{"transaction.timeout.ms": 2000})
    stalled.begin_transaction()
    write(stalled, topic, ["stalled"])

    other = transactional(b.bootstrap, f"o-{topic}")
    other.begin_transaction()
    write(other, topic, ["after"])
    other.commit_transaction(TXN_TIMEOUT)
    # Until the stalled transaction ends, read_committed stops before it.
    assert "after" not in read(b.bootstrap, topic, "read_committed", settle=0.5, timeout=1)

    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline and seen != ["after"]:
        seen = read(b.bootstrap, topic, "read_committed", settle=0.5, timeout=2)
    assert seen == ["after"], "the stalled transaction was not aborted"
    with pytest.raises(KafkaException):
        stalled.commit_transaction(10)


def test_transactions_survive_a_broker_kill(own_broker, topic):
    overrides = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}
    b = own_broker(overrides).start()
    create(b.bootstrap, topic)
    done = transactional(b.bootstrap, f"d-{topic}")
    done.begin_transaction()
    write(done, topic, ["committed"])
    done.commit_transaction(TXN_TIMEOUT)
    left_open = transactional(b.bootstrap, f"l-{topic}", **{"transaction.timeout.ms": 3000})
    left_open.begin_transaction()
    write(left_open, topic, ["left-open"])

    b.kill()
    b.start()
    # "committed" at 0, its marker at 1, "left-open" at 2: the open transaction outlives the
    # restart, holding the last stable offset at 2, until the coordinator aborts it.
    assert latest_offset(b.bootstrap, topic, IsolationLevel.READ_COMMITTED) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and latest_offset(b.bootstrap, topic, IsolationLevel.READ_COMMITTED) <= 2:
        time.sleep(0.5)
    assert latest_offset(b.bootstrap, topic, IsolationLevel.READ_COMMITTED) == 4
    assert read(b.bootstrap, topic, "read_committed") == ["committed"]
    assert "left-open" in read(b.bootstrap, topic, "read_uncommitted")

    # The id is usable again after the restart.
    again = transactional(b.bootstrap, f"l-{topic}")
    again.begin_transaction()
    write(again, topic, ["again"])
    again.commit_transaction(TXN_TIMEOUT)
    assert read(b.bootstrap, topic, "read_committed") == ["committed", "again"]
