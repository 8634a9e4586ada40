#!/usr/bin/env python3
"""Records the seed corpora of the fuzz targets from real traffic (standard library only).

Real clients (kcat, confluent-kafka, kafka-python, aiokafka, kafkajs) talk to a release broker
through a recording TCP proxy: the broker advertises the proxy's address, so every connection a
client opens, bootstrap or not, passes through it. Each request frame (what follows the size
prefix) is kept, and the record batches of every produce request are cut out of it. Then three
combined nodes run behind proxies on their controller listeners, so the Raft and broker-to-
controller frames between them are kept too, while a node is killed and restarted; the metadata
records of their Raft logs become the metadata corpus.

    fuzz/record-corpus.py [--out DIR] [--broker PATH]

writes, under DIR (default: $TMPDIR/strom-corpus-recorded; minimize it into fuzz/corpus):

    request_frame/      request frames, named <client>-<api>-v<version>-<sha1 prefix>
    record_batch/       the `records` of each produce partition
    controller_frame/   controller-listener frame bodies (requests and responses)
    metadata_records/   JSON lines of metadata records, from the Raft logs
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom")) / "venv" / "bin" / "python"
KAFKAJS = ROOT / "tests" / "compat" / "kafkajs"

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit", 9: "offset_fetch",
    10: "find_coordinator", 11: "join_group", 12: "heartbeat", 13: "leave_group", 14: "sync_group",
    15: "describe_groups", 16: "list_groups", 18: "api_versions", 19: "create_topics", 20: "delete_topics",
    21: "delete_records", 22: "init_producer_id", 32: "describe_configs", 33: "alter_configs",
    37: "create_partitions", 42: "delete_groups", 43: "elect_leaders", 44: "incremental_alter_configs",
    45: "alter_partition_reassignments", 46: "list_partition_reassignments", 47: "offset_delete",
    60: "describe_cluster", 23: "offset_for_leader_epoch",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Recorder:
    """Collects frames under a directory, one file per distinct frame."""

    def __init__(self, out):
        self.out = Path(out)
        self.lock = threading.Lock()
        self.seen = set()
        self.label = "unknown"

    def save(self, kind, name, data):
        digest = hashlib.sha1(data).hexdigest()
        with self.lock:
            if (kind, digest) in self.seen:
                return
            self.seen.add((kind, digest))
            d = self.out / kind
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{name}-{digest[:12]}").write_bytes(data)

    def request(self, frame, label=None):
        if len(frame) < 4:
            return
        label = label or self.label
        key, version = struct.unpack(">hh", frame[:4])
        api = API_NAMES.get(key, f"api{key}")
        self.save("request_frame", f"{label}-{api}-v{version}", frame)
        if key == 0:
            try:
                for records in produce_records(frame, version):
                    self.save("record_batch", f"{label}-v{version}", records)
            except (IndexError, struct.error, ValueError) as e:
                print(f"cannot parse a produce v{version} frame: {e}", file=sys.stderr)

    def controller(self, direction):
        def record(frame):
            try:
                kind = next(iter(json.loads(frame)))
            except (ValueError, StopIteration, TypeError):
                kind = "unknown"
            self.save("controller_frame", f"{direction}-{kind}", frame)
        return record


class Proxy:
    """Forwards connections to `upstream`, handing each length-prefixed frame to the callbacks
    (client to upstream: `requests`, upstream to client: `responses`)."""

    def __init__(self, upstream, requests=None, responses=None, port=None):
        self.upstream = upstream
        self.requests = requests
        self.responses = responses
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port or 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for a, b, cb in ((client, upstream, self.requests), (upstream, client, self.responses)):
                threading.Thread(target=self.pipe, args=(a, b, cb), daemon=True).start()

    @staticmethod
    def pipe(src, dst, callback):
        try:
            while True:
                head = read_exact(src, 4)
                if head is None:
                    break
                size = struct.unpack(">i", head)[0]
                body = read_exact(src, size) if size > 0 else b""
                if body is None:
                    break
                if callback:
                    callback(body)
                dst.sendall(head + body)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.server.close()


class Reader:
    def __init__(self, data, at=0):
        self.data, self.at = data, at

    def take(self, n):
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("past the end")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def int(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def uvarint(self):
        shift = value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def produce_records(frame, version):
    """The `records` of every partition of a Produce request (v3 to v11)."""
    r = Reader(frame, 8)
    flexible = version >= 9
    client_id = r.int(">h")
    if client_id > 0:
        r.take(client_id)
    if flexible:
        r.tags()
        n = r.uvarint() - 1  # transactional id
        if n > 0:
            r.take(n)
    else:
        n = r.int(">h")
        if n > 0:
            r.take(n)
    r.int(">h")  # acks
    r.int(">i")  # timeout
    out = []
    for _ in range(r.uvarint() - 1 if flexible else r.int(">i")):
        r.take(r.uvarint() - 1 if flexible else r.int(">h"))  # topic name
        for _ in range(r.uvarint() - 1 if flexible else r.int(">i")):
            r.int(">i")  # partition
            n = r.uvarint() - 1 if flexible else r.int(">i")
            if n > 0:
                out.append(r.take(n))
            if flexible:
                r.tags()
        if flexible:
            r.tags()
    return out


class Node:
    """A strom-broker process."""

    def __init__(self, binary, data_dir, props):
        self.binary, self.data_dir, self.props = binary, Path(data_dir), props
        self.http_port = free_port()
        self.proc = None

    def start(self, wait=True):
        args = [str(self.binary)]
        props = {**self.props, "log.dirs": str(self.data_dir), "metrics.listener": f"127.0.0.1:{self.http_port}"}
        for k, v in props.items():
            args += ["--override", f"{k}={v}"]
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("broker did not become ready")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(label, recorder, args, timeout=90, check=True, **kw):
    recorder.label = label
    print(f"  {label}: {' '.join(str(a) for a in args)[:100]}", file=sys.stderr)
    try:
        done = subprocess.run(args, timeout=timeout, capture_output=True, **kw)
    except subprocess.TimeoutExpired:
        return
    if check and done.returncode != 0:
        print(f"    exit {done.returncode}: {done.stderr.decode(errors='replace')[-800:]}", file=sys.stderr)


def py(label, recorder, code, *argv, timeout=90):
    run(label, recorder, [str(VENV_PYTHON), "-c", code, *argv], timeout=timeout)


CONFLUENT = r'''
import sys, time
from confluent_kafka import Producer, Consumer, TopicPartition, ConsumerGroupTopicPartitions, ElectionType
from confluent_kafka.admin import (AdminClient, NewTopic, NewPartitions, ConfigResource, ConfigEntry,
    AlterConfigOpType, OffsetSpec)
b, t = sys.argv[1], sys.argv[2]
a = AdminClient({"bootstrap.servers": b})
for f in a.create_topics([NewTopic(t, 2, 1, config={"cleanup.policy": "delete", "retention.ms": "3600000"}),
                          NewTopic(t + "-c", 1, 1, config={"cleanup.policy": "compact"})]).values():
    f.result(10)
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    for idem in [False, True]:
        p = Producer({"bootstrap.servers": b, "compression.type": codec, "enable.idempotence": idem,
                      "linger.ms": 5, "acks": "all" if idem else "1"})
        for i in range(5):
            p.produce(t, key=f"k{i}", value=f"{codec} value {i} " * (i + 1), headers=[("h", b"v"), ("n", None)])
        p.produce(t + "-c", key=b"key", value=None)
        p.flush(10)
p = Producer({"bootstrap.servers": b, "acks": 0})
p.produce(t, value=b"acks=0"); p.flush(10)
c = Consumer({"bootstrap.servers": b, "group.id": t + "-g", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([t])
got, deadline = 0, time.time() + 20
while got < 50 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        got += 1
c.commit(asynchronous=False)
time.sleep(1.5)
c.committed([TopicPartition(t, 0), TopicPartition(t, 1)], timeout=10)
c.offsets_for_times([TopicPartition(t, 0, int(time.time() * 1000) - 60000)], timeout=10)
c.get_watermark_offsets(TopicPartition(t, 0), timeout=10)
c.close()
res = ConfigResource(ConfigResource.Type.TOPIC, t)
a.describe_configs([res])[res].result(10)
inc = ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
    ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
    ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE)])
a.incremental_alter_configs([inc])[inc].result(10)
a.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])
a.create_partitions([NewPartitions(t, 3)])[t].result(10)
a.describe_cluster().result(10)
a.describe_topics  # older clients lack it
try:
    from confluent_kafka import TopicCollection
    for f in a.describe_topics(TopicCollection([t])).values(): f.result(10)
except Exception as e: print(e, file=sys.stderr)
a.list_consumer_groups().result(10)
for f in a.describe_consumer_groups([t + "-g"]).values(): f.result(10)
for f in a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(t + "-g")]).values(): f.result(10)
for f in a.list_offsets({TopicPartition(t, 0): OffsetSpec.latest(), TopicPartition(t, 1): OffsetSpec.earliest(),
                         TopicPartition(t, 2): OffsetSpec.max_timestamp()}).values(): f.result(10)
for f in a.delete_records([TopicPartition(t, 0, 2)]).values(): f.result(10)
try:
    a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(t, 0)]).result(10)
except Exception as e: print(e, file=sys.stderr)
for f in a.delete_consumer_groups([t + "-g"]).values(): f.result(10)
for f in a.delete_topics([t + "-c"]).values(): f.result(10)
'''

KAFKA_PYTHON = r'''
import sys, time
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic, NewPartitions, ConfigResource, ConfigResourceType
b, t = sys.argv[1], sys.argv[2]
a = KafkaAdminClient(bootstrap_servers=b)
a.create_topics([NewTopic(t, 2, 1, topic_configs={"retention.bytes": "1048576"})])
for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
    p = KafkaProducer(bootstrap_servers=b, compression_type=codec, linger_ms=5)
    for i in range(5):
        p.send(t, key=b"k%d" % i, value=b"kafka-python %d" % i, headers=[("h", b"v")])
    p.flush(); p.close()
p = KafkaProducer(bootstrap_servers=b, enable_idempotence=True, acks="all")
p.send(t, b"idempotent"); p.flush(); p.close()
c = KafkaConsumer(t, bootstrap_servers=b, group_id=t + "-g", auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=4000, heartbeat_interval_ms=500)
n = sum(1 for _ in c)
c.commit()
c.offsets_for_times({TopicPartition(t, 0): int(time.time() * 1000) - 60000})
c.end_offsets([TopicPartition(t, 0)]); c.beginning_offsets([TopicPartition(t, 1)])
c.close()
def attempt(what, *args, **kw):
    try:
        getattr(a, what)(*args, **kw)
    except Exception as e:
        print(what, e, file=sys.stderr)
attempt("describe_configs", [ConfigResource(ConfigResourceType.TOPIC, t)])
attempt("alter_configs", [ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": "100000"})], incremental=False)
attempt("create_partitions", {t: NewPartitions(total_count=3)})
attempt("list_groups")
attempt("describe_groups", [t + "-g"])
attempt("list_group_offsets", {t + "-g": None})
attempt("delete_group_offsets", t + "-g", [TopicPartition(t, 1)])
attempt("delete_groups", [t + "-g"])
attempt("delete_records", {TopicPartition(t, 0): 1})
attempt("describe_cluster")
attempt("describe_topics", [t])
attempt("alter_partition_reassignments", {TopicPartition(t, 0): [1]})
attempt("list_partition_reassignments")
attempt("list_partition_reassignments", [TopicPartition(t, 0)])
attempt("delete_topics", [t])
a.close()
'''

AIOKAFKA = r'''
import asyncio, sys
from aiokafka import AIOKafkaProducer, AIOKafkaConsumer
async def main(b, t):
    p = AIOKafkaProducer(bootstrap_servers=b, compression_type="gzip", enable_idempotence=True)
    await p.start()
    for i in range(5):
        await p.send_and_wait(t, b"aiokafka %d" % i, key=b"k")
    await p.stop()
    c = AIOKafkaConsumer(t, bootstrap_servers=b, group_id=t + "-g", auto_offset_reset="earliest")
    await c.start()
    try:
        for _ in range(5):
            await asyncio.wait_for(c.getone(), 10)
        await c.commit()
    finally:
        await c.stop()
asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


def clients(binary, work, recorder):
    """One broker behind the recording proxy; every client walks through its API."""
    port, controller = free_port(), free_port()
    proxy = Proxy(("127.0.0.1", port), requests=recorder.request)
    node = Node(binary, work / "single", {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }).start()
    b = f"127.0.0.1:{proxy.port}"
    try:
        t = "kcat-topic"
        run("kcat", recorder, ["kcat", "-b", b, "-L"])
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            extra = ["-X", "enable.idempotence=true"] if codec == "lz4" else []
            run("kcat", recorder, ["kcat", "-b", b, "-P", "-t", t, "-z", codec, "-K:", *extra],
                input=b"".join(b"k%d:%s value %d\n" % (i, codec.encode(), i) for i in range(5)))
        run("kcat", recorder, ["kcat", "-b", b, "-L", "-t", t])
        run("kcat", recorder, ["kcat", "-b", b, "-C", "-t", t, "-o", "beginning", "-e"])
        run("kcat", recorder, ["kcat", "-b", b, "-Q", "-t", f"{t}:0:{int(time.time() * 1000) - 60000}"])
        run("kcat", recorder, ["kcat", "-b", b, "-G", "kcat-group", "-o", "beginning", "-e", t], timeout=15, check=False)
        py("confluent-kafka", recorder, CONFLUENT, b, "ck-topic", timeout=120)
        py("kafka-python", recorder, KAFKA_PYTHON, b, "kp-topic", timeout=120)
        py("aiokafka", recorder, AIOKAFKA, b, "aio-topic")
        if (KAFKAJS / "node_modules").is_dir():
            run("kafkajs", recorder, ["node", str(KAFKAJS / "admin_producer.js"), b, "js-topic"], timeout=120)
            run("kafkajs", recorder, ["node", str(KAFKAJS / "consumer.js"), b, "js-topic2", "js-group"], timeout=120)
    finally:
        node.stop()
        proxy.close()
    return [work / "single"]


def cluster(binary, work, recorder):
    """Three combined nodes whose controller listeners sit behind recording proxies (Raft votes
    and appends, proposals, heartbeats) and a dedicated broker (image fetches); a node is killed
    and comes back, partitions are moved and their leaders elected."""
    ids = [1, 2, 3]
    client = {i: free_port() for i in ids}
    controller = {i: free_port() for i in ids}
    # The nodes advertise these: followers (replica fetches, OffsetForLeaderEpoch) and clients
    # after their bootstrap connection go through them.
    client_proxies = {i: Proxy(("127.0.0.1", client[i]), lambda f: recorder.request(f, "cluster")) for i in ids}
    proxies = {i: Proxy(("127.0.0.1", controller[i]), recorder.controller("request"),
                        recorder.controller("response")) for i in ids}
    voters = ",".join(f"{i}@127.0.0.1:{proxies[i].port}" for i in ids)
    nodes = {i: Node(binary, work / f"node{i}", {
        "node.id": str(i),
        "listeners": f"PLAINTEXT://127.0.0.1:{client[i]},CONTROLLER://127.0.0.1:{controller[i]}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{client_proxies[i].port}",
        "controller.quorum.voters": voters,
        "offsets.topic.num.partitions": "3",
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
    }) for i in ids}
    # A dedicated broker follows the quorum with image fetches and heartbeats.
    client[4] = free_port()
    nodes[4] = Node(binary, work / "node4", {
        "node.id": "4",
        "process.roles": "broker",
        "listeners": f"PLAINTEXT://127.0.0.1:{client[4]}",
        "controller.quorum.voters": voters,
        "broker.heartbeat.interval.ms": "500",
    })
    for n in nodes.values():
        n.start(wait=False)
    try:
        for n in nodes.values():
            n.wait_ready()
        b = f"127.0.0.1:{client[1]}"
        recorder.label = "cluster"
        script = r'''
import sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
b, t = sys.argv[1], sys.argv[2]
a = AdminClient({"bootstrap.servers": b})
for f in a.create_topics([NewTopic(t, 3, 3, config={"min.insync.replicas": "2"})]).values(): f.result(30)
p = Producer({"bootstrap.servers": b, "acks": "all", "enable.idempotence": True})
for i in range(30):
    p.produce(t, key=b"k%d" % i, value=b"v%d" % i)
p.flush(30)
'''
        py("cluster", recorder, script, b, "replicated")
        nodes[3].stop(signal.SIGKILL)
        time.sleep(6)  # fenced, out of the ISRs
        py("cluster", recorder, script.replace("create_topics([NewTopic(t, 3, 3", "create_topics([NewTopic(t + '-2', 2, 2"), b, "replicated")
        nodes[3].start()
        time.sleep(6)  # back in the ISRs
        elect = r'''
import sys
from confluent_kafka import TopicPartition, ElectionType
from confluent_kafka.admin import AdminClient
a = AdminClient({"bootstrap.servers": sys.argv[1]})
try:
    a.elect_leaders(ElectionType.PREFERRED, [TopicPartition("replicated", p) for p in range(3)]).result(30)
except Exception as e: print(e, file=sys.stderr)
'''
        py("cluster", recorder, elect, b)
        reassign = r'''
import sys, time
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient
a = KafkaAdminClient(bootstrap_servers=sys.argv[1])
a.alter_partition_reassignments({TopicPartition("replicated", 0): [2, 3, 1],
                                 TopicPartition("replicated-2", 0): [3, 1]})
for _ in range(20):
    if not a.list_partition_reassignments():
        break
    time.sleep(0.5)
a.close()
'''
        py("cluster", recorder, reassign, b)
        run("cluster", recorder, ["kcat", "-b", b, "-L"])
    finally:
        for n in nodes.values():
            n.stop()
        for p in [*proxies.values(), *client_proxies.values()]:
            p.close()
    return [work / f"node{i}" for i in ids]  # node 4 keeps no Raft log


def metadata_from_raft_logs(dirs, recorder):
    """Every node's Raft log (`[len u32][crc32c u32][json entry]` frames) as JSON lines of the
    metadata records it holds, and the same cut into runs of consecutive records."""
    for d in dirs:
        for log in sorted(Path(d).rglob("raft-log.bin")):
            data, at, records = log.read_bytes(), 0, []
            while at + 8 <= len(data):
                n = struct.unpack(">I", data[at:at + 4])[0]
                entry = json.loads(data[at + 8:at + 8 + n])
                payload = entry.get("payload")
                if isinstance(payload, dict) and "Normal" in payload:
                    records.append(json.dumps(payload["Normal"], separators=(",", ":")))
                at += 8 + n
            name = Path(d).name
            recorder.save("metadata_records", f"raft-{name}", "\n".join(records).encode())
            for start in range(0, len(records), 12):
                recorder.save("metadata_records", f"raft-{name}-{start}",
                              "\n".join(records[start:start + 24]).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "strom-corpus-recorded"))
    parser.add_argument("--broker", default=str(ROOT / "target" / "release" / "strom-broker"))
    args = parser.parse_args()
    recorder = Recorder(args.out)
    with tempfile.TemporaryDirectory(prefix="strom-record-") as work:
        work = Path(work)
        print("clients against one broker", file=sys.stderr)
        dirs = clients(args.broker, work, recorder)
        print("a three-node cluster", file=sys.stderr)
        dirs += cluster(args.broker, work, recorder)
        metadata_from_raft_logs(dirs, recorder)
    for kind in sorted(p.name for p in Path(args.out).iterdir()):
        files = list((Path(args.out) / kind).iterdir())
        print(f"{kind}: {len(files)} files, {sum(f.stat().st_size for f in files)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
