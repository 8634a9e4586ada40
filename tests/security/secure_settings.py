"""Broker properties of the secured brokers (Kafka's names), shared by the security suite and
the TLS cluster test: every listener's protocol is its name, the broker's PEM keystore and the
CA's truststore, the StandardAuthorizer with no access without an ACL, and the broker's own
certificate (CN=broker) and the admin identities as super users."""

from clients import ADMIN_PASSWORD, ALICE_PASSWORD, AUTHORIZER

SUPER_USERS = "User:CN=broker;User:CN=admin;User:admin"
CLIENT_LISTENERS = ("SSL", "SASL_SSL", "SASL_PLAINTEXT")
# admin's SCRAM credentials, written into the metadata log when the node first starts.
SEED_ADMIN = [arg for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
              for arg in ("--add-scram", f"{mechanism}=[name=admin,password={ADMIN_PASSWORD}]")]


def security_overrides(pki, listeners, controller="PLAINTEXT", inline=False):
    """The properties every secured broker has; the keystore and truststore as files, or as
    inline PEM when `inline`."""
    props = {
        "listener.security.protocol.map": ",".join([f"{name}:{name}" for name in listeners]
                                                   + [f"CONTROLLER:{controller}"]),
        "inter.broker.listener.name": "SSL",
        "ssl.keystore.type": "PEM",
        "ssl.truststore.type": "PEM",
        "authorizer.class.name": AUTHORIZER,
        "super.users": SUPER_USERS,
        "allow.everyone.if.no.acl.found": "false",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "3",
    }
    if inline:
        props["ssl.keystore.key"] = pki.broker.pem_key()
        props["ssl.keystore.certificate.chain"] = pki.broker.pem_cert()
        props["ssl.truststore.certificates"] = pki.ca.read_text()
    else:
        props["ssl.keystore.location"] = str(pki.broker.keystore)
        props["ssl.truststore.location"] = str(pki.ca)
    return props


def secure_broker_overrides(pki):
    """The session's secured broker: client certificates required on SSL, SCRAM on SASL_SSL,
    PLAIN users admin and alice on SASL_PLAINTEXT."""
    plain_users = f'user_admin="{ADMIN_PASSWORD}" user_alice="{ALICE_PASSWORD}"'
    return {
        **security_overrides(pki, CLIENT_LISTENERS),
        "listener.name.ssl.ssl.client.auth": "required",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
    }


def tls_controller_overrides(pki):
    """A node whose controller listener is TLS too (mutual TLS, always) and whose one client
    listener is SSL with client certificates required; ssl.client.auth itself stays at its
    default (none), so the controller listener's demand for a certificate is its own."""
    return {**security_overrides(pki, ("SSL",), controller="SSL"), "listener.name.ssl.ssl.client.auth": "required"}
