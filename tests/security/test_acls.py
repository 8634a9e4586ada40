"""Authorization with the StandardAuthorizer: the super user (CN=admin over mutual TLS)
creates SCRAM users with AlterUserScramCredentials and gives them prefixed ACLs with
CreateAcls; a user works inside his prefix and nowhere else, sees only his topics, and loses
his access when DeleteAcls removes his ACLs."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient, ScramMechanism
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAuthorizationFailedError

from clients import (
    ALICE_PASSWORD,
    SCRAM_ITERATIONS,
    add_scram_user,
    connects,
    create_acls,
    create_topic,
    described_acls,
    first_consumer_error,
    principal_filter,
    produce,
    round_trip,
    sasl_conf,
    tenant_acls,
    topics_listed,
)
from kafka_checks import wait_until


def make_tenant(secure_broker, pki, admin, user):
    """A SCRAM-SHA-512 user `user` with the tenant ACLs on the prefix `user`-, once the broker
    accepts his credentials; returns his client settings (SASL_SSL)."""
    password, acls = f"{user}-secret", tenant_acls(f"User:{user}", f"{user}-")
    add_scram_user(admin, user, password)
    create_acls(admin, acls)
    conf = sasl_conf(secure_broker.address("SASL_SSL"), "SCRAM-SHA-512", user, password, pki)
    wait_until(lambda: connects(conf), 30, f"{user}'s SCRAM credentials to be accepted")
    wait_until(lambda: described_acls(admin, f"User:{user}") == set(acls), 30, f"{user}'s ACLs")
    return conf


@pytest.fixture(scope="module")
def bob(secure_broker, pki, admin_conf):
    return make_tenant(secure_broker, pki, admin_conf("SSL"), "bob")


def admin_topic(admin_conf, topic, records=1):
    """A topic outside every tenant's prefix, created and written by the super user."""
    create_topic(admin_conf("SSL"), topic)
    assert produce(admin_conf("SSL"), topic, [b"admin's"] * records) == [None] * records


def end_offset(conf, topic):
    consumer = Consumer({**conf, "group.id": "unused"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def test_scram_credentials_are_described(bob, admin_conf):
    admin = AdminClient(admin_conf("SSL"))
    infos = admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=30).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)]


def test_prefixed_acls_are_described(bob, admin_conf):
    assert described_acls(admin_conf("SSL"), "User:bob") == set(tenant_acls("User:bob", "bob-"))


def test_tenant_creates_produces_and_consumes_his_topics(bob, topic):
    round_trip(bob, f"bob-{topic}")


def test_tenant_cannot_write_or_create_other_topics(bob, admin_conf, topic):
    admin_topic(admin_conf, topic)
    outcomes = produce(bob, topic, [b"intruder"] * 3)
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3
    assert end_offset(admin_conf("SSL"), topic) == 1
    with pytest.raises(KafkaException) as refused:
        create_topic(bob, f"other-{topic}")
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert f"other-{topic}" not in topics_listed(admin_conf("SSL"))


def test_tenant_cannot_use_other_groups(bob, topic):
    create_topic(bob, f"bob-{topic}")
    error = first_consumer_error(bob, f"bob-{topic}", f"not-bob-{topic}")
    assert error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error


def test_tenant_lists_only_his_topics(bob, admin_conf, topic):
    admin_topic(admin_conf, topic)
    create_topic(bob, f"bob-{topic}")
    listed = topics_listed(bob)
    assert f"bob-{topic}" in listed
    assert all(name.startswith("bob-") for name in listed), listed
    assert topic in topics_listed(admin_conf("SSL"))


def test_describe_cluster_answers_everyone_with_their_operations(bob, admin_conf):
    """As Kafka: DescribeCluster is never refused; without Describe on the cluster the
    authorized operations are empty, a super user gets them all."""
    tenant = AdminClient(bob)  # kept until the result: a destroyed client fails its futures
    described = tenant.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert described.nodes and not described.authorized_operations
    admin = AdminClient(admin_conf("SSL"))
    described = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert AclOperation.CLUSTER_ACTION in described.authorized_operations


def test_deleted_acls_remove_access(secure_broker, pki, admin_conf, topic):
    admin = admin_conf("SSL")
    carol = make_tenant(secure_broker, pki, admin, "carol")
    mine = f"carol-{topic}"
    create_topic(carol, mine)
    assert produce(carol, mine, [b"before"]) == [None]

    client = AdminClient(admin)
    deleted = next(iter(client.delete_acls([principal_filter("User:carol")]).values())).result(timeout=30)
    assert set(deleted) == set(tenant_acls("User:carol", "carol-"))
    wait_until(lambda: described_acls(admin, "User:carol") == set(), 30, "carol's ACLs to be gone")
    outcomes = produce(carol, mine, [b"after"])
    assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert mine not in topics_listed(carol)
    assert end_offset(admin, mine) == 1


def test_user_without_acls_authenticates_and_sees_nothing(secure_broker, admin_conf, topic):
    """PLAIN user alice (kafka-python) has no ACLs: she connects, lists no topics and cannot
    write to one she names."""
    admin_topic(admin_conf, topic)
    conf = dict(bootstrap_servers=secure_broker.address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password=ALICE_PASSWORD)
    admin = KafkaAdminClient(**conf)
    try:
        assert admin.list_topics() == []
    finally:
        admin.close()
    producer = KafkaProducer(enable_idempotence=False, max_block_ms=30000, **conf)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic, b"intruder").get(timeout=30)
    finally:
        producer.close()
    assert end_offset(admin_conf("SSL"), topic) == 1


def test_client_quotas_need_cluster_config_operations(secure_broker):
    """As Kafka: DescribeClientQuotas needs DescribeConfigs on the cluster, AlterClientQuotas
    AlterConfigs; a user without them gets CLUSTER_AUTHORIZATION_FAILED and changes nothing."""
    from kafka.protocol.admin import AlterClientQuotasRequest as A, DescribeClientQuotasRequest as D

    admin = KafkaAdminClient(bootstrap_servers=secure_broker.address("SASL_PLAINTEXT"),
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                             sasl_plain_username="alice", sasl_plain_password=ALICE_PASSWORD)
    try:
        alter = A(validate_only=False, entries=[A.EntryData(
            entity=[A.EntryData.EntityData(entity_type="user", entity_name="alice")],
            ops=[A.EntryData.OpData(key="producer_byte_rate", value=1e12, remove=False)])])
        [entry] = admin._manager.run(admin._manager.send, alter).entries
        assert entry.error_code == 31, entry
        described = admin._manager.run(admin._manager.send, D(components=[], strict=False))
        assert (described.error_code, described.entries) == (31, None), described
    finally:
        admin.close()
