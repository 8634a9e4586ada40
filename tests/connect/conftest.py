"""Fixtures for Kafka Connect against Strom: a 3-node Strom cluster (combined nodes) and a way
to start distributed Connect workers on it, stopped at the end of each test (connect.py)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from broker import BROKER_BIN  # noqa: E402
from cluster import Cluster  # noqa: E402
from connect import CONNECT_LIB, Worker  # noqa: E402


def pytest_configure(config):
    if not CONNECT_LIB.is_dir():
        raise pytest.UsageError(f"Kafka Connect is not installed in {CONNECT_LIB}: run scripts/install-test-deps.sh")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(BROKER_BIN, tmp_path_factory.mktemp("cluster"), combined=3)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def workers(cluster, tmp_path):
    """`workers(group)` starts a Connect worker of the Connect cluster `group` on Strom; every
    worker started is killed at the end of the test."""
    started = []

    def start(group, **kwargs):
        w = Worker(tmp_path / f"worker{len(started) + 1}", cluster.bootstrap, group=group, **kwargs)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.kill()
