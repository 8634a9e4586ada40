"""`--add-scram` seeds a cluster once, as Kafka's `kafka-storage format --add-scram` does at
format time: a credential deleted afterwards stays deleted when the node restarts with the
same arguments, instead of coming back with the well-known seed password."""

from confluent_kafka.admin import AdminClient, ScramMechanism, UserScramCredentialDeletion

from clients import ADMIN_PASSWORD, authentication_failures, connects, sasl_conf, ssl_conf
from kafka_checks import wait_until
from secure_settings import SEED_ADMIN, secure_broker_overrides, CLIENT_LISTENERS


def test_a_deleted_seed_credential_stays_deleted_after_a_restart(start_broker, pki):
    broker = start_broker(secure_broker_overrides(pki), SEED_ADMIN, CLIENT_LISTENERS)
    scram = sasl_conf(broker.address("SASL_SSL"), "SCRAM-SHA-512", "admin", ADMIN_PASSWORD, pki)
    wait_until(lambda: connects(scram), 30, "the seeded SCRAM credential to be accepted")

    admin = AdminClient(ssl_conf(broker.address("SSL"), pki, pki.admin))
    deletions = [UserScramCredentialDeletion("admin", m)
                 for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    # Both deletions name the same user: Kafka takes one change per user per request.
    for deletion in deletions:
        admin.alter_user_scram_credentials([deletion])["admin"].result(timeout=30)
    assert authentication_failures(scram)

    broker.stop()
    broker.start(timeout=60)
    assert authentication_failures(scram)
    # The node itself serves: the certificate-authenticated super user still connects.
    assert connects(ssl_conf(broker.address("SSL"), pki, pki.admin), timeout=30)
