"""Side-by-side benchmark: the same loads against Strom, Apache Kafka 4.4 and Tansu, each broker alone on
the machine while measured.

Prints produce (acks=1 and acks=all) and consume throughput (msgs/s, MB/s) with rdkafka_performance
and with Kafka's kafka-producer-perf-test / kafka-consumer-perf-test, produce latency p50/p99/p999
at a fixed rate, each broker's start-to-serving time and RSS (idle, and its peak under the loads),
for each message size, then Strom's ratios to the peers, and the cost of TLS (an SSL listener, and
SASL_SSL with SCRAM-SHA-512) beside plaintext, transactions, and failover times of a 3-node
cluster of Strom and one of Apache Kafka at default session settings. Then loads over many partitions (12 partitions written by
4 producers at once, and 1,000 partitions written by one) and a latency sweep at fixed shares of
each broker's peak produce rate. With --scale-partitions, what many partitions cost 3 nodes (RSS,
creation, Metadata and restart times). Numbers are printed, never asserted.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))
from apache_kafka import KAFKA_LIB, KAFKA_TOOL, KafkaCluster, KafkaNode, new_cluster_id  # noqa: E402
from cluster import Cluster  # noqa: E402
from kafka_checks import FAST, Writer, wait_until  # noqa: E402
from pki import make_pki  # noqa: E402
from wire import Connection, metadata_v4, metadata_v4_broker_ids  # noqa: E402

# The SCRAM user of the SASL_SSL run.
BENCH_USER, BENCH_PASSWORD = "bench", "bench-secret"

PRODUCED = re.compile(r"% (\d+) messages produced \((\d+) bytes\).* in (\d+)ms")
CONSUMED = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms")
# kafka-producer-perf-test's lines every 5 s and its summary, the last: records sent and records/sec.
JAVA_PRODUCED = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec", re.MULTILINE)

# Apache Kafka's heap in the benchmark (kafka-server-start.sh's default), and what one node needs
# beside its defaults: internal topics of one replica.
KAFKA_HEAP = "-Xms1g -Xmx1g"
KAFKA_SINGLE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}
# The goals for Strom against Apache Kafka on this machine, as Strom's figure over Kafka's: at least
# this for throughput, at most this for the others.
THROUGHPUT_GOAL, P99_GOAL, IDLE_RSS_GOAL, START_GOAL, FAILOVER_GOAL = 1.5, 1 / 5, 1 / 20, 1 / 50, 1 / 3

# The multi-producer load: partitions of its topic, and rdkafka_performance processes at once.
SPREAD_PARTITIONS, SPREAD_PRODUCERS = 12, 4
# The latency sweep: shares of the peak produce rate, and each step's length (seconds, records).
SWEEP_SHARES = (0.25, 0.5, 0.75)
SWEEP_SECONDS, SWEEP_MAX_COUNT = 3, 500_000
# Longest run of one rdkafka_performance process in the loads above.
LOAD_TIMEOUT = 300
# Longest run of one of Kafka's perf tools: far above what any broker here needs.
JAVA_TIMEOUT = 120
# librdkafka's reconnect.backoff.max.ms (its default), in seconds: the longest a client waits
# before it connects again to a broker it could not reach.
RECONNECT_BACKOFF_MAX = 10
# How long a broker idles between serving and the idle RSS sample.
IDLE_SECONDS = 5
# The scale run: partitions per topic, and topics per CreateTopics request.
SCALE_TOPIC_PARTITIONS, SCALE_TOPICS_PER_REQUEST = 100, 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("broker did not open its port")


def wait_brokers(bootstrap, count, client, timeout=60):
    """Waits until Metadata lists `count` brokers (a cluster's nodes are all unfenced)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **client})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(admin.list_topics(timeout=5).brokers) >= count:
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {count} brokers after {timeout}s")


class Strom:
    """One node (acks=1), or a cluster of combined nodes with replication factor = nodes and
    acks=all. `durable`: every append is fsynced before it is acknowledged (flush.messages=1,
    one fsync shared by the appends waiting for it)."""

    def __init__(self, binary, workdir, nodes=1, durable=False, security=None, pki=None):
        self.name = "strom" if nodes == 1 else f"strom-{nodes}"
        if durable:
            self.name += "-fsync"
        if security:
            self.name += "-" + security.lower().replace("_", "-")
        protocol = security or "PLAINTEXT"
        self.replication = nodes
        self.acks = "1" if nodes == 1 else "-1"
        ports = [(free_port(), free_port(), free_port()) for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c, _) in enumerate(ports))
        self.port = ports[0][0]
        self.bootstrap = ",".join(f"127.0.0.1:{p}" for p, _, _ in ports)
        self.commands = [
            [binary,
             "--override", f"node.id={i + 1}",
             "--override", f"listeners={protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
             "--override", f"controller.quorum.voters={voters}",
             "--override", f"metrics.listener=127.0.0.1:{http}",
             "--override", f"log.dirs={workdir / f'{self.name}-data-{i + 1}'}"]
            for i, (port, controller, http) in enumerate(ports)
        ]
        if durable:
            for command in self.commands:
                command += ["--override", "log.flush.interval.messages=1"]
        self.client = {}
        if security:
            for command in self.commands:
                command += ["--override", f"ssl.keystore.location={pki.broker.keystore}",
                            "--override", f"ssl.truststore.location={pki.ca}",
                            "--override", f"inter.broker.listener.name={protocol}",
                            "--override", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                            "--override", f"listener.name.{protocol.lower()}.scram-sha-512.sasl.jaas.config="
                                          "org.apache.kafka.common.security.scram.ScramLoginModule required "
                                          f'username="{BENCH_USER}" password="{BENCH_PASSWORD}";',
                            "--add-scram", f"SCRAM-SHA-512=[name={BENCH_USER},password={BENCH_PASSWORD}]"]
            self.client = {"security.protocol": security, "ssl.ca.location": str(pki.ca)}
            if security == "SASL_SSL":
                self.client.update({"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": BENCH_USER,
                                    "sasl.password": BENCH_PASSWORD})
        self.ports = [p for p, _, _ in ports]
        self.cwd = workdir
        self.env = {"RUST_LOG": "warn"}
        self.storage = ("Strom, segmented log on disk, fsync before every acknowledgement (flush.messages=1), "
                        "group commit" if durable else
                        "Strom, segmented log on disk (page cache, Kafka's default flush policy)")
        if nodes > 1:
            self.storage += f"; {nodes} combined nodes, replication factor {nodes}, acks=all"
        if security:
            self.storage += f"; {security} listener" + (" (SCRAM-SHA-512)" if security == "SASL_SSL" else "")

    def prepare(self):
        """Nothing to do before the first start."""


