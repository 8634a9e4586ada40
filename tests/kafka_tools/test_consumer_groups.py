"""kafka-consumer-groups: list and describe a group with a running console consumer (members,
state, lag) and after it left, then reset its offsets (to earliest, to a date and time, shifted),
delete one partition's offset and delete the group; confluent-kafka's AdminClient checks the
committed offsets after each step."""

import time
from datetime import datetime, timezone

from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, Producer, TopicPartition

from kafka_checks import wait_until
from tools import Background, admin_tool, retry, table


def produce(target, topic, per_partition, partitions, timestamp=None):
    p = Producer({"bootstrap.servers": target.bootstrap, "acks": "all"})
    for partition in partitions:
        for i in range(per_partition):
            ts = {} if timestamp is None else {"timestamp": timestamp + i * 1000}
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition, **ts)
    assert p.flush(30) == 0


def committed(target, group):
    admin = target.admin()
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def describe(target, group, *args):
    return admin_tool("consumer-groups", target, "--describe", "--group", group, *args)


def test_members_state_and_lag(target, topic, group):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 2,
               "--replication-factor", target.replication)
    produce(target, topic, 5, [0, 1])
    with Background("console-consumer", "--bootstrap-server", target.bootstrap, "--topic", topic,
                    "--group", group, "--from-beginning",
                    "--command-property", "auto.commit.interval.ms=200") as consumer:
        wait_until(lambda: len(consumer.lines) >= 10, 60, "the console consumer to print 10 records")

        def one_member():
            rows = table(describe(target, group, "--members").stdout)
            assert len(rows) == 1, rows
            return rows[0]

        member = retry(one_member, 30, "one member in the group")
        assert member["GROUP"] == group and member["CLIENT-ID"] == "console-consumer"
        assert member["HOST"] == "/127.0.0.1" and member["#PARTITIONS"] == "2"

        def caught_up():
            rows = table(describe(target, group).stdout)
            assert sorted((r["TOPIC"], r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"])
                          for r in rows) == [(topic, "0", "5", "5", "0"), (topic, "1", "5", "5", "0")], rows
            assert {r["CONSUMER-ID"] for r in rows} == {member["CONSUMER-ID"]}

        retry(caught_up, 30, "the consumer's offsets to be committed")
        [state] = table(describe(target, group, "--state").stdout)
        assert (state["ASSIGNMENT-STRATEGY"], state["STATE"], state["#MEMBERS"]) == ("range", "Stable", "1")
        assert group in admin_tool("consumer-groups", target, "--list").stdout.split()
        states = table(admin_tool("consumer-groups", target, "--list", "--state").stdout)
        listed = {r["GROUP"]: r["STATE"] for r in states}
        assert listed[group] == "Stable"

    produce(target, topic, 3, [0])
    done = describe(target, group)
    rows = table(done.stdout)
    assert sorted((r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"], r["CONSUMER-ID"])
                  for r in rows) == [("0", "5", "8", "3", "-"), ("1", "5", "5", "0", "-")]
    assert f"Consumer group '{group}' has no active members." in done.stdout + done.stderr
    admin = target.admin()
    [description] = [f.result(timeout=30) for f in admin.describe_consumer_groups([group]).values()]
    assert description.state == ConsumerGroupState.EMPTY and not description.members


def reset(target, group, topic, *how):
    rows = table(admin_tool("consumer-groups", target, "--reset-offsets", "--group", group, "--topic", topic,
                            *how, "--execute").stdout)
    return {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in rows}


def test_reset_delete_offsets_and_delete(target, topic, group):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 2,
               "--replication-factor", target.replication)
    base = (int(time.time()) - 600) * 1000
    produce(target, topic, 5, [0, 1], timestamp=base)
    c = Consumer({"bootstrap.servers": target.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 5)], asynchronous=False)
    finally:
        c.close()
    assert committed(target, group) == {0: 5, 1: 5}

    assert reset(target, group, topic, "--to-earliest") == {0: 0, 1: 0}
    assert committed(target, group) == {0: 0, 1: 0}

    at = datetime.fromtimestamp((base + 2000) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert reset(target, group, topic, "--to-datetime", at) == {0: 2, 1: 2}
    assert committed(target, group) == {0: 2, 1: 2}

    assert reset(target, group, f"{topic}:0", "--shift-by", -1) == {0: 1}
    assert reset(target, group, f"{topic}:1", "--shift-by", 10) == {1: 5}
    assert committed(target, group) == {0: 1, 1: 5}

    done = admin_tool("consumer-groups", target, "--delete-offsets", "--group", group, "--topic", f"{topic}:1")
    assert f"Request succeeded for deleting offsets from group {group}." in done.stdout
    assert [(r["TOPIC"], r["PARTITION"], r["STATUS"]) for r in table(done.stdout)] == [(topic, "1", "Successful")]
    rows = table(describe(target, group).stdout)
    assert [(r["PARTITION"], r["CURRENT-OFFSET"], r["LAG"]) for r in rows] == [("0", "1", "4")]
    assert committed(target, group) == {0: 1}

    done = admin_tool("consumer-groups", target, "--delete", "--group", group)
    assert done.stdout.strip() == f"Deletion of requested consumer groups ('{group}') was successful."
    assert group not in admin_tool("consumer-groups", target, "--list").stdout.split()
    admin = target.admin()
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid}
