"""Kafka Connect's distributed workers with their config, offset and status topics on Strom: a
FileStream source connector reads a file into a topic and a FileStream sink connector writes
that topic to another file. Every line arrives, in order; a worker stopped and started again
resumes from the offsets it committed to Strom, so no line is lost or repeated; a Strom node
killed under a running pipeline loses nothing; when one of two workers is killed, the other
takes over its tasks from the offsets committed to Strom; with exactly-once source support the
source writes through Strom transactions and a killed worker's open one is aborted."""

import os
import threading
import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from kafka_checks import wait_until

SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"

# What Connect requires of its internal topics (DistributedConfig's defaults for the partition
# counts): compacted, replicated as the worker asked.
INTERNAL = {"configs": 1, "offsets": 25, "status": 5}


def lines(start, stop):
    return [f"line-{i:06d} {uuid.uuid4().hex}" for i in range(start, stop)]


def append(path, new):
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in new))


def read_lines(path):
    return path.read_text().splitlines() if path.exists() else []


class Pipeline:
    """A source connector from `input` to `topic` and a sink connector from `topic` to `output`."""

    def __init__(self, cluster, tmp_path, name):
        self.name = name
        self.topic = f"{name}-{uuid.uuid4().hex[:8]}"
        self.input = tmp_path / f"{name}-in.txt"
        self.output = tmp_path / f"{name}-out.txt"
        self.input.write_text("")
        # One partition, so that the sink sees the lines in the order the source read them.
        cluster.create_topic(self.topic, partitions=1, replication=3)

    def create(self, worker, source_config=None):
        worker.put_connector(f"{self.name}-source", {"connector.class": SOURCE, "tasks.max": "1",
                                                    "file": str(self.input), "topic": self.topic,
                                                    **(source_config or {})})
        worker.put_connector(f"{self.name}-sink", {"connector.class": SINK, "tasks.max": "1",
                                                  "file": str(self.output), "topics": self.topic})
        self.wait_running(worker)

    def wait_running(self, worker):
        wait_until(lambda: worker.running(f"{self.name}-source") and worker.running(f"{self.name}-sink"), 90,
                   f"{self.name}'s connectors and tasks running")

    def wait_output(self, count, timeout=90):
        wait_until(lambda: len(read_lines(self.output)) >= count, timeout,
                   f"{count} lines in the sink's file (has {len(read_lines(self.output))})")
        return read_lines(self.output)

    def wait_every_line(self, expected, timeout=120):
        """Waits until every line of `expected` is in the sink's file, some perhaps twice."""
        want = set(expected)
        wait_until(lambda: want <= set(read_lines(self.output)), timeout,
                   f"{len(expected)} distinct lines in the sink's file (has {len(set(read_lines(self.output)))})")
        return read_lines(self.output)

    def source_position(self, worker):
        """The byte position in the input file that the source committed to the offset topic
        (None before its first commit)."""
        offsets = worker.get(f"/connectors/{self.name}-source/offsets")["offsets"]
        if not offsets:
            return None
        assert [o["partition"] for o in offsets] == [{"filename": str(self.input)}], offsets
        return offsets[0]["offset"]["position"]

    def sink_committed(self, cluster):
        """The sink's committed offset on its topic's partition, from the group coordinator."""
        group = ConsumerGroupTopicPartitions(f"connect-{self.name}-sink")
        admin = cluster.admin()
        result = admin.list_consumer_group_offsets([group])[group.group_id].result(timeout=30)
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.topic == self.topic}


