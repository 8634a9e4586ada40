"""The suite's own certificates, checked with Python's ssl module alone (no broker): a mutual
TLS handshake with the broker's keystore succeeds for the CA's clients on 127.0.0.1 and fails
for the other CA's, so a refusal seen elsewhere is the broker's doing, not a broken PKI."""

import socket
import ssl
import threading

from cryptography import x509


def handshake(pki, identity):
    """Runs one handshake between a server holding the broker keystore (client certificates
    required) and a client presenting `identity`; returns the server's view of the peer's
    subject, or the client's error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(pki.broker.keystore))
    server_ctx.load_verify_locations(str(pki.ca))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve():
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    seen["subject"] = tls.getpeercert()["subject"]
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as e:
                seen["server_error"] = e
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with pki.context(identity).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    seen["reply"] = tls.recv(2)
        except (ssl.SSLError, OSError) as e:
            seen["client_error"] = e
        thread.join(timeout=10)
    return seen


def test_ca_clients_complete_mutual_tls(pki):
    for identity in (pki.admin, pki.alice, pki.broker):
        seen = handshake(pki, identity)
        assert seen.get("reply") == b"ok", seen
        assert seen["subject"] == ((("commonName", identity.cn),),)


def test_other_ca_client_is_refused(pki):
    seen = handshake(pki, pki.impostor)
    assert "reply" not in seen or seen["reply"] == b"", seen
    assert "subject" not in seen


def test_files_hold_what_kafka_expects(pki):
    for identity in (pki.broker, pki.admin, pki.alice, pki.impostor):
        keystore = identity.keystore.read_text()
        assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
        assert keystore.count("-----BEGIN CERTIFICATE-----") == 1
    broker = x509.load_pem_x509_certificate(pki.broker.cert.read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert broker.subject.rfc4514_string() == "CN=broker"
