"""Fixtures for Kafka's Java client against Strom: a single node and a 3-node cluster (combined
nodes, leaders moved only when a test asks), started once for the session."""

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
from broker import BROKER_BIN, Broker  # noqa: E402
from cluster import Cluster  # noqa: E402
from kafka_checks import FAST  # noqa: E402


def pytest_configure(config):
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise pytest.UsageError("Maven and a JDK are needed: run scripts/install-test-deps.sh")


@pytest.fixture(scope="session")
def single(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("single") / "data", FAST).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = Cluster(BROKER_BIN, tmp_path_factory.mktemp("cluster"), combined=3,
                overrides={"auto.leader.rebalance.enable": "false"})
    try:
        c.start()
        yield c
    finally:
        c.shutdown()