def read_committed(bootstrap, topic, count, timeout=60):
    """The values of partition 0 of `topic` that a read_committed consumer sees, once it has
    seen `count` of them and nothing more comes for a few seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values, quiet_since = [], time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (len(values) < count or time.monotonic() - quiet_since < 3):
            batch = consumer.consume(1000, timeout=0.5)
            for m in batch:
                assert m.error() is None, m.error()
                values.append(m.value().decode())
            if batch:
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return values


def task_worker(worker, connector):
    """host:port of the worker running task 0 of `connector`."""
    return worker.get(f"/connectors/{connector}/status")["tasks"][0]["worker_id"]


def check_internal_topics(cluster, group):
    admin = cluster.admin()
    names = {kind: f"{group}-{kind}" for kind in INTERNAL}
    md = admin.list_topics(timeout=30)
    for kind, name in names.items():
        assert name in md.topics, f"no {name} on Strom: {sorted(md.topics)}"
        parts = md.topics[name].partitions
        assert len(parts) == INTERNAL[kind], f"{name} has {len(parts)} partitions"
        assert all(len(p.replicas) == 3 for p in parts.values()), f"{name} is not replicated 3 times"
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names.values()])
    for resource, future in futures.items():
        configs = future.result(timeout=30)
        assert configs["cleanup.policy"].value == "compact", f"{resource.name}: {configs['cleanup.policy']}"


def test_file_source_to_sink_resumes_after_a_worker_restart(cluster, workers, tmp_path):
    group = f"connect-{uuid.uuid4().hex[:6]}"
    p = Pipeline(cluster, tmp_path, "files")
    worker = workers(group)
    p.create(worker)

    first = lines(0, 2000)
    append(p.input, first)
    assert p.wait_output(len(first)) == first
    check_internal_topics(cluster, group)

    # More lines while the worker shuts down cleanly: on SIGTERM it stops the tasks, the source
    # flushes its producer and commits the file position it reached, the sink flushes its file
    # and commits its consumer offsets. Then more lines while no worker runs.
    second = lines(2000, 3000)
    append(p.input, second)
    worker.stop()
    third = lines(3000, 4000)
    append(p.input, third)

    worker = workers(group)
    p.wait_running(worker)
    expected = first + second + third
    p.wait_output(len(expected))
    # Kafka Connect delivers at least once, but after a clean shutdown both tasks resume exactly
    # where they committed: every line once, in order.
    time.sleep(2)
    got = read_lines(p.output)
    assert len(got) == len(expected), f"{len(got) - len(expected)} lines repeated"
    assert got == expected
    wait_until(lambda: p.source_position(worker) == os.path.getsize(p.input), 30,
               "the source's committed position at the end of its file")
    wait_until(lambda: p.sink_committed(cluster) == {0: len(expected)}, 30,
               f"the sink's committed offset at {len(expected)}")


def test_pipeline_loses_nothing_when_a_strom_node_is_killed(cluster, workers, tmp_path):
    group = f"connect-{uuid.uuid4().hex[:6]}"
    p = Pipeline(cluster, tmp_path, "crash")
    worker = workers(group)
    p.create(worker)

    expected = lines(0, 6000)

    def feed():
        for i in range(0, len(expected), 100):
            append(p.input, expected[i:i + 100])
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    p.wait_output(500)
    victim = cluster.node(cluster.leader(p.topic, 0))
    victim.kill()
    feeder.join(timeout=60)
    assert not feeder.is_alive()

    got = p.wait_every_line(expected)
    # At least once: a line may come twice, but none may be missing or out of order.
    first_seen = list(dict.fromkeys(got))
    assert first_seen == expected
    print(f"node {victim.id} killed: {len(expected)} lines arrived, {len(got) - len(expected)} repeated")

    cluster.restart(victim)
    cluster.wait_isr(p.topic, 3)
    more = lines(len(expected), len(expected) + 500)
    append(p.input, more)
    got = p.wait_output(len(got) + len(more))
    assert got[-len(more):] == more


# A killed worker leaves its groups when its session expires: short sessions for the worker's
# own group and the sink's consumer group, and no grace period before its tasks move.
QUICK_FAILOVER = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "1000",
    "scheduled.rebalance.max.delay.ms": "0",
    "consumer.session.timeout.ms": "6000",
    "consumer.heartbeat.interval.ms": "1000",
}


def test_tasks_move_to_the_other_worker_when_one_is_killed(cluster, workers, tmp_path):
    group = f"connect-{uuid.uuid4().hex[:6]}"
    p = Pipeline(cluster, tmp_path, "failover")
    first = workers(group, extra=QUICK_FAILOVER)
    second = workers(group, extra=QUICK_FAILOVER)
    p.create(first)
    by_id = {f"127.0.0.1:{w.port}": w for w in (first, second)}

    expected = lines(0, 3000)
    append(p.input, expected[:1000])
    assert p.wait_output(1000) == expected[:1000]
    # Both tasks commit what they have done (every offset.flush.interval.ms); once they have,
    # kill the worker that runs the source task: the source must resume on the other worker
    # from the position committed to Strom's offset topic, the sink from its group's offset.
    wait_until(lambda: p.source_position(first) == os.path.getsize(p.input), 30,
               "the source's committed position at the end of its file")
    wait_until(lambda: p.sink_committed(cluster) == {0: 1000}, 30, "the sink's committed offset at 1000")
    victim = by_id[task_worker(first, "failover-source")]
    survivor = second if victim is first else first
    victim.kill()
    append(p.input, expected[1000:])

    # Until the group notices, the status topic still says the killed worker runs its tasks.
    wait_until(lambda: {task_worker(survivor, c) for c in ("failover-source", "failover-sink")}
               == {f"127.0.0.1:{survivor.port}"}, 90, "both tasks on the surviving worker")
    p.wait_running(survivor)
    # A crash loses the work done since the last offset commit, which Connect does again; here
    # all of it was committed, so every line comes once.
    p.wait_output(len(expected))
    time.sleep(2)
    assert read_lines(p.output) == expected



def test_exactly_once_source_survives_a_worker_crash(cluster, workers, tmp_path):
    """KIP-618: with exactly.once.source.support, the source task writes its records and its
    file position in one Strom transaction (here one a second), so a worker killed mid-stream
    leaves an open transaction, which its successor's producer fences and aborts; the
    successor resumes from the position committed with the last committed records, and
    read_committed consumers see every line once."""
    group = f"connect-{uuid.uuid4().hex[:6]}"
    eos = {**QUICK_FAILOVER, "exactly.once.source.support": "enabled", "consumer.isolation.level": "read_committed"}
    p = Pipeline(cluster, tmp_path, "eos")
    worker = workers(group, extra=eos)
    p.create(worker, {"transaction.boundary": "interval", "transaction.boundary.interval.ms": "1000"})

    expected = lines(0, 6000)

    def feed():
        for i in range(0, len(expected), 100):
            append(p.input, expected[i:i + 100])
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    p.wait_output(1000)
    worker.kill()
    feeder.join(timeout=60)
    assert not feeder.is_alive()

    worker = workers(group, extra=eos)
    p.wait_running(worker)
    got = p.wait_every_line(expected)
    # The sink delivers at least once: after the crash it may write a line again.
    assert list(dict.fromkeys(got)) == expected
    assert read_committed(cluster.bootstrap, p.topic, len(expected)) == expected
