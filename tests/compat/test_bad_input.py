"""Garbage on the socket closes that connection only; the broker keeps serving others."""

import socket
import struct

from confluent_kafka import Producer


def closed_after(broker, payload):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(payload)
        try:
            return s.recv(1024) == b""
        except ConnectionResetError:
            return True


def test_garbage_bytes_close_one_connection(broker, topic):
    healthy = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    assert closed_after(broker, b"\xde\xad\xbe\xef" * 64)
    assert closed_after(broker, struct.pack(">i", 200 * 1024 * 1024) + b"x" * 16)
    assert closed_after(broker, struct.pack(">i", -5))
    body = struct.pack(">hhi", 3, 12, 7) + b"\xff" * 40
    assert closed_after(broker, struct.pack(">i", len(body)) + body)
    body = struct.pack(">hhi", 999, 0, 7) + b"\x00\x00"
    assert closed_after(broker, struct.pack(">i", len(body)) + body)

    # ApiVersions v0 on the connection opened before the garbage still answers.
    request = struct.pack(">hhih", 18, 0, 42, -1)
    healthy.sendall(struct.pack(">i", len(request)) + request)
    size = struct.unpack(">i", healthy.recv(4))[0]
    assert size > 6
    assert struct.unpack(">i", healthy.recv(4))[0] == 42
    healthy.close()

    delivered = []
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"still serving", on_delivery=lambda e, m: delivered.append(e))
    p.flush(20)
    assert delivered == [None]
    assert broker.proc.poll() is None


def test_unsupported_api_versions_version_gets_v0_error(broker):
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        request = struct.pack(">hhih", 18, 99, 7, -1)
        s.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", s.recv(4))[0]
        body = b""
        while len(body) < size:
            body += s.recv(size - len(body))
        correlation, error, count = struct.unpack(">ihi", body[:10])
        assert (correlation, error) == (7, 35)
        assert count > 5
