"""kafka-log-dirs (DescribeLogDirs): every broker's log directory with the replicas it holds and
their sizes, on a single node and on three."""

import json

from tools import admin_tool, retry


def test_log_dirs(target, topic):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 2,
               "--replication-factor", target.replication)
    admin_tool("console-producer", target, "--topic", topic, "--reader-property", "parse.key=true",
               "--reader-property", "key.separator=:", input="".join(f"k0:record-{i}\n" for i in range(50)))

    def described():
        done = admin_tool("log-dirs", target, "--describe", "--topic-list", topic)
        lines = done.stdout.splitlines()
        assert lines[:2] == ["Querying brokers for log directories information",
                             f"Received log directory information from brokers {','.join(map(str, target.broker_ids))}"]
        return json.loads(lines[2])

    def replicated():
        report = described()
        assert report["version"] == 1
        assert sorted(b["broker"] for b in report["brokers"]) == sorted(target.broker_ids)
        sizes = {}
        for broker in report["brokers"]:
            assert len(broker["logDirs"]) == 1
            log_dir = broker["logDirs"][0]
            assert log_dir["error"] is None and log_dir["logDir"].startswith("/")
            for p in log_dir["partitions"]:
                assert p["isFuture"] is False and p["offsetLag"] == 0
                sizes.setdefault(p["partition"], []).append(p["size"])
        assert set(sizes) == {f"{topic}-0", f"{topic}-1"}, "only the topic asked for"
        assert all(len(set(replicas)) == 1 and len(replicas) == target.replication
                   for replicas in sizes.values()), f"every replica the same size: {sizes}"
        return {partition: replicas[0] for partition, replicas in sizes.items()}

    sizes = retry(replicated, 30, "every replica to hold the records")
    assert sorted(sizes.values())[0] == 0, f"one key, so one partition holds the 50 records: {sizes}"
    assert sorted(sizes.values())[1] > 50 * len("record-00"), sizes