class Tansu:
    name = "tansu"
    replication = 1
    acks = "1"
    client = {}

    def __init__(self, binary, workdir):
        self.port = free_port()
        self.ports = [self.port]
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.commands = [[binary, "broker", "--listener-url", url, "--advertised-listener-url", url]]
        self.cwd = workdir / "tansu-run"
        self.cwd.mkdir(exist_ok=True)
        self.env = {"RUST_LOG": "warn"}
        self.storage = "Tansu 0.6.0, memory:// (its default engine)"

    def prepare(self):
        """Nothing to do before the first start."""


class ApacheKafka:
    """Apache Kafka 4.4.0, one combined broker+controller node (KRaft) with KAFKA_HEAP."""

    name = "kafka"
    replication = 1
    acks = "1"
    client = {}

    def __init__(self, workdir):
        self.node = KafkaNode(workdir / "kafka-run", heap=KAFKA_HEAP, props=KAFKA_SINGLE_NODE)
        self.port = self.node.port
        self.ports = [self.port]
        self.bootstrap = self.node.bootstrap
        self.commands = [[str(KAFKA_TOOL), "server", str(self.node.config)]]
        self.cwd = self.node.workdir
        self.env = {"KAFKA_HEAP_OPTS": KAFKA_HEAP}
        self.storage = (f"Apache Kafka 4.4.0, segmented log on disk (page cache, its default flush policy), "
                        f"heap {KAFKA_HEAP}, G1")

    def prepare(self):
        """Writes server.properties and formats the log directory (not part of the start time)."""
        self.node.format(new_cluster_id(), None)


