"""Fixtures for the security suite: the test PKI and secured strom-broker processes (their
properties are in secure_settings.py).

`secure_broker` (one per session) serves three client listeners:
  SSL             client certificate required (principal User:CN=<cn>)
  SASL_SSL        SCRAM-SHA-256 and SCRAM-SHA-512 (no client certificate)
  SASL_PLAINTEXT  PLAIN, users admin and alice from the listener's JAAS line
with the StandardAuthorizer on, no access without an ACL, super users User:CN=broker,
User:CN=admin and User:admin, and admin's SCRAM credentials seeded with --add-scram.
`tls_controller_broker` has an SSL client listener and a TLS controller listener."""

import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from broker import Broker  # noqa: E402
from clients import ADMIN_PASSWORD, sasl_conf, ssl_conf  # noqa: E402
from pki import make_pki  # noqa: E402
from secure_settings import (  # noqa: E402
    CLIENT_LISTENERS,
    SEED_ADMIN,
    secure_broker_overrides,
    tls_controller_overrides,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def _session_broker(tmp_path_factory, name, overrides, extra_args=(), listeners=("SSL",)):
    broker = Broker(tmp_path_factory.mktemp(name) / "data", overrides, extra_args, listeners)
    broker.start(timeout=60)
    return broker


@pytest.fixture(scope="session")
def secure_broker(pki, tmp_path_factory):
    broker = _session_broker(tmp_path_factory, "secure", secure_broker_overrides(pki), SEED_ADMIN,
                             CLIENT_LISTENERS)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tls_controller_broker(pki, tmp_path_factory):
    broker = _session_broker(tmp_path_factory, "tls-controller", tls_controller_overrides(pki))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def admin_conf(secure_broker, pki):
    """confluent-kafka settings of a super user on `listener` of the secured broker: the
    CN=admin certificate on SSL, admin's SCRAM-SHA-512 on SASL_SSL, admin's PLAIN on
    SASL_PLAINTEXT."""

    def conf(listener="SSL"):
        address = secure_broker.address(listener)
        if listener == "SSL":
            return ssl_conf(address, pki, pki.admin)
        if listener == "SASL_SSL":
            return sasl_conf(address, "SCRAM-SHA-512", "admin", ADMIN_PASSWORD, pki)
        return sasl_conf(address, "PLAIN", "admin", ADMIN_PASSWORD)

    return conf


@pytest.fixture
def start_broker(tmp_path):
    """Starts a broker (Broker's arguments) for one test; every one is killed at the end."""
    started = []

    def start(overrides, extra_args=(), listeners=("SSL",)):
        broker = Broker(tmp_path / f"data{len(started)}", overrides, extra_args, listeners)
        started.append(broker)
        return broker.start(timeout=60)

    yield start
    for broker in started:
        broker.kill()


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:10]}"


def pytest_configure(config):
    # kafka-python loads its protocol schemas with importlib.resources calls Python 3.11
    # deprecates, once per schema.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")
