"""Fixtures for Apache Kafka's command-line tools against Strom: a single node and a 3-node
cluster (both with the StandardAuthorizer, every plaintext client a super user, so that the ACL
tool has an authorizer to talk to), and `target`, which runs a test once against each. The tools
run through scripts/kafka-tool (tools.py)."""

import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from broker import BROKER_BIN, Broker  # noqa: E402
from cluster import Cluster  # noqa: E402
from kafka_checks import FAST  # noqa: E402
from tools import KAFKA_LIB, Target  # noqa: E402

AUTHORIZED = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:ANONYMOUS",
}


def pytest_configure(config):
    if not KAFKA_LIB.is_dir():
        raise pytest.UsageError(f"Apache Kafka is not installed in {KAFKA_LIB}: run scripts/install-test-deps.sh")


@pytest.fixture(scope="session")
def single(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("single") / "data", {**FAST, **AUTHORIZED}).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Three combined nodes; leaders move back only when a test asks (leader-election)."""
    c = Cluster(BROKER_BIN, tmp_path_factory.mktemp("cluster"), combined=3,
                overrides={**AUTHORIZED, "auto.leader.rebalance.enable": "false"})
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(params=["single", "cluster"])
def target(request):
    if request.param == "single":
        b = request.getfixturevalue("single")
        return Target("single", b.bootstrap, [1], 1)
    c = request.getfixturevalue("cluster")
    return Target("cluster", c.bootstrap, [n.id for n in c.brokers], 3, [n.address for n in c.brokers])


@pytest.fixture
def plain_broker(tmp_path):
    """A single node without an authorizer."""
    b = Broker(tmp_path / "data", FAST)
    try:
        yield b.start()
    finally:
        b.kill()


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def group():
    return f"g-{uuid.uuid4().hex[:10]}"
