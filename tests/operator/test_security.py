"""A secured cluster: mutual TLS between the nodes under the operator's cluster CA, a TLS
listener with client certificates from a clients CA of the user's own, a SCRAM listener over TLS, ACLs, and KafkaUsers whose
credentials and ACLs the operator writes, and removes when they are deleted."""

import base64
import socket
import ssl

import pytest
from cryptography import x509
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from conftest import CLUSTER_CONFIG, IMAGE, condition, wait_condition
from kube import apply, get, items, kubectl
from kafka_checks import wait_until
from pki import certificate_authority

CLUSTER = "safe"
MTLS_PORT = 9092
SCRAM_PORT = 9094
EXTERNAL_PORT = 9095
OWN_CLIENTS_CA = "own-clients-ca"


def secret_data(namespace, name):
    secret = get("secret", name, namespace)
    assert secret is not None, f"Secret {name} does not exist"
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def user_manifest(name, kind, acls):
    return {
        "apiVersion": "strom.dev/v1alpha1",
        "kind": "KafkaUser",
        "metadata": {"name": name},
        "spec": {
            "clusterRef": {"name": CLUSTER},
            "authentication": {"type": kind},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


@pytest.fixture(scope="module")
def secured(namespace, tmp_path_factory):
    """A Ready secured cluster of three combined nodes whose clients CA is the user's own (a
    `kubernetes.io/tls` Secret, RSA as cert-manager makes by default), and the cluster CA a
    client trusts."""
    ca_cert, ca_key = certificate_authority("own clients CA")
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": OWN_CLIENTS_CA},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": ca_cert, "tls.key": ca_key},
        },
        namespace,
    )
    apply(
        {
            "apiVersion": "strom.dev/v1alpha1",
            "kind": "KafkaCluster",
            "metadata": {"name": CLUSTER},
            "spec": {
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "pools": [
                    {
                        "name": "nodes",
                        "roles": ["broker", "controller"],
                        "replicas": 3,
                        "storage": {"size": "1Gi", "deleteClaim": True},
                    }
                ],
                "listeners": [
                    {"name": "MTLS", "port": MTLS_PORT, "tls": True, "authentication": "tls"},
                    {"name": "SCRAM", "port": SCRAM_PORT, "tls": True, "authentication": "scram-sha-512"},
                    {
                        "name": "EXTERNAL",
                        "port": EXTERNAL_PORT,
                        "tls": True,
                        "authentication": "scram-sha-512",
                        "type": "nodeport",
                    },
                ],
                "authorization": {"type": "simple", "superUsers": ["User:CN=admin"]},
                "clientsCa": {"secretName": OWN_CLIENTS_CA},
                "config": CLUSTER_CONFIG,
            },
        },
        namespace,
    )
    cluster = wait_condition("kafkacluster", CLUSTER, namespace, "Ready", "True", timeout=300)
    files = tmp_path_factory.mktemp("tls")
    ca = files / "cluster-ca.crt"
    ca.write_text(secret_data(namespace, cluster["status"]["clusterCaSecret"])["ca.crt"])
    return {"namespace": namespace, "ca": str(ca), "files": files, "clients_ca": ca_cert}


def bootstrap(secured, port):
    return f"{CLUSTER}-bootstrap.{secured['namespace']}.svc.cluster.local:{port}"


def scram_config(secured, user, password):
    return {
        "bootstrap.servers": bootstrap(secured, SCRAM_PORT),
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": secured["ca"],
    }


