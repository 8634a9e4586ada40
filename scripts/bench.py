"""Side-by-side benchmark: the same rdkafka_performance load against Strom and a peer broker.

Prints produce and consume throughput (msgs/s, MB/s) and produce latency p50/p99 for each
message size, then Strom's ratio to the peer, and the cost of TLS (an SSL listener, and
SASL_SSL with SCRAM-SHA-512) beside plaintext, transactions, and failover times of a 3-node
cluster at default session settings. Numbers are printed, never asserted.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lib"))
from cluster import Cluster  # noqa: E402
from kafka_checks import Writer, wait_until  # noqa: E402
from pki import make_pki  # noqa: E402

# The SCRAM user of the SASL_SSL run.
BENCH_USER, BENCH_PASSWORD = "bench", "bench-secret"

PRODUCED = re.compile(r"% (\d+) messages produced \((\d+) bytes\).* in (\d+)ms")
CONSUMED = re.compile(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms")


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
        self.storage = ("segmented log on disk, fsync before every acknowledgement (flush.messages=1), "
                        "group commit" if durable else
                        "segmented log on disk (page cache, Kafka's default flush policy)")
        if nodes > 1:
            self.storage += f"; {nodes} combined nodes, replication factor {nodes}, acks=all"
        if security:
            self.storage += f"; {security} listener" + (" (SCRAM-SHA-512)" if security == "SASL_SSL" else "")


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
        self.storage = "memory:// (its default engine)"


def run_perf(perf, args, timeout=600):
    out = subprocess.run([perf, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"rdkafka_performance failed: {out.stderr[-2000:]}")
    return out.stdout + out.stderr


def measure(perf, broker, size, count, latency_rate, latency_count, workdir):
    bootstrap = broker.bootstrap
    topic = f"bench-{size}"
    admin = AdminClient({"bootstrap.servers": bootstrap, **broker.client})
    admin.create_topics([NewTopic(topic, 1, broker.replication)])[topic].result(timeout=30)
    common = ["-b", bootstrap, "-t", topic, "-p", "0", "-s", str(size), "-q"]
    for key, value in broker.client.items():
        common += ["-X", f"{key}={value}"]

    out = run_perf(perf, ["-P", *common, "-c", str(count), "-a", broker.acks, "-X", "linger.ms=5",
                          "-X", "batch.size=1000000"])
    m = PRODUCED.search(out)
    if not m:
        raise RuntimeError(f"no produce summary in: {out[-1000:]}")
    produced, produced_bytes, produce_ms = map(int, m.groups())

    out = run_perf(perf, ["-C", *common, "-c", str(count), "-o", "beginning", "-e"])
    m = CONSUMED.search(out)
    if not m:
        raise RuntimeError(f"no consume summary in: {out[-1000:]}")
    consumed, consumed_bytes, consume_ms = map(int, m.groups())

    latency_file = workdir / f"latency-{broker.name}-{size}.txt"
    run_perf(perf, ["-P", *common, "-c", str(latency_count), "-a", broker.acks, "-r", str(latency_rate),
                    "-l", "-A", str(latency_file), "-X", "linger.ms=0"])
    latencies = sorted(int(line) / 1000.0 for line in latency_file.read_text().split() if line)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "produce_msgs": produced / (produce_ms / 1000),
        "produce_mb": produced_bytes / (produce_ms / 1000) / 1e6,
        "consume_msgs": consumed / (consume_ms / 1000),
        "consume_mb": consumed_bytes / (consume_ms / 1000) / 1e6,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "produced": produced,
        "consumed": consumed,
    }


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


def measure_failover(binary, workdir, kills):
    """Kills (SIGKILL) `kills` times a partition leader (not the active controller), then `kills`
    times the active controller, of 3 combined nodes at default session settings, under an
    idempotent acks=all writer. Returns
    {fault: [seconds from the kill to the first acknowledgement of a record produced after it]}."""
    cluster = Cluster(binary, workdir / "failover", combined=3).start()
    times = {"partition leader": [], "active controller": []}
    try:
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
                    print(f"... failover after a kill of the {fault}: {seconds[-1]:.2f}s", file=sys.stderr, flush=True)
                    cluster.restart(victim)
                    cluster.wait_isr("failover", 3)
        finally:
            writer.stop()
    finally:
        cluster.shutdown()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--perf", required=True, help="rdkafka_performance binary")
    parser.add_argument("--strom", required=True, help="strom-broker binary")
    parser.add_argument("--tansu", help="tansu binary (the peer); omitted: Strom alone")
    parser.add_argument("--count", type=int, default=2_000_000, help="100-byte messages per throughput run (a quarter as many of 1 KiB)")
    parser.add_argument("--latency-rate", type=int, default=10_000, help="msgs/s for the latency run")
    parser.add_argument("--latency-count", type=int, default=30_000)
    parser.add_argument("--cluster-nodes", type=int, default=3,
                        help="also run a Strom cluster of this many nodes (RF = nodes, acks=all); 1: skip")
    parser.add_argument("--no-tls", action="store_true", help="skip the SSL and SASL_SSL runs")
    parser.add_argument("--txn-count", type=int, default=200_000,
                        help="100-byte records per transactional run (confluent-kafka); 0: skip")
    parser.add_argument("--failover-kills", type=int, default=10,
                        help="kills of a partition leader, and of the active controller, in a 3-node cluster; 0: skip")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="strom-bench-"))
    kinds = [Strom(args.strom, workdir), Strom(args.strom, workdir, durable=True)]
    if not args.no_tls:
        pki = make_pki(workdir / "pki")
        kinds += [Strom(args.strom, workdir, security=s, pki=pki) for s in ("SSL", "SASL_SSL")]
    kinds += [Tansu(args.tansu, workdir)] if args.tansu else []
    if args.cluster_nodes > 1:
        kinds.append(Strom(args.strom, workdir, nodes=args.cluster_nodes))
    results = {}
    try:
        for broker in kinds:
            log = open(workdir / f"{broker.name}.log", "w")
            procs = [subprocess.Popen(command, cwd=broker.cwd, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
                     for command in broker.commands]
            try:
                try:
                    for port, proc in zip(broker.ports, procs):
                        wait_port(port, proc, timeout=60)
                except RuntimeError:
                    log.flush()
                    print((workdir / f"{broker.name}.log").read_text()[-3000:], file=sys.stderr)
                    raise
                wait_brokers(broker.bootstrap, broker.replication, broker.client)
                for size in (100, 1024):
                    count = args.count if size == 100 else args.count // 4
                    print(f"... {broker.name}: {count} x {size} B", file=sys.stderr, flush=True)
                    results[(broker.name, size)] = measure(
                        args.perf, broker, size, count, args.latency_rate, args.latency_count, workdir)
                if args.txn_count and isinstance(broker, Strom) and broker.name in ("strom", f"strom-{args.cluster_nodes}"):
                    for per_txn in (None, 100, 10_000):
                        print(f"... {broker.name}: {args.txn_count} x 100 B, transactions of {per_txn}",
                              file=sys.stderr, flush=True)
                        results[(broker.name, "txn", per_txn)] = measure_transactions(broker, args.txn_count, per_txn)
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        failover = measure_failover(args.strom, workdir, args.failover_kills) if args.failover_kills else {}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nrdkafka_performance, 1 partition, acks=1 unless noted, {os.cpu_count()} cores")
    for broker in kinds:
        print(f"  {broker.name}: {broker.storage}")
    header = f"{'broker':<16}{'size':>6}{'produce msg/s':>15}{'MB/s':>8}{'consume msg/s':>15}{'MB/s':>8}" \
             f"{'p50 ms':>9}{'p99 ms':>9}"
    print(header)
    for key, r in results.items():
        if len(key) != 2:
            continue
        name, size = key
        print(f"{name:<16}{size:>6}{r['produce_msgs']:>15,.0f}{r['produce_mb']:>8.1f}{r['consume_msgs']:>15,.0f}"
              f"{r['consume_mb']:>8.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
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
        for fault, seconds in failover.items():
            print(f"  {fault:<18} min {min(seconds):.2f}s  median {statistics.median(seconds):.2f}s  "
                  f"max {max(seconds):.2f}s  over {len(seconds)} kills")
    if args.tansu:
        print("\nratio strom / tansu (throughput: higher is better; latency: lower is better)")
        for size in (100, 1024):
            s, t = results[("strom", size)], results[("tansu", size)]
            print(f"  {size:>5} B: produce {s['produce_msgs'] / t['produce_msgs']:.2f}x, "
                  f"consume {s['consume_msgs'] / t['consume_msgs']:.2f}x, "
                  f"p99 latency {s['p99_ms'] / t['p99_ms']:.3g}x")


if __name__ == "__main__":
    main()
