"""Three combined nodes configured as the README's secured cluster: TLS on every listener, the
controller listener included (CONTROLLER:SSL, mutual TLS), each node with its own certificate
(CN=strom-N) and the nodes super users through `ssl.principal.mapping.rules`, replicating over
the SSL inter-broker listener; then the same cluster replicating over SASL_SSL, the nodes
logging in to each other as `broker` with SCRAM-SHA-512 (a seeded credential) and with PLAIN
(the listener's JAAS users). In both a
replication-factor-3 topic takes acks=all records from an authenticated client, gives them all
back, and every partition keeps three in-sync replicas."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from clients import AUTHORIZER, records_come_back, sasl_conf  # noqa: E402
from pki import make_pki  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_overrides(pki, listener):
    """Every listener and the controller's on TLS with mutual TLS, the nodes super users."""
    return {
        "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:SSL",
        "inter.broker.listener.name": listener,
        "ssl.truststore.location": str(pki.ca),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": AUTHORIZER,
        "super.users": ";".join(f"User:{n.cn}" for n in pki.nodes) + ";User:admin;User:broker",
    }


def own_certificate(pki):
    return lambda i: {"ssl.keystore.location": str(pki.nodes[i - 1].keystore)}


def replicates(c, topic):
    c.create_topic(topic, partitions=3, replication=3)
    records_come_back({"bootstrap.servers": c.bootstrap, **c.client_config}, topic, count=300)
    c.wait_isr(topic, 3)
    parts = c.partitions(topic)
    assert sorted(parts) == [0, 1, 2]
    for leader, replicas, isr in parts.values():
        assert leader in (1, 2, 3)
        assert sorted(replicas) == [1, 2, 3]
        assert sorted(isr) == [1, 2, 3]


def test_replication_over_tls_everywhere(cluster, pki, topic):
    c = cluster(combined=3, listener="SSL", client_config=pki.rdkafka_ssl(pki.admin),
                overrides=tls_overrides(pki, "SSL"), node_overrides=own_certificate(pki))
    replicates(c, topic)


def test_replication_over_sasl_ssl_with_scram(cluster, pki, topic):
    overrides = {
        **tls_overrides(pki, "SASL_SSL"),
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";',
    }
    seeds = [arg for user in ("broker", "admin")
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={user}-secret]")]
    client = sasl_conf("", "SCRAM-SHA-512", "admin", "admin-secret", pki)
    del client["bootstrap.servers"]
    c = cluster(combined=3, listener="SASL_SSL", client_config=client, overrides=overrides,
                node_overrides=own_certificate(pki), extra_args=seeds)
    replicates(c, topic)


def test_replication_over_sasl_ssl_with_plain(cluster, pki, topic):
    users = 'user_broker="broker-secret" user_admin="admin-secret"'
    overrides = {
        **tls_overrides(pki, "SASL_SSL"),
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="broker" password="broker-secret" {users};',
    }
    client = sasl_conf("", "PLAIN", "admin", "admin-secret", pki)
    del client["bootstrap.servers"]
    c = cluster(combined=3, listener="SASL_SSL", client_config=client, overrides=overrides,
                node_overrides=own_certificate(pki))
    replicates(c, topic)