def tls_config(secured, user):
    data = secret_data(secured["namespace"], user)
    cert = secured["files"] / f"{user}.crt"
    key = secured["files"] / f"{user}.key"
    cert.write_text(data["user.crt"])
    key.write_text(data["user.key"])
    return {
        "bootstrap.servers": bootstrap(secured, MTLS_PORT),
        "security.protocol": "SSL",
        "ssl.ca.location": secured["ca"],
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def produce(config, topic, count):
    """Produces `count` records; returns the delivery errors."""
    errors = []
    producer = Producer({**config, "acks": "all", "message.timeout.ms": 20000})
    for i in range(count):
        producer.produce(topic, value=str(i).encode(), on_delivery=lambda e, m: e and errors.append(e))
    producer.flush(30)
    return errors


def consume(config, topic, group, count):
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values = []
    try:
        wait_until(
            lambda: (msg := consumer.poll(1)) is not None
            and (msg.error() is None and values.append(msg.value()) is None)
            and len(values) >= count,
            60,
            f"{count} records of {topic}",
            interval=0,
        )
    finally:
        consumer.close()
    return values


def login_error(config):
    """What a Metadata request with `config` fails with (the request's error and the client's
    own error reports, where librdkafka puts authentication failures), or None."""
    reported = []
    client = AdminClient({**config, "error_cb": lambda e: reported.append(str(e)), "log_level": 0})
    try:
        client.list_topics(timeout=10)
        return None
    except KafkaException as e:
        client.poll(1)
        return "; ".join([str(e), *reported])


def cannot_log_in(config):
    """Whether `config` is refused at authentication."""
    error = login_error(config)
    return error is not None and "AUTHENTICATION" in error.upper()


def tls_handshake(host, port, cafile):
    """None when a TLS handshake with `host:port` verifies against `cafile`, else the error."""
    context = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((host, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLError as e:
        return str(e)


def acls_of(admin_config, principal):
    client = AdminClient(admin_config)
    acl_filter = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, principal, None, AclOperation.ANY, AclPermissionType.ANY
    )
    return client.describe_acls(acl_filter).result(timeout=15)


def test_the_nodes_run_on_certificates_from_the_operator_cluster_ca(secured):
    namespace = secured["namespace"]
    cluster = get("kafkacluster", CLUSTER, namespace)
    assert cluster["status"]["internalTls"] is True
    certs = secret_data(namespace, f"{CLUSTER}-node-certs")
    for i in range(3):
        assert f"{CLUSTER}-nodes-{i}.pem" in certs
        assert "PRIVATE KEY" in certs[f"{CLUSTER}-nodes-{i}.pem"]
    assert certs["cluster-ca.crt"] == secret_data(namespace, f"{CLUSTER}-cluster-ca-cert")["ca.crt"]
    # The listener's certificate carries the bootstrap name and chains to the cluster CA, and
    # only to it: a client that trusts the clients CA instead refuses the broker.
    host = f"{CLUSTER}-bootstrap.{namespace}.svc.cluster.local"
    assert tls_handshake(host, SCRAM_PORT, secured["ca"]) is None
    other = secured["files"] / "clients-ca.crt"
    other.write_text(secret_data(namespace, f"{CLUSTER}-clients-ca-cert")["ca.crt"])
    failure = tls_handshake(host, SCRAM_PORT, str(other))
    assert "CERTIFICATE_VERIFY_FAILED" in failure, failure
    # The pods pass the restricted Pod Security level with the certificate volume mounted.
    pods = items("pod", namespace, f"app.kubernetes.io/instance={CLUSTER}")
    assert len(pods) == 3
    for pod in pods:
        mounts = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert "/etc/strom/tls" in mounts


def test_users_get_credentials_and_acls_and_lose_them_when_deleted(secured):
    namespace = secured["namespace"]
    apply(user_manifest("admin", "tls", []), namespace)
    apply(
        user_manifest(
            "alice",
            "scram-sha-512",
            [
                {"resource": {"type": "topic", "name": "orders"}, "operations": ["Write", "Describe", "Create"]},
            ],
        ),
        namespace,
    )
    apply(
        user_manifest(
            "bob",
            "tls",
            [
                {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Describe"]},
                {"resource": {"type": "group", "name": "bob-", "patternType": "prefixed"}, "operations": ["Read"]},
            ],
        ),
        namespace,
    )
    for user in ("admin", "alice", "bob"):
        wait_condition("kafkauser", user, namespace, "Ready", "True", timeout=120)
    alice = get("kafkauser", "alice", namespace)
    assert alice["status"]["principal"] == "User:alice"
    assert get("kafkauser", "bob", namespace)["status"]["principal"] == "User:CN=bob"

    # The operator creates the topic over its own mutual-TLS connection.
    apply(
        {
            "apiVersion": "strom.dev/v1alpha1",
            "kind": "KafkaTopic",
            "metadata": {"name": "orders"},
            "spec": {"clusterRef": {"name": CLUSTER}, "partitions": 3, "replicationFactor": 3},
        },
        namespace,
    )
    wait_condition("kafkatopic", "orders", namespace, "Ready", "True", timeout=60)

    password = secret_data(namespace, "alice")["password"]
    assert len(password) == 32
    assert 'username="alice"' in secret_data(namespace, "alice")["sasl.jaas.config"]
    alice_config = scram_config(secured, "alice", password)
    assert produce(alice_config, "orders", 50) == []
    # No ACL lets alice write elsewhere.
    denied = produce(alice_config, "payments", 1)
    assert denied and "AUTHORIZATION" in str(denied[0]).upper(), denied
    error = login_error(scram_config(secured, "alice", "wrong-password"))
    assert error is not None and "AUTHENTICATION" in error.upper(), error

    # The user's certificate comes from the user's own clients CA, which the brokers trust; the
    # operator publishes that CA and keeps no clients CA of its own.
    bob_cert = x509.load_pem_x509_certificate(secret_data(namespace, "bob")["user.crt"].encode())
    own_ca = x509.load_pem_x509_certificate(secured["clients_ca"].encode())
    assert bob_cert.issuer == own_ca.subject
    bob_cert.verify_directly_issued_by(own_ca)
    assert secret_data(namespace, "bob")["ca.crt"] == secured["clients_ca"]
    assert secret_data(namespace, f"{CLUSTER}-clients-ca-cert")["ca.crt"] == secured["clients_ca"]
    assert get("secret", f"{CLUSTER}-clients-ca", namespace) is None
    bob_config = tls_config(secured, "bob")
    assert len(consume(bob_config, "orders", "bob-readers", 50)) == 50
    refused = produce(bob_config, "orders", 1)
    assert refused and "AUTHORIZATION" in str(refused[0]).upper(), refused

    admin_config = tls_config(secured, "admin")
    assert len(acls_of(admin_config, "User:alice")) == 3
    # An ACL taken out of the spec is removed from Kafka.
    apply(
        user_manifest("alice", "scram-sha-512", [{"resource": {"type": "topic", "name": "orders"}, "operations": ["Write"]}]),
        namespace,
    )
    wait_until(lambda: len(acls_of(admin_config, "User:alice")) == 1, 60, "alice's ACLs to shrink to one")

    kubectl("-n", namespace, "delete", "kafkauser", "alice", "--timeout=60s")
    wait_until(lambda: acls_of(admin_config, "User:alice") == [], 30, "alice's ACLs to go")
    wait_until(lambda: cannot_log_in(alice_config), 30, "alice's credential to go")
    wait_until(lambda: get("secret", "alice", namespace) is None, 60, "alice's Secret to go")


def test_a_nodeport_listener_advertises_each_broker_node_address(secured):
    namespace = secured["namespace"]
    apply(
        user_manifest(
            "carol",
            "scram-sha-512",
            [
                {"resource": {"type": "topic", "name": "*"}, "operations": ["All"]},
                {"resource": {"type": "group", "name": "carol-", "patternType": "prefixed"}, "operations": ["Read"]},
            ],
        ),
        namespace,
    )
    wait_condition("kafkauser", "carol", namespace, "Ready", "True", timeout=120)

    def external():
        listeners = get("kafkacluster", CLUSTER, namespace)["status"].get("listeners", [])
        found = [l for l in listeners if l["name"] == "EXTERNAL" and len(l.get("brokers", {})) == 3]
        return found[0] if found and found[0].get("bootstrap") else None

    status = wait_until(external, 60, "the EXTERNAL listener's addresses in the status")
    services = items("service", namespace, f"strom.dev/listener=external")
    assert sorted(s["metadata"]["name"] for s in services) == [
        f"{CLUSTER}-external-bootstrap", *(f"{CLUSTER}-nodes-{i}-external" for i in range(3))
    ]
    assert all(s["spec"]["type"] == "NodePort" for s in services)
    # Each broker's certificate gains its node's address (issued again once the pod was
    # scheduled) and the broker loads it without a restart.
    host, port = status["brokers"][f"{CLUSTER}-nodes-0"].rsplit(":", 1)
    wait_until(
        lambda: tls_handshake(host, int(port), secured["ca"]) is None, 180, f"a verified TLS handshake with {host}:{port}"
    )
    for address in status["brokers"].values():
        h, p = address.rsplit(":", 1)
        wait_until(lambda: tls_handshake(h, int(p), secured["ca"]) is None, 180, f"a verified handshake with {address}")
    restarts = [c["restartCount"] for pod in items("pod", namespace, f"app.kubernetes.io/instance={CLUSTER}")
                for c in pod["status"]["containerStatuses"]]
    assert restarts == [0, 0, 0], restarts

    config = {**scram_config(secured, "carol", secret_data(namespace, "carol")["password"]),
              "bootstrap.servers": status["bootstrap"]}
    assert produce(config, "outside", 20) == []
    metadata = AdminClient(config).list_topics(timeout=10)
    advertised = sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values())
    assert advertised == sorted(status["brokers"].values())
    assert len(consume(config, "outside", "carol-readers", 20)) == 20


def test_a_user_never_takes_over_a_secret_it_does_not_own(secured):
    namespace = secured["namespace"]
    kubectl("-n", namespace, "create", "secret", "generic", "dave", "--from-literal=password=not-yours")
    apply(user_manifest("dave", "scram-sha-512", []), namespace)
    refused = wait_condition("kafkauser", "dave", namespace, "Ready", "False", timeout=60, reason="SecretConflict")
    assert "does not belong" in condition(refused, "Ready")["message"]
    secret = get("secret", "dave", namespace)
    assert base64.b64decode(secret["data"]["password"]).decode() == "not-yours"
    assert "sasl.jaas.config" not in secret["data"]
    assert not secret["metadata"].get("ownerReferences")


def test_turning_security_off_is_refused(secured):
    namespace = secured["namespace"]
    kubectl(
        "-n", namespace, "patch", "kafkacluster", CLUSTER, "--type=json", "-p",
        '[{"op": "remove", "path": "/spec/authorization"},'
        ' {"op": "replace", "path": "/spec/listeners", "value": [{"name": "PLAIN", "port": 9092}]}]',
    )
    refused = wait_condition("kafkacluster", CLUSTER, namespace, "Degraded", "True", timeout=60, reason="InvalidSpec")
    assert "mutual TLS" in condition(refused, "Degraded")["message"]
