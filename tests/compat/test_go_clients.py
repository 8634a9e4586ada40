"""The Go clients github.com/IBM/sarama and github.com/segmentio/kafka-go (pinned in
tests/compat/go/go.mod): admin create, alter and delete, idempotent keyed produce, consumer groups
that commit and resume from their commits (a static member, a group shared by both clients),
sarama's transactions, kafka-go's Conn, and records crossing from one client to the other. Every
expectation here is what Apache Kafka 4.4 answers.

tests/compat/go/ is one program with a subcommand per scenario; it prints a JSON object that the
tests check. It is built once per session into ${STROM_CACHE:-~/.cache/strom}/go-clients/bin, with
the module downloads under ${STROM_CACHE}/gomod (scripts/install-test-deps.sh fills it)."""

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

GO_DIR = Path(__file__).parent / "go"
CACHE = Path(os.environ.get("STROM_CACHE", Path.home() / ".cache" / "strom"))
# sarama's default protocol version (Kafka 2.8) and its newest, which takes the newest API
# versions the broker advertises.
SARAMA_VERSIONS = ["2.8.0", "4.3.1"]


@pytest.fixture(scope="session")
def goclients():
    go = shutil.which("go") or "/usr/local/go/bin/go"
    binary = CACHE / "go-clients" / "bin" / "goclients"
    env = {**os.environ, "GOMODCACHE": str(CACHE / "gomod"), "GOFLAGS": "-mod=readonly -buildvcs=false",
           "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    build = subprocess.run(["nice", "-n", "10", go, "build", "-o", str(binary), "."], cwd=GO_DIR, env=env,
                           capture_output=True, timeout=900)
    assert build.returncode == 0, build.stderr.decode()
    return binary


def run(goclients, scenario, broker, topic, *args):
    """The JSON object the scenario printed; a failure shows the step it failed at."""
    proc = subprocess.run([str(goclients), scenario, "-bootstrap", broker.bootstrap, "-topic", topic,
                           "-timeout", "90s", *args], capture_output=True, timeout=120)
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0, (f"{scenario} failed at {out.get('step')!r}: {out.get('error')}\n"
                                  f"{proc.stderr.decode()[-3000:]}")
    return out


def ordered(recs):
    return sorted(recs, key=lambda r: (r["partition"], r["offset"]))


def next_offsets(recs):
    """{partition: offset after the last record} for records that start each partition at 0."""
    return {str(p): n for p, n in Counter(r["partition"] for r in recs).items()}


def assert_dense(recs):
    """Each partition's records have the offsets 0, 1, 2, ..."""
    for p in {r["partition"] for r in recs}:
        assert sorted(r["offset"] for r in recs if r["partition"] == p) == list(range(sum(
            r["partition"] == p for r in recs)))


def assert_admin(out, topic):
    assert out["brokers"] == [1]
    assert out["controller"] == 1
    assert out["partitions"] == 3
    assert out["configs"]["retention.ms"] == "3600000"
    assert out["configs"]["cleanup.policy"] == "compact"
    assert out["create_again_error"] == "TOPIC_ALREADY_EXISTS"
    assert topic not in out["topics_after_delete"]
    assert out["delete_again_error"] == "UNKNOWN_TOPIC_OR_PARTITION"


def assert_group(out, n=30, more=3):
    produced = out["produced"]
    assert len(produced) == n
    assert {p["partition"] for p in produced} == {0, 1, 2}
    assert_dense(produced)
    assert out["consumed"] == ordered(produced)
    assert out["committed"] == {str(p): next_offsets(produced).get(str(p), 0) for p in range(3)}
    # The second run of the group starts at the committed offsets: it reads only the new records.
    assert out["consumed_again"] == ordered(out["produced_more"])
    assert len(out["produced_more"]) == more
    assert_dense(produced + out["produced_more"])
    everything = next_offsets(produced + out["produced_more"])
    assert out["committed_again"] == {str(p): everything.get(str(p), 0) for p in range(3)}
    assert out["group_listed"] == "consumer"
    assert out["group_state"] == "Empty"


@pytest.mark.parametrize("version", SARAMA_VERSIONS)
def test_sarama_admin(goclients, broker, topic, version):
    out = run(goclients, "sarama-admin", broker, topic, "-kafka-version", version)
    assert_admin(out, topic)
    assert out["listed_partitions"] == 3
    assert out["listed_replication_factor"] == 1


def test_kafkago_admin(goclients, broker, topic):
    out = run(goclients, "kafkago-admin", broker, topic)
    assert_admin(out, topic)
    assert out["leaders"] == [1, 1, 1]
    assert out["cluster_id"]


@pytest.mark.parametrize("version", SARAMA_VERSIONS)
def test_sarama_produce_consume_group(goclients, broker, topic, version):
    out = run(goclients, "sarama-group", broker, topic, "-kafka-version", version)
    assert_group(out)
    assert out["group_protocol_type"] == "consumer"


def test_kafkago_produce_consume_group(goclients, broker, topic):
    assert_group(run(goclients, "kafkago-group", broker, topic))


def test_records_cross_between_clients(goclients, broker, topic):
    """sarama (zstd) to a kafka-go group, then kafka-go (lz4) to a sarama group: keys, values and
    headers arrive as sent, at the partitions and offsets the producers were told."""
    out = run(goclients, "cross", broker, topic)
    assert len(out["sarama_produced"]) == len(out["kafkago_produced"]) == 30
    assert out["kafkago_consumed"] == ordered(out["sarama_produced"])
    assert out["sarama_consumed"] == ordered(out["sarama_produced"] + out["kafkago_produced"])
    assert_dense(out["sarama_produced"] + out["kafkago_produced"])
    assert {r["headers"]["source"] for r in out["sarama_consumed"]} == {"sarama", "kafkago"}


