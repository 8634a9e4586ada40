"""DescribeConfigs of a topic and of the broker: every entry's value, source, read-only and
sensitive flags and type, Apache Kafka's against Strom's."""

import uuid

from compare import NOTES, compare
from raw import Raw, create_ready_topic, describe_configs

TOPIC, BROKER = 2, 4

# Broker settings whose values name this machine's ports and directories, or that the two brokers
# are given differently (Kafka in its properties file, Strom by its defaults): value and source.
LOCAL = {"listeners", "advertised.listeners", "log.dirs", "log.dir", "controller.quorum.bootstrap.servers",
         "controller.quorum.voters", "listener.security.protocol.map", "controller.listener.names",
         "inter.broker.listener.name", "process.roles", "node.id"}


def entries(resp):
    [result] = resp.results
    assert result.error_code == 0, result
    return {e.name: {"value": e.value, "read_only": e.read_only, "config_source": e.config_source,
                     "is_sensitive": e.is_sensitive, "config_type": e.config_type} for e in result.configs}


def test_topic_configs(both):
    name = f"configs-{uuid.uuid4().hex[:8]}"
    found = {}
    for side, bootstrap in both.items():
        with Raw(bootstrap) as r:
            create_ready_topic(r, name, 2, {"retention.ms": "3600000", "cleanup.policy": "compact",
                                            "min.insync.replicas": "1"})
            found[side] = entries(describe_configs(r, TOPIC, name))
    compare("describe_configs_topic", found["kafka"], found["strom"])


def test_broker_configs(both):
    found = {}
    for side, bootstrap in both.items():
        with Raw(bootstrap) as r:
            found[side] = entries(describe_configs(r, BROKER, "1"))
    common = set(found["kafka"]) & set(found["strom"])
    only = {side: sorted(set(found[side]) - common) for side in found}
    for side, names in only.items():
        NOTES.append(f"broker configs only {side} describes: {len(names)}: {', '.join(names)}")
    for side in found:
        for name in LOCAL & common:
            found[side][name].update(value="<local>", config_source="<local>")
    compare("describe_configs_broker", {n: found["kafka"][n] for n in common}, {n: found["strom"][n] for n in common})