def run_perf(perf, args, timeout=600):
    out = subprocess.run([perf, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"rdkafka_performance failed: {(out.stdout + out.stderr)[-2000:]}")
    return out.stdout + out.stderr


def run_perfs(perf, runs, timeout):
    """Runs rdkafka_performance once per argument list in `runs`, all at once, and returns their
    outputs. All of them are killed when one fails or `timeout` seconds pass."""
    with tempfile.TemporaryDirectory() as tmp:
        outputs = [open(Path(tmp) / f"{i}.out", "w+") for i in range(len(runs))]
        procs = [subprocess.Popen([perf, *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                 for args, out in zip(runs, outputs)]
        deadline = time.monotonic() + timeout
        try:
            for proc in procs:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        texts = []
        for proc, out in zip(procs, outputs):
            out.seek(0)
            texts.append(out.read())
            out.close()
            if proc.returncode != 0:
                raise RuntimeError(f"rdkafka_performance failed: {texts[-1][-2000:]}")
    return texts


def summary(pattern, out):
    """The (messages, bytes, ms) of rdkafka_performance's produce or consume summary line."""
    m = pattern.search(out)
    if not m:
        raise RuntimeError(f"no summary in: {out[-1000:]}")
    return tuple(map(int, m.groups()))


def create_topic(broker, topic, partitions):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client})
    admin.create_topics([NewTopic(topic, partitions, broker.replication)])[topic].result(timeout=60)


def perf_args(broker, topic, size):
    """rdkafka_performance's arguments for `topic` on `broker`, `size`-byte messages, quiet."""
    args = ["-b", broker.bootstrap, "-t", topic, "-s", str(size), "-q"]
    for key, value in broker.client.items():
        args += ["-X", f"{key}={value}"]
    return args


def latency_quantiles(path):
    """The 1,000-quantiles (ms) of the per-message latencies (µs) rdkafka_performance -A wrote."""
    latencies = sorted(int(line) / 1000.0 for line in path.read_text().split() if line)
    return statistics.quantiles(latencies, n=1000) if len(latencies) > 1 else [float("nan")] * 999


def measure(perf, broker, size, count, latency_rate, latency_count, workdir):
    """rdkafka_performance on a topic of one partition: produce `count` messages with the broker's
    acks (and, for one node, again with acks=all), consume them, then produce `latency_count`
    at `latency_rate` msgs/s for the latencies."""
    topic = f"bench-{size}"
    create_topic(broker, topic, 1)
    common = [*perf_args(broker, topic, size), "-p", "0"]

    def produce(acks):
        return summary(PRODUCED, run_perf(
            perf, ["-P", *common, "-c", str(count), "-a", acks, "-X", "linger.ms=5", "-X", "batch.size=1000000"]))

    produced, produced_bytes, produce_ms = produce(broker.acks)
    consumed, consumed_bytes, consume_ms = summary(CONSUMED, run_perf(
        perf, ["-C", *common, "-c", str(count), "-o", "beginning", "-e"]))
    all_produced, _, all_ms = produce("-1") if broker.acks != "-1" else (produced, 0, produce_ms)

    latency_file = workdir / f"latency-{broker.name}-{size}.txt"
    run_perf(perf, ["-P", *common, "-c", str(latency_count), "-a", broker.acks, "-r", str(latency_rate),
                    "-l", "-A", str(latency_file), "-X", "linger.ms=0"])
    q = latency_quantiles(latency_file)
    return {
        "produce_msgs": produced / (produce_ms / 1000),
        "produce_mb": produced_bytes / (produce_ms / 1000) / 1e6,
        "consume_msgs": consumed / (consume_ms / 1000),
        "consume_mb": consumed_bytes / (consume_ms / 1000) / 1e6,
        "produce_all_msgs": all_produced / (all_ms / 1000),
        "p50_ms": q[499],
        "p99_ms": q[989],
        "p999_ms": q[998],
        "produced": produced,
        "consumed": consumed,
    }


def measure_java(broker, size, count):
    """Kafka's kafka-producer-perf-test (the broker's acks, linger.ms=5 and batch.size as
    rdkafka_performance's run) writes `count` `size`-byte records to a topic of one partition,
    then kafka-consumer-perf-test reads them in a group. Consume throughput is its fetch rate,
    which leaves out the group's join. A batch the broker has not acknowledged in 40 s fails the
    run (delivery.timeout.ms, 120 s by default), as does a send blocked that long (max.block.ms)."""
    topic = f"bench-java-{size}"
    create_topic(broker, topic, 1)
    client = [f"{key}={value}" for key, value in broker.client.items()]
    out = subprocess.run(
        [str(KAFKA_TOOL), "producer-perf-test", "--topic", topic, "--num-records", str(count),
         "--record-size", str(size), "--throughput", "-1", "--command-property",
         f"bootstrap.servers={broker.bootstrap}", f"acks={broker.acks}", "linger.ms=5", "batch.size=1000000",
         "delivery.timeout.ms=40000", "max.block.ms=40000", *client],
        capture_output=True, text=True, timeout=JAVA_TIMEOUT)
    lines = JAVA_PRODUCED.findall(out.stdout)
    if out.returncode != 0 or not lines or int(lines[-1][0]) != count:
        raise RuntimeError(f"kafka-producer-perf-test failed: {(out.stdout + out.stderr)[-2000:]}")
    produce_msgs = float(lines[-1][1])
    out = subprocess.run(
        [str(KAFKA_TOOL), "consumer-perf-test", "--bootstrap-server", broker.bootstrap, "--topic", topic,
         "--num-records", str(count), "--hide-header", "--timeout", "60000",
         "--command-property", "auto.offset.reset=earliest", *client],
        capture_output=True, text=True, timeout=JAVA_TIMEOUT)
    fields = [f.strip() for f in (out.stdout.strip().splitlines() or [""])[-1].split(",")]
    if out.returncode != 0 or len(fields) != 10 or int(fields[4]) < count:
        raise RuntimeError(f"kafka-consumer-perf-test failed: {(out.stdout + out.stderr)[-2000:]}")
    consume_msgs = float(fields[9])
    return {"produce_msgs": produce_msgs, "produce_mb": produce_msgs * size / 1e6,
            "consume_msgs": consume_msgs, "consume_mb": consume_msgs * size / 1e6}


def serving_seconds(port, proc, started, brokers, timeout=120):
    """Seconds from `started` until the broker on `port` answers a Metadata request that lists
    `brokers` brokers, polled every 5 ms."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with Connection(port, timeout=2) as conn:
                if len(metadata_v4_broker_ids(conn.request(3, 4, metadata_v4([])))) >= brokers:
                    return time.monotonic() - started
        except (OSError, struct.error, AssertionError):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"broker not serving after {timeout}s")


class PeakRss:
    """Samples the summed RSS of `pids` every 0.2 s in a thread until stopped; `peak` is the
    largest sum, in MB."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, sum(rss_mb(pid) for pid in self.pids))
            except OSError:
                return
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def measure_partitions(perf, broker, size, count, partitions, producers):
    """After an unmeasured first write to every partition, `producers` rdkafka_performance
    processes at once write `count` `size`-byte messages in all (linger.ms=5, each message to a
    random partition) to a topic of `partitions` partitions, then one consumer reads everything
    from all partitions. Produce throughput is the sum of the producers' counts over the time of
    the slowest."""
    topic = f"bench-{partitions}p-{size}"
    create_topic(broker, topic, partitions)
    common = perf_args(broker, topic, size)
    produce = ["-P", *common, "-a", broker.acks, "-X", "linger.ms=5",
               "-X", "batch.size=1000000", "-X", "sticky.partitioning.linger.ms=0"]
    # A first write to every partition, unmeasured: the time a broker takes to create the
    # partitions' files is not the load's throughput.
    warm_up = max(10 * partitions, count // 20)
    run_perf(perf, [*produce, "-c", str(warm_up)], LOAD_TIMEOUT)
    produce += ["-c", str(count // producers)]
    totals = [summary(PRODUCED, out) for out in run_perfs(perf, [produce] * producers, LOAD_TIMEOUT)]
    produced, produced_bytes = sum(t[0] for t in totals), sum(t[1] for t in totals)
    produce_ms = max(t[2] for t in totals)

    every_partition = [arg for p in range(partitions) for arg in ("-p", str(p))]
    consumed, consumed_bytes, consume_ms = summary(CONSUMED, run_perf(
        perf, ["-C", *common, *every_partition, "-c", str(produced + warm_up), "-o", "beginning", "-e"],
        LOAD_TIMEOUT))
    return {
        "produce_msgs": produced / (produce_ms / 1000),
        "produce_mb": produced_bytes / (produce_ms / 1000) / 1e6,
        "consume_msgs": consumed / (consume_ms / 1000),
        "consume_mb": consumed_bytes / (consume_ms / 1000) / 1e6,
    }


def measure_sweep(perf, broker, peak, workdir):
    """Produce latency of 100-byte messages (linger.ms=0, to the one partition of `measure`'s topic
    bench-100) at each of SWEEP_SHARES of `peak` msgs/s, for about SWEEP_SECONDS each (at most
    SWEEP_MAX_COUNT messages). rdkafka_performance paces whole microseconds per message, so the
    target rate is the nearest it can pace (at most 1,000,000 msgs/s). Returns
    {share: {target and achieved msgs/s, p50, p99 and p999 in ms}}."""
    steps = {}
    for share in SWEEP_SHARES:
        rate = 1_000_000 // max(1, round(1_000_000 / (peak * share)))
        count = min(max(rate * SWEEP_SECONDS, 100), SWEEP_MAX_COUNT)
        latency_file = workdir / f"sweep-{broker.name}-{share}.txt"
        out = run_perf(perf, ["-P", *perf_args(broker, "bench-100", 100), "-p", "0", "-c", str(count),
                              "-a", broker.acks, "-r", str(rate), "-l", "-A", str(latency_file),
                              "-X", "linger.ms=0"], LOAD_TIMEOUT)
        produced, _, produce_ms = summary(PRODUCED, out)
        q = latency_quantiles(latency_file)
        steps[share] = {"target": rate, "achieved": produced / (produce_ms / 1000),
                        "p50_ms": q[499], "p99_ms": q[989], "p999_ms": q[998]}
    return steps


def attempt(step, *args):
    """`step(*args)`, or, when it fails (a limit of the peer, for example), "n/a: " and the reason."""
    try:
        return step(*args)
    except subprocess.TimeoutExpired as e:
        return f"n/a: timed out after {e.timeout:.0f}s"
    except Exception as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return f"n/a: {type(e).__name__}: {lines[-1][:160] if lines else ''}"


def measure_transactions(broker, count, per_txn):
    """Produces `count` 100-byte records with confluent-kafka: idempotent (`per_txn` None), or in
    transactions of `per_txn` records, each committed before the next begins. Returns msgs/s,
    and the commit latencies' p50 and p99 in ms for transactions."""
    topic = f"bench-txn-{per_txn or 'idempotent'}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, **broker.client})
    admin.create_topics([NewTopic(topic, 1, broker.replication)])[topic].result(timeout=30)
    config = {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5,
              "batch.size": 1000000, "queue.buffering.max.messages": 1000000, **broker.client}
    if per_txn:
        config["transactional.id"] = f"bench-{per_txn}"
    producer = Producer(config)
    value = b"x" * 100
    commits = []
    # Connections, metadata and the producer id are set up before the clock starts.
    if per_txn:
        producer.init_transactions(60)
        producer.begin_transaction()
    producer.produce(topic, value, partition=0)
    if per_txn:
        producer.commit_transaction(60)
    assert producer.flush(60) == 0
    start = time.monotonic()
    for first in range(0, count, per_txn or count):
        if per_txn:
            producer.begin_transaction()
        for _ in range(min(per_txn or count, count - first)):
            while True:
                try:
                    producer.produce(topic, value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.01)
        if per_txn:
            began = time.monotonic()
            producer.commit_transaction(60)
            commits.append((time.monotonic() - began) * 1000)
    assert producer.flush(60) == 0
    elapsed = time.monotonic() - start
    result = {"msgs": count / elapsed}
    if commits:
        q = statistics.quantiles(commits, n=100) if len(commits) > 1 else [commits[0]] * 99
        result.update(commit_p50=q[49], commit_p99=q[98])
    return result


def measure_failover(name, cluster, kills):
    """Starts `cluster`, 3 combined nodes (a Strom cluster.Cluster or an
    apache_kafka.KafkaCluster) at default session settings, and kills (SIGKILL) `kills` times a
    partition leader (not the active controller), then `kills` times the active controller,
    under an idempotent acks=all writer. After a victim is restarted, the next kill waits until
    RECONNECT_BACKOFF_MAX has passed: the writer tried to reach the victim while it was down,
    and a new leader it has not reconnected to since would otherwise be waited for by the
    client's backoff, not the broker's failover. Returns
    {fault: [seconds from the kill to the first acknowledgement of a record produced after it]}."""
    times = {"partition leader": [], "active controller": []}
    try:
        cluster.start()
        cluster.create_topic("failover", 3, 3, {"min.insync.replicas": "2"})
        writer = Writer(cluster.bootstrap, "failover", 3).start()
        try:
            wait_until(lambda: writer.acknowledged() > 500, 60, "the first acknowledged writes")
            for fault, seconds in times.items():
                for _ in range(kills):
                    active = wait_until(cluster.active_controller, 30, "an active controller")
                    if fault == "partition leader":
                        leaders = {leader for leader, _, _ in cluster.partitions("failover").values()}
                        victim = cluster.node(min(leaders - {active, -1}))
                    else:
                        victim = cluster.node(active)
                    led = [p for p, (leader, _, _) in cluster.partitions("failover").items() if leader == victim.id]
                    killed_at = time.monotonic()
                    victim.kill()
                    for p in led:
                        wait_until(lambda: writer.first_ack_after(p, killed_at), 60, f"an ack on partition {p}")
                    seconds.append(max(writer.first_ack_after(p, killed_at) for p in led) - killed_at)
                    print(f"... {name}: failover after a kill of the {fault}: {seconds[-1]:.2f}s", file=sys.stderr,
                          flush=True)
                    restarted = time.monotonic()
                    cluster.restart(victim)
                    cluster.wait_isr("failover", 3)
                    time.sleep(max(0.0, RECONNECT_BACKOFF_MAX - (time.monotonic() - restarted)))
        finally:
            writer.stop()
    finally:
        cluster.shutdown()
    return times


def rss_mb(pid):
    """The resident set of process `pid` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid):
    """User plus system CPU time process `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pids, seconds):
    """{pid: CPU % over `seconds`} of processes that should be idle."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    return {pid: 100 * (cpu_seconds(pid) - used) / seconds for pid, used in before.items()}


def timed(call, repeat):
    """The median seconds of `repeat` calls of `call`."""
    times = []
    for _ in range(repeat):
        start = time.monotonic()
        call()
        times.append(time.monotonic() - start)
    return statistics.median(times)


def measure_scale(binary, workdir, partitions, replication):
    """Creates `partitions` partitions (topics of SCALE_TOPIC_PARTITIONS each, `replication`
    replicas) on 3 combined nodes and prints what they cost as each figure is measured: the time
    to create them (until Metadata gives every one a leader and a full ISR), each node's RSS
    before and after, its open files and its CPU use with no client load, the Metadata response
    time for all topics and for one, and the time for a node to restart (SIGTERM, then start)
    and be back in every ISR it belongs to. A run stopped part way keeps what it printed."""
    def say(line):
        print(f"  {line}", flush=True)

    print(f"\nscale: {partitions:,} partitions in topics of {SCALE_TOPIC_PARTITIONS}, replication factor "
          f"{replication}, 3 combined nodes", flush=True)
    # Every node may hold a replica of every partition (max.broker.partitions is 5,000 by default).
    overrides = {"max.broker.partitions": str(partitions + 1000)}
    cluster = Cluster(binary, workdir / "scale", combined=3, overrides=overrides).start()
    try:
        idle_rss = {n.id: rss_mb(n.proc.pid) for n in cluster.nodes}
        say("RSS MB idle: " + ", ".join(f"node {n} {mb:.0f}" for n, mb in idle_rss.items()))
        admin = cluster.admin()
        topics = [f"scale-{i:05}" for i in range(-(-partitions // SCALE_TOPIC_PARTITIONS))]
        total = len(topics) * SCALE_TOPIC_PARTITIONS
        start = time.monotonic()
        for first in range(0, len(topics), SCALE_TOPICS_PER_REQUEST):
            batch = [NewTopic(t, SCALE_TOPIC_PARTITIONS, replication)
                     for t in topics[first:first + SCALE_TOPICS_PER_REQUEST]]
            for future in admin.create_topics(batch, operation_timeout=120).values():
                future.result(timeout=180)
            done = first + len(batch)
            if done % (len(topics) // 10 or 1) < SCALE_TOPICS_PER_REQUEST:
                say(f"... {done * SCALE_TOPIC_PARTITIONS:,} partitions answered after "
                    f"{time.monotonic() - start:.0f}s")
        say(f"create ({SCALE_TOPICS_PER_REQUEST} topics per request): every creation answered after "
            f"{time.monotonic() - start:.1f}s")

        def count(led_and_full):
            md = admin.list_topics(timeout=120)
            parts = [p for name, t in md.topics.items() if name.startswith("scale-") for p in t.partitions.values()]
            return sum(1 for p in parts if p.leader >= 0 and (not led_and_full or len(p.isrs) == replication))

        wait_until(lambda: count(False) == total, 600, "a leader for every partition", interval=2)
        say(f"every partition led after {time.monotonic() - start:.1f}s")
        wait_until(lambda: count(True) == total, 600, "every ISR full", interval=2)
        say(f"every ISR full after {time.monotonic() - start:.1f}s")
        say("RSS MB loaded, open files: " + "; ".join(
            f"node {n.id} {rss_mb(n.proc.pid):.0f}, {len(os.listdir(f'/proc/{n.proc.pid}/fd'))}"
            for n in cluster.nodes))
        idle = idle_cpu_percent([n.proc.pid for n in cluster.nodes], 20)
        say("CPU % with no client load (replica fetches only), over 20 s: " + ", ".join(
            f"node {n.id} {idle[n.proc.pid]:.0f}" for n in cluster.nodes))
        all_s = timed(lambda: admin.list_topics(timeout=120), 3)
        one_s = timed(lambda: admin.list_topics(topics[-1], timeout=30), 10)
        say(f"Metadata (confluent-kafka, median): all topics {all_s * 1000:.0f} ms, one topic {one_s * 1000:.1f} ms")
        restarted = cluster.nodes[-1]
        start = time.monotonic()
        restarted.stop(timeout=300)
        say(f"node {restarted.id} stopped (SIGTERM: controlled shutdown, every log flushed) after "
            f"{time.monotonic() - start:.1f}s")
        start = time.monotonic()
        cluster.restart(restarted, timeout=600)
        say(f"node {restarted.id} started again: serving after {time.monotonic() - start:.1f}s")
        wait_until(lambda: count(True) == total, 600, "every ISR full again", interval=2)
        say(f"node {restarted.id} back in every ISR after {time.monotonic() - start:.1f}s, "
            f"RSS {rss_mb(restarted.proc.pid):.0f} MB")
    finally:
        cluster.shutdown()


def run_scale(args):
    """The scale run in a working directory of its own; prints the reason if it stops part way."""
    workdir = Path(tempfile.mkdtemp(prefix="strom-scale-"))
    try:
        failure = attempt(measure_scale, args.strom, workdir, args.scale_partitions, args.scale_replication)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        print(f"  {failure}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--perf", required=True, help="rdkafka_performance binary")
    parser.add_argument("--strom", required=True, help="strom-broker binary")
    parser.add_argument("--tansu", help="tansu binary (a peer); omitted: no Tansu")
    parser.add_argument("--no-kafka", action="store_true", help="leave Apache Kafka out")
    parser.add_argument("--no-java-tools", action="store_true",
                        help="skip the kafka-producer-perf-test / kafka-consumer-perf-test runs")
    parser.add_argument("--count", type=int, default=2_000_000, help="100-byte messages per throughput run (a quarter as many of 1 KiB)")
    parser.add_argument("--latency-rate", type=int, default=10_000, help="msgs/s for the latency run")
    parser.add_argument("--latency-count", type=int, default=30_000)
    parser.add_argument("--cluster-nodes", type=int, default=3,
                        help="also run a Strom cluster of this many nodes (RF = nodes, acks=all); 1: skip")
    parser.add_argument("--no-tls", action="store_true", help="skip the SSL and SASL_SSL runs")
    parser.add_argument("--txn-count", type=int, default=200_000,
                        help="100-byte records per transactional run (confluent-kafka); 0: skip")
    parser.add_argument("--failover-kills", type=int, default=10,
                        help="kills of a partition leader, and of the active controller, in a 3-node cluster of Strom "
                             "and one of Apache Kafka; 0: skip")
    parser.add_argument("--no-multi-producer", action="store_true",
                        help=f"skip the {SPREAD_PARTITIONS} partitions x {SPREAD_PRODUCERS} producers load")
    parser.add_argument("--no-many-partitions", action="store_true", help="skip the many-partitions load")
    parser.add_argument("--partitions-many", type=int, default=1000,
                        help="partitions of the many-partitions load (--count / 4 100-byte messages)")
    parser.add_argument("--no-latency-sweep", action="store_true",
                        help="skip the latency sweep at shares of the peak produce rate")
    parser.add_argument("--scale-partitions", type=int, default=0,
                        help="also create this many partitions on 3 combined nodes and report the cost (100000 "
                             "for the scale run); 0: skip")
    parser.add_argument("--scale-replication", type=int, default=3, help="replication factor of the scale run")
    parser.add_argument("--scale-only", action="store_true", help="run only the scale run")
    args = parser.parse_args()
    if args.partitions_many < 1:
        parser.error("--partitions-many must be at least 1")

    if args.scale_only and not args.scale_partitions:
        parser.error("--scale-only needs --scale-partitions")

    if args.scale_only:
        run_scale(args)
        return
    if not args.no_kafka and not KAFKA_LIB.is_dir():
        parser.error(f"Apache Kafka is not installed in {KAFKA_LIB}: run scripts/install-test-deps.sh, or --no-kafka")
    workdir = Path(tempfile.mkdtemp(prefix="strom-bench-"))
    kinds = [Strom(args.strom, workdir), Strom(args.strom, workdir, durable=True)]
    if not args.no_tls:
        pki = make_pki(workdir / "pki")
        kinds += [Strom(args.strom, workdir, security=s, pki=pki) for s in ("SSL", "SASL_SSL")]
    kinds += [ApacheKafka(workdir)] if not args.no_kafka else []
    kinds += [Tansu(args.tansu, workdir)] if args.tansu else []
    if args.cluster_nodes > 1:
        kinds.append(Strom(args.strom, workdir, nodes=args.cluster_nodes))
    results = {}
    # The loads over many partitions, {(broker, size): result} and {broker: result}, the
    # latency sweep, {broker: steps}, and Kafka's perf tools, {(broker, size): result}; a failed
    # run's result is its reason.
    spread, many, sweep, java = {}, {}, {}, {}
    # {broker: {"start_s", "idle_rss", "load_rss"}} (MB), for brokers on plaintext listeners.
    resources = {}
    try:
        for broker in kinds:
            broker.prepare()
            log = open(workdir / f"{broker.name}.log", "w")
            started = time.monotonic()
            procs = [subprocess.Popen(command, cwd=broker.cwd, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env={**os.environ, **broker.env})
                     for command in broker.commands]
            peak = None
            try:
                try:
                    if not broker.client:
                        resources[broker.name] = {
                            "start_s": serving_seconds(broker.port, procs[0], started, broker.replication)}
                    for port, proc in zip(broker.ports, procs):
                        wait_port(port, proc, timeout=60)
                except RuntimeError:
                    log.flush()
                    print((workdir / f"{broker.name}.log").read_text()[-3000:], file=sys.stderr)
                    raise
                wait_brokers(broker.bootstrap, broker.replication, broker.client)
                if broker.name in resources:
                    time.sleep(IDLE_SECONDS)
                    resources[broker.name]["idle_rss"] = sum(rss_mb(proc.pid) for proc in procs)
                    peak = PeakRss([proc.pid for proc in procs])
                for size in (100, 1024):
                    count = args.count if size == 100 else args.count // 4
                    print(f"... {broker.name}: {count} x {size} B", file=sys.stderr, flush=True)
                    results[(broker.name, size)] = measure(
                        args.perf, broker, size, count, args.latency_rate, args.latency_count, workdir)
                    if not args.no_java_tools and broker.name in ("strom", "kafka", "tansu", f"strom-{args.cluster_nodes}"):
                        print(f"... {broker.name}: {count} x {size} B, Kafka's perf tools", file=sys.stderr, flush=True)
                        java[(broker.name, size)] = attempt(measure_java, broker, size, count)
                if args.txn_count and isinstance(broker, Strom) and broker.name in ("strom", f"strom-{args.cluster_nodes}"):
                    for per_txn in (None, 100, 10_000):
                        print(f"... {broker.name}: {args.txn_count} x 100 B, transactions of {per_txn}",
                              file=sys.stderr, flush=True)
                        results[(broker.name, "txn", per_txn)] = measure_transactions(broker, args.txn_count, per_txn)
                if not args.no_multi_producer and broker.name in ("strom", "strom-fsync", "kafka", "tansu"):
                    for size in (1024, 100):
                        count = args.count if size == 100 else args.count // 4
                        print(f"... {broker.name}: {count} x {size} B, {SPREAD_PARTITIONS} partitions, "
                              f"{SPREAD_PRODUCERS} producers", file=sys.stderr, flush=True)
                        spread[(broker.name, size)] = attempt(
                            measure_partitions, args.perf, broker, size, count, SPREAD_PARTITIONS, SPREAD_PRODUCERS)
                if not args.no_many_partitions and broker.name in ("strom", "kafka", "tansu"):
                    print(f"... {broker.name}: {args.count // 4} x 100 B, {args.partitions_many} partitions",
                          file=sys.stderr, flush=True)
                    many[broker.name] = attempt(
                        measure_partitions, args.perf, broker, 100, args.count // 4, args.partitions_many, 1)
                if not args.no_latency_sweep and broker.name in ("strom", f"strom-{args.cluster_nodes}", "kafka", "tansu"):
                    print(f"... {broker.name}: latency sweep", file=sys.stderr, flush=True)
                    sweep[broker.name] = attempt(
                        measure_sweep, args.perf, broker, results[(broker.name, 100)]["produce_msgs"], workdir)
            finally:
                if peak:
                    resources[broker.name]["load_rss"] = peak.stop()
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        failover = {}
        if args.failover_kills:
            failover["strom"] = attempt(measure_failover, "strom", Cluster(args.strom, workdir / "failover", combined=3),
                                        args.failover_kills)
            if not args.no_kafka:
                failover["kafka"] = attempt(measure_failover, "kafka",
                                            KafkaCluster(workdir / "kafka-failover", 3, KAFKA_HEAP, FAST),
                                            args.failover_kills)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nrdkafka_performance, 1 partition, acks=1 unless noted, {os.cpu_count()} cores; acks=all: the same "
          f"produce with acks=all;\nlatency: {args.latency_count:,} messages at {args.latency_rate:,} msg/s, linger.ms=0")
    for broker in kinds:
        print(f"  {broker.name}: {broker.storage}")
    header = f"{'broker':<16}{'size':>6}{'produce msg/s':>15}{'MB/s':>8}{'acks=all msg/s':>16}{'consume msg/s':>15}" \
             f"{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'p999 ms':>9}"
    print(header)
    for key, r in results.items():
        if len(key) != 2:
            continue
        name, size = key
        print(f"{name:<16}{size:>6}{r['produce_msgs']:>15,.0f}{r['produce_mb']:>8.1f}{r['produce_all_msgs']:>16,.0f}"
              f"{r['consume_msgs']:>15,.0f}{r['consume_mb']:>8.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['p999_ms']:>9.2f}")
    if java:
        print("\nKafka's kafka-producer-perf-test (acks as above, linger.ms=5) and kafka-consumer-perf-test (its fetch "
              "rate,\nwithout the group's join), 1 partition")
        print_partition_table(java)
    if resources:
        print(f"\nstart to serving (from the process's start to a Metadata answer listing every broker), RSS {IDLE_SECONDS} s"
              "\nafter that (idle) and its peak over the loads above (all the broker's processes)")
        print(f"{'broker':<16}{'start ms':>10}{'idle RSS MB':>13}{'peak RSS MB':>13}")
        for name, r in resources.items():
            print(f"{name:<16}{r['start_s'] * 1000:>10.0f}{r.get('idle_rss', float('nan')):>13.1f}"
                  f"{r.get('load_rss', float('nan')):>13.1f}")
    print("\ndurable mode (fsync before the acknowledgement) / page cache")
    for size in (100, 1024):
        d, s = results[("strom-fsync", size)], results[("strom", size)]
        print(f"  {size:>5} B: produce {d['produce_msgs'] / s['produce_msgs']:.2f}x, "
              f"p99 latency {d['p99_ms'] / s['p99_ms']:.3g}x")
    if not args.no_tls:
        print("\nTLS / plaintext (throughput: lower is the cost; latency: higher is the cost)")
        for name in ("strom-ssl", "strom-sasl-ssl"):
            for size in (100, 1024):
                t, s = results[(name, size)], results[("strom", size)]
                print(f"  {name:<15}{size:>5} B: produce {t['produce_msgs'] / s['produce_msgs']:.2f}x, "
                      f"consume {t['consume_msgs'] / s['consume_msgs']:.2f}x, "
                      f"p99 latency {t['p99_ms'] / s['p99_ms']:.3g}x")
    txn_rows = [(key, r) for key, r in results.items() if len(key) == 3]
    if txn_rows:
        print("\ntransactions (confluent-kafka, 100 B records; the idempotent row is the same client without them)")
        print(f"{'broker':<16}{'records/txn':>12}{'msg/s':>12}{'vs idempotent':>15}{'commit p50 ms':>15}{'p99 ms':>9}")
        for (name, _, per_txn), r in txn_rows:
            base = results[(name, "txn", None)]["msgs"]
            commit = f"{r['commit_p50']:>15.2f}{r['commit_p99']:>9.2f}" if per_txn else ""
            print(f"{name:<16}{per_txn or 'idempotent':>12}{r['msgs']:>12,.0f}{r['msgs'] / base:>14.2f}x{commit}")
    if failover:
        print("\nfailover, 3 combined nodes, default session settings: from kill -9 to the first acknowledgement of a"
              "\nrecord produced after it, on every partition the victim led (idempotent acks=all writer, 2000 msg/s)")
        for name, times in failover.items():
            if isinstance(times, str):
                print(f"  {name:<8}{times}")
                continue
            for fault, seconds in times.items():
                print(f"  {name:<8}{fault:<18} min {min(seconds):.2f}s  median {statistics.median(seconds):.2f}s  "
                      f"max {max(seconds):.2f}s  over {len(seconds)} kills")
    if args.tansu:
        print("\nratio strom / tansu (throughput: higher is better; latency: lower is better)")
        for size in (100, 1024):
            s, t = results[("strom", size)], results[("tansu", size)]
            print(f"  {size:>5} B: produce {s['produce_msgs'] / t['produce_msgs']:.2f}x, "
                  f"consume {s['consume_msgs'] / t['consume_msgs']:.2f}x, "
                  f"p99 latency {s['p99_ms'] / t['p99_ms']:.3g}x")
    if not args.no_kafka:
        print_kafka_ratios(results, java, resources, failover)
    if spread:
        print(f"\n{SPREAD_PARTITIONS} partitions x {SPREAD_PRODUCERS} producers (rdkafka_performance processes at once, "
              "each message to a random partition;\nproduce: their sum over the time of the slowest), "
              f"then one consumer of all {SPREAD_PARTITIONS}")
        print_partition_table(spread)
        print("  durable / page cache: " + ", ".join(
            f"{size} B produce {durable_ratio(spread, size)}" for size in (1024, 100)) + " (goal at 1024 B: >= 0.60x)")
    if many:
        print(f"\n{args.partitions_many:,} partitions, 1 producer (each message to a random partition), "
              f"then one consumer of all {args.partitions_many:,}")
        print_partition_table({(name, 100): r for name, r in many.items()})
    if sweep:
        print("\nlatency sweep: 100 B, 1 partition, linger.ms=0, acks as above, at a share of the broker's peak 100 B"
              "\nproduce msg/s above (target: the nearest rate rdkafka_performance paces in whole µs per message;"
              "\nachieved: the rate it reached)")
        print(f"{'broker':<16}{'peak msg/s':>12}{'share':>6}{'target msg/s':>14}{'achieved':>12}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'p999 ms':>9}")
        for name, steps in sweep.items():
            peak = results[(name, 100)]["produce_msgs"]
            if isinstance(steps, str):
                print(f"{name:<16}{peak:>12,.0f}  {steps}")
                continue
            for share, r in steps.items():
                print(f"{name:<16}{peak:>12,.0f}{share:>6.0%}{r['target']:>14,}{r['achieved']:>12,.0f}"
                      f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['p999_ms']:>9.2f}")
    if args.scale_partitions:
        run_scale(args)


def print_kafka_ratios(results, java, resources, failover):
    """Strom's figures over Apache Kafka's from this run, each beside its goal (issue 20)."""
    def line(what, strom, kafka, goal, at_least):
        if not isinstance(strom, (int, float)) or not isinstance(kafka, (int, float)) or not kafka:
            print(f"  {what:<44} n/a")
            return
        ratio = strom / kafka
        if goal is None:
            print(f"  {what:<44}{ratio:>8.3g}x")
            return
        met = ratio >= goal if at_least else ratio <= goal
        print(f"  {what:<44}{ratio:>8.3g}x  (goal {'>=' if at_least else '<='} {goal:.3g}x: {'met' if met else 'missed'})")

    print("\nratio strom / kafka (Apache Kafka 4.4.0) in this run")
    for size in (100, 1024):
        s, k = results[("strom", size)], results[("kafka", size)]
        line(f"{size} B produce acks=1 msg/s", s["produce_msgs"], k["produce_msgs"], THROUGHPUT_GOAL, True)
        line(f"{size} B produce acks=all msg/s", s["produce_all_msgs"], k["produce_all_msgs"], THROUGHPUT_GOAL, True)
        line(f"{size} B consume msg/s", s["consume_msgs"], k["consume_msgs"], THROUGHPUT_GOAL, True)
        sj, kj = java.get(("strom", size)), java.get(("kafka", size))
        if isinstance(sj, dict) and isinstance(kj, dict):
            line(f"{size} B produce msg/s (Kafka's perf tool)", sj["produce_msgs"], kj["produce_msgs"], THROUGHPUT_GOAL, True)
            line(f"{size} B consume msg/s (Kafka's perf tool)", sj["consume_msgs"], kj["consume_msgs"], THROUGHPUT_GOAL, True)
        line(f"{size} B produce p99 latency", s["p99_ms"], k["p99_ms"], P99_GOAL, False)
        line(f"{size} B produce p999 latency", s["p999_ms"], k["p999_ms"], P99_GOAL, False)
    s, k = resources.get("strom", {}), resources.get("kafka", {})
    line("idle RSS", s.get("idle_rss"), k.get("idle_rss"), IDLE_RSS_GOAL, False)
    line("peak RSS under load", s.get("load_rss"), k.get("load_rss"), None, False)
    line("start to serving", s.get("start_s"), k.get("start_s"), START_GOAL, False)
    s, k = failover.get("strom"), failover.get("kafka")
    for fault in ("partition leader", "active controller"):
        if isinstance(s, dict) and isinstance(k, dict):
            line(f"failover, kill of the {fault} (median)", statistics.median(s[fault]),
                 statistics.median(k[fault]), FAILOVER_GOAL, False)


def print_partition_table(rows):
    """Prints {(broker, size): throughput, or the reason there is none} as a table."""
    print(f"{'broker':<16}{'size':>6}{'produce msg/s':>15}{'MB/s':>8}{'consume msg/s':>15}{'MB/s':>8}")
    for (name, size), r in rows.items():
        if isinstance(r, str):
            print(f"{name:<16}{size:>6}  {r}")
        else:
            print(f"{name:<16}{size:>6}{r['produce_msgs']:>15,.0f}{r['produce_mb']:>8.1f}"
                  f"{r['consume_msgs']:>15,.0f}{r['consume_mb']:>8.1f}")


def durable_ratio(rows, size):
    """strom-fsync's produce msgs/s over strom's for `size`, as text; "n/a" when either is missing."""
    d, s = rows.get(("strom-fsync", size)), rows.get(("strom", size))
    if not isinstance(d, dict) or not isinstance(s, dict):
        return "n/a"
    return f"{d['produce_msgs'] / s['produce_msgs']:.2f}x"


if __name__ == "__main__":
    main()
