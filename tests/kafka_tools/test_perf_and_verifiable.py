"""kafka-producer-perf-test and kafka-consumer-perf-test on a short run; kafka-verifiable-producer
and kafka-verifiable-consumer, the tools of Kafka's own system tests, through kill -9 of a
partition leader on 3 nodes: every acknowledged record is consumed, none twice."""

import json
import re

from confluent_kafka import Consumer, TopicPartition

from kafka_checks import wait_until
from tools import Background, Target, admin_tool

RECORDS = 20000


def test_perf_tests(target, topic, group):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 2,
               "--replication-factor", target.replication)
    out = admin_tool("producer-perf-test", target, "--topic", topic, "--num-records", RECORDS, "--record-size", 100,
                     "--throughput", -1, "--command-property", "acks=all", timeout=120).stdout
    assert re.search(rf"^{RECORDS} records sent, [\d.]+ records/sec", out.splitlines()[-1]), out

    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": group})
    try:
        ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(2)]
    finally:
        c.close()
    assert sum(ends) == RECORDS

    out = admin_tool("consumer-perf-test", target, "--topic", topic, "--num-records", RECORDS, "--group", group,
                     "--timeout", 60000, timeout=120).stdout
    header, row = out.strip().splitlines()[-2:]
    stats = dict(zip((h.strip() for h in header.split(",")), (v.strip() for v in row.split(","))))
    assert int(stats["data.consumed.in.nMsg"]) == RECORDS
    assert float(stats["data.consumed.in.MB"]) == round(RECORDS * 100 / 1024 / 1024, 4)


def events(lines, name):
    return [e for e in (json.loads(line) for line in list(lines) if line.startswith("{")) if e["name"] == name]


def test_verifiable_producer_and_consumer_through_a_leader_kill(cluster, topic, group, tmp_path):
    """The verifiable producer turns retries off unless told otherwise; here it is an idempotent
    producer that retries, so every record it sends must be acknowledged, and stored once."""
    total = 6000
    producer_config = tmp_path / "producer.properties"
    producer_config.write_text("enable.idempotence=true\nretries=2147483647\ndelivery.timeout.ms=120000\n")
    target = Target("cluster", cluster.bootstrap, [n.id for n in cluster.brokers], 3)
    admin_tool("topics", target, "--create", "--topic", topic, "--replica-assignment", "1:2:3,2:3:1,3:1:2",
               "--config", "min.insync.replicas=2")
    cluster.wait_isr(topic, 3)
    with Background("verifiable-consumer", "--bootstrap-server", target.bootstrap, "--topic", topic,
                    "--group-id", group, "--verbose") as consumer:
        wait_until(lambda: any(len(e["partitions"]) == 3 for e in events(consumer.lines, "partitions_assigned")),
                   60, "the verifiable consumer to be assigned all partitions")
        admin = target.admin()
        [description] = [f.result(timeout=30) for f in admin.describe_consumer_groups([group]).values()]
        coordinator = description.coordinator.id
        partition = next(p for p in range(3) if cluster.leader(topic, p) != coordinator)
        victim = cluster.node(cluster.leader(topic, partition))

        with Background("verifiable-producer", "--bootstrap-server", target.bootstrap, "--topic", topic,
                        "--max-messages", total, "--throughput", 500, "--acks", -1,
                        "--command-config", producer_config) as producer:
            wait_until(lambda: len(events(producer.lines, "producer_send_success")) >= 1000, 60,
                       "1000 acknowledged records")
            victim.kill()
            try:
                wait_until(lambda: cluster.leader(topic, partition) not in (-1, victim.id), 30,
                           f"a new leader of partition {partition}")
            finally:
                cluster.restart(victim)
            assert producer.wait(120) == 0, "\n".join(producer.stderr[-30:])

        errors = events(producer.lines, "producer_send_error")
        assert not errors, f"{len(errors)} records not acknowledged, e.g. {errors[:3]}"
        acked = {e["value"]: (e["partition"], e["offset"]) for e in events(producer.lines, "producer_send_success")}
        [summary] = events(producer.lines, "tool_data")
        assert (summary["sent"], summary["acked"], len(acked)) == (total, total, total), summary

        def consumed():
            return [(e["value"], e["partition"], e["offset"]) for e in events(consumer.lines, "record_data")]

        wait_until(lambda: {v for v, _, _ in consumed()} >= set(acked), 60, "every acknowledged record consumed")
    records = consumed()
    assert len({(p, o) for _, p, o in records}) == len(records), "an offset consumed twice"
    assert len({v for v, _, _ in records}) == len(records), "a value consumed twice"
    assert {v: (p, o) for v, p, o in records} == acked
    cluster.wait_isr(topic, 3)
