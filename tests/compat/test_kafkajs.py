"""kafkajs: the getting-started walkthrough (admin, producer, consumer group)."""

import json
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent / "kafkajs" / "admin_producer.js"


def test_admin_and_producer(broker, topic):
    run = subprocess.run(["node", str(SCRIPT), broker.bootstrap, topic],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert out["created"] is True
    assert [b["nodeId"] for b in out["cluster"]["brokers"]] == [1]
    assert out["cluster"]["controller"] == 1
    assert all(a["errorCode"] == 0 for a in out["acks"])
    high = {o["partition"]: int(o["high"]) for o in out["offsets"]}
    assert sum(high.values()) == 20
    assert {o["partition"] for o in out["byTime"]} == {0, 1}
    entries = {e["configName"]: e["configValue"] for e in out["configs"]["resources"][0]["configEntries"]}
    assert entries["cleanup.policy"] == "delete"
    assert len(out["metadata"]["topics"][0]["partitions"]) == 3
    assert topic not in out["remaining"]


def test_consumer_group_walkthrough(broker, topic):
    run = subprocess.run(["node", str(SCRIPT.parent / "consumer.js"), broker.bootstrap, topic, f"{topic}-group"],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert sorted(m["value"] for m in out["received"]) == sorted(f"hello {i}" for i in range(10))
    committed = sum(int(p["offset"]) for t in out["offsets"] for p in t["partitions"])
    assert committed == 10
    assert f"{topic}-group" in [g["groupId"] for g in out["groups"]["groups"]]


def test_transactions(broker, topic):
    run = subprocess.run(["node", str(SCRIPT.parent / "transactions.js"), broker.bootstrap, topic, f"{topic}-out",
                          f"{topic}-group"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    # The aborted a0 and a1 are in the log, but read_committed never delivers them.
    assert [m["value"] for m in out["uncommitted"]] == ["c0", "c1", "c2", "a0", "a1", "c3"]
    assert [m["value"] for m in out["received"]] == ["c0", "c1", "c2", "c3"]
    assert [m["value"] for m in out["copied"]] == ["C0", "C1", "C2", "C3"]
    # c0-2 at 0-2, a marker at 3, a0-1 at 4-5, a marker at 6, c3 at 7: the group resumes at 8,
    # as committed by sendOffsets (the consumer does not auto-commit).
    assert out["next"] == 8
    committed = out["offsets"][0]["partitions"][0]
    assert int(committed["offset"]) == out["next"]
