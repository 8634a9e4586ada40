"""Apache Kafka 4.4 (one combined broker+controller node, KRaft, from the jars in
~/.cache/strom/kafka/lib) and one Strom node, both started once per session, and the record of
every field compared between them (compare.py), summed up at the end of the session."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from apache_kafka import KAFKA_LIB, KafkaNode  # noqa: E402
from broker import Broker  # noqa: E402
from compare import RESULTS, summary  # noqa: E402

# Settings both brokers get, so that a group forms at once and the offsets topic is small.
COMMON = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}


def pytest_configure(config):
    if not KAFKA_LIB.is_dir():
        raise pytest.UsageError(f"Apache Kafka is not installed in {KAFKA_LIB}: run scripts/install-test-deps.sh")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    node = KafkaNode(tmp_path_factory.mktemp("kafka"), props=COMMON)
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.fixture(scope="session")
def strom(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("strom") / "data", COMMON)
    try:
        yield b.start()
    finally:
        b.stop()


@pytest.fixture(scope="session")
def both(kafka, strom):
    """{"kafka": bootstrap, "strom": bootstrap}."""
    return {"kafka": kafka.bootstrap, "strom": strom.bootstrap}


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        for line in summary():
            terminalreporter.write_line(line)
