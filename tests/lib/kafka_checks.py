"""Checks shared by the suites that run real clusters: an idempotent acks=all writer that
records what was acknowledged, and a reader that proves none of it was lost."""

import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

# Broker settings that make fencing and ISR changes happen within a test's time.
FAST = {
    "replica.lag.time.max.ms": "5000",
    "replica.fetch.backoff.ms": "200",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
}


def wait_until(predicate, timeout, what, interval=0.2):
    """Polls `predicate` until it is truthy; fails the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Writer:
    """Writes increasing integers round-robin to each partition with an idempotent acks=all
    producer, recording every acknowledged value and when it was acknowledged."""

    def __init__(self, bootstrap, topic, partitions, rate=2000):
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.acked = {p: [] for p in range(partitions)}
        self.ack_times = {p: [] for p in range(partitions)}
        self.produced_at = {}
        self.errors = []
        self.sent = 0
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120000,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _delivered(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            value = int(msg.value())
            self.acked[msg.partition()].append(value)
            self.ack_times[msg.partition()].append((self.produced_at[value], time.monotonic()))

    def _run(self):
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        while not self._stop.is_set():
            p = self.sent % self.partitions
            while True:
                try:
                    self.produced_at[self.sent] = time.monotonic()
                    self._producer.produce(self.topic, value=str(self.sent).encode(), partition=p, on_delivery=self._delivered)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self.sent += 1
            self._producer.poll(0)
            next_send += interval
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def acknowledged(self):
        return sum(len(v) for v in self.acked.values())

    def first_ack_after(self, partition, t):
        """When the first record produced after `t` to `partition` was acknowledged."""
        later = [acked for produced, acked in self.ack_times[partition] if produced >= t]
        return min(later) if later else None

    def stop(self, flush_timeout=120):
        self._stop.set()
        self._thread.join(timeout=30)
        remaining = self._producer.flush(flush_timeout)
        assert remaining == 0, f"{remaining} records were neither acknowledged nor failed"


def read_all(bootstrap, topic, partitions, expected, timeout=60):
    """Every value in each partition, in offset order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and sum(len(v) for v in seen.values()) < expected:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error() is None:
                    seen[m.partition()].append(int(m.value()))
    finally:
        consumer.close()
    return seen


def assert_no_loss(writer, bootstrap):
    """Every acknowledged value is read back once, in the order it was written."""
    seen = read_all(bootstrap, writer.topic, writer.partitions, writer.acknowledged())
    for p in range(writer.partitions):
        values = seen[p]
        assert len(values) == len(set(values)), f"partition {p} has duplicates"
        assert values == sorted(values), f"partition {p} is out of order"
        missing = set(writer.acked[p]) - set(values)
        assert not missing, f"partition {p} lost {len(missing)} acknowledged records, e.g. {sorted(missing)[:5]}"
    return seen
