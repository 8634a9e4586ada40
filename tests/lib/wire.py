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

    def send(self, api_key, version, body):
        """Sends one request with a v1 header without waiting for its answer."""
        self.correlation += 1
        frame = struct.pack(">hhi", api_key, version, self.correlation) + string(self.client_id) + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        return self.correlation

    def receive(self, correlation):
        """The body after the correlation id of the next response, which must answer `correlation`."""
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        assert struct.unpack(">i", response[:4])[0] == correlation
        return response[4:]

    def request(self, api_key, version, body):
        """Sends one request and returns its response body after the correlation id."""
        return self.receive(self.send(api_key, version, body))


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


class Reader:
    """Reads the fields of a non-flexible response body in order."""

    def __init__(self, body):
        self.body = body
        self.at = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.body, self.at)
        self.at += struct.calcsize(fmt)
        return values if len(values) > 1 else values[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        value = self.body[self.at:self.at + n].decode()
        self.at += n
        return value

    def bytes(self):
        n = self.take(">i")
        value = self.body[self.at:self.at + max(n, 0)]
        self.at += max(n, 0)
        return value


def join_group_v5(group, member_id, instance_id=None, protocols=(("range", b""),),
                  session_ms=10000, rebalance_ms=30000):
    body = string(group) + struct.pack(">ii", session_ms, rebalance_ms) + string(member_id)
    body += nullable_string(instance_id) + string("consumer")
    body += array(string(name) + struct.pack(">i", len(meta)) + meta for name, meta in protocols)
    return body


def join_group_v5_answer(body):
    """(error, generation, member id, leader, [member ids]) of a JoinGroup v5 response."""
    r = Reader(body)
    r.take(">i")
    error, generation = r.take(">hi")
    r.string()
    leader = r.string()
    member_id = r.string()
    members = []
    for _ in range(r.take(">i")):
        members.append(r.string())
        r.string()
        r.bytes()
    return error, generation, member_id, leader, members


def sync_group_v3(group, generation, member_id, instance_id=None, assignments=()):
    body = string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)
    body += array(string(m) + struct.pack(">i", len(a)) + a for m, a in assignments)
    return body


def heartbeat_v3(group, generation, member_id, instance_id=None):
    return string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)


def offset_commit_v7(group, generation, member_id, topic, partition, offset, instance_id=None):
    body = string(group) + struct.pack(">i", generation) + string(member_id) + nullable_string(instance_id)
    partitions = array([struct.pack(">iqi", partition, offset, -1) + nullable_string(None)])
    return body + array([string(topic) + partitions])


def offset_commit_v7_errors(body):
    r = Reader(body)
    r.take(">i")
    errors = []
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            errors.append(r.take(">ih")[1])
    return errors


def first_error_code(body, skip_throttle=True):
    """The error code that follows the throttle time (Heartbeat v1+, SyncGroup v1+)."""
    return struct.unpack_from(">h", body, 4 if skip_throttle else 0)[0]


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
