"""Fixtures for Kafka Connect against Strom: a 3-node Strom cluster (combined nodes), a second,
single-node Strom cluster for MirrorMaker 2 to copy into, and a way to start distributed Connect
workers on either, stopped at the end of each test (connect.py)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from broker import BROKER_BIN, Broker  # noqa: E402
from cluster import Cluster  # noqa: E402
from kafka_checks import FAST  # noqa: E402
from connect import CONNECT_LIB, Worker  # noqa: E402


def pytest_configure(config):
    if not CONNECT_LIB.is_dir():
        raise pytest.UsageError(f"Kafka Connect is not installed in {CONNECT_LIB}: run scripts/install-test-deps.sh")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.call_failed = report.failed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(BROKER_BIN, tmp_path_factory.mktemp("cluster"), combined=3)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def target(tmp_path):
    b = Broker(tmp_path / "target", FAST)
    try:
        yield b.start()
    finally:
        b.kill()


@pytest.fixture
def workers(request, cluster, tmp_path):
    """`workers(group)` starts a Connect worker of the Connect cluster `group` whose internal
    topics are on the 3-node cluster (or on `bootstrap`, with `replication`); every worker
    started is killed at the end of the test, and its log shown if the test failed."""
    started = []

    def start(group, bootstrap=None, **kwargs):
        w = Worker(tmp_path / f"worker{len(started) + 1}", bootstrap or cluster.bootstrap, group=group, **kwargs)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.kill()
        if getattr(request.node, "call_failed", False):
            print(f"\n--- {w.log_path}:\n{w.log_tail()}")
