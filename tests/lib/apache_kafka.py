"""Apache Kafka brokers from the jars scripts/install-test-deps.sh copies into
${STROM_CACHE:-~/.cache/strom}/kafka/lib, run through scripts/kafka-tool on loopback: one
combined broker+controller node (the differential suite, the benchmark), or several forming a
quorum (the benchmark's failover runs)."""

import base64
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

from cluster import ClusterClient
from kafka_checks import wait_until
from ports import free_port
from process import stop
from wire import Connection, metadata_v4, metadata_v4_broker_ids

ROOT = Path(__file__).resolve().parents[2]
KAFKA_TOOL = ROOT / "scripts" / "kafka-tool"
KAFKA_LIB = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "kafka" / "lib"

LEADER_ID = re.compile(r"^LeaderId:\s+(-?\d+)", re.MULTILINE)


def new_cluster_id():
    """A random cluster id as Kafka writes them (a UUID in URL-safe base64), not starting with
    "-", which the storage tool's argument parser would take for an option."""
    for _ in range(100):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
    raise RuntimeError("no cluster id without a leading '-' in 100 tries")


class KafkaNode:
    """One Apache Kafka broker+controller process in `workdir` with its own ports. `heap` goes to
    KAFKA_HEAP_OPTS; `props` are added to its server.properties."""

    def __init__(self, workdir, node_id=1, heap="-Xmx512m -Xms512m", props=None):
        self.workdir = Path(workdir)
        self.id = node_id
        self.port = free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.props = dict(props or {})
        self.proc = None
        self.config = self.workdir / "server.properties"
        self.log_path = self.workdir / "kafka.log"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def address(self):
        return self.bootstrap

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def format(self, cluster_id, quorum):
        """Writes server.properties and formats the log directory. `quorum`: the static
        `controller.quorum.voters` of a cluster, or None for a quorum of this node alone."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.id),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.workdir / "data"),
            **({"controller.quorum.voters": quorum} if quorum else
               {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}),
            **self.props,
        }
        self.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        args = [str(KAFKA_TOOL), "storage", "format", "-t", cluster_id, "-c", str(self.config)]
        if not quorum:
            args.append("--standalone")
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-storage format exited {done.returncode}: {done.stdout}{done.stderr}")

    def launch(self):
        """Starts the server without waiting for it. kafka-tool execs java, so `proc.pid` is the JVM's."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(KAFKA_TOOL), "server", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "KAFKA_HEAP_OPTS": self.heap})
        log.close()

    def ready(self):
        """Whether this node's Metadata lists it among the brokers (registered and unfenced)."""
        if not self.running:
            raise RuntimeError(f"Apache Kafka node {self.id} exited: {self.log_path.read_text()[-3000:]}")
        try:
            with Connection(self.port, timeout=2) as conn:
                return self.id in metadata_v4_broker_ids(conn.request(3, 4, metadata_v4([])))
        except OSError:
            return False

    def start(self, timeout=90):
        """Formats a quorum of this node alone, launches it and waits until it serves."""
        self.format(new_cluster_id(), None)
        self.launch()
        try:
            wait_until(self.ready, timeout, f"Apache Kafka node {self.id} serving", interval=0.3)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout=30):
        """SIGTERM (a controlled shutdown), then SIGKILL after `timeout` s."""
        stop(self.proc, timeout=timeout)
        self.proc = None

    def kill(self):
        """Crash: SIGKILL."""
        stop(self.proc, signal.SIGKILL)
        self.proc = None


class KafkaCluster(ClusterClient):
    """`size` Apache Kafka nodes, each broker and controller, with static voters: the same
    interface as cluster.Cluster where the benchmark's failover run uses it."""

    client_config = {}

    def __init__(self, base, size=3, heap="-Xmx1g -Xms1g", props=None):
        self.nodes = [KafkaNode(Path(base) / f"kafka{i}", i, heap, props) for i in range(1, size + 1)]

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def bootstrap(self):
        return ",".join(n.address for n in self.nodes if n.running)

    def start(self, timeout=120):
        cluster_id = new_cluster_id()
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for n in self.nodes:
            n.format(cluster_id, voters)
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            wait_until(n.ready, timeout, f"Apache Kafka node {n.id} serving", interval=0.5)
        return self

    def restart(self, node, timeout=120):
        node.launch()
        wait_until(node.ready, timeout, f"Apache Kafka node {node.id} serving again", interval=0.5)

    def shutdown(self):
        for n in self.nodes:
            n.kill()

    def active_controller(self):
        """The quorum's leader as kafka-metadata-quorum reports it; None when none answers."""
        controllers = ",".join(f"127.0.0.1:{n.controller_port}" for n in self.nodes if n.running)
        done = subprocess.run([str(KAFKA_TOOL), "metadata-quorum", "--bootstrap-controller", controllers,
                               "describe", "--status"], capture_output=True, text=True, timeout=60)
        m = LEADER_ID.search(done.stdout)
        return int(m.group(1)) if done.returncode == 0 and m and int(m.group(1)) >= 0 else None
