"""Fixtures for the Kafka Streams suite: a 3-node Strom cluster and the Java Streams application of
this directory (pom.xml, src/), run as a subprocess. scripts/install-test-deps.sh compiles it with
`mvn -q -B package`, which also writes its runtime classpath to target/classpath.txt."""

import subprocess
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "lib"))
from broker import BROKER_BIN  # noqa: E402
from cluster import Cluster  # noqa: E402
from process import stop  # noqa: E402

CLASSES = HERE / "target" / "classes"
CLASSPATH = HERE / "target" / "classpath.txt"
MAIN = "dev.strom.tests.streams.WordCountApp"


def pytest_configure(config):
    built = CLASSES / (MAIN.replace(".", "/") + ".class")
    newest_source = max(s.stat().st_mtime for s in (HERE / "src").rglob("*.java"))
    if not CLASSPATH.is_file() or not built.is_file() or built.stat().st_mtime < newest_source:
        raise pytest.UsageError(f"the Streams application is not built or is older than its sources: "
                                f"run `mvn -q -B -f {HERE / 'pom.xml'} package` (scripts/install-test-deps.sh)")


@pytest.fixture
def cluster(tmp_path):
    """Three combined nodes; every process is killed at the end."""
    c = Cluster(BROKER_BIN, tmp_path / "cluster", combined=3,
                overrides={"transaction.state.log.num.partitions": "3", "default.replication.factor": "3"})
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


class StreamsApp:
    """The Streams application as a subprocess: its stdout lines are collected as they come (it prints
    "STATE <state>" on every change), its stderr goes to a log file."""

    def __init__(self, workdir, bootstrap, application_id, guarantee, input_topic, counts, windowed):
        self.log_path = workdir / f"{application_id}.log"
        state_dir = workdir / f"{application_id}-state"
        state_dir.mkdir()
        cp = f"{CLASSES}:{CLASSPATH.read_text().strip()}"
        argv = ["java", "-Xmx256m", "-cp", cp, MAIN, bootstrap, application_id, guarantee, input_topic, counts,
                windowed, str(state_dir)]
        self.lines = []
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def states(self):
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("STATE ")]

    def log_tail(self, chars=4000):
        return self.log_path.read_text(errors="replace")[-chars:]

    def assert_alive(self):
        assert self.proc.poll() is None, (f"the Streams application exited with {self.proc.returncode}; "
                                          f"states {self.states}:\n{self.log_tail()}")

    def stop(self, timeout=60):
        """SIGTERM, which closes the streams; the exit code (it is killed after `timeout` s)."""
        stop(self.proc, timeout=timeout)
        self._reader.join(timeout=5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def streams_app(tmp_path):
    """A factory of running Streams applications; each is stopped at the end."""
    started = []

    def start(*args):
        app = StreamsApp(tmp_path, *args)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
