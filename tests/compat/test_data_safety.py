"""A broker never deletes data by mistake: a directory stamped for another node or cluster is
refused at start (and kept), and a partition the metadata no longer lists is moved aside and
deleted only after log.segment.delete.delay.ms."""

import shutil
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from kafka_checks import wait_until  # noqa: E402
from conftest import BROKER_BIN  # noqa: E402


def fill(broker, topic, count=100):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(count):
        p.produce(topic, value=b"v%d" % i)
    assert p.flush(30) == 0


def segment_bytes(broker, topic):
    return sum(f.stat().st_size for f in (broker.data_dir / f"{topic}-0").glob("*.log"))


def refused(broker, overrides):
    """Starts the broker binary on `broker`'s directory with other settings; returns its
    exit code and output (it must stop on its own)."""
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{broker.controller_port}",
        "log.dirs": str(broker.data_dir),
        "metrics.listener": f"127.0.0.1:{broker.http_port}",
        **overrides,
    }
    args = [str(BROKER_BIN)]
    for k, v in props.items():
        args += ["--override", f"{k}={v}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_another_node_id_on_the_same_directory_is_refused_and_the_data_stays(own_broker, topic):
    broker = own_broker().start()
    fill(broker, topic)
    broker.stop()
    before = segment_bytes(broker, topic)
    assert before > 0
    meta = (broker.data_dir / "meta.properties").read_text()
    assert "node.id=1" in meta and "cluster.id=" in meta and "directory.id=" in meta
    code, output = refused(broker, {
        "node.id": "2", "controller.quorum.voters": f"2@127.0.0.1:{broker.controller_port}"})
    assert code != 0
    assert "node.id 1" in output and "node.id 2" in output, output
    assert segment_bytes(broker, topic) == before
    broker.start()
    assert segment_bytes(broker, topic) == before


def test_a_wiped_metadata_log_is_refused_and_the_data_stays(own_broker, topic):
    broker = own_broker().start()
    fill(broker, topic)
    broker.stop()
    before = segment_bytes(broker, topic)
    shutil.rmtree(broker.data_dir / "__cluster_metadata-0")
    code, output = refused(broker, {"controller.quorum.voters": f"1@127.0.0.1:{broker.controller_port}"})
    assert code != 0
    assert "belongs to cluster" in output, output
    assert segment_bytes(broker, topic) == before


def test_a_deleted_topic_waits_for_the_delete_delay(own_broker, topic):
    broker = own_broker({"log.segment.delete.delay.ms": "3000"}).start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    fill(broker, topic)
    admin.delete_topics([topic])[topic].result(30)
    moved = wait_until(lambda: list(broker.data_dir.glob(f"{topic}-0.*-delete")), 15,
                       "the partition directory to be moved aside")
    assert not (broker.data_dir / f"{topic}-0").exists()
    assert any(moved[0].glob("*.log")), "the data is still there during the delay"
    wait_until(lambda: not moved[0].exists(), 30, "the moved directory to be removed")
