"""Apache Kafka 4.4 (one combined broker+controller node, KRaft, from the jars in
~/.cache/strom/kafka/lib) and one Strom node, both started once per session, and the record of
every field compared between them (compare.py), summed up at the end of the session."""

import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka.protocol.metadata import MetadataRequest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
sys.path.insert(0, str(HERE))
from broker import Broker  # noqa: E402
from compare import RESULTS, summary  # noqa: E402
from ports import free_port  # noqa: E402
from process import stop  # noqa: E402
from raw import Raw  # noqa: E402

ROOT = HERE.parents[1]
KAFKA_TOOL = ROOT / "scripts" / "kafka-tool"
KAFKA_LIB = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "kafka" / "lib"

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


def new_cluster_id():
    """A random cluster id as Kafka writes them (a UUID in URL-safe base64), not starting with
    "-", which the storage tool's argument parser would take for an option."""
    for _ in range(100):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
    raise RuntimeError("no cluster id without a leading '-' in 100 tries")


class KafkaNode:
    """An Apache Kafka broker+controller in `workdir`, formatted standalone (a quorum of one)."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.controller_port = free_port()
        self.proc = None
        self.log_path = self.workdir / "kafka.log"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=90):
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            **COMMON,
        }
        config = self.workdir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        cluster_id = new_cluster_id()
        done = subprocess.run([str(KAFKA_TOOL), "storage", "format", "--standalone", "-t", cluster_id,
                               "-c", str(config)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-storage format exited {done.returncode}: {done.stdout}{done.stderr}")
        env = {**os.environ, "KAFKA_HEAP_OPTS": "-Xmx512m -Xms512m"}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(KAFKA_TOOL), "server", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-3000:]}")
            try:
                with Raw(self.bootstrap, timeout=2) as r:
                    if r.request(MetadataRequest, 12, topics=[]).brokers:
                        return self
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Apache Kafka did not start in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def stop(self):
        stop(self.proc, timeout=30)
        self.proc = None


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    node = KafkaNode(tmp_path_factory.mktemp("kafka"))
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
