"""Three combined nodes configured as the README's secured cluster: TLS on every listener, the
controller listener included (CONTROLLER:SSL, mutual TLS), each node with its own certificate
(CN=strom-N) and the nodes super users through `ssl.principal.mapping.rules`, replicating over
the SSL inter-broker listener. A replication-factor-3 topic takes acks=all records from a client
with a certificate, gives them all back, and every partition keeps three in-sync replicas."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from clients import AUTHORIZER, records_come_back  # noqa: E402
from pki import make_pki  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_replication_over_tls_everywhere(cluster, pki, topic):
    overrides = {
        "listener.security.protocol.map": "SSL:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name": "SSL",
        "ssl.truststore.location": str(pki.ca),
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": AUTHORIZER,
        "super.users": ";".join(f"User:{n.cn}" for n in pki.nodes) + ";User:admin",
    }
    c = cluster(combined=3, listener="SSL", client_config=pki.rdkafka_ssl(pki.admin), overrides=overrides,
                node_overrides=lambda i: {"ssl.keystore.location": str(pki.nodes[i - 1].keystore)})
    c.create_topic(topic, partitions=3, replication=3)
    records_come_back({"bootstrap.servers": c.bootstrap, **c.client_config}, topic, count=300)
    c.wait_isr(topic, 3)
    parts = c.partitions(topic)
    assert sorted(parts) == [0, 1, 2]
    for leader, replicas, isr in parts.values():
        assert leader in (1, 2, 3)
        assert sorted(replicas) == [1, 2, 3]
        assert sorted(isr) == [1, 2, 3]
