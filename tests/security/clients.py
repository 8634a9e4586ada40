"""What the security suites share: the users and passwords of the secured brokers,
confluent-kafka settings per listener and identity, round trips that return the errors a
client saw instead of hiding them, the ACLs a tenant is given, and a raw TLS probe."""

import socket
import ssl
import time
from contextlib import suppress

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from wire import API_VERSIONS, Connection, api_versions_v0_error

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ADMIN_PASSWORD = "admin-secret"
ALICE_PASSWORD = "alice-secret"
SCRAM_ITERATIONS = 8192


def sasl_conf(address, mechanism, user, password, pki=None):
    """SASL_SSL (trusting `pki`'s CA) when `pki` is given, SASL_PLAINTEXT otherwise."""
    conf = {"bootstrap.servers": address, "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password}
    if pki is None:
        return {**conf, "security.protocol": "SASL_PLAINTEXT"}
    return {**conf, "security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.ca)}


def ssl_conf(address, pki, identity):
    return {"bootstrap.servers": address, **pki.rdkafka_ssl(identity)}


def create_topic(conf, name, partitions=1, replication=1):
    """Creates `name` as the client of `conf`; raises the broker's error (KafkaException)."""
    admin = AdminClient(conf)  # kept until the result: a destroyed client fails its futures
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication)], operation_timeout=30)
    futures[name].result(timeout=60)


def produce(conf, topic, values, timeout=30):
    """Produces `values` (bytes) and returns what became of each: None when acknowledged,
    else the KafkaError of its delivery report or of produce() itself."""
    outcomes = []
    producer = Producer({**conf, "acks": "all", "linger.ms": 5, "message.timeout.ms": timeout * 1000})
    for value in values:
        try:
            producer.produce(topic, value=value, on_delivery=lambda err, msg: outcomes.append(err))
        except KafkaException as e:
            outcomes.append(e.args[0])
    producer.flush(timeout + 10)
    assert len(outcomes) == len(values), f"{len(values) - len(outcomes)} deliveries never reported"
    return outcomes


def consume(conf, topic, group, count, timeout=60):
    """The values of the first `count` records a consumer in `group` subscribed to `topic`
    reads from the beginning; fails on the first error the consumer reports."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    values = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value())
    finally:
        consumer.close()
    return values


def round_trip(conf, topic, count=5, partitions=2, replication=1):
    """Creates `topic`, then `records_come_back`."""
    create_topic(conf, topic, partitions, replication)
    records_come_back(conf, topic, count)


def records_come_back(conf, topic, count):
    """Produces `count` records with acks=all and reads them back in a consumer group;
    asserts every record was acknowledged and came back."""
    values = [f"{topic} record {i}".encode() for i in range(count)]
    assert produce(conf, topic, values) == [None] * count
    assert sorted(consume(conf, topic, f"{topic}-group", count)) == sorted(values)


def first_consumer_error(conf, topic, group, timeout=30):
    """The first error a consumer in `group` subscribed to `topic` reports (None if none)."""
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                return message.error()
    finally:
        consumer.close()
    return None


def topics_listed(conf, timeout=10):
    """The topic names a Metadata request for all topics shows the client of `conf`."""
    return set(AdminClient(conf).list_topics(timeout=timeout).topics)


def connects(conf, timeout=5):
    """True when the client of `conf` gets an answer to a Metadata request."""
    with suppress(KafkaException):
        AdminClient(conf).list_topics(timeout=timeout)
        return True
    return False


def authentication_failures(conf, timeout=30):
    """The _AUTHENTICATION errors librdkafka reports for `conf`'s credentials, once there is
    one; fails if a Metadata request succeeds instead, or if nothing is reported in time."""
    errors = []
    admin = AdminClient({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1)
        except KafkaException:
            pass
        else:
            raise AssertionError("the broker answered a client whose credentials are wrong")
        admin.poll(0.1)
        failures = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if failures:
            return failures
    raise AssertionError(f"no authentication failure reported within {timeout}s: {errors}")


def add_scram_user(admin_conf, user, password, mechanism=ScramMechanism.SCRAM_SHA_512):
    admin = AdminClient(admin_conf)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, SCRAM_ITERATIONS), password.encode())])
    futures[user].result(timeout=30)


def tenant_acls(principal, prefix):
    """What a tenant needs on its own names: READ, WRITE, CREATE and DESCRIBE on topics
    prefixed `prefix`, READ on groups prefixed `prefix`."""
    topic_ops = [AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE]
    bindings = [AclBinding(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, principal, "*",
                           op, AclPermissionType.ALLOW) for op in topic_ops]
    bindings.append(AclBinding(ResourceType.GROUP, prefix, ResourcePatternType.PREFIXED, principal, "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
    return bindings


def principal_filter(principal):
    """Every ACL of `principal`."""
    return AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def create_acls(admin_conf, bindings):
    admin = AdminClient(admin_conf)
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)


def described_acls(admin_conf, principal):
    admin = AdminClient(admin_conf)
    return set(admin.describe_acls(principal_filter(principal)).result(timeout=30))


def refused(port, context=None, payload=b"", timeout=10):
    """Connects to `port` (over TLS with `context`), sends `payload` and reads until the broker
    closes the connection. Returns the bytes received (for TLS, decrypted application data);
    fails if the connection is still open after `timeout` s. A handshake or alert error, a
    reset and a clean close all count as closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(payload)
    except TimeoutError:
        sock.close()
        raise AssertionError(f"the connection was still open after {timeout}s") from None
    except (ssl.SSLError, ConnectionError):
        sock.close()
        return b""
    return received_until_closed(sock, timeout)


def received_until_closed(sock, timeout=10):
    """Reads from `sock` until the broker closes the connection, then closes it; returns the
    bytes received. Fails if the connection is still open after `timeout` s. An alert, a reset
    and a clean close all count as closed."""
    received = b""
    sock.settimeout(timeout)
    try:
        while len(received) < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {timeout}s") from None
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        sock.close()
    return received


def answers_api_versions(port, context=None):
    """True when a new connection to `port` (over TLS with `context`) gets an ApiVersions v0
    answer without error."""
    with Connection(port, ssl_context=context) as conn:
        return api_versions_v0_error(conn.request(API_VERSIONS, 0, b"")) == 0
