"""The controller listener on TLS (CONTROLLER:SSL): the node's broker reaches its controller
with its own certificate, and the listener demands a client certificate from the CA of every
peer, whatever ssl.client.auth says. A peer without one, or speaking plaintext, gets nothing:
the controller protocol (length-prefixed JSON) would otherwise hand it the whole metadata
image, SCRAM credentials and ACLs included, and take proposals."""

import json
import socket
import struct

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from clients import (
    create_acls,
    described_acls,
    principal_filter,
    received_until_closed,
    refused,
    round_trip,
    ssl_conf,
)
from kafka_checks import wait_until
from wire import read_exactly

# A request of the controller protocol (broker/src/metadata/rpc.rs): the image after offset 0.
FETCH_IMAGE = json.dumps({"FetchImage": {"after": 0, "max_wait_ms": 0}}).encode()
FETCH_IMAGE_FRAME = struct.pack(">I", len(FETCH_IMAGE)) + FETCH_IMAGE


def controller_answer(port, context=None, timeout=10):
    """The decoded answer to FETCH_IMAGE_FRAME (over TLS with `context`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn = context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock
        with conn:
            conn.sendall(FETCH_IMAGE_FRAME)
            size = struct.unpack(">I", read_exactly(conn, 4))[0]
            return json.loads(read_exactly(conn, size))


def test_node_with_a_tls_controller_serves_clients(tls_controller_broker, pki, topic):
    round_trip(ssl_conf(tls_controller_broker.address("SSL"), pki, pki.admin), topic)


def test_peer_with_a_ca_certificate_is_answered(tls_controller_broker, pki):
    assert "Image" in controller_answer(tls_controller_broker.controller_port, pki.context(pki.broker))


def test_plaintext_peer_gets_no_answer(tls_controller_broker, start_broker):
    # The same bytes are a request a PLAINTEXT controller listener without an authorizer answers.
    plain = start_broker({}, listeners=("PLAINTEXT",))
    assert "Image" in controller_answer(plain.controller_port)
    received = refused(tls_controller_broker.controller_port, None, FETCH_IMAGE_FRAME)
    assert received[:1] in (b"", b"\x15"), received[:64]  # nothing, or a TLS alert record


def test_plaintext_controller_refuses_anonymous_peers_under_the_authorizer(secure_broker):
    """As Kafka's ControllerApis: with the authorizer on, a PLAINTEXT controller listener's
    peers are User:ANONYMOUS, who is not allowed ClusterAction unless made a super user."""
    assert refused(secure_broker.controller_port, None, FETCH_IMAGE_FRAME) == b""


@pytest.mark.parametrize("who", ["no certificate", "other CA"])
def test_tls_peer_without_a_ca_certificate_is_refused(tls_controller_broker, pki, who):
    identity = pki.impostor if who == "other CA" else None
    assert refused(tls_controller_broker.controller_port, pki.context(identity), FETCH_IMAGE_FRAME) == b""
    assert "Image" in controller_answer(tls_controller_broker.controller_port, pki.context(pki.broker))


def test_revoking_cluster_action_closes_an_open_controller_connection(tls_controller_broker, pki):
    """A peer allowed ClusterAction by an ACL (not a super user) is answered; once the ACL is
    deleted its next request on the same connection closes it, as every request is checked."""
    admin_conf = ssl_conf(tls_controller_broker.address("SSL"), pki, pki.admin)
    grant = AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                       pki.alice.principal, "*", AclOperation.CLUSTER_ACTION, AclPermissionType.ALLOW)
    create_acls(admin_conf, [grant])
    context = pki.context(pki.alice)
    with socket.create_connection(("127.0.0.1", tls_controller_broker.controller_port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as conn:
            conn.sendall(FETCH_IMAGE_FRAME)
            size = struct.unpack(">I", read_exactly(conn, 4))[0]
            assert "Image" in json.loads(read_exactly(conn, size))
            admin = AdminClient(admin_conf)
            deleted = admin.delete_acls([principal_filter(pki.alice.principal)])
            for future in deleted.values():
                future.result(timeout=30)
            wait_until(lambda: not described_acls(admin_conf, pki.alice.principal), 30, "the ACL to be gone")
            conn.sendall(FETCH_IMAGE_FRAME)
            assert received_until_closed(conn) == b""
