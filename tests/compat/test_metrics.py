"""/metrics: traffic, requests, logs, consumer lag and KRaft state from a live broker, in a
format promtool accepts."""

import re
import shutil
import socket
import subprocess
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def scrape(broker):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def value(text, name, **labels):
    """The sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(4))
    raise AssertionError(f"no sample {name}{labels}")


def test_metrics_follow_traffic_and_lag(own_broker, topic):
    b = own_broker({"group.initial.rebalance.delay.ms": "0"}).start()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=20)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(50):
        p.produce(topic, value=b"x" * 100)
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "metrics-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    for _ in range(100):
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            seen += 1
        if seen == 50:
            break
    c.commit(offsets=[TopicPartition(topic, 0, 30)], asynchronous=False)
    c.close()
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x08garbage!")
        s.recv(16)

    text = scrape(b)
    assert value(text, "strom_topic_records_in_total", topic=topic) == 50
    assert value(text, "strom_topic_bytes_in_total", topic=topic) > 50 * 100
    assert value(text, "strom_topic_bytes_out_total", topic=topic) >= value(
        text, "strom_topic_bytes_in_total", topic=topic)
    assert value(text, "strom_log_end_offset", topic=topic, partition=0) == 50
    assert value(text, "strom_log_size_bytes", topic=topic, partition=0) > 0
    assert value(text, "strom_group_committed_offset", group="metrics-group", topic=topic, partition=0) == 30
    assert value(text, "strom_group_lag", group="metrics-group", topic=topic, partition=0) == 20
    assert value(text, "strom_requests_total", api="Produce") >= 1
    assert value(text, "strom_request_duration_seconds_count", api="Fetch") >= 1
    assert value(text, "strom_malformed_requests_total") == 1
    assert value(text, "strom_kraft_current_leader") == 1
    assert value(text, "strom_kraft_active_controllers") == 1
    assert value(text, "strom_partition_leaders") >= 51  # the topic plus __consumer_offsets
    assert value(text, "strom_under_replicated_partitions") == 0
    assert value(text, "process_resident_memory_bytes") > 0

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/install-test-deps.sh installs Debian's prometheus")
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    b.stop()
