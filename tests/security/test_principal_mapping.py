"""ssl.principal.mapping.rules turns a client certificate's subject into the principal the
authorizer sees: with a rule that keeps the CN, the CN=admin certificate is the super user
User:admin (super.users does not name User:CN=admin), and CN=alice is User:alice, who may not
create a topic until User:alice is given an ACL. Without the rule, CN=admin is User:CN=admin
and no super user."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from clients import create_acls, create_topic, round_trip, ssl_conf, tenant_acls
from kafka_checks import wait_until
from secure_settings import security_overrides

RULES = "RULE:^CN=([^,]+)$/$1/L,DEFAULT"


def mapping_broker(start_broker, pki, rules=RULES):
    """A broker whose SSL listener requires client certificates, with `rules` and the super
    users User:admin and User:broker (the broker certificate's name under the rule)."""
    broker = start_broker({
        **security_overrides(pki, ("SSL",)),
        "listener.name.ssl.ssl.client.auth": "required",
        "ssl.principal.mapping.rules": rules,
        "super.users": "User:admin;User:broker",
    })
    return lambda identity: ssl_conf(broker.address("SSL"), pki, identity)


def creation_refusal(conf, topic):
    """The error code of the refused CreateTopics for `topic`."""
    with pytest.raises(KafkaException) as refused:
        create_topic(conf, topic)
    return refused.value.args[0].code()


def test_mapped_name_is_the_super_user(start_broker, pki, topic):
    round_trip(mapping_broker(start_broker, pki)(pki.admin), topic)


def test_mapped_name_is_what_acls_name(start_broker, pki, topic):
    conf = mapping_broker(start_broker, pki)
    assert creation_refusal(conf(pki.alice), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(conf(pki.admin), tenant_acls("User:alice", topic))

    def created():
        try:
            create_topic(conf(pki.alice), topic)
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, e
            return False
        return True

    wait_until(created, 30, "User:alice's ACL to let CN=alice create the topic")


def test_without_the_rule_the_dn_is_no_super_user(start_broker, pki, topic):
    conf = mapping_broker(start_broker, pki, rules="DEFAULT")
    assert creation_refusal(conf(pki.admin), topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
