"""Real clients on the secured broker's listeners, each producing records and reading them
back: confluent-kafka (librdkafka 2.16) with SCRAM over SASL_SSL and with a client certificate
over SSL, kafkajs with SCRAM over TLS, kafka-python with PLAIN over SASL_PLAINTEXT, kcat
(Debian's librdkafka 2.0.2) with a client certificate over SSL."""

import json
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from clients import ADMIN_PASSWORD, create_topic, round_trip, sasl_conf, ssl_conf
from secure_settings import CLIENT_LISTENERS, security_overrides

KAFKAJS = Path(__file__).resolve().parents[1] / "compat" / "kafkajs" / "scram_tls.js"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_scram_over_sasl_ssl(secure_broker, pki, topic, mechanism):
    conf = sasl_conf(secure_broker.address("SASL_SSL"), mechanism, "admin", ADMIN_PASSWORD, pki)
    round_trip(conf, topic)


def test_confluent_kafka_client_certificate_over_ssl(secure_broker, pki, topic):
    round_trip(ssl_conf(secure_broker.address("SSL"), pki, pki.admin), topic)


@pytest.mark.parametrize("listener", CLIENT_LISTENERS)
def test_metadata_answers_with_the_listener_asked(secure_broker, admin_conf, listener):
    brokers = AdminClient(admin_conf(listener)).list_topics(timeout=10).brokers
    assert [(b.id, b.host, b.port) for b in brokers.values()] == [(1, "127.0.0.1", secure_broker.ports[listener])]


def test_kafkajs_scram_sha_512_over_tls(secure_broker, pki, topic):
    run = subprocess.run(
        ["node", str(KAFKAJS), secure_broker.address("SASL_SSL"), topic, f"{topic}-group", str(pki.ca),
         "scram-sha-512", "admin", ADMIN_PASSWORD],
        capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    out = json.loads(run.stdout)
    assert out["created"] is True
    assert all(a["errorCode"] == 0 for a in out["acks"])
    assert sorted(m["value"] for m in out["received"]) == sorted(f"secure {i}" for i in range(10))


def test_kafka_python_plain_over_sasl_plaintext(secure_broker, topic):
    conf = dict(bootstrap_servers=secure_broker.address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN", sasl_plain_username="admin", sasl_plain_password=ADMIN_PASSWORD)
    admin = KafkaAdminClient(**conf)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(**conf)
    values = [f"plain {i}".encode() for i in range(10)]
    futures = [producer.send(topic, value=v) for v in values]
    producer.flush(30)
    for f in futures:
        f.get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id=f"{topic}-group", auto_offset_reset="earliest", **conf)
    got = []
    deadline = time.monotonic() + 60
    while len(got) < len(values) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got += [r.value for r in records]
    consumer.close()
    assert sorted(got) == sorted(values)


def kcat(*args, stdin=None):
    run = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    return run.stdout.decode()


def test_kcat_client_certificate_over_ssl(secure_broker, pki, topic):
    address = secure_broker.address("SSL")
    create_topic(ssl_conf(address, pki, pki.admin), topic)
    settings = [arg for k, v in pki.rdkafka_ssl(pki.admin).items() for arg in ("-X", f"{k}={v}")]
    assert f"broker 1 at {address}" in kcat("-b", address, *settings, "-L")
    lines = [f"kcat {i}" for i in range(10)]
    kcat("-b", address, *settings, "-P", "-t", topic, stdin="".join(f"{l}\n" for l in lines).encode())
    out = kcat("-b", address, *settings, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%s\n")
    assert out.splitlines() == lines


def test_inline_pem_keystore_and_truststore(start_broker, pki, topic):
    """ssl.keystore.key, ssl.keystore.certificate.chain and ssl.truststore.certificates in
    place of the files."""
    overrides = {**security_overrides(pki, ("SSL",), inline=True), "ssl.client.auth": "required"}
    assert not any(key.endswith(".location") for key in overrides)
    broker = start_broker(overrides)
    round_trip(ssl_conf(broker.address("SSL"), pki, pki.admin), topic)
