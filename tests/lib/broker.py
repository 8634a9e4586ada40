"""A single strom-broker process on loopback ports with its own data directory, as the
compatibility and hostile-client suites start them."""

import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from ports import free_port
from process import stop

ROOT = Path(__file__).resolve().parents[2]
BROKER_BIN = Path(os.environ.get("BROKER_BIN", ROOT / "target" / "release" / "strom-broker"))


class Broker:
    """One strom-broker process on loopback ports with its own data directory: one port per
    client listener in `listeners` (names, PLAINTEXT by default; `port` is the first one's),
    a controller listener, `overrides` as `--override key=value` and `extra_args` appended to
    the command line."""

    def __init__(self, data_dir, overrides=None, extra_args=(), listeners=("PLAINTEXT",)):
        self.data_dir = Path(data_dir)
        self.ports = {name: free_port() for name in listeners}
        self.port = self.ports[listeners[0]]
        self.controller_port = free_port()
        self.http_port = free_port()
        self.overrides = dict(overrides or {})
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def address(self, listener):
        """host:port of the client listener named `listener`."""
        return f"127.0.0.1:{self.ports[listener]}"

    def start(self, timeout=30):
        props = {
            "listeners": ",".join([*(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items()),
                                   f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.data_dir),
            "metrics.listener": f"127.0.0.1:{self.http_port}",
            **self.overrides,
        }
        args = [str(BROKER_BIN)]
        for k, v in props.items():
            args += ["--override", f"{k}={v}"]
        args += self.extra_args
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("broker did not become ready")

    def stop(self):
        """Graceful stop (SIGTERM)."""
        stop(self.proc)
        self.proc = None

    def kill(self):
        """Crash stop (SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def metrics(broker):
    """{(name, frozenset of label pairs): value} of the broker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def metric(broker, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, l), v in metrics(broker).items() if n == name and want <= l)
