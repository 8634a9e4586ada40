"""Fixtures for the hostile-client suite: brokers (tests/lib/broker.py), each one watched by a
`Health` check, and a summary of the memory every case used."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker import Broker  # noqa: E402
from health import MEASURED, Health  # noqa: E402


def _start(data_dir, overrides, budget_mb, warm_up=True):
    broker = Broker(data_dir, overrides)
    broker.start()
    try:
        return broker, Health(broker, budget_mb, warm_up)
    except BaseException:
        broker.kill()
        raise


@pytest.fixture
def start_broker(tmp_path):
    """Starts a broker with `overrides` and returns (broker, its Health with `budget_mb` of RSS
    above the measured baseline, after a client round trip unless `warm_up` is False); every
    broker is killed when the test ends."""
    started = []

    def start(overrides=None, budget_mb=64, warm_up=True):
        broker, health = _start(tmp_path / f"data{len(started)}", overrides, budget_mb, warm_up)
        started.append(broker)
        return broker, health

    yield start
    for broker in started:
        broker.kill()


@pytest.fixture(scope="module")
def module_broker(request, tmp_path_factory):
    """One broker for a module whose tests do not need their own; its settings come from the
    module's BROKER_OVERRIDES and its RSS budget from RSS_BUDGET_MB."""
    overrides = getattr(request.module, "BROKER_OVERRIDES", {})
    budget = getattr(request.module, "RSS_BUDGET_MB", 64)
    broker, health = _start(tmp_path_factory.mktemp("hostile") / "data", overrides, budget)
    yield broker, health
    broker.kill()


def pytest_configure(config):
    # kafka-python (its batch builder and CRC-32C, used by tests/lib/wire.py) loads its
    # schemas with importlib.resources calls Python 3.11 deprecates, once per schema.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


def pytest_terminal_summary(terminalreporter):
    if not MEASURED:
        return
    terminalreporter.section("hostile clients: broker RSS (MiB)")
    terminalreporter.write_line(f"{'case':<58} {'baseline':>8} {'peak':>6} {'bound':>6}")
    for case, baseline, peak, bound in MEASURED:
        terminalreporter.write_line(f"{case:<58} {baseline:>8.1f} {peak:>6.1f} {bound:>6.1f}")
