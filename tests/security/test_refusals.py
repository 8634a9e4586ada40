"""What the secured broker refuses, and that it keeps serving good clients afterwards: wrong
or unknown SASL credentials and mechanisms a listener does not enable, client certificates
from another CA or none at all on the SSL listener, plaintext Kafka bytes on a TLS port, and a
replica Fetch from a principal that is not allowed ClusterAction, a fetch session's
partitions once their READ ACL is gone, and log directories and the metadata quorum to a principal
that may not describe the cluster."""

import struct

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from clients import (
    ADMIN_PASSWORD,
    answers_api_versions,
    authentication_failures,
    connects,
    create_acls,
    create_topic,
    produce,
    refused,
    sasl_conf,
    ssl_conf,
)
from kafka_checks import wait_until
from wire import (
    API_VERSIONS,
    Connection,
    compact_string,
    fetch_v4,
    fetch_v4_answer,
    fetch_v7,
    fetch_v7_answer,
    request_frame,
    uvarint,
)

FETCH = 1
DESCRIBE_LOG_DIRS = 35
DESCRIBE_QUORUM = 55
TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED = 29, 31
API_VERSIONS_V0 = request_frame(API_VERSIONS, 0, 1, "probe", b"")

BAD_CREDENTIALS = {
    "scram-sha-512 wrong password": ("SASL_SSL", "SCRAM-SHA-512", "admin", "not-the-secret"),
    "scram-sha-256 wrong password": ("SASL_SSL", "SCRAM-SHA-256", "admin", "not-the-secret"),
    "scram unknown user": ("SASL_SSL", "SCRAM-SHA-512", "nobody", ADMIN_PASSWORD),
    "plain not enabled on sasl_ssl": ("SASL_SSL", "PLAIN", "admin", ADMIN_PASSWORD),
    "plain wrong password": ("SASL_PLAINTEXT", "PLAIN", "alice", "not-the-secret"),
    "plain unknown user": ("SASL_PLAINTEXT", "PLAIN", "nobody", ADMIN_PASSWORD),
    "scram not enabled on sasl_plaintext": ("SASL_PLAINTEXT", "SCRAM-SHA-512", "admin", ADMIN_PASSWORD),
}


@pytest.mark.parametrize("case", BAD_CREDENTIALS)
def test_bad_credentials_are_refused(secure_broker, pki, admin_conf, case):
    listener, mechanism, user, password = BAD_CREDENTIALS[case]
    conf = sasl_conf(secure_broker.address(listener), mechanism, user, password,
                     pki if listener == "SASL_SSL" else None)
    assert authentication_failures(conf)
    assert connects(admin_conf(listener)), "a good client was not served after the refusal"


@pytest.mark.parametrize("who", ["other CA", "no certificate"])
def test_ssl_listener_requires_a_certificate_from_the_ca(secure_broker, pki, who):
    identity = pki.impostor if who == "other CA" else None
    port = secure_broker.ports["SSL"]
    assert refused(port, pki.context(identity), API_VERSIONS_V0) == b""
    assert not connects(ssl_conf(secure_broker.address("SSL"), pki, identity))
    assert answers_api_versions(port, pki.context(pki.alice))


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_plaintext_kafka_on_a_tls_port_is_not_answered(secure_broker, pki, admin_conf, listener):
    received = refused(secure_broker.ports[listener], None, API_VERSIONS_V0)
    # Nothing, or a TLS alert record (content type 21): never a Kafka response frame.
    assert received[:1] in (b"", b"\x15"), received[:64]
    assert connects(admin_conf(listener))


