"""quixstreams' exactly-once mode on three nodes: a stateful word count (repartition topic,
RocksDB store with a changelog topic, transactions) is killed with SIGKILL midway and started
again; read_committed, the output holds each word's counts 1..n exactly once."""

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafka_checks import wait_until

APP = Path(__file__).parent / "apps" / "quix_wordcount.py"
QUIX_PYTHON = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "venv-quix" / "bin" / "python"
WORDS = [f"w{i}" for i in range(12)]
RECORDS = 1200


def committed_output(bootstrap, topic, partitions):
    """Every output record (word, count) a read_committed consumer sees, to the end."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, ended = [], set()
    deadline = time.monotonic() + 60
    try:
        while len(ended) < partitions and time.monotonic() < deadline:
            for m in consumer.consume(500, timeout=1):
                if m.error() is None:
                    v = json.loads(m.value())
                    out.append((v["word"], v["count"]))
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(m.partition())
    finally:
        consumer.close()
    assert len(ended) == partitions, "the output was not read to its end"
    return out


def test_quixstreams_exactly_once_word_count_survives_a_kill(cluster, tmp_path):
    c = cluster(combined=3, overrides={"transaction.state.log.num.partitions": "3",
                                       "default.replication.factor": "3"})
    source, sink = f"words-{uuid.uuid4().hex[:6]}", f"counts-{uuid.uuid4().hex[:6]}"
    c.create_topic(source, partitions=3, replication=3)
    c.create_topic(sink, partitions=3, replication=3)
    producer = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True})
    for i in range(RECORDS):
        word = WORDS[(i * 7) % len(WORDS)]
        producer.produce(source, key=str(i).encode(), value=word.encode(), partition=i % 3)
    assert producer.flush(60) == 0

    group = f"quix-{uuid.uuid4().hex[:6]}"
    args = [str(QUIX_PYTHON), str(APP), c.bootstrap, source, sink, group, str(tmp_path / "state")]
    log = open(tmp_path / "app.log", "ab")

    first = subprocess.Popen(args + ["60"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # Kill it once some counts are committed, with transactions still to come.
        wait_until(lambda: len(committed_output(c.bootstrap, sink, 3)) >= RECORDS // 4 or first.poll() is not None,
                   120, "a quarter of the counts committed")
        assert first.poll() is None, f"the app stopped early: {(tmp_path / 'app.log').read_text()[-3000:]}"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    second = subprocess.Popen(args + ["8"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert second.wait(timeout=180) == 0, (tmp_path / "app.log").read_text()[-3000:]
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()

    out = committed_output(c.bootstrap, sink, 3)
    expected = Counter(WORDS[(i * 7) % len(WORDS)] for i in range(RECORDS))
    pairs = Counter(out)
    duplicates = [p for p, n in pairs.items() if n > 1]
    print(f"\nquixstreams exactly-once: {RECORDS} words, {len(out)} committed counts after a SIGKILL and restart")
    assert not duplicates, f"counts emitted twice: {duplicates[:10]}"
    for word, n in expected.items():
        counts = sorted(k for w, k in out if w == word)
        assert counts == list(range(1, n + 1)), f"{word}: {counts[:5]}... expected 1..{n}"
