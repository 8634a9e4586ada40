"""Several strom-broker processes on loopback ports or in network namespaces: the cluster
fault suite's fixtures and the benchmark's failover runs."""

import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_checks import FAST, wait_until
from ports import free_port


class Node:
    """One strom-broker process with its own ports and data directory, on loopback or inside
    a network namespace (`netns`) with its own address."""

    def __init__(self, binary, node_id, roles, data_dir, voters, overrides, netns=None, listener="PLAINTEXT",
                 extra_args=()):
        self.binary = binary
        self.id = node_id
        self.extra_args = list(extra_args)
        self.listener = listener
        self.roles = roles
        self.data_dir = Path(data_dir)
        self.netns = netns
        if netns is None:
            self.host = "127.0.0.1"
            self.port, self.controller_port, self.http_port = free_port(), free_port(), free_port()
        else:
            self.host = netns.address
            self.port, self.controller_port, self.http_port = 9092, 9093, 9644
        self.voters = voters
        self.overrides = overrides
        self.proc = None
        self.log_path = self.data_dir.parent / f"node{node_id}.log"

    @property
    def is_broker(self):
        return "broker" in self.roles

    @property
    def is_controller(self):
        return "controller" in self.roles

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    def launch(self):
        listeners = []
        if self.is_broker:
            listeners.append(f"{self.listener}://{self.host}:{self.port}")
        if self.is_controller:
            listeners.append(f"CONTROLLER://{self.host}:{self.controller_port}")
        props = {
            "node.id": str(self.id),
            "process.roles": ",".join(self.roles),
            "listeners": ",".join(listeners),
            "controller.quorum.voters": self.voters(),
            "log.dirs": str(self.data_dir),
            "metrics.listener": f"{self.host}:{self.http_port}",
            **FAST,
            **self.overrides,
        }
        args = [] if self.netns is None else ["ip", "netns", "exec", self.netns.name]
        args.append(str(self.binary))
        for k, v in props.items():
            args += ["--override", f"{k}={v}"]
        args += self.extra_args
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def ready(self):
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"node {self.id} exited: {self.log_path.read_text()[-3000:]}")
        return self.readyz()[0] == 200

    def readyz(self):
        """(HTTP status, body) of /readyz; (None, error) when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/readyz", timeout=1) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def metric(self, name):
        """The first sample of a metric on this node's /metrics."""
        with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/metrics", timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """Graceful stop: SIGTERM, which runs a controlled shutdown."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"node {self.id} did not stop within {timeout}s")
        self.proc = None

    def kill(self):
        """Crash: SIGKILL."""
        if self.running:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


def run(*args):
    subprocess.run(args, check=True, capture_output=True)


class Namespace:
    """A network namespace joined to a bridge by a veth pair; cutting the pair's host end
    takes the namespace off the network (this kernel has no netem)."""

    def __init__(self, bridge, index):
        self.name = f"strom-{os.getpid()}-{index}"
        self.veth = f"sv{os.getpid() % 100000}n{index}"
        self.address = f"10.213.0.{index}"
        run("ip", "netns", "add", self.name)
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        run("ip", "link", "set", self.veth, "master", bridge, "up")
        run("ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "netns", "exec", self.name, "ip", "link", "set", "eth0", "up")
        run("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")

    def cut(self):
        run("ip", "link", "set", self.veth, "down")

    def heal(self):
        run("ip", "link", "set", self.veth, "up")

    def delete(self):
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Network:
    """A bridge with the test process at 10.213.0.254 and one namespace per node."""

    def __init__(self):
        self.bridge = f"strombr{os.getpid() % 100000}"
        self.namespaces = []
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", "10.213.0.254/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def namespace(self):
        ns = Namespace(self.bridge, len(self.namespaces) + 1)
        self.namespaces.append(ns)
        return ns

    def delete(self):
        for ns in self.namespaces:
            ns.delete()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class ClusterClient:
    """What a client sees of a cluster: an admin client and the state of a topic's partitions.
    Subclasses give `bootstrap` and `client_config`."""

    def admin(self):
        return AdminClient({"bootstrap.servers": self.bootstrap, **self.client_config})

    def create_topic(self, name, partitions=3, replication=3, config=None):
        admin = self.admin()
        futures = admin.create_topics([NewTopic(name, partitions, replication, config=config or {})], operation_timeout=30)
        futures[name].result(timeout=60)
        self.wait_isr(name, replication)

    def partitions(self, topic):
        """{partition: (leader, replicas, isrs)} from a Metadata request; empty when none
        answered in time (a new client bootstraps from one node at random, and a SIGSTOPped
        node accepts connections without ever answering)."""
        try:
            md = self.admin().list_topics(topic, timeout=10)
        except KafkaException:
            return {}
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return {}
        return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in t.partitions.values()}

    def leader(self, topic, partition):
        return self.partitions(topic).get(partition, (-1,))[0]

    def wait_isr(self, topic, size, timeout=60):
        def full():
            parts = self.partitions(topic)
            return parts and all(len(isr) >= size and leader >= 0 for leader, _, isr in parts.values())

        wait_until(full, timeout, f"every partition of {topic} with an ISR of {size}")


class Cluster(ClusterClient):
    """`binary` run as combined nodes (broker,controller) or dedicated controllers plus brokers, on loopback
    or each in its own network namespace. Brokers serve one client listener named `listener`;
    the suite's own clients (admin) add `client_config` (TLS or SASL settings) to theirs.
    `node_overrides(node_id)` adds properties of one node (its own certificate); `extra_args`
    go to every node's command line (`--add-scram`)."""

    def __init__(self, binary, base, combined=0, controllers=0, brokers=0, overrides=None, network=None,
                 listener="PLAINTEXT", client_config=None, node_overrides=None, extra_args=()):
        self.nodes = []
        self.network = network
        self.client_config = dict(client_config or {})
        overrides = dict(overrides or {})
        voters = lambda: ",".join(f"{n.id}@{n.host}:{n.controller_port}" for n in self.nodes if n.is_controller)
        layout = [["broker", "controller"]] * combined + [["controller"]] * controllers + [["broker"]] * brokers
        for i, roles in enumerate(layout, start=1):
            netns = network.namespace() if network else None
            own = {**overrides, **(node_overrides(i) if node_overrides else {})}
            self.nodes.append(Node(binary, i, roles, Path(base) / f"node{i}", voters, own, netns, listener, extra_args))

    @property
    def brokers(self):
        return [n for n in self.nodes if n.is_broker]

    @property
    def controllers(self):
        return [n for n in self.nodes if n.is_controller]

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    @property
    def bootstrap(self):
        return ",".join(n.address for n in self.brokers if n.running)

    def start(self, timeout=60):
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            wait_until(n.ready, timeout, f"node {n.id} ready")
        return self

    def restart(self, node, timeout=60):
        node.launch()
        wait_until(node.ready, timeout, f"node {node.id} ready again")

    def shutdown(self):
        for n in self.nodes:
            n.kill()
        if self.network:
            self.network.delete()

    def active_controller(self):
        """The node id the voters report as the Raft leader."""
        for n in self.controllers:
            if n.running:
                try:
                    leader = n.metric("strom_kraft_current_leader")
                except OSError:
                    continue
                if leader is not None and leader >= 0:
                    return int(leader)
        return None
