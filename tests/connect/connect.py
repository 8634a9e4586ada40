"""A Kafka Connect distributed worker (org.apache.kafka.connect.cli.ConnectDistributed) run from
the jars scripts/install-test-deps.sh copies into ${STROM_CACHE:-~/.cache/strom}/connect/lib
(tests/connect/pom.xml), and its REST API."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ports import free_port
from process import stop

HERE = Path(__file__).resolve().parent
CONNECT_LIB = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "connect" / "lib"


class RestError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Worker:
    """One distributed worker of the Connect cluster `group` whose config, offset and status
    topics live on `bootstrap`, with a REST listener on a loopback port. `start()` waits until it
    has joined the group and read the config topic; `stop()` is a clean shutdown (SIGTERM)."""

    def __init__(self, workdir, bootstrap, group="connect", replication=3, extra=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.props = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "config.storage.topic": f"{group}-configs",
            "offset.storage.topic": f"{group}-offsets",
            "status.storage.topic": f"{group}-status",
            "config.storage.replication.factor": str(replication),
            "offset.storage.replication.factor": str(replication),
            "status.storage.replication.factor": str(replication),
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "listeners": f"http://127.0.0.1:{self.port}",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(self.port),
            "offset.flush.interval.ms": "500",
            # The connectors come with ServiceLoader manifests: no need to scan every jar.
            "plugin.discovery": "service_load",
            **(extra or {}),
        }
        self.proc = None
        self.log_path = self.workdir / "worker.log"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=90):
        props = self.workdir / "worker.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.props.items()))
        argv = ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                "-cp", f"{CONNECT_LIB}/*", "org.apache.kafka.connect.cli.ConnectDistributed", str(props)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Connect worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # A worker answers /connectors only once it has joined the group and caught up
                # with the config topic (before that the REST API answers 409 or 500).
                self.get("/connectors")
                return self
            except (OSError, RestError):
                time.sleep(0.5)
        self.kill()
        raise AssertionError(f"Connect worker not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars=4000):
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout=60):
        """Clean shutdown: SIGTERM, which stops the tasks and commits their offsets."""
        stop(self.proc, timeout=timeout)
        self.proc = None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise RestError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def get(self, path):
        return self.request("GET", path)

    def put_connector(self, name, config, timeout=60):
        """Creates or updates connector `name`, retrying while the group rebalances (409)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.request("PUT", f"/connectors/{name}/config", config)
            except RestError as e:
                if e.status != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def running(self, name):
        """True when connector `name` and all its tasks (at least one) report RUNNING; fails
        the test when any of them FAILED."""
        try:
            status = self.get(f"/connectors/{name}/status")
        except RestError:
            return False
        states = [status["connector"]["state"]] + [t["state"] for t in status["tasks"]]
        for t in status["tasks"]:
            assert t["state"] != "FAILED", f"{name} task {t['id']} failed:\n{t.get('trace')}"
        assert status["connector"]["state"] != "FAILED", f"{name} failed:\n{status['connector'].get('trace')}"
        return bool(status["tasks"]) and all(s == "RUNNING" for s in states)
