"""kafka-console-producer and kafka-console-consumer: keys and headers parsed from input lines,
printed back by a consumer in a group, whose committed offsets kafka-consumer-groups and
confluent-kafka's AdminClient then report."""

from confluent_kafka import ConsumerGroupTopicPartitions

from tools import admin_tool, table


def test_keys_headers_and_group(target, topic, group):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 3,
               "--replication-factor", target.replication)
    sent = [(f"trace:{i},origin:console", f"k{i % 3}", f"value-{i}") for i in range(9)]
    admin_tool("console-producer", target, "--topic", topic,
               "--reader-property", "parse.key=true", "--reader-property", "parse.headers=true",
               input="".join("\t".join(record) + "\n" for record in sent))

    done = admin_tool("console-consumer", target, "--topic", topic, "--group", group, "--from-beginning",
                      "--max-messages", len(sent), "--timeout-ms", 30000,
                      "--formatter-property", "print.partition=true", "--formatter-property", "print.offset=true",
                      "--formatter-property", "print.headers=true", "--formatter-property", "print.key=true",
                      timeout=90)
    assert f"Processed a total of {len(sent)} messages" in done.stderr
    received, partition_of_key, offsets = [], {}, {}
    for line in done.stdout.splitlines():
        partition, offset, headers, key, value = line.split("\t")
        partition = int(partition.removeprefix("Partition:"))
        received.append((headers, key, value))
        assert partition_of_key.setdefault(key, partition) == partition, f"{key} in two partitions"
        offsets.setdefault(partition, []).append(int(offset.removeprefix("Offset:")))
    assert sorted(received) == sorted(sent)
    assert all(o == list(range(len(o))) for o in offsets.values()), offsets

    rows = table(admin_tool("consumer-groups", target, "--describe", "--group", group).stdout)
    assert {(int(r["PARTITION"]), r["CURRENT-OFFSET"], r["LAG"]) for r in rows} == \
        {(p, str(len(o)), "0") for p, o in offsets.items()} | {(p, "0", "0") for p in range(3) if p not in offsets}
    admin = target.admin()
    committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == \
        {p: len(offsets.get(p, [])) for p in range(3)}
