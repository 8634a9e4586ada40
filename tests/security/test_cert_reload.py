"""The broker's key store reloaded from its file while it runs (ssl.reload.interval.ms): a
renewed certificate swapped in at ssl.keystore.location, as Kubernetes swaps a mounted
secret, is what new TLS connections are shown; a store that does not load is reported and the
last good one kept."""

import os

from cryptography import x509

from clients import answers_api_versions
from kafka_checks import wait_until
from secure_settings import security_overrides
from wire import Connection

RELOAD_MS = 300


def replace_file(path, data):
    """Writes `data` next to `path` and renames it over `path` in one step."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def served_certificate(port, pki):
    """The certificate a new TLS connection to `port` is shown (checked against the CA and
    127.0.0.1)."""
    with Connection(port, ssl_context=pki.context()) as conn:
        return x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True))


def certificate(identity):
    return x509.load_pem_x509_certificate(identity.cert.read_bytes())


def wait_for_certificate(port, pki, identity):
    """Polls new connections until they are shown `identity`'s certificate."""
    expected = certificate(identity)
    wait_until(lambda: served_certificate(port, pki) == expected, 20, f"the broker to serve CN={identity.cn}")


def test_renewed_certificate_is_served_and_a_broken_one_is_not(start_broker, pki, tmp_path):
    keystore = tmp_path / "secret" / "keystore.pem"
    keystore.parent.mkdir()
    keystore.write_bytes(pki.broker.keystore.read_bytes())
    broker = start_broker({**security_overrides(pki, ("SSL",)), "ssl.keystore.location": str(keystore),
                           "ssl.reload.interval.ms": str(RELOAD_MS)})
    port = broker.ports["SSL"]
    first = served_certificate(port, pki)
    assert first.subject.rfc4514_string() == "CN=broker"
    assert first.serial_number == certificate(pki.broker).serial_number

    replace_file(keystore, pki.renewed_broker.keystore.read_bytes())
    wait_for_certificate(port, pki, pki.renewed_broker)
    renewed = served_certificate(port, pki)
    assert renewed.subject.rfc4514_string() == "CN=broker-renewed"
    assert renewed.serial_number != first.serial_number
    assert answers_api_versions(port, pki.context())

    log_before = broker.log_path.stat().st_size
    replace_file(keystore, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")

    def new_warning():
        with open(broker.log_path, "rb") as log:
            log.seek(log_before)
            return [line for line in log.read().decode(errors="replace").splitlines()
                    if "WARN" in line and "ssl.keystore.location" in line]

    wait_until(new_warning, 20, "a warning naming ssl.keystore.location")
    for _ in range(3):
        assert served_certificate(port, pki) == renewed
        assert answers_api_versions(port, pki.context())

    # A good store again after a broken one is picked up too.
    replace_file(keystore, pki.broker.keystore.read_bytes())
    wait_for_certificate(port, pki, pki.broker)
