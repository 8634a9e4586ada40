"""Every topic config of Kafka 4.0 round-trips through CreateTopics, IncrementalAlterConfigs
and DescribeConfigs (confluent-kafka's AdminClient), with Kafka's defaults, sources, synonyms
and INVALID_CONFIG messages."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

# Kafka 4.0's topic configs and their defaults, as DescribeConfigs shows them.
KAFKA_DEFAULTS = {
    "cleanup.policy": "delete",
    "compression.gzip.level": "-1",
    "compression.lz4.level": "9",
    "compression.type": "producer",
    "compression.zstd.level": "3",
    "delete.retention.ms": "86400000",
    "file.delete.delay.ms": "60000",
    "flush.messages": "9223372036854775807",
    "flush.ms": "9223372036854775807",
    "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "4096",
    "leader.replication.throttled.replicas": "",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "9223372036854775807",
    "max.message.bytes": "1048588",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "9223372036854775807",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "min.insync.replicas": "1",
    "preallocate": "false",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "remote.storage.enable": "false",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "segment.index.bytes": "10485760",
    "segment.jitter.ms": "0",
    "segment.ms": "604800000",
    "unclean.leader.election.enable": "false",
}

# A valid value other than the default for each (remote storage stays off: Kafka refuses it
# without tiered storage, and so does Strom).
OTHER_VALUES = {
    "cleanup.policy": "compact,delete",
    "compression.gzip.level": "5",
    "compression.lz4.level": "3",
    "compression.type": "zstd",
    "compression.zstd.level": "10",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "5000",
    "flush.messages": "1000",
    "flush.ms": "2000",
    "follower.replication.throttled.replicas": "0:1",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "1000",
    "local.retention.ms": "1000",
    "max.compaction.lag.ms": "86400000",
    "max.message.bytes": "2000000",
    "message.timestamp.after.max.ms": "1000",
    "message.timestamp.before.max.ms": "2000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "100",
    "min.insync.replicas": "2",
    "preallocate": "true",
    "remote.log.copy.disable": "true",
    "remote.log.delete.on.disable": "true",
    "remote.storage.enable": "false",
    "retention.bytes": "1048576",
    "retention.ms": "3600000",
    "segment.bytes": "1048576",
    "segment.index.bytes": "4096",
    "segment.jitter.ms": "10",
    "segment.ms": "7200000",
    "unclean.leader.election.enable": "true",
}


def describe(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(15)


def create(admin, topic, config):
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(15)


def test_a_new_topic_describes_every_config_with_kafkas_default(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, topic, {})
    entries = describe(admin, topic)
    assert {n: e.value for n, e in entries.items()} == KAFKA_DEFAULTS
    assert {e.source for e in entries.values()} == {ConfigSource.DEFAULT_CONFIG.value}
    assert not any(e.is_read_only or e.is_sensitive for e in entries.values())


def test_every_config_round_trips_through_create_and_incremental_alter(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, topic, OTHER_VALUES)
    entries = describe(admin, topic)
    assert {n: e.value for n, e in entries.items()} == OTHER_VALUES
    assert {e.source for e in entries.values()} == {ConfigSource.DYNAMIC_TOPIC_CONFIG.value}

    altered = f"{topic}-altered"
    create(admin, altered, {})
    resource = ConfigResource(ResourceType.TOPIC, altered, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET) for name, value in OTHER_VALUES.items()])
    admin.incremental_alter_configs([resource])[resource].result(15)
    assert {n: e.value for n, e in describe(admin, altered).items()} == OTHER_VALUES

    back = ConfigResource(ResourceType.TOPIC, altered, incremental_configs=[
        ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE) for name in OTHER_VALUES])
    admin.incremental_alter_configs([back])[back].result(15)
    assert {n: e.value for n, e in describe(admin, altered).items()} == KAFKA_DEFAULTS


def test_synonyms_show_where_a_value_comes_from(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, topic, {"cleanup.policy": "compact"})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(15)
    policy = entries["cleanup.policy"]
    assert [(s.name, s.value, s.source) for s in policy.synonyms.values()] == [
        ("cleanup.policy", "compact", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG.value),
    ]
    # retention.ms falls back to log.retention.hours, which Kafka drops from the list.
    assert entries["retention.ms"].synonyms == {}


@pytest.mark.parametrize("config, message", [
    ({"message.downconversion.enable": "true"}, "Unknown topic config name: message.downconversion.enable"),
    ({"no.such.config": "1"}, "Unknown topic config name: no.such.config"),
    ({"retention.ms": "soon"}, "Invalid value soon for configuration retention.ms: Not a number of type LONG"),
    ({"cleanup.policy": "shred"},
     "Invalid value shred for configuration cleanup.policy: String must be one of: compact, delete"),
    ({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"},
     "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"),
    ({"remote.storage.enable": "true"},
     "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage."),
])
def test_bad_configs_get_kafkas_invalid_config(broker, topic, config, message):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as refused:
        create(admin, topic, config)
    error = refused.value.args[0]
    assert error.code() == KafkaError.INVALID_CONFIG
    assert error.str() == message
