"""Transactions with confluent-kafka (librdkafka 2.16): commit, abort and an open transaction as
read_committed and read_uncommitted consumers see them, fencing of a zombie producer,
consume-transform-produce with send_offsets_to_transaction, the coordinator aborting a
transaction past its timeout, and transactions across a kill -9 of the broker.

Every topic here has one partition, so offsets are predictable: each record takes one, and so
does each commit or abort marker a transaction leaves in a partition it wrote to."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

TXN_TIMEOUT = 60
COMMITTED, UNCOMMITTED = IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED
FENCED = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def create(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)


def transactional(bootstrap, txn_id, **extra):
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, **extra})
    producer.init_transactions(TXN_TIMEOUT)
    return producer


def write(producer, topic, values):
    for v in values:
        producer.produce(topic, value=v.encode(), partition=0)
    # Delivered before the transaction ends: librdkafka purges what is still queued on an abort,
    # and a test of an aborted or open transaction needs its records in the log.
    assert producer.flush(30) == 0


def commit(producer, topic, values):
    producer.begin_transaction()
    write(producer, topic, values)
    producer.commit_transaction(TXN_TIMEOUT)


def latest(admin, topic, isolation):
    """The end of partition 0 for `isolation`: the last stable offset or the high watermark."""
    tp = TopicPartition(topic, 0)
    return admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation)[tp].result(timeout=10).offset


def wait_latest(bootstrap, topic, isolation, expected, timeout=30):
    """Waits for the end of partition 0 for `isolation` to be `expected`. A commit returns once
    the coordinator has logged its decision; the markers reach the partitions after that (in
    Kafka), so the last stable offset may lag behind for a moment. It never goes back, so
    passing `expected` fails at once."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = latest(admin, topic, isolation)
        except (KafkaException, TimeoutError):
            pass  # the partition's leader is still loading after a restart
        if seen == expected:
            return
        assert seen is None or seen < expected, f"{isolation} end of {topic} is {seen}, expected {expected}"
        time.sleep(0.2)
    raise AssertionError(f"{isolation} end of {topic} is {seen} after {timeout}s, expected {expected}")


def wait_settled(bootstrap, topic, timeout=30):
    """Waits until no transaction is open in partition 0 (its last stable offset reached the
    high watermark, so every marker is written) and returns that offset."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = (latest(admin, topic, COMMITTED), latest(admin, topic, UNCOMMITTED))
        except (KafkaException, TimeoutError):
            seen = None
        if seen and seen[0] == seen[1]:
            return seen[0]
        time.sleep(0.2)
    raise AssertionError(f"{topic}: (last stable offset, high watermark) still {seen} after {timeout}s")


def read(bootstrap, topic, isolation, timeout=30):
    """The values of partition 0 from the beginning to its end as `isolation` ("read_committed"
    or "read_uncommitted") sees it now. librdkafka signals that end (the last stable offset for
    read_committed) as a partition EOF, so reading stops exactly there instead of waiting for
    records that must not come; callers wait for the end they expect first."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"read-{uuid.uuid4().hex[:8]}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(100, timeout=0.5):
                if m.error() is None:
                    values.append(m.value().decode())
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    return values
                elif m.error().fatal():
                    raise KafkaException(m.error())
    finally:
        consumer.close()
    raise AssertionError(f"{isolation}: no end of {topic} within {timeout}s, read {values}")


