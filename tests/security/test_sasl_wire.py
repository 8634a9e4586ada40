"""SASL as raw Kafka frames on the secured broker's SASL_PLAINTEXT listener (PLAIN only, users
admin and alice): the v0 SaslHandshake followed by the bare PLAIN token and its bare (empty)
answer, what is refused before authentication (wrong password, any other request, a
mechanism the listener does not enable, a frame over sasl.server.max.receive.size), and a
SaslHandshake on the SSL listener, which is no SASL listener."""

import struct

from clients import ALICE_PASSWORD, answers_api_versions, received_until_closed, refused
from wire import (
    API_VERSIONS,
    SASL_HANDSHAKE,
    Connection,
    api_versions_v0_error,
    array,
    read_exactly,
    request_frame,
    sasl_handshake_answer,
    string,
)

METADATA = 3
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 33, 34
# Metadata v1 for no topic: a request every authenticated client may make.
METADATA_V1_BODY = array([])
# Over Kafka's sasl.server.max.receive.size default (524288), far under socket.request.max.bytes.
OVERSIZED = 600000


def plain_token(user, password):
    """The PLAIN token (RFC 4616) with no authorization id, as a size-prefixed frame without a
    request header: what a client sends after a v0 SaslHandshake."""
    token = b"\0" + user.encode() + b"\0" + password.encode()
    return struct.pack(">i", len(token)) + token


def only_response(received, correlation):
    """The body of the one response frame that makes up `received`, which must answer
    `correlation`."""
    assert len(received) >= 8, received
    size, answered = struct.unpack_from(">ii", received)
    assert len(received) == 4 + size, f"{len(received) - 4} bytes after the size prefix, which says {size}"
    assert answered == correlation
    return received[8:]


def handshake_v0(conn):
    """A v0 SaslHandshake for PLAIN on `conn`; asserts the broker accepts it."""
    assert sasl_handshake_answer(conn.request(SASL_HANDSHAKE, 0, string("PLAIN"))) == (0, ["PLAIN"])


def test_v0_handshake_then_bare_plain_token(secure_broker):
    with Connection(secure_broker.ports["SASL_PLAINTEXT"]) as conn:
        handshake_v0(conn)
        conn.sock.sendall(plain_token("alice", ALICE_PASSWORD))
        assert read_exactly(conn.sock, 4) == b"\0\0\0\0"  # the empty server token, size-prefixed
        assert api_versions_v0_error(conn.request(API_VERSIONS, 0, b"")) == 0
        # Answered, where an unauthenticated connection is closed (test below).
        conn.request(METADATA, 1, METADATA_V1_BODY)


def test_v0_wrong_password_closes_without_an_answer(secure_broker):
    port = secure_broker.ports["SASL_PLAINTEXT"]
    with Connection(port) as conn:
        handshake_v0(conn)
        conn.sock.sendall(plain_token("alice", "not-the-secret"))
        assert received_until_closed(conn.sock) == b""
    assert answers_api_versions(port)


def test_other_requests_before_authentication_close_the_connection(secure_broker):
    port = secure_broker.ports["SASL_PLAINTEXT"]
    assert refused(port, None, request_frame(METADATA, 1, 1, "probe", METADATA_V1_BODY)) == b""
    assert answers_api_versions(port)


def test_mechanism_the_listener_does_not_enable(secure_broker):
    frame = request_frame(SASL_HANDSHAKE, 1, 7, "probe", string("SCRAM-SHA-256"))
    body = only_response(refused(secure_broker.ports["SASL_PLAINTEXT"], None, frame), 7)
    assert sasl_handshake_answer(body) == (UNSUPPORTED_SASL_MECHANISM, ["PLAIN"])


def test_frame_over_the_sasl_receive_limit_before_authentication(secure_broker):
    port = secure_broker.ports["SASL_PLAINTEXT"]
    assert refused(port, None, struct.pack(">i", OVERSIZED) + struct.pack(">hhi", API_VERSIONS, 0, 1)) == b""
    assert answers_api_versions(port)


def test_handshake_on_a_listener_without_sasl(secure_broker, pki):
    with Connection(secure_broker.ports["SSL"], ssl_context=pki.context(pki.admin)) as conn:
        error, _ = sasl_handshake_answer(conn.request(SASL_HANDSHAKE, 1, string("PLAIN")))
        assert error == ILLEGAL_SASL_STATE
        assert api_versions_v0_error(conn.request(API_VERSIONS, 0, b"")) == 0
