"""Fixtures for the cluster fault suite: several strom-broker processes on loopback ports or
in network namespaces (tests/lib/cluster.py). The writer and the loss check live in
tests/lib/kafka_checks.py."""

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from cluster import Cluster, Network  # noqa: E402

BROKER_BIN = Path(os.environ.get("BROKER_BIN", ROOT / "target" / "release" / "strom-broker"))


@pytest.fixture
def cluster(tmp_path):
    """A factory of clusters; every process is killed at the end."""
    made = []

    def make(netns=False, **layout):
        c = Cluster(BROKER_BIN, tmp_path / f"cluster{len(made)}", network=Network() if netns else None, **layout)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.shutdown()


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:10]}"