def assert_ops(out):
    assert out["partitions"] == 4
    assert out["create_partitions_fewer_error"] == "INVALID_PARTITIONS"
    assert out["configs_incremental"] == {"retention.ms": "7200000", "segment.ms": "604800000"}
    # AlterConfigs replaces the whole topic config: the incremental retention.ms is gone.
    assert out["configs_altered"] == {"retention.ms": "604800000", "segment.ms": "600000"}
    assert out["committed"] == {"0": 7, "1": 0}
    assert out["committed_after_offset_delete"] == {"0": -1, "1": 0}
    assert out["group_listed"] is True
    assert out["group_listed_after_delete"] is False


@pytest.mark.parametrize("version", SARAMA_VERSIONS)
def test_sarama_admin_operations(goclients, broker, topic, version):
    out = run(goclients, "sarama-ops", broker, topic, "-kafka-version", version)
    assert_ops(out)
    assert out["offsets_after_delete_records"] == {"oldest": 4, "newest": 10}
    sizes = out["log_dir_sizes"]
    assert set(sizes) == {"0", "1", "2", "3"}
    assert sizes["0"] > 0 and sizes["1"] == sizes["2"] == sizes["3"] == 0


def test_kafkago_admin_operations(goclients, broker, topic):
    out = run(goclients, "kafkago-ops", broker, topic)
    assert_ops(out)
    assert out["offsets"] == {"0": [0, 10], "1": [0, 0]}


@pytest.mark.parametrize("version", SARAMA_VERSIONS)
def test_sarama_transactions(goclients, broker, topic, version):
    out = run(goclients, "sarama-txn", broker, topic, "-kafka-version", version)
    # c0 c1 at 0 1, a marker at 2, a0 a1 at 3 4, a marker at 5, c2 at 6, a marker at 7.
    assert out["offsets"] == {"c0": 0, "c1": 1, "a0": 3, "a1": 4, "c2": 6}
    assert out["read_committed"] == ["c0", "c1", "c2"]
    assert out["read_uncommitted"] == ["c0", "c1", "a0", "a1", "c2"]
    assert out["committed"] == {"0": 8}


def test_group_shared_by_sarama_and_kafkago(goclients, broker, topic):
    """A sarama member joins a new group, a kafka-go member joins it within the initial rebalance
    delay: Kafka makes the first member to join the leader, so sarama assigns (kafka-go cannot
    read sarama's version 1+ subscription). The group settles with the 4 partitions split, every
    record consumed and the committed offsets at the end of each partition."""
    out = run(goclients, "mixed-group", broker, topic, "-n", "40")
    assert out["group_state"] == "Stable"
    assignments = out["assignments"]
    assert sorted(assignments) == ["strom-compat-kafka-go", "strom-compat-sarama"]
    assert sorted(p for ps in assignments.values() for p in ps) == [0, 1, 2, 3]
    assert all(len(ps) == 2 for ps in assignments.values())
    assert out["committed"] == out["end_offsets"]
    assert set(out["consumed_by_member"]) == {"sarama", "kafka-go"}


def test_kafkago_conn(goclients, broker, topic):
    """kafka-go's Conn: three uncompressed, three gzip and three snappy messages with headers."""
    out = run(goclients, "kafkago-conn", broker, topic)
    assert out["base_offsets"] == {"gzip": 3, "snappy": 6}
    assert (out["first"], out["last"], out["offset_by_time"]) == (0, 9, 0)
    assert [r["offset"] for r in out["read"]] == list(range(9))
    assert [(r["key"], r["value"], r["headers"]) for r in out["read"]] == [
        (f"{source}-key-{i}", f"{source}-value-{i}", {"index": str(i), "source": source})
        for source in ("plain", "gzip", "snappy") for i in range(3)]


def test_sarama_static_membership(goclients, broker, topic):
    """A static member closes without leaving; restarted with its group.instance.id it gets a new
    member id in the same generation, with the same partitions, and resumes from its commits."""
    out = run(goclients, "sarama-static", broker, topic, "-kafka-version", SARAMA_VERSIONS[-1])
    first, second = out["first"], out["second"]
    for run_ in (first, second):
        assert run_["consumed"] == ordered(run_["produced"])
    [before], [after] = first["sessions"], second["sessions"]
    assert after["generation"] == before["generation"]
    assert after["member_id"] != before["member_id"]
    assert after["claims"] == before["claims"] == {topic: [0, 1]}
    instance = f"{topic}-instance"
    assert out["members_after_run_1"] == [{"member_id": before["member_id"], "instance_id": instance}]
    assert out["members_after_run_2"] == [{"member_id": after["member_id"], "instance_id": instance}]
    everything = next_offsets(first["produced"] + second["produced"])
    assert out["committed"] == {str(p): everything.get(str(p), 0) for p in range(2)}


def test_sarama_codecs(goclients, broker, topic):
    """An idempotent AsyncProducer sends 1000 records with each codec in batches of 50: every
    record is acknowledged, and read back exactly once at dense offsets."""
    out = run(goclients, "sarama-codecs", broker, topic, "-n", "1000", "-kafka-version", SARAMA_VERSIONS[-1])
    codecs = {"none", "gzip", "snappy", "lz4", "zstd"}
    assert out["acked"] == {codec: 1000 for codec in codecs}
    assert out["distinct_read"] == {codec: 1000 for codec in codecs}
    assert out["duplicates_read"] == 0
    assert out["offset_gaps"] == 0
    assert sum(out["end_offsets"].values()) == 5000
