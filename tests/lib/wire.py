"""Raw Kafka frames for tests that must control the exact bytes on the socket: request
headers (v1, non-flexible), a few request bodies, and record batches read from a segment."""

import socket
import struct
from pathlib import Path


def string(s):
    data = s.encode()
    return struct.pack(">h", len(data)) + data


def nullable_string(s):
    return struct.pack(">h", -1) if s is None else string(s)


def array(items):
    items = list(items)
    return struct.pack(">i", len(items)) + b"".join(items)


class Connection:
    """One client connection that sends a request and reads its response frame."""

    def __init__(self, port, client_id="strom-wire-test", timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.client_id = client_id
        self.correlation = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            data += chunk
        return data

    def request(self, api_key, version, body):
        """Sends one request with a v1 header; returns the response body after the
        correlation id."""
        self.correlation += 1
        frame = struct.pack(">hhi", api_key, version, self.correlation) + string(self.client_id) + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        assert struct.unpack(">i", response[:4])[0] == self.correlation
        return response[4:]


def metadata_v4(topics, auto_create=True):
    return array(string(t) for t in topics) + struct.pack(">?", auto_create)


def produce_v3(topic, partition, batch, acks=-1, timeout_ms=10000):
    partitions = array([struct.pack(">i", partition) + struct.pack(">i", len(batch)) + batch])
    return nullable_string(None) + struct.pack(">hi", acks, timeout_ms) + array([string(topic) + partitions])


def produce_v3_errors(body):
    """[(partition, error code, base offset)] of a Produce v3 response."""
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from(fmt, body, at)
        at += struct.calcsize(fmt)
        return values

    results = []
    (topics,) = take(">i")
    for _ in range(topics):
        (name_len,) = take(">h")
        at += name_len
        (partitions,) = take(">i")
        for _ in range(partitions):
            index, error, base, _append_time = take(">ihqq")
            results.append((index, error, base))
    return results


def record_batch(values, compression=0):
    """A v2 record batch of `values` (bytes), built by kafka-python's batch builder."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def stored_batches(partition_dir):
    """(base offset, records count, codec id) of every batch in a partition's segments."""
    batches = []
    for segment in sorted(Path(partition_dir).glob("*.log")):
        data = segment.read_bytes()
        at = 0
        while at + 61 <= len(data):
            base, length = struct.unpack_from(">qi", data, at)
            if length <= 0:
                break
            (attributes,) = struct.unpack_from(">h", data, at + 21)
            (count,) = struct.unpack_from(">i", data, at + 57)
            batches.append((base, count, attributes & 0x7))
            at += 12 + length
    return batches
