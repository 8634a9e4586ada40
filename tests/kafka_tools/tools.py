"""Runs Apache Kafka's command-line tools through scripts/kafka-tool and parses what they print."""

import os
import re
import subprocess
import threading
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from process import stop

ROOT = Path(__file__).resolve().parents[2]
KAFKA_TOOL = ROOT / "scripts" / "kafka-tool"
KAFKA_LIB = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "kafka" / "lib"


class Target:
    """What a test needs of a single node or a cluster: its bootstrap address, broker ids and
    the replication factor its topics get."""

    def __init__(self, name, bootstrap, broker_ids, replication, addresses=()):
        self.name = name
        self.bootstrap = bootstrap
        self.broker_ids = broker_ids
        self.replication = replication
        self.addresses = list(addresses) or [bootstrap]

    def admin(self):
        return AdminClient({"bootstrap.servers": self.bootstrap})


def run(tool, *args, timeout=60, input=None, ok=True):
    """Runs `kafka-tool TOOL ARGS`; with `ok`, fails the test unless it exits 0."""
    done = subprocess.run([str(KAFKA_TOOL), tool, *map(str, args)], input=input, capture_output=True, text=True,
                          timeout=timeout)
    if ok:
        assert done.returncode == 0, (f"kafka-tool {tool} {' '.join(map(str, args))} exited {done.returncode}\n"
                                      f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def admin_tool(tool, target, *args, **kwargs):
    """A tool that takes --bootstrap-server, against `target`."""
    return run(tool, "--bootstrap-server", target.bootstrap, *args, **kwargs)


class Background:
    """A tool left running (a console consumer, a verifiable producer): its stdout lines are
    collected as they come; stop() ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, tool, *args):
        self.argv = [str(KAFKA_TOOL), tool, *map(str, args)]
        self.lines = []
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        self.stderr = []
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True)]
        for r in self._readers:
            r.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait(self, timeout):
        """Waits for the tool to exit by itself; its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{' '.join(self.argv[1:])} still running after {timeout}s:\n"
                                 + "\n".join(self.stderr[-30:]))

    def stop(self, timeout=30):
        stop(self.proc, timeout=timeout)
        for r in self._readers:
            r.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def describe_topic(text):
    """kafka-topics --describe of one topic: ({PartitionCount, ReplicationFactor, Configs},
    {partition: {leader, replicas, isr}})."""
    summary, partitions = None, {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+): ?([^\t]*)", line))
        if "PartitionCount" in fields:
            configs = fields.get("Configs", "").strip()
            summary = {
                "PartitionCount": int(fields["PartitionCount"]),
                "ReplicationFactor": int(fields["ReplicationFactor"]),
                "Configs": dict(kv.split("=", 1) for kv in configs.split(",")) if configs else {},
            }
        elif "Partition" in fields:
            partitions[int(fields["Partition"])] = {
                "leader": int(fields["Leader"]),
                "replicas": [int(r) for r in fields["Replicas"].split(",")],
                "isr": sorted(int(r) for r in fields["Isr"].split(",")),
            }
    assert summary is not None, f"no topic in:\n{text}"
    return summary, partitions


def config_entries(text):
    """kafka-configs --describe: {name: the whole line as the tool prints it, without indent}."""
    entries = {}
    for line in text.splitlines():
        m = re.match(r"^  ([a-z0-9._-]+)=", line)
        if m:
            entries[m.group(1)] = line.strip()
    return entries


def table(text):
    """A table that kafka-consumer-groups prints: one dict per row, keyed by the header's
    column names (the header is the first line whose first column is GROUP or TOPIC)."""
    rows, header = [], None
    for line in text.splitlines():
        cols = line.split()
        if not cols:
            continue
        if cols[0] in ("GROUP", "TOPIC"):
            header = cols
        elif header and len(cols) == len(header):
            rows.append(dict(zip(header, cols)))
    return rows


def tab_table(text):
    """A tab-separated table with a header line (kafka-transactions)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = [c.strip() for c in lines[0].split("\t") if c.strip()]
    return [dict(zip(header, (c.strip() for c in line.split("\t")))) for line in lines[1:]]


def offsets(text):
    """kafka-get-offsets: {(topic, partition): offset}."""
    found = {}
    for line in text.splitlines():
        topic, partition, offset = line.rsplit(":", 2)
        found[(topic, int(partition))] = int(offset)
    return found


def retry(action, timeout, what):
    """`action()` again until it returns without AssertionError, for tool output that reflects
    a change a moment later (metadata propagating to every node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except AssertionError as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}") from e
            time.sleep(0.5)
