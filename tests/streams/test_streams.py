"""A Kafka Streams application (kafka-streams 4.4, WordCountApp.java) on a 3-node cluster, with
processing.guarantee at_least_once and exactly_once_v2: a word count (a repartition topic by word, a
key-value store with a changelog) and a windowed sum (words per source per 10-second tumbling window
of explicit record timestamps, a window store with a changelog). The node that coordinates the
application's group is killed with SIGKILL while input is still coming, and started again.

The output is checked exactly, by read_committed consumers that follow it from the start. Caching
is off, so the application writes every update. For both guarantees the last value of every key is
its true count or sum: no input record is lost and, since the application's single instance keeps
its tasks through a broker failure (its group outlives its coordinator), none is counted twice; and
every update (every count 1..n of a word, every running sum of a window) is read. With
exactly_once_v2 each update is read exactly once and in order, as transactions guarantee."""

import re
import time
import uuid
from collections import Counter, defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from kafka_checks import wait_until

INPUT, COUNTS, WINDOWED = "lines", "word-counts", "words-per-window"
PARTITIONS = 3
LINES = 1500
VOCABULARY = ("the quick brown fox jumps over lazy dog while stream broker kafka strom log offset "
              "leader replica partition window count").split()
SOURCES = [f"s{i}" for i in range(5)]
WINDOW_MS = 10_000
STEP_MS = 50


def line(i):
    """Line i: one to five words of the vocabulary, capitalised and punctuated."""
    words = [VOCABULARY[(i * 7 + j * 3) % len(VOCABULARY)] for j in range(1 + i % 5)]
    return " ".join(words).capitalize() + (".", "!", "?")[i % 3]


def words(text):
    """What WordCountApp.words makes of a line (ASCII text)."""
    return re.findall(r"\w+", text.lower(), re.ASCII)


class Input:
    """The input: LINES lines keyed by a source, line i stamped base + i * STEP_MS, where base is
    20 minutes ago on a window boundary (inside the topics' retention and the broker's timestamp
    bounds)."""

    def __init__(self):
        now = int(time.time() * 1000)
        self.base = (now - 20 * 60_000) // WINDOW_MS * WINDOW_MS
        self.records = [(SOURCES[i % len(SOURCES)], line(i), self.base + i * STEP_MS) for i in range(LINES)]

    def counts(self):
        """{word: [1, 2, ..., n]}."""
        total = Counter(w for _, text, _ in self.records for w in words(text))
        return {w: [str(k) for k in range(1, n + 1)] for w, n in total.items()}

    def window_sums(self):
        """{"source@windowStart": the running sums of its lines' word counts, in input order}."""
        sums = defaultdict(list)
        for source, text, ts in self.records:
            key = f"{source}@{ts // WINDOW_MS * WINDOW_MS}"
            sums[key].append(str((int(sums[key][-1]) if sums[key] else 0) + len(words(text))))
        return dict(sums)

    def produce(self, bootstrap, start, end):
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                             "linger.ms": 5, "message.timeout.ms": 120000})
        for source, text, ts in self.records[start:end]:
            producer.produce(INPUT, key=source.encode(), value=text.encode(), timestamp=ts)
            producer.poll(0)
        assert producer.flush(120) == 0, "input not acknowledged"


class LostPosition(Exception):
    """An output reader was told its position is gone (raised past the waits' error handling)."""