def test_replica_fetch_needs_cluster_action(secure_broker, pki, admin_conf, topic):
    """alice (CN=alice over SSL) may read the topic as a consumer; the same Fetch claiming
    to come from a replica is refused with an authorization error and moves nothing."""
    admin = admin_conf("SSL")
    create_topic(admin, topic)
    assert produce(admin, topic, [b"r0", b"r1", b"r2"]) == [None] * 3
    create_acls(admin, [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, pki.alice.principal,
                                   "*", op, AclPermissionType.ALLOW)
                        for op in (AclOperation.READ, AclOperation.DESCRIBE)])
    with Connection(secure_broker.ports["SSL"], ssl_context=pki.context(pki.alice)) as alice:

        def fetch(offset, replica_id=-1):
            return fetch_v4_answer(alice.request(FETCH, 4, fetch_v4(topic, 0, offset, replica_id)))[(topic, 0)]

        def read_allowed():
            answer = fetch(0)
            return answer if answer[0] == 0 else None

        as_consumer = wait_until(read_allowed, 30, "alice's READ ACL to apply")
        _, high_watermark, records = as_consumer
        assert high_watermark == 3 and records

        # As this node itself and as another node; from the start, and claiming to hold everything.
        for replica_id, offset in [(1, 0), (1, 3), (2, 0), (2, 3)]:
            error, _, records = fetch(offset, replica_id)
            assert error in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED), (replica_id, offset, error)
            assert records == b"", (replica_id, offset)
        assert fetch(0) == as_consumer


def test_a_fetch_session_authorizes_its_partitions_on_every_fetch(secure_broker, pki, admin_conf, topic):
    """alice opens a fetch session on a topic she may read; once her READ ACL is deleted, an
    incremental fetch that names nothing answers the session's partition with
    TOPIC_AUTHORIZATION_FAILED, as Kafka does."""
    admin = admin_conf("SSL")
    create_topic(admin, topic)
    assert produce(admin, topic, [b"r0"]) == [None]
    create_acls(admin, [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, pki.alice.principal,
                                   "*", op, AclPermissionType.ALLOW)
                        for op in (AclOperation.READ, AclOperation.DESCRIBE)])
    with Connection(secure_broker.ports["SSL"], ssl_context=pki.context(pki.alice)) as alice:
        def fetch(partitions, session, epoch):
            return fetch_v7_answer(alice.request(FETCH, 7, fetch_v7(partitions, session, epoch)))

        def opened():
            error, session, answer = fetch([(topic, 0, 0)], 0, 0)
            return session if error == 0 and session and answer[(topic, 0)][0] == 0 else None

        session = wait_until(opened, 30, "alice's READ ACL to apply")
        read = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, pki.alice.principal,
                                "*", AclOperation.READ, AclPermissionType.ALLOW)
        client = AdminClient(admin)
        for future in client.delete_acls([read]).values():
            future.result(timeout=30)
        epochs = iter(range(1, 1000))

        def refused_in_session():
            error, same, answer = fetch([], session, next(epochs))
            assert (error, same) == (0, session)
            code, _, records = answer.get((topic, 0), (0, None, b""))
            return code == TOPIC_AUTHORIZATION_FAILED and records == b""

        wait_until(refused_in_session, 30, "the session's partition to be refused")


def test_log_dirs_need_describe_on_the_cluster(secure_broker, pki, admin_conf, topic):
    """DescribeLogDirs (v1, all topics) shows the log directory to a super user and nothing to
    alice, who may not describe the cluster (v1 has no error field: Kafka answers with no
    directories)."""
    create_topic(admin_conf("SSL"), topic)

    def directories(identity):
        with Connection(secure_broker.ports["SSL"], ssl_context=pki.context(identity)) as c:
            body = c.request(DESCRIBE_LOG_DIRS, 1, struct.pack(">i", -1))
        _throttle, count = struct.unpack_from(">ii", body)
        return count

    assert directories(pki.admin) == 1
    assert directories(pki.alice) == 0


def test_the_metadata_quorum_needs_describe_on_the_cluster(secure_broker, pki):
    """DescribeQuorum (v0, flexible: a tagged-field byte after the v1 header) answers a super
    user and refuses alice with CLUSTER_AUTHORIZATION_FAILED at the top."""
    body = (b"\x00" + uvarint(2) + compact_string("__cluster_metadata") + uvarint(2) + struct.pack(">i", 0)
            + b"\x00" * 3)

    def error_code(identity):
        with Connection(secure_broker.ports["SSL"], ssl_context=pki.context(identity)) as c:
            answer = c.request(DESCRIBE_QUORUM, 0, body)
        assert answer[0] == 0, "no tagged fields in the response header"
        return struct.unpack_from(">h", answer, 1)[0]

    assert error_code(pki.admin) == 0
    assert error_code(pki.alice) == CLUSTER_AUTHORIZATION_FAILED