def test_committed_aborted_and_open_transactions(broker, topic):
    create(broker.bootstrap, topic)
    committed = [f"c{i}" for i in range(5)]
    aborted = [f"a{i}" for i in range(5)]
    left_open = [f"o{i}" for i in range(5)]
    commit(transactional(broker.bootstrap, f"c-{topic}"), topic, committed)

    aborter = transactional(broker.bootstrap, f"a-{topic}")
    aborter.begin_transaction()
    write(aborter, topic, aborted)
    aborter.abort_transaction(TXN_TIMEOUT)

    opener = transactional(broker.bootstrap, f"o-{topic}")
    opener.begin_transaction()
    write(opener, topic, left_open)

    # c0-4 at 0-4, the commit marker at 5, a0-4 at 6-10, the abort marker at 11, o0-4 at 12-16:
    # read_committed ends where the open transaction begins, read_uncommitted after it.
    wait_latest(broker.bootstrap, topic, COMMITTED, 12)
    wait_latest(broker.bootstrap, topic, UNCOMMITTED, 17)
    assert read(broker.bootstrap, topic, "read_committed") == committed
    assert read(broker.bootstrap, topic, "read_uncommitted") == committed + aborted + left_open

    opener.commit_transaction(TXN_TIMEOUT)
    assert wait_settled(broker.bootstrap, topic) == 18
    assert read(broker.bootstrap, topic, "read_committed") == committed + left_open


def test_a_new_producer_fences_the_old_one(broker, topic):
    create(broker.bootstrap, topic)
    txn_id = f"f-{topic}"
    zombie = transactional(broker.bootstrap, txn_id)
    zombie.begin_transaction()
    write(zombie, topic, ["zombie"])

    # Same transactional id: the coordinator aborts the zombie's open transaction and bumps
    # the epoch, so the zombie can neither commit it nor write again.
    successor = transactional(broker.bootstrap, txn_id)
    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(TXN_TIMEOUT)
    error = raised.value.args[0]
    assert error.fatal() or error.code() in FENCED, error

    commit(successor, topic, ["successor"])
    # "zombie" at 0, its abort marker at 1, "successor" at 2, its commit marker at 3.
    assert wait_settled(broker.bootstrap, topic) == 4
    assert read(broker.bootstrap, topic, "read_committed") == ["successor"]
    assert read(broker.bootstrap, topic, "read_uncommitted") == ["zombie", "successor"]


