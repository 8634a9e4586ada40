"""A fresh single node starts cleanly: its internal offsets topic is created once, and
nothing in the start-up log is a warning or an error."""

import re
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from kafka_checks import wait_until  # noqa: E402


def test_fresh_single_node_starts_without_warnings(own_broker):
    broker = own_broker().start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    wait_until(lambda: "__consumer_offsets" in admin.list_topics(timeout=10).topics, 30,
               "__consumer_offsets to exist")
    log = broker.log_path.read_text()
    assert "node serving" in log
    noisy = [line for line in log.splitlines() if re.search(r"\b(WARN|ERROR)\b", line)]
    assert noisy == [], "\n".join(noisy)
