"""Exactly-once on three nodes: a consume-transform-produce loop with transactions keeps going
through kill -9 of its transaction coordinator and then of a partition leader, and the output
holds every input record exactly once as read_committed consumers see it."""

import threading
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kafka_checks import wait_until

RECORDS = 3000
TXN_OVERRIDES = {
    "transaction.state.log.num.partitions": "3",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
}


def java_hash_partition(key, partitions):
    """The partition of an ASCII `key` in an internal topic: Java's String.hashCode, masked,
    modulo the partition count."""
    h = 0
    for ch in key:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


class ExactlyOnceLoop:
    """Copies `source` to `sink` in transactions of up to 100 records, committing the consumed
    offsets in each; on an error it aborts (or starts a new producer, fencing the old one) and
    rewinds the consumer to the committed offsets."""

    def __init__(self, bootstrap, source, sink, group, txn_id):
        self.bootstrap, self.source, self.sink = bootstrap, source, sink
        self.group, self.txn_id = group, txn_id
        self.committed_txns = 0
        self.aborted_txns = 0
        self.new_producers = 0
        self.copied = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _producer(self):
        p = Producer({
            "bootstrap.servers": self.bootstrap,
            "transactional.id": self.txn_id,
            "transaction.timeout.ms": 15000,
            "message.timeout.ms": 15000,
            "topic.metadata.refresh.interval.ms": 1000,
        })
        p.init_transactions(60)
        return p

    def _rewind(self, consumer):
        committed = consumer.committed(consumer.assignment(), timeout=20)
        for tp in committed:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=90)
        assert not self._thread.is_alive(), "the exactly-once loop did not stop"

    def _run(self):
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000,
        })
        consumer.subscribe([self.source])
        producer = self._producer()
        try:
            while not self._stop.is_set():
                batch = [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
                if not batch:
                    continue
                try:
                    producer.begin_transaction()
                    for m in batch:
                        producer.produce(self.sink, key=m.key(), value=m.value())
                    # Transactions stay open a while, so a kill lands in one.
                    producer.flush(30)
                    time.sleep(0.3)
                    positions = consumer.position(consumer.assignment())
                    producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
                    producer.commit_transaction(30)
                    self.committed_txns += 1
                    self.copied += len(batch)
                except KafkaException as e:
                    err = e.args[0]
                    self.errors.append(str(err))
                    aborted = False
                    if err.txn_requires_abort():
                        try:
                            producer.abort_transaction(30)
                            aborted = True
                            self.aborted_txns += 1
                        except KafkaException as abort_error:
                            self.errors.append(f"abort: {abort_error}")
                    if not aborted:
                        # Fatal, or the outcome is unknown: a new producer with the same id
                        # fences this one and ends whatever it left open.
                        producer = self._producer()
                        self.new_producers += 1
                    self._rewind(consumer)
        finally:
            consumer.close()


class Feeder:
    """Writes RECORDS numbered records round-robin over three partitions, about 100 a second,
    with an idempotent acks=all producer."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "message.timeout.ms": 120000})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        for i in range(RECORDS):
            self.producer.produce(self.topic, key=str(i).encode(), value=str(i).encode(), partition=i % 3)
            if i % 10 == 9:
                self.producer.poll(0)
                time.sleep(0.1)
        self.producer.flush(120)

    def join(self):
        self._thread.join(timeout=150)
        assert not self._thread.is_alive(), "the feeder did not finish"
        assert len(self.producer) == 0, "input records were not acknowledged"


def read_committed(bootstrap, topic, partitions, expected, timeout=90):
    """Every value in `topic` as a read_committed consumer sees it, once `expected` arrived."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    deadline = time.monotonic() + timeout
    idle_since = None
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(500, timeout=1)
            values += [m.value().decode() for m in msgs if m.error() is None]
            if len(values) >= expected:
                # Keep reading a little: duplicates would arrive after the expected count.
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 3:
                    break
    finally:
        consumer.close()
    return values


def test_exactly_once_through_coordinator_and_leader_kills(cluster):
    c = cluster(combined=3, overrides=TXN_OVERRIDES)
    source, sink = f"in-{uuid.uuid4().hex[:6]}", f"out-{uuid.uuid4().hex[:6]}"
    c.create_topic(source, partitions=3, replication=3)
    c.create_topic(sink, partitions=3, replication=3)

    # The input keeps arriving while nodes are killed, so transactions are open at each kill.
    feeder = Feeder(c.bootstrap, source).start()

    txn_id = f"eos-{uuid.uuid4().hex[:6]}"
    loop = ExactlyOnceLoop(c.bootstrap, source, sink, f"eos-group-{uuid.uuid4().hex[:6]}", txn_id).start()
    try:
        wait_until(lambda: loop.copied >= RECORDS // 5, 90, "a fifth of the input copied")

        # The transaction coordinator is the leader of the id's __transaction_state partition.
        txn_partition = java_hash_partition(txn_id, 3)
        wait_until(lambda: c.leader("__transaction_state", txn_partition) > 0, 30, "the transaction coordinator")
        coordinator = c.leader("__transaction_state", txn_partition)
        before = loop.committed_txns
        c.node(coordinator).kill()
        wait_until(lambda: loop.committed_txns > before + 2, 90,
                   "transactions committing again after the coordinator's kill -9")
        c.restart(c.node(coordinator))
        c.wait_isr(sink, 3)

        leader = c.leader(sink, 0)
        before = loop.committed_txns
        c.node(leader).kill()
        wait_until(lambda: loop.committed_txns > before + 2, 90,
                   "transactions committing again after the partition leader's kill -9")
        c.restart(c.node(leader))

        feeder.join()
        wait_until(lambda: loop.copied >= RECORDS, 120, "the whole input copied")
    except AssertionError as e:
        raise AssertionError(f"{e}; the loop committed {loop.committed_txns} transactions, "
                             f"last errors: {loop.errors[-5:]}") from None
    finally:
        loop.stop()

    values = read_committed(c.bootstrap, sink, 3, RECORDS)
    counts = Counter(values)
    duplicates = {v: n for v, n in counts.items() if n > 1}
    missing = set(str(i) for i in range(RECORDS)) - set(counts)
    print(f"\nexactly-once run: {RECORDS} input records, {len(values)} read_committed output records, "
          f"{loop.committed_txns} transactions committed, {loop.aborted_txns} aborted, "
          f"{loop.new_producers} producers replaced; errors seen: {Counter(loop.errors).most_common(5)}")
    assert not duplicates, f"records seen more than once: {list(duplicates.items())[:10]}"
    assert not missing, f"records missing: {sorted(missing, key=int)[:10]}"
    assert len(values) == RECORDS