def copy_in_transactions(bootstrap, source, sink, group, producer, until=None, transactions=None, abort_last=False):
    """Copies `source` to `sink` (values uppercased) as a member of `group`, in transactions of
    at most ten records that also commit the consumed position to `group`, until the position
    reaches `until` or after `transactions` transactions; the last one is aborted if
    `abort_last`. Returns (offset of the first record consumed, values of the committed
    transactions, values of the aborted one, position after the last committed transaction)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([source])
    first, copied, aborted, committed_position = None, [], [], None
    done, position = 0, 0
    deadline = time.monotonic() + 45
    try:
        while (until is None or position < until) and (transactions is None or done < transactions):
            assert time.monotonic() < deadline, f"copied {len(copied)} records in time, at {position}"
            msgs = [m for m in consumer.consume(10, timeout=1) if m.error() is None]
            if not msgs:
                continue
            if first is None:
                first = msgs[0].offset()
            values = [m.value().decode() for m in msgs]
            producer.begin_transaction()
            for v in values:
                producer.produce(sink, value=v.upper().encode(), partition=0)
            offsets = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), TXN_TIMEOUT)
            position = offsets[0].offset
            done += 1
            if abort_last and done == transactions:
                assert producer.flush(30) == 0
                producer.abort_transaction(TXN_TIMEOUT)
                aborted = values
            else:
                producer.commit_transaction(TXN_TIMEOUT)
                copied += values
                committed_position = position
    finally:
        consumer.close()
    return first, copied, aborted, committed_position


def committed_offset(bootstrap, group, topic):
    # librdkafka asks for stable offsets (read_committed is its default), so an offset whose
    # transaction is still being completed is waited for rather than missed.
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
    inputs = [f"v{i}" for i in range(100)]
    for v in inputs:
        feeder.produce(source, value=v.encode(), partition=0)
    assert feeder.flush(30) == 0
    producer = transactional(broker.bootstrap, f"ctp-{suffix}")

    # Three transactions, the third aborted: its outputs never show and its offsets are not
    # committed, so the group stays at the end of the second.
    first, copied, aborted, position = copy_in_transactions(
        broker.bootstrap, source, sink, group, producer, transactions=3, abort_last=True)
    assert first == 0
    assert aborted, "the third transaction had records"
    assert copied == inputs[:position]
    wait_settled(broker.bootstrap, sink)
    assert read(broker.bootstrap, sink, "read_committed") == [v.upper() for v in copied]
    assert committed_offset(broker.bootstrap, group, source) == position

    # A new member of the group resumes at the committed offset, redoing the aborted input, and
    # runs to the end: every input shows once in the output, in order.
    resumed_at, _, _, end = copy_in_transactions(broker.bootstrap, source, sink, group, producer, until=100)
    assert resumed_at == position
    assert end == 100
    wait_settled(broker.bootstrap, sink)
    assert read(broker.bootstrap, sink, "read_committed") == [v.upper() for v in inputs]
    assert committed_offset(broker.bootstrap, group, source) == 100
    assert len(read(broker.bootstrap, sink, "read_uncommitted")) == 100 + len(aborted), "aborted records are in the log"


# Long enough for the other producer's whole transaction to fit before it expires even on a
# loaded machine, short enough to keep the test brief.
STALL_TIMEOUT_MS = 5000


def test_the_coordinator_aborts_a_transaction_past_its_timeout(own_broker, topic):
    b = own_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}).start()
    create(b.bootstrap, topic)
    # Both initialised first, so the stalled transaction's timeout is not spent on set-up.
    other = transactional(b.bootstrap, f"o-{topic}")
    stalled = transactional(b.bootstrap, f"s-{topic}", **{"transaction.timeout.ms": STALL_TIMEOUT_MS})
    stalled.begin_transaction()
    write(stalled, topic, ["stalled"])
    commit(other, topic, ["after"])

    # "stalled" at 0, "after" at 1 and its marker at 2: while the stalled transaction is open
    # read_committed ends before it, hiding the committed "after" too.
    wait_latest(b.bootstrap, topic, UNCOMMITTED, 3)
    wait_latest(b.bootstrap, topic, COMMITTED, 0)

    # The coordinator aborts it (marker at 3), releasing "after"; later transactions are not held.
    assert wait_settled(b.bootstrap, topic) == 4
    commit(other, topic, ["later"])
    assert wait_settled(b.bootstrap, topic) == 6
    assert read(b.bootstrap, topic, "read_committed") == ["after", "later"]
    assert read(b.bootstrap, topic, "read_uncommitted") == ["stalled", "after", "later"]
    # Aborting bumped the epoch: the stalled producer cannot commit what it wrote.
    with pytest.raises(KafkaException):
        stalled.commit_transaction(10)


def test_transactions_survive_a_broker_kill(own_broker, topic):
    b = own_broker({"transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"}).start()
    create(b.bootstrap, topic)
    commit(transactional(b.bootstrap, f"d-{topic}"), topic, ["committed"])
    left_open = transactional(b.bootstrap, f"l-{topic}", **{"transaction.timeout.ms": 10000})
    left_open.begin_transaction()
    write(left_open, topic, ["left-open"])

    b.kill()
    b.start()
    # "committed" at 0, its marker at 1, "left-open" at 2: the open transaction is rebuilt from
    # the log, holding read_committed at 2, until the coordinator, which reloaded it from
    # __transaction_state, aborts it past its timeout (marker at 3).
    wait_latest(b.bootstrap, topic, COMMITTED, 2)
    assert read(b.bootstrap, topic, "read_committed") == ["committed"]
    assert wait_settled(b.bootstrap, topic) == 4
    assert read(b.bootstrap, topic, "read_committed") == ["committed"]
    assert read(b.bootstrap, topic, "read_uncommitted") == ["committed", "left-open"]

    # The id is usable again after the restart.
    commit(transactional(b.bootstrap, f"l-{topic}"), topic, ["again"])
    assert wait_settled(b.bootstrap, topic) == 6
    assert read(b.bootstrap, topic, "read_committed") == ["committed", "again"]
