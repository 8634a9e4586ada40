"""kafka-configs: topic configs described and altered (added and deleted), the broker's configs
described with `--all`, each line as Apache Kafka prints it (value, sensitivity, synonyms with
their sources), cross-checked with confluent-kafka's AdminClient."""

from confluent_kafka.admin import ConfigResource, ConfigSource

from tools import admin_tool, config_entries

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def describe(target, *args):
    return admin_tool("configs", target, "--describe", *args).stdout


def test_topic_configs_described_and_altered(target, topic):
    admin_tool("topics", target, "--create", "--topic", topic, "--partitions", 1,
               "--replication-factor", target.replication,
               "--config", "retention.ms=1000000", "--config", "cleanup.policy=delete")

    out = describe(target, "--entity-type", "topics", "--entity-name", topic)
    assert out.splitlines()[0] == f"Dynamic configs for topic {topic} are:"
    assert config_entries(out) == {
        "cleanup.policy": "cleanup.policy=delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=delete, "
                          "DEFAULT_CONFIG:log.cleanup.policy=delete}",
        "retention.ms": "retention.ms=1000000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=1000000}",
    }

    out = admin_tool("configs", target, "--alter", "--entity-type", "topics", "--entity-name", topic,
                     "--add-config", "retention.ms=2000000,max.message.bytes=200000").stdout
    assert out.strip() == f"Completed updating config for topic {topic}."
    out = admin_tool("configs", target, "--alter", "--entity-type", "topics", "--entity-name", topic,
                     "--delete-config", "cleanup.policy").stdout
    assert out.strip() == f"Completed updating config for topic {topic}."

    assert config_entries(describe(target, "--entity-type", "topics", "--entity-name", topic)) == {
        "max.message.bytes": "max.message.bytes=200000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:"
                             "max.message.bytes=200000, DEFAULT_CONFIG:message.max.bytes=1048588}",
        "retention.ms": "retention.ms=2000000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=2000000}",
    }
    out = describe(target, "--entity-type", "topics", "--entity-name", topic, "--all")
    assert out.splitlines()[0] == f"All configs for topic {topic} are:"
    every = config_entries(out)
    defaults = ("cleanup.policy", "segment.bytes", "compression.type", "retention.ms")
    assert {name: every.get(name) for name in defaults} == {
        "cleanup.policy": "cleanup.policy=delete sensitive=false synonyms={DEFAULT_CONFIG:log.cleanup.policy=delete}",
        "segment.bytes": "segment.bytes=1073741824 sensitive=false "
                         "synonyms={DEFAULT_CONFIG:log.segment.bytes=1073741824}",
        "compression.type": "compression.type=producer sensitive=false "
                            "synonyms={DEFAULT_CONFIG:compression.type=producer}",
        "retention.ms": "retention.ms=2000000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=2000000}",
    }

    admin, res = target.admin(), ConfigResource("topic", topic)
    configs = admin.describe_configs([res])[res].result(timeout=30)
    assert (configs["retention.ms"].value, configs["retention.ms"].source) == \
        ("2000000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert (configs["max.message.bytes"].value, configs["max.message.bytes"].source) == \
        ("200000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].source) == \
        ("delete", ConfigSource.DEFAULT_CONFIG.value)


def test_broker_configs_with_defaults_and_sources(target):
    """The lines as Apache Kafka 4.4 prints them: synonyms in order of precedence, a static
    setting before the default it overrides, and no synonym for a null default."""
    admin = target.admin()
    for broker_id in target.broker_ids:
        out = describe(target, "--entity-type", "brokers", "--entity-name", broker_id, "--all")
        assert out.splitlines()[0] == f"All configs for broker {broker_id} are:"
        every = config_entries(out)
        expected = {
            "log.retention.hours": "log.retention.hours=168 sensitive=false "
                                   "synonyms={DEFAULT_CONFIG:log.retention.hours=168}",
            "message.max.bytes": "message.max.bytes=1048588 sensitive=false "
                                 "synonyms={DEFAULT_CONFIG:message.max.bytes=1048588}",
            "num.partitions": "num.partitions=1 sensitive=false synonyms={DEFAULT_CONFIG:num.partitions=1}",
            "auto.create.topics.enable": "auto.create.topics.enable=true sensitive=false "
                                         "synonyms={DEFAULT_CONFIG:auto.create.topics.enable=true}",
            "log.retention.ms": "log.retention.ms=null sensitive=false synonyms={}",
            "replica.lag.time.max.ms": "replica.lag.time.max.ms=5000 sensitive=false "
                                       "synonyms={STATIC_BROKER_CONFIG:replica.lag.time.max.ms=5000, "
                                       "DEFAULT_CONFIG:replica.lag.time.max.ms=30000}",
            "authorizer.class.name": f"authorizer.class.name={STANDARD_AUTHORIZER} sensitive=false "
                                     f"synonyms={{STATIC_BROKER_CONFIG:authorizer.class.name={STANDARD_AUTHORIZER}, "
                                     "DEFAULT_CONFIG:authorizer.class.name=}",
        }
        if target.name == "cluster":
            expected["node.id"] = (f"node.id={broker_id} sensitive=false "
                                   f"synonyms={{STATIC_BROKER_CONFIG:node.id={broker_id}}}")
        wrong = [f"got  {every.get(name)}\nwant {line}" for name, line in expected.items()
                 if every.get(name) != line]
        assert not wrong, f"broker {broker_id}:\n" + "\n".join(wrong)

        res = ConfigResource("broker", str(broker_id))
        configs = admin.describe_configs([res])[res].result(timeout=30)
        assert (configs["num.partitions"].value, configs["num.partitions"].source) == \
            ("1", ConfigSource.DEFAULT_CONFIG.value)
        assert (configs["replica.lag.time.max.ms"].value, configs["replica.lag.time.max.ms"].source) == \
            ("5000", ConfigSource.STATIC_BROKER_CONFIG.value)

        out = describe(target, "--entity-type", "brokers", "--entity-name", broker_id)
        assert out.strip() == f"Dynamic configs for broker {broker_id} are:"


def test_cluster_wide_broker_defaults(target):
    """Apache Kafka 4.4 writes `min.insync.replicas=1` as a cluster-wide dynamic default when the
    cluster is formatted (for eligible leader replicas) and lists it here as
    DYNAMIC_DEFAULT_BROKER_CONFIG; Strom has no dynamic broker configs yet (issue 18)."""
    out = describe(target, "--entity-type", "brokers", "--entity-default")
    assert out.strip() == "Default configs for brokers in the cluster are:"
