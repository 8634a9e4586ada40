"""Kafka's tools that need an API Strom does not have yet (issue 18): each test asserts the
error the tool gets today, so that the gap shows and the test fails once the API lands."""

from tools import admin_tool


def unsupported(api):
    return f"org.apache.kafka.common.errors.UnsupportedVersionException: The node does not support {api}"


def test_consumer_group_protocol(target, topic, group):
    """A console consumer with group.protocol=consumer (KIP-848) gives up at its first
    ConsumerGroupHeartbeat; the classic group tools see no group."""
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 1,
               "--replication-factor", target.replication)
    done = admin_tool("console-consumer", target, "--topic", topic, "--group", group, "--from-beginning",
                      "--max-messages", 1, "--timeout-ms", 20000, "--command-property", "group.protocol=consumer",
                      timeout=90)
    assert "UnsupportedVersionException: The cluster does not support the new CONSUMER group protocol." \
        in done.stderr
    assert unsupported("CONSUMER_GROUP_HEARTBEAT").removeprefix("org.apache.kafka.common.errors.") in done.stderr
    assert "Processed a total of 0 messages" in done.stderr
    listed = admin_tool("consumer-groups", target, "--list", "--type", "consumer").stdout
    assert listed.split() == ["GROUP", "TYPE"]
