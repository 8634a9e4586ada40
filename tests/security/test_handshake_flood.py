"""A TLS listener flooded with half-finished handshakes (a TCP connection and the first bytes
of a ClientHello, then nothing) keeps serving good clients, and closes every stalled handshake
once `request.read.timeout.ms` has passed, counting it under
`strom_failed_authentications_total`."""

import socket

from broker import metric
from clients import answers_api_versions, round_trip, ssl_conf
from kafka_checks import wait_until
from secure_settings import security_overrides

STALLED = 200
# A TLS record header announcing a 512-byte handshake message, and the first 16 bytes of it.
PARTIAL_CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + bytes([0x01, 0x00, 0x01, 0xFC]) + b"\x03\x03" + b"\x00" * 10
READ_TIMEOUT_MS = 2000


def failed_authentications(broker, listener):
    return metric(broker, "strom_failed_authentications_total", listener=listener)


def closed_by_peer(sock):
    """True once the broker has closed `sock` (EOF or reset)."""
    try:
        return sock.recv(1) == b""
    except (BlockingIOError, socket.timeout):
        return False
    except OSError:
        return True


def test_stalled_handshakes_are_closed_and_good_clients_served(start_broker, pki, topic):
    overrides = {**security_overrides(pki, ("SSL",)), "request.read.timeout.ms": str(READ_TIMEOUT_MS),
                 "listener.name.ssl.ssl.client.auth": "required"}
    broker = start_broker(overrides)
    before = failed_authentications(broker, "SSL")
    stalled = []
    try:
        for _ in range(STALLED):
            s = socket.create_connection(("127.0.0.1", broker.ports["SSL"]), timeout=10)
            s.sendall(PARTIAL_CLIENT_HELLO)
            stalled.append(s)
        # While they stall, a real client is served.
        assert answers_api_versions(broker.ports["SSL"], pki.context(pki.admin))
        round_trip(ssl_conf(broker.address("SSL"), pki, pki.admin), topic)
        for s in stalled:
            s.setblocking(False)
        wait_until(lambda: all(closed_by_peer(s) for s in stalled), 30, "every stalled handshake to be closed")
        wait_until(lambda: failed_authentications(broker, "SSL") >= before + STALLED, 10,
                   "the closed handshakes to be counted")
    finally:
        for s in stalled:
            s.close()
    assert answers_api_versions(broker.ports["SSL"], pki.context(pki.admin))
