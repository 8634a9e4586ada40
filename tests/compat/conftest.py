"""Fixtures for the real-client compatibility suite: start and stop strom-broker processes."""

import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
from broker import BROKER_BIN, Broker  # noqa: E402,F401
from ports import free_port  # noqa: E402,F401


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A broker shared by the tests that do not restart it."""
    b = Broker(tmp_path_factory.mktemp("shared") / "data", {"log.retention.check.interval.ms": "500"}).start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path):
    """A factory for brokers a test may crash and restart; all are stopped at the end."""
    started = []

    def make(overrides=None):
        b = Broker(tmp_path / f"data{len(started)}", overrides)
        started.append(b)
        return b

    yield make
    for b in started:
        b.kill()


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:10]}"