class Output:
    """Everything a read_committed consumer has read of a topic so far: {key: [values in offset
    order]} (a key always goes to one partition). It never skips: a position the brokers call
    invalid (after a leader change, the new leader's answer to OffsetForLeaderEpoch) fails the
    test rather than resetting."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.values = defaultdict(list)
        self.errors = []
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                                  "isolation.level": "read_committed", "enable.auto.commit": False,
                                  "auto.offset.reset": "error"})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    def read(self, timeout=0.5):
        for m in self.consumer.consume(1000, timeout=timeout):
            if m.error() is None:
                self.values[m.key().decode()].append(m.value().decode())
            elif m.error().code() == KafkaError._AUTO_OFFSET_RESET:
                raise LostPosition(f"the reader of {self.topic} lost its position: {m.error()}")
            elif m.error().code() != KafkaError._PARTITION_EOF:
                self.errors.append(str(m.error()))
        return self

    def last(self):
        return {k: v[-1] for k, v in self.values.items()}

    def close(self):
        self.consumer.close()


def mismatches(expected, seen):
    """Keys whose last value is not the expected one, as (key, expected, seen) for a message."""
    return [(k, v, seen.get(k)) for k, v in sorted(expected.items()) if seen.get(k) != v] + \
        [(k, None, v) for k, v in sorted(seen.items()) if k not in expected]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_word_count_and_windowed_sum_survive_a_broker_kill(cluster, streams_app, guarantee):
    data = Input()
    for t in (INPUT, COUNTS, WINDOWED):
        cluster.create_topic(t, partitions=PARTITIONS, replication=3, config={"min.insync.replicas": "2"})
    application_id = f"wordcount-{guarantee.replace('_', '-')}"
    app = streams_app(cluster.bootstrap, application_id, guarantee, INPUT, COUNTS, WINDOWED)

    def running():
        app.assert_alive()
        return app.states[-1:] == ["RUNNING"]

    wait_until(running, 120, f"the Streams application RUNNING (states so far {app.states})")

    counts, windows = Output(cluster.bootstrap, COUNTS), Output(cluster.bootstrap, WINDOWED)
    try:
        third = LINES // 3
        data.produce(cluster.bootstrap, 0, third)

        def some_output():
            app.assert_alive()
            return len(counts.read().values) > 0

        wait_until(some_output, 90, "the first counts")

        admin = cluster.admin()
        group = admin.describe_consumer_groups([application_id])[application_id].result(timeout=30)
        victim = cluster.node(group.coordinator.id)
        led = {t: [p for p, (leader, _, _) in cluster.partitions(t).items() if leader == victim.id]
               for t in (INPUT, COUNTS, f"{application_id}-words-repartition")}
        print(f"\n{guarantee}: killing node {victim.id}, the group coordinator, leader of {led}")
        victim.kill()

        data.produce(cluster.bootstrap, third, 2 * third)
        cluster.restart(victim)
        data.produce(cluster.bootstrap, 2 * third, LINES)

        expected_counts, expected_sums = data.counts(), data.window_sums()
        final_counts = {w: v[-1] for w, v in expected_counts.items()}
        final_sums = {k: v[-1] for k, v in expected_sums.items()}

        def final():
            app.assert_alive()
            counts.read(), windows.read()
            return counts.last() == final_counts and windows.last() == final_sums

        try:
            wait_until(final, 120, "the final counts and sums")
        except AssertionError as e:
            raise AssertionError(
                f"{e}\n{guarantee}: (key, expected, last seen) counts {mismatches(final_counts, counts.last())[:10]} "
                f"sums {mismatches(final_sums, windows.last())[:10]}; consumer errors "
                f"{(counts.errors + windows.errors)[:5]}\n{app.log_tail()}") from None

        print(f"{guarantee}: {LINES} lines, {sum(len(v) for v in expected_counts.values())} words; read "
              f"{sum(len(v) for v in counts.values.values())} count updates, "
              f"{sum(len(v) for v in windows.values.values())} window updates; application states {app.states}")
        for name, expected, seen in (("counts", expected_counts, counts.values), ("sums", expected_sums, windows.values)):
            for key, values in expected.items():
                if guarantee == "exactly_once_v2":
                    assert seen[key] == values, f"{name} of {key!r}: read {seen[key]}, expected {values}"
                else:
                    missing = [v for v in values if v not in seen[key]]
                    assert not missing, f"{name} of {key!r}: updates {missing[:10]} never read (read {seen[key]})"
    finally:
        counts.close()
        windows.close()
    assert app.stop() == 0, app.log_tail()
